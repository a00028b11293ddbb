"""``optitop doctor``: the command; the checks themselves (one per data source) are in ``optitop.doctor``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from optitop.args import Parser, add_collection_args, add_target_args, options_from
from optitop.target import resolve


def doctor_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop doctor``."""
    parser = Parser(prog="optitop doctor", description="Say, for every data source, whether it works here and why not.")
    add_target_args(parser)
    add_collection_args(parser)
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def doctor_main(argv: Sequence[str]) -> int:
    """Check every data source against the target (or the machine when no target is given); 0 when all work."""
    from optitop.doctor import run_doctor

    args = doctor_parser().parse_args(argv)
    pid = (
        None
        if (args.pid is None and args.port is None and args.name is None)
        else resolve(args.pid, args.port, args.name)
    )
    return run_doctor(pid, options_from(args), as_json=args.json)
