"""The one stop/wait loop of the headless commands, the exit code of an OSError, and the typed bundle/doctor reads."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import pytest

from optitop.args import EXIT_FAILURE, EXIT_USAGE, os_error_exit
from optitop.bundle import EndpointSource, queue_endpoints
from optitop.commands.waiting import STOP_SIGNALS, StopReason, stop_signals, wait_for_stop
from optitop.doctor import Describes
from optitop.safefile import RefusedPathError


def never() -> bool:
    return False


def test_the_deadline_ends_the_wait_on_time():
    start = time.monotonic()
    assert wait_for_stop(threading.Event(), never, duration_s=0.3) is StopReason.DEADLINE
    assert 0.29 <= time.monotonic() - start < 1.0


def test_the_deadline_counts_from_the_given_start():
    start = time.monotonic() - 10.0
    assert wait_for_stop(threading.Event(), never, duration_s=5.0, start_mono_s=start) is StopReason.DEADLINE


def test_the_target_exit_ends_a_wait_without_deadline():
    gone = time.monotonic() + 0.2
    assert wait_for_stop(threading.Event(), lambda: time.monotonic() >= gone) is StopReason.TARGET_EXITED


def test_an_extra_condition_ends_the_wait():
    calls = []

    def until() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_for_stop(threading.Event(), never, duration_s=30, until=until, poll_s=0.01) is StopReason.CONDITION


def test_a_set_event_wins_over_a_passed_deadline_and_an_exited_target():
    stopped = threading.Event()
    stopped.set()
    why = wait_for_stop(stopped, lambda: True, duration_s=0.0, start_mono_s=time.monotonic() - 1)
    assert why is StopReason.SIGNAL


def test_an_event_set_from_another_thread_ends_the_wait_at_once():
    stopped = threading.Event()
    threading.Timer(0.1, stopped.set).start()
    start = time.monotonic()
    assert wait_for_stop(stopped, never, poll_s=10.0) is StopReason.SIGNAL
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_each_stop_signal_sets_the_event_and_the_old_handler_comes_back(sig):
    before = signal.getsignal(sig)
    with stop_signals() as stopped:
        assert signal.getsignal(sig) is not before
        os.kill(os.getpid(), sig)
        assert stopped.wait(2.0)
        assert wait_for_stop(stopped, never, duration_s=30) is StopReason.SIGNAL
    assert signal.getsignal(sig) is before


def test_off_the_main_thread_nothing_is_installed():
    before = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    during: dict[signal.Signals, object] = {}
    why: list[StopReason] = []

    def run() -> None:
        with stop_signals() as stopped:
            during.update({sig: signal.getsignal(sig) for sig in STOP_SIGNALS})
            stopped.set()
            why.append(wait_for_stop(stopped, never))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert why == [StopReason.SIGNAL]
    assert during == before


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RefusedPathError("x", errno.ELOOP, "is a symbolic link"), EXIT_USAGE),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), EXIT_USAGE),
        (PermissionError(errno.EACCES, "Permission denied"), EXIT_USAGE),
        (OSError(errno.EADDRINUSE, "Address already in use"), EXIT_USAGE),
        (OSError(errno.ENOSPC, "No space left on device"), EXIT_FAILURE),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), EXIT_FAILURE),
        (OSError(errno.EIO, "Input/output error"), EXIT_FAILURE),
        (OSError(errno.EMFILE, "Too many open files"), EXIT_FAILURE),
    ],
)
def test_a_full_disk_is_a_failure_and_a_bad_path_is_usage(exc, code):
    assert os_error_exit(exc) == code


@dataclass
class FakeScraper:
    name: str = "scraper"
    endpoints: dict[str, object] = field(default_factory=dict)


@dataclass
class FakeOther:
    name: str = "other"


@dataclass
class FakeRunner:
    collector: object


class FakeSession:
    """Answers runner(name) for any registry name: the lookup must not depend on which name scrapes."""

    def __init__(self, by_name: dict[str, object]) -> None:
        self.by_name = by_name

    def runner(self, name: str) -> FakeRunner | None:
        collector = self.by_name.get(name)
        return FakeRunner(collector) if collector is not None else None


def test_queue_endpoints_finds_the_scraping_collector_by_what_it_can_do():
    from optitop.collectors import REGISTRY

    names = [spec.name for spec in REGISTRY]
    scraper = FakeScraper(endpoints={"http://127.0.0.1:8000/metrics": 1, "http://127.0.0.1:9000/metrics": 2})
    session = FakeSession({names[0]: FakeOther(), names[-1]: scraper})
    assert isinstance(scraper, EndpointSource) and not isinstance(FakeOther(), EndpointSource)
    assert queue_endpoints(session) == ["http://127.0.0.1:8000/metrics", "http://127.0.0.1:9000/metrics"]
    assert queue_endpoints(FakeSession({names[0]: FakeOther()})) == []
    assert queue_endpoints(None) == []


def test_doctor_reads_describe_through_its_protocol():
    class Says:
        def describe(self) -> str:
            return "two GPUs"

    assert isinstance(Says(), Describes)
    assert not isinstance(FakeOther(), Describes)
