"""Terminal input without a 10 Hz poll: wait on the TTY (and a wake-up pipe) until a key or a parser timeout.

Textual's Linux driver (8.x) reads keys on a thread that wakes every 0.1 s (``select(0.1)``) to look at its exit
flag and its parser's escape-key timeout, key or no key. At optitop's 1 Hz that thread was 0.09-0.13 % of a core
for nothing: 7 % of optitop's CPU. ``QuietLinuxDriver`` runs the same loop but sleeps until input arrives, the
parser's pending timeout (a lone Esc) is due, or the exit flag is set (setting it writes to a pipe the loop also
waits on), and at most ``MAX_WAIT_S``. ``quiet_driver()`` returns it only when Textual's driver has the shape it
was written against (the parser, the loop, the exit flag); otherwise Textual's own driver runs, so an upgrade
can cost a few wake-ups but never keys.
"""

from __future__ import annotations

import contextlib
import functools
import os
import selectors
import sys
import threading
from codecs import getincrementaldecoder
from typing import Any

from optitop.osthread import name_os_thread

#: Longest sleep without input: a safety net, the exit flag and the parser's timeout wake the loop anyway.
MAX_WAIT_S = 1.0


class _WakingEvent(threading.Event):
    """An Event whose ``set()`` also writes a byte to a pipe, so a thread in ``select()`` sees it at once.

    ``wake_fd`` is the pipe's write end in force (-1 while the driver is suspended and the pipe is closed).
    """

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self.wake_fd = wake_fd

    def set(self) -> None:
        """Set the flag and wake the input loop."""
        super().set()
        if self.wake_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self.wake_fd, b"x")


def _parser_wait_s(parser: Any, now_s: float) -> float:
    """Seconds until the parser's pending timeout (an Esc that may start a sequence), else ``MAX_WAIT_S``."""
    due = getattr(parser, "_timeout_time", None)
    if due is None:
        return MAX_WAIT_S
    return min(MAX_WAIT_S, max(0.0, due - now_s))


def quiet_driver(default: type) -> type | None:
    """``QuietLinuxDriver`` when ``default`` (the driver Textual picked) is its Linux driver of the shape this
    was written for; None otherwise (Windows, a ``TEXTUAL_DRIVER`` override, another Textual)."""
    if os.environ.get("TEXTUAL_DRIVER"):
        return None
    built = _build()
    return built if built is not None and default is built.__base__ else None


@functools.cache
def _build() -> type | None:
    if sys.platform == "win32":
        return None
    try:
        from textual._loop import loop_last
        from textual._parser import Parser
        from textual._time import get_time
        from textual._xterm_parser import XTermParser
        from textual.drivers.linux_driver import LinuxDriver
    except ImportError:
        return None
    probe = Parser.__init__.__code__.co_names
    if not (
        callable(getattr(LinuxDriver, "run_input_thread", None))
        and callable(getattr(LinuxDriver, "process_message", None))
        and "_timeout_time" in probe
        and callable(getattr(XTermParser, "tick", None))
        and callable(getattr(XTermParser, "feed", None))
    ):
        return None

    class QuietLinuxDriver(LinuxDriver):
        """Textual's Linux driver with an input loop that sleeps until there is something to do."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._wake_r = self._wake_w = -1
            # Without Textual's exit flag to replace, the loop still ends: it looks at the flag every MAX_WAIT_S.
            if isinstance(getattr(self, "exit_event", None), threading.Event):
                self.exit_event = _WakingEvent(-1)
            self._open_wake_pipe()

        def _open_wake_pipe(self) -> None:
            """A fresh wake-up pipe, unless one is open (close() closes it: Ctrl-Z suspends through close())."""
            if self._wake_r >= 0:
                return
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            if isinstance(self.exit_event, _WakingEvent):
                self.exit_event.wake_fd = self._wake_w

        def start_application_mode(self) -> None:
            """Textual's start; on a resume after SIGTSTP (which closed the driver) the input loop needs a new pipe.

            Textual suspends with stop_application_mode() and close(), and resumes on SIGCONT with
            start_application_mode() alone: without this the loop waited on the closed pipe's number (EBADF, the
            input thread died and the app with it).
            """
            self._open_wake_pipe()
            super().start_application_mode()

        def close(self) -> None:
            super().close()
            if isinstance(self.exit_event, _WakingEvent):
                self.exit_event.wake_fd = -1
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1

        def run_input_thread(self) -> None:
            """Textual's loop (read, feed the parser, tick it), waiting for input instead of polling."""
            name_os_thread("optitop-input")
            selector = selectors.SelectSelector()
            fileno, wake = self.fileno, self._wake_r
            selector.register(fileno, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            parser = XTermParser(self._debug)
            decode = getincrementaldecoder("utf-8")().decode

            def process(events: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> None:
                for last, (key, mask) in loop_last(events):
                    if key.fd == wake:
                        with contextlib.suppress(OSError):
                            os.read(wake, 4096)
                        continue
                    if mask & selectors.EVENT_READ:
                        data = decode(os.read(fileno, 1024 * 4), final=final and last)
                        if not data:
                            break  # stdin is a pipe that closed
                        for event in parser.feed(data):
                            self.process_message(event)
                for event in parser.tick():
                    self.process_message(event)

            try:
                while not self.exit_event.is_set():
                    process(selector.select(_parser_wait_s(parser, get_time())))
                selector.unregister(fileno)
                process(selector.select(0.1), final=True)
            finally:
                selector.close()
                with contextlib.suppress(Exception):
                    for _ in parser.feed(""):
                        pass

    return QuietLinuxDriver
