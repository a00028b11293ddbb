"""The composition root: a target is described once, sessions are built in one place, and the live handle starts,
stops, and answers the screen's actions."""

from __future__ import annotations

import threading

import pytest

import optitop.runtime as runtime
from optitop.config import Options
from optitop.follow import FollowingSession
from optitop.live import LiveHandle, Notice, StoreView
from optitop.model import TargetInfo
from optitop.runtime import LiveRuntime, live_runtime, make_session
from optitop.session import LiveSession, Session
from optitop.store import Store

TARGET = TargetInfo(4242, "python", "python serve.py", "me", 0.0, "box")
QUIET = Options(interval_s=0.5, disabled=frozenset({"pystacks", "gpu", "queue", "logs"}))


def counting_describe(monkeypatch) -> list[int]:
    described: list[int] = []

    def describe(pid: int) -> TargetInfo:
        described.append(pid)
        return TARGET

    monkeypatch.setattr(runtime, "describe", describe)
    return described


def test_a_session_into_a_store_does_not_describe_the_target_again(monkeypatch):
    described = counting_describe(monkeypatch)
    store = Store(TARGET)
    session = make_session(4242, QUIET, store)
    assert session.store is store and described == []
    make_session(4242, QUIET)
    assert described == [4242]


@pytest.mark.parametrize("follow", [None, (8000, None)])
def test_the_live_screen_describes_its_target_once(monkeypatch, follow):
    described = counting_describe(monkeypatch)
    built: list[LiveSession] = []
    live = live_runtime(4242, QUIET, follow)
    assert described == [4242]  # before the screen: a missing pid fails here

    def make_session(pid, options, store=None):
        built.append(store)
        return FakeSession(store)

    monkeypatch.setattr(runtime, "make_session", make_session)
    live.start()
    try:
        assert described == [4242] and built == [live.store]
        assert isinstance(live.session, FollowingSession if follow else FakeSession)
    finally:
        live.stop()


def test_follow_needs_a_port_or_a_name_before_anything_is_described(monkeypatch):
    described = counting_describe(monkeypatch)
    with pytest.raises(ValueError, match="--port or --name"):
        live_runtime(4242, QUIET, (None, None))
    assert described == []


class Sampler:
    def __init__(self, free: bool = True) -> None:
        self.free = free

    def set_pace(self, factor: float) -> None:
        pass

    def trigger(self, reason: str) -> bool:
        return True

    def request_native(self) -> bool:
        return self.free


class FakeSession:
    """A LiveSession that collects nothing."""

    stacks_watched = False

    def __init__(self, store: Store, sampler: Sampler | None = None) -> None:
        self.store = store
        self.sampler = sampler
        self.started = False
        self._stopped = False

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        self.started = True

    def stop(self, timeout_s: float = 3.0) -> None:
        self._stopped = True

    def runner(self, name: str) -> None:
        return None

    def stacks(self) -> Sampler | None:
        return self.sampler


def test_sessions_and_handles_share_their_declared_interfaces():
    live: LiveHandle = LiveRuntime(Store(TARGET), QUIET)  # noqa: F841 - mypy checks these assignments
    view: LiveHandle = StoreView(Store(TARGET))  # noqa: F841
    session: LiveSession = Session(Store(TARGET), [], QUIET)  # noqa: F841
    assert callable(FollowingSession.stacks) and isinstance(FollowingSession.stopped, property)


def test_the_handle_starts_the_session_it_builds_and_stops_it():
    store = Store(TARGET)
    fake = FakeSession(store, Sampler())
    live = LiveRuntime(store, QUIET, build=lambda: fake)
    assert live.session is None
    live.set_stacks_watched(True)  # zoomed before the session existed: it still gets to know
    live.start()
    assert live.session is fake and fake.started and fake.stacks_watched
    live.set_stacks_watched(False)
    assert not fake.stacks_watched
    assert live.request_native() == Notice("native stack sample started (pauses the target briefly)")
    fake.sampler = Sampler(free=False)
    assert live.request_native() == Notice("a native sample is already running")
    live.stop()
    live.stop()  # idempotent
    assert fake.stopped


def test_a_session_built_after_stop_is_never_started():
    store = Store(TARGET)
    release = threading.Event()
    fake = FakeSession(store)

    def slow() -> FakeSession:
        release.wait(10)
        return fake

    live = LiveRuntime(store, QUIET, build=slow)
    starter = threading.Thread(target=live.start)
    starter.start()
    live.stop()
    release.set()
    starter.join(10)
    assert live.session is None and not fake.started


def test_native_without_a_sampler_and_a_replay_view_say_what_is_not_available():
    live = LiveRuntime(Store(TARGET), QUIET, build=lambda: FakeSession(live.store))
    live.start()
    assert live.request_native() == Notice(LiveRuntime.NO_SAMPLER, "warning")
    view = StoreView(Store(TARGET))
    assert "not available in a replay" in view.request_native().text
    assert view.toggle_record()[0].text.startswith("recording is off while replaying")
    assert "not available in a replay" in view.write_bundle().text
    assert view.recording == ""
