"""The one "run until stopped" loop of the commands that sample without a screen (``--once``, ``export``, ``record``).

Each of them used to carry its own copy of: install SIGTERM/SIGINT/SIGHUP handlers, wait until a deadline, the
target's exit or a signal, restore the handlers. The copies drifted (one installed handlers off the main thread,
where Python refuses them; one polled every 0.2 s, the others every 0.1 s). Here there is one copy:

    with stop_signals() as stopped:
        session.start()
        try:
            why = wait_for_stop(stopped, lambda: session.store.target.exited, duration_s=5.0)
        finally:
            session.stop()

A signal ends the wait instead of the process, so the caller still writes what it owes (the report, the
recording's ``end`` line, the exporter's socket) before the handlers it replaced come back.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType

#: The signals that end a headless run cleanly: a supervisor's stop, Ctrl-C, a closed SSH session.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Seconds between looks at the target and the extra condition (a signal ends the wait at once).
POLL_S = 0.1


class StopReason(enum.Enum):
    """Why :func:`wait_for_stop` returned."""

    DEADLINE = "deadline"
    TARGET_EXITED = "target exited"
    SIGNAL = "signal"
    CONDITION = "condition"


@contextlib.contextmanager
def stop_signals(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> Iterator[threading.Event]:
    """An event set by any of ``signals`` while the block runs; the previous handlers come back after it.

    Off the main thread Python cannot install handlers: the event is still given (set it by hand) and nothing
    is installed, so the command works from a test's or an embedder's thread too.
    """
    stopped = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stopped.set()

    previous: dict[signal.Signals, signal.Handlers | Callable[[int, FrameType | None], object] | int | None] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            previous[sig] = signal.signal(sig, _stop)
    try:
        yield stopped
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_for_stop(
    stopped: threading.Event,
    target_exited: Callable[[], bool],
    *,
    duration_s: float | None = None,
    until: Callable[[], bool] | None = None,
    start_mono_s: float | None = None,
    poll_s: float = POLL_S,
) -> StopReason:
    """Block until ``stopped`` is set, ``target_exited()``, ``until()`` or ``duration_s`` after ``start_mono_s``.

    ``start_mono_s`` (``time.monotonic()``, now by default) lets a caller count the duration from before its
    session started, as the run's elapsed time is counted; ``None`` for ``duration_s`` waits without a deadline.
    The signal is looked at first, then the target, then ``until``, then the deadline: a run stopped by a
    signal says so even when its deadline passed too.
    """
    start = time.monotonic() if start_mono_s is None else start_mono_s
    deadline = None if duration_s is None else start + duration_s
    while True:
        if stopped.is_set():
            return StopReason.SIGNAL
        if target_exited():
            return StopReason.TARGET_EXITED
        if until is not None and until():
            return StopReason.CONDITION
        wait_s = poll_s
        if deadline is not None:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                return StopReason.DEADLINE
            wait_s = min(poll_s, remaining_s)
        stopped.wait(wait_s)
