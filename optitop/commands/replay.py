"""``optitop replay run.jsonl [--speed X]``: the live screen on recorded data, with a progress line while reading.

Reading a large recording takes a while before anything can be drawn (``scan`` validates every line): a
progress line says it is moving, and keys pressed meanwhile are kept from echoing and from reaching the app.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, TextIO

from optitop.recording.codec import Event
from optitop.recording.reader import RecordingError
from optitop.recording.scan import Recording, scan
from optitop.safetext import printable


def replay_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop replay``."""
    from optitop.args import REPLAY_SPEED, Parser, bounded

    parser = Parser(
        prog="optitop replay",
        description="Replay a recording in the live screen: space pauses, . steps, left/right seek 10 s.",
    )
    parser.add_argument("path", help="a file written by `optitop record` (or the r key)")
    parser.add_argument(
        "--speed",
        type=bounded(*REPLAY_SPEED),
        default=1.0,
        metavar="X",
        help=f"playback speed, {REPLAY_SPEED[0]:g}-{REPLAY_SPEED[1]:g} (default 1)",
    )
    parser.add_argument("--mono", action="store_true", help="no colour (NO_COLOR is respected too)")
    return parser


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


def replay_main(argv: Sequence[str]) -> int:
    """``optitop replay run.jsonl [--speed X]``: the TUI on recorded data; returns the exit code."""
    from optitop.args import EXIT_USAGE

    args = replay_parser().parse_args(argv)
    try:
        recording = read_with_progress(args.path)
    except RecordingError as exc:
        print(f"optitop: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    try:
        for line in recording.problems():
            print(f"optitop: {printable(line)}", file=sys.stderr)
        if not recording.has_events:
            print(f"optitop: {printable(args.path)}: nothing to replay (no samples)", file=sys.stderr)
            return EXIT_USAGE
        if not sys.stdout.isatty():
            print("optitop: replay needs a terminal; use `optitop compare` for a text summary", file=sys.stderr)
            return EXIT_USAGE
        return run_replay(recording, speed=args.speed, monochrome=args.mono)
    finally:
        recording.close()


def run_replay(recording: Recording, speed: float = 1.0, monochrome: bool = False) -> int:
    """Open the replay screen on ``recording`` until the user quits (the screen gets the replayer as a Playback and
    its store behind a StoreView: it never builds either)."""
    from optitop.config import Options
    from optitop.live import StoreView
    from optitop.recording.replayer import Replayer
    from optitop.tui.replay import ReplayApp

    replayer = Replayer(recording, speed=speed)
    options = Options(
        interval_s=max(0.1, min(1.0, replayer.interval_s / speed)),
        history_s=replayer.history_s,
        analysis_window_s=replayer.analysis_window_s,
        monochrome=monochrome,
    )
    ReplayApp(replayer, StoreView(replayer.store), options).run()
    return 0
