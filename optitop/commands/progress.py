"""Reading a recording with a progress line: shared by ``replay`` and ``compare``.

Reading a large recording takes a while before anything can be drawn or compared (``scan`` validates every line):
a progress line on the terminal says it is moving, and keys pressed meanwhile are kept from echoing and from
reaching what comes next.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, TextIO

from optitop.recording.codec import Event
from optitop.recording.scan import Recording, scan
from optitop.safetext import printable


class ProgressLine:
    """``optitop: reading FILE 42%`` on stderr, rewritten in place; silent when stderr is not a terminal.

    Reading a large recording takes a while before anything can be drawn: the line says that it is moving.
    """

    def __init__(self, path: str, stream: TextIO | None = None, every_s: float = 0.2) -> None:
        """Report on reading ``path`` to ``stream`` (stderr), at most once per ``every_s``."""
        self.stream = stream if stream is not None else sys.stderr
        self.label = printable(path)
        self.every_s = every_s
        self.on = _isatty(self.stream)
        self._last = -math.inf
        self._width = 0

    def __call__(self, fraction: float) -> None:
        """Show ``fraction`` (0..1) read."""
        now = time.monotonic()
        if not self.on or (now - self._last < self.every_s and fraction < 1.0):  # the end is always shown
            return
        self._last = now
        text = f"\roptitop: reading {self.label} {fraction * 100:3.0f}%"
        self._width = max(self._width, len(text))
        self.stream.write(text)
        self.stream.flush()

    def done(self) -> None:
        """Erase the line (what follows starts on a clean line)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _isatty(stream: IO[Any] | TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def quiet_keys(stream: TextIO | None = None) -> Iterator[None]:
    """Keys pressed during a long read are neither echoed (over the progress line) nor kept for later.

    The terminal is in its normal mode until the screen starts: without this, every key echoes raw and lands
    in the app's input once it starts.
    """
    stream = stream if stream is not None else sys.stdin
    saved: list[Any] | None = None
    fd = -1
    try:
        import termios

        fd = stream.fileno()
        if os.isatty(fd):
            saved = termios.tcgetattr(fd)
            quiet = list(saved)
            quiet[3] &= ~(termios.ECHO | termios.ICANON)
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (ImportError, AttributeError, ValueError, OSError):
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcflush(fd, termios.TCIFLUSH)
                termios.tcsetattr(fd, termios.TCSANOW, saved)


def read_with_progress(path: str, visit: Callable[[Event], None] | None = None) -> Recording:
    """``scan`` with a progress line on a terminal and keys kept quiet meanwhile."""
    progress = ProgressLine(path)
    with quiet_keys():
        try:
            return scan(path, visit, progress if progress.on else None)
        finally:
            progress.done()
