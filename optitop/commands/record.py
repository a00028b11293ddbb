"""``optitop record``: attach to a target and record it until the duration ends, the target exits or a signal.

The recording itself (``PATH.part``, the rename, the line format) is ``optitop.recording.writer``'s; here are
the options, the session, the stop signals (SIGTERM, SIGINT and SIGHUP end it cleanly, with its ``end`` line)
and the one-line messages that say where the data is.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from optitop.config import Options
from optitop.recording.writer import Recorder, error_sentence
from optitop.safefile import check_destination


def record_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop record``."""
    from optitop.args import DURATION_S, Parser, add_collection_args, add_target_args, bounded

    parser = Parser(
        prog="optitop record",
        description="Record a target's metrics and verdicts to a JSON Lines file (replay or compare it later).",
    )
    add_target_args(parser)
    add_collection_args(parser)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="PATH",
        help="the file to create (.gz compresses); written as PATH.part and renamed when the recording ends",
    )
    parser.add_argument("--force", action="store_true", help="replace PATH if it is an existing regular file")
    parser.add_argument(
        "--duration",
        type=bounded(*DURATION_S, " s"),
        default=None,
        metavar="S",
        help=f"seconds to record, up to {DURATION_S[1]:g} (default: until the target exits or SIGINT/SIGTERM)",
    )
    return parser


def record_main(argv: Sequence[str]) -> int:
    """``optitop record --pid PID -o run.jsonl[.gz] [--duration S] [--force]``; returns the exit code.

    A target or an output path that cannot be used is bad usage (2, before anything is sampled); a write that
    fails while recording is a failure while running (1).
    """
    from optitop.args import EXIT_USAGE, UsageError, options_from, os_error_exit
    from optitop.target import TargetError, resolve

    args = record_parser().parse_args(argv)
    try:
        pid = resolve(args.pid, args.port, args.name)
        check_destination(args.output, force=args.force)
    except (TargetError, UsageError) as exc:
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # a refused path is bad usage (2), a full disk a failure (1)
        print(f"optitop: cannot write {args.output}: {error_sentence(exc)}", file=sys.stderr)
        return os_error_exit(exc)
    options = options_from(args)
    try:
        return _record(pid, options, args.output, args.duration, args.force)
    except TargetError as exc:
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _record(pid: int, options: Options, path: str, duration_s: float | None, force: bool) -> int:
    from optitop.args import EXIT_FAILURE, EXIT_OK, os_error_exit
    from optitop.commands.waiting import stop_signals, wait_for_stop
    from optitop.runtime import make_session

    session = make_session(pid, options)
    recorder = Recorder(session.store, path, options=options, collectors=[r.name for r in session.runners], force=force)
    try:
        recorder.open()
    except OSError as exc:
        print(f"optitop: cannot write {path}: {error_sentence(exc)}", file=sys.stderr)
        return os_error_exit(exc)
    print(f"optitop: recording to {recorder.part_path} (renamed to {path} when the recording ends)", file=sys.stderr)
    try:
        recorder.start()
    except OSError as exc:
        print(f"optitop: cannot write {path}: {error_sentence(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    with stop_signals() as stopped:  # a signal ends the recording cleanly: the file gets its ``end`` line
        start = time.monotonic()
        session.start()
        try:
            wait_for_stop(
                stopped,
                lambda: session.store.target.exited,
                duration_s=duration_s,
                until=lambda: bool(recorder.error),
                start_mono_s=start,
            )
        finally:
            session.stop()
            recorder.stop()
    elapsed = time.monotonic() - start
    if recorder.error:
        print(
            f"optitop: the recording stopped early ({recorder.error}) after {recorder.events} events over "
            f"{elapsed:.0f} s; they are in {recorder.saved_path} (it replays); {path} was not written",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    why = " (the target exited)" if session.store.target.exited else ""
    print(f"optitop: recorded {recorder.events} events over {elapsed:.0f} s to {path}{why}", file=sys.stderr)
    return EXIT_OK
