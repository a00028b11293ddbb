"""``optitop bundle``: sample the target for a few seconds, then write an incident bundle.

What goes into the archive and how it is written is ``optitop.bundle`` (the ``b`` key of the live screen
writes the same archive from its own session); this module is the command: its options and exit codes.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from optitop.args import (
    BUNDLE_MINUTES,
    BUNDLE_SAMPLE_S,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_collection_args,
    add_target_args,
    bounded,
    options_from,
    os_error_exit,
)
from optitop.bundle import DEFAULT_SAMPLE_S, gather, queue_endpoints, write_archive
from optitop.commands.waiting import wait_for_stop
from optitop.safefile import SafeFile
from optitop.target import TargetError, resolve


def bundle_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop bundle``."""
    parser = Parser(
        prog="optitop bundle",
        description="Save an incident bundle: recent metrics and verdicts, a stack dump, device state, endpoints "
        "and doctor output, secrets redacted.",
    )
    add_target_args(parser)
    add_collection_args(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="the archive to create (.tar.gz), renamed in when done"
    )
    parser.add_argument("--force", action="store_true", help="replace PATH if it is an existing regular file")
    parser.add_argument(
        "--minutes",
        type=bounded(*BUNDLE_MINUTES),
        default=10.0,
        metavar="N",
        help=f"minutes of history, up to {BUNDLE_MINUTES[1]:g} (default 10)",
    )
    parser.add_argument(
        "--sample",
        type=bounded(*BUNDLE_SAMPLE_S, " s"),
        default=DEFAULT_SAMPLE_S,
        metavar="S",
        help=f"seconds to sample first, as no live session holds history (default {DEFAULT_SAMPLE_S:g})",
    )
    return parser


def bundle_main(argv: Sequence[str]) -> int:
    """``optitop bundle --pid PID -o incident.tar.gz [--minutes N] [--force]``; returns the exit code.

    The archive's temporary file is created first: a refused or uncreatable path is bad usage (2) before
    anything is sampled (a full disk there is a failure, 1: see ``os_error_exit``); a failure while gathering
    or writing is a failure while running (1).
    """
    from optitop.runtime import make_session

    args = bundle_parser().parse_args(argv)
    try:
        pid = resolve(args.pid, args.port, args.name)
        options = options_from(args)
        session = make_session(pid, options)
    except (TargetError, UsageError) as exc:
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        out = SafeFile(args.output, force=args.force)
    except OSError as exc:
        print(f"optitop: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return os_error_exit(exc)
    try:
        session.start()
        try:
            # No signal handlers: Ctrl-C interrupts (130); the handler below removes the temporary file.
            wait_for_stop(threading.Event(), lambda: session.store.target.exited, duration_s=args.sample)
            session.analyze_now()
            endpoints = queue_endpoints(session)
        finally:
            session.stop()
        bundle = gather(session.store, options, args.minutes, endpoints)
        write_archive(out, bundle)
    except OSError as exc:
        out.discard()
        print(f"optitop: cannot write {args.output}: {exc.strerror or exc}; nothing was written", file=sys.stderr)
        return EXIT_FAILURE
    except BaseException:
        out.discard()
        raise
    print(f"optitop: wrote {args.output} ({', '.join(bundle.members)})", file=sys.stderr)
    return EXIT_OK
