"""The entry point: ``optitop [SUBCOMMAND] …`` dispatches to the subcommands' modules; the live/headless mode.

The options every subcommand shares, their bounds and the exit codes live in ``optitop.args``: this module is
imported by nobody but ``python -m optitop`` (and the console script).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from optitop import __version__
from optitop.args import (
    DURATION_S,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_collection_args,
    add_target_args,
    bounded,
    options_from,
    pid_max,
)
from optitop.target import TargetError, resolve

__all__ = ["doctor_parser", "main", "main_parser", "options_from", "pid_max"]


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


def doctor_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop doctor``."""
    parser = Parser(prog="optitop doctor", description="Say, for every data source, whether it works here and why not.")
    add_target_args(parser)
    add_collection_args(parser)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def _resolve(args: argparse.Namespace) -> int:
    return resolve(args.pid, args.port, args.name)


def _pick() -> int | None:
    """The picker, when no target was named and a terminal is there to show it."""
    if not sys.stdout.isatty():
        raise UsageError("no target: pass --pid PID, --port PORT or --name PATTERN")
    from optitop.candidates import find_candidates
    from optitop.tui.picker import PickerApp

    return PickerApp(find_candidates()).run()


def cmd_main(argv: Sequence[str]) -> int:
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
    pid = _resolve(args)
    if args.once:
        from optitop.runtime import run_headless

        doc = run_headless(pid, options, args.duration)
        if args.json:
            print(json.dumps(doc, indent=2, sort_keys=False))
        else:
            from optitop.textreport import format_report

            print(format_report(doc))
        return EXIT_OK
    from optitop.runtime import run_live as run_tui

    if args.follow:
        return run_tui(pid, options, follow=(args.port, args.name))
    return run_tui(pid, options)


def cmd_doctor(argv: Sequence[str]) -> int:
    """Check every data source against the target (or the machine when no target is given)."""
    from optitop.doctor import run_doctor

    args = doctor_parser().parse_args(argv)
    pid = None if (args.pid is None and args.port is None and args.name is None) else _resolve(args)
    return run_doctor(pid, options_from(args), as_json=args.json)


def cmd_demo(argv: Sequence[str]) -> int:
    """The bundled inference server with optitop attached."""
    try:
        from optitop.demo.cli import main as demo_main
    except ImportError as exc:
        raise UsageError(f"the demo needs the demo extra: pip install 'optitop[demo]' ({exc})") from exc
    return demo_main(argv)


def cmd_record(argv: Sequence[str]) -> int:
    """Record a target to a JSON Lines file."""
    from optitop.record import record_main

    return record_main(argv)


def cmd_replay(argv: Sequence[str]) -> int:
    """Replay a recording in the TUI."""
    from optitop.replay import replay_main

    return replay_main(argv)


def cmd_compare(argv: Sequence[str]) -> int:
    """Compare two recordings side by side."""
    from optitop.compare import compare_main

    return compare_main(argv)


def cmd_export(argv: Sequence[str]) -> int:
    """Serve metrics and the verdict to Prometheus."""
    from optitop.exporter import export_main

    return export_main(argv)


def cmd_bundle(argv: Sequence[str]) -> int:
    """Write an incident bundle."""
    from optitop.bundle import bundle_main

    return bundle_main(argv)


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "doctor": cmd_doctor,
    "demo": cmd_demo,
    "record": cmd_record,
    "replay": cmd_replay,
    "compare": cmd_compare,
    "export": cmd_export,
    "bundle": cmd_bundle,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``optitop`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = SUBCOMMANDS.get(argv[0]) if argv else None
    try:
        if handler is not None:
            return handler(argv[1:])
        return cmd_main(argv)
    except (TargetError, UsageError) as exc:
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
