"""Shared fixtures: real target processes the tests start and always clean up."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psutil
import pytest


def _boot_young_clock() -> None:
    """``OPTITOP_TEST_UPTIME_S=N``: this test process's ``time.monotonic()`` reads as if the machine booted N s ago.

    CI boxes and containers are young machines: a test that mixes a synthetic clock with the real monotonic
    one passes on a machine that has been up for a while and fails on one that booted minutes ago. Running the
    suite once with ``OPTITOP_TEST_UPTIME_S=5`` shows that nothing depends on the uptime. Product code reads
    ``time.monotonic()`` through the module, so it sees the shifted clock too; subprocesses do not.
    """
    import os

    wanted = os.environ.get("OPTITOP_TEST_UPTIME_S")
    if not wanted:
        return
    real = time.monotonic
    shift_s = real() - float(wanted)
    time.monotonic = lambda: real() - shift_s  # type: ignore[assignment]


_boot_young_clock()

# A prelude every target gets: name OS threads (Python < 3.14 does not) and say "ready" when set up.
PRELUDE = textwrap.dedent(
    """
    import os, sys, threading, time
    def set_os_name(name):
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as fh:
            fh.write(name[:15])
    def spin(name, named=None):
        set_os_name(name)
        if named is not None:
            named.set()
        while True:
            pass
    def nap(name, named=None):
        set_os_name(name)
        if named is not None:
            named.set()
        while True:
            time.sleep(1)
    def named_thread(fn, name):
        # start fn(name) on a daemon thread; return once it has its OS name (no guessing with a sleep)
        named = threading.Event()
        threading.Thread(target=fn, args=(name, named), daemon=True).start()
        named.wait(10)
    def ready():
        print("ready", flush=True)
    """
)


class Target:
    """A running target process started by a test."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.pid = proc.pid

    def kill(self) -> None:
        for child in _children(self.pid):
            child.kill()
        self.proc.kill()
        self.proc.wait(10)


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


@pytest.fixture
def start_target() -> Iterator[Callable[[str], Target]]:
    """Start ``python -c PRELUDE + body``; the body must call ready(). Killed (with its children) at teardown."""
    started: list[Target] = []

    def start(body: str) -> Target:
        code = PRELUDE + textwrap.dedent(body)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"target did not start: {line!r}"
        target = Target(proc)
        started.append(target)
        return target

    yield start
    for target in started:
        if target.proc.poll() is None:
            target.kill()
        if target.proc.stdout is not None:
            target.proc.stdout.close()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (the kernel picks it)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], object], timeout_s: float = 10.0, every_s: float = 0.05, what: str = "condition not met"
) -> object:
    """Poll ``predicate`` until it returns something truthy (and return that); fail at the deadline.

    The one place tests wait for something: the sleep below is the pause between polls, never a guess at how
    long something takes. ``what`` says in the failure what was awaited.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s")
        time.sleep(every_s)
