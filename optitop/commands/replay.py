"""``optitop replay run.jsonl [--speed X]``: the live screen on recorded data, with a progress line while reading
(``commands/progress.py``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from optitop.commands.progress import read_with_progress
from optitop.recording.reader import RecordingError
from optitop.recording.scan import Recording
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
