"""``optitop [--pid …]``: the live screen, or with ``--once`` a headless report (text or ``--json``).

The picker, the live screen and the runtime are imported only by the mode that needs them: ``optitop --help``
and a bad option answer without loading Textual, and ``--once`` never loads the UI (tests/test_layering.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from optitop import __version__
from optitop.args import (
    DURATION_S,
    EXIT_OK,
    Parser,
    UsageError,
    add_collection_args,
    add_target_args,
    bounded,
    options_from,
)
from optitop.commands.waiting import stop_signals, wait_for_stop
from optitop.config import Options
from optitop.target import resolve


def main_parser() -> argparse.ArgumentParser:
    """The parser of the live/headless mode (``optitop [--pid …]``)."""
    parser = Parser(
        prog="optitop",
        description="Live monitor for an ML inference process: CPU, GPU, memory bandwidth, request queue, "
        "Python stacks, and a verdict on the bottleneck. "
        "Subcommands: doctor, demo, record, replay, compare, export, bundle.",
    )
    parser.add_argument("--version", action="version", version=f"optitop {__version__}")
    add_target_args(parser)
    add_collection_args(parser)
    parser.add_argument("--once", action="store_true", help="sample without a UI, print one report and exit")
    parser.add_argument("--json", action="store_true", help="with --once: print the report as JSON")
    parser.add_argument(
        "--duration",
        type=bounded(*DURATION_S, " s"),
        default=5.0,
        metavar="S",
        help=f"with --once: seconds to sample, {DURATION_S[0]:g}-{DURATION_S[1]:g} (default 5)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="with --port/--name: when the target restarts, re-attach to the new process and keep the history",
    )
    parser.add_argument("--low-bandwidth", action="store_true", help="redraw less, for slow SSH links")
    parser.add_argument("--mono", action="store_true", help="no colour (NO_COLOR is respected too)")
    return parser


def _pick() -> int | None:
    """The picker, when no target was named and a terminal is there to show it."""
    if not sys.stdout.isatty():
        raise UsageError("no target: pass --pid PID, --port PORT or --name PATTERN")
    from optitop.candidates import find_candidates
    from optitop.tui.picker import PickerApp

    return PickerApp(find_candidates()).run()


def run_headless(pid: int, options: Options, duration_s: float) -> dict[str, Any]:
    """Sample for ``duration_s`` (or until the target exits or SIGTERM/SIGINT/SIGHUP) and return the report."""
    from optitop.analyzers import analyze, analyzer_failed
    from optitop.runtime import make_session
    from optitop.serialize import report

    session = make_session(pid, options)
    with stop_signals() as stopped:
        start = time.monotonic()
        session.start()
        try:
            wait_for_stop(stopped, lambda: session.store.target.exited, duration_s=duration_s, start_mono_s=start)
            elapsed_s = time.monotonic() - start
            window = session.store.window(max(elapsed_s, options.interval_s) + options.interval_s)
            # One shot: judge the whole run directly; hysteresis is for a live screen that must not flicker.
            judged = session.store.window(min(options.analysis_window_s, elapsed_s + options.interval_s))
            try:
                diagnosis = analyze(judged)
            except Exception as exc:  # an analyzer bug: the report still comes, its verdict saying why there is none
                diagnosis = analyzer_failed(judged, exc)
        finally:
            session.stop()
    return report(window, diagnosis, elapsed_s)


def top_main(argv: Sequence[str]) -> int:
    """Live TUI, or ``--once`` headless report."""
    args = main_parser().parse_args(argv)
    if args.json and not args.once:
        raise UsageError("--json goes with --once")
    options = options_from(args)
    if args.pid is None and args.port is None and args.name is None and not args.once:
        chosen = _pick()
        if chosen is None:
            return EXIT_OK
        args.pid = chosen
    if args.follow and args.port is None and args.name is None:
        raise UsageError("--follow needs --port or --name to find the restarted process")
    pid = resolve(args.pid, args.port, args.name)
    if args.once:
        doc = run_headless(pid, options, args.duration)
        if args.json:
            print(json.dumps(doc, indent=2, sort_keys=False))
        else:
            from optitop.textreport import format_report

            print(format_report(doc))
        return EXIT_OK
    if args.follow:
        return run_live(pid, options, follow=(args.port, args.name))
    return run_live(pid, options)


def run_live(pid: int, options: Options, follow: tuple[int | None, str | None] | None = None) -> int:
    """Attach the live screen to ``pid`` until the user quits; ``follow`` = (port, name) re-attaches on restart."""
    if not sys.stdout.isatty():
        print("optitop: the live screen needs a terminal; use --once --json for scripts", file=sys.stderr)
        return 2
    from optitop.runtime import live_runtime
    from optitop.tui.app import OptitopApp  # the UI only when there is a screen: the headless core never loads it

    live = live_runtime(pid, options, follow)

    app = OptitopApp(live, options, watch_tty=True)
    try:
        app.run()
    finally:
        live.stop()
    return 0 if app.return_code in (None, 0) else app.return_code
