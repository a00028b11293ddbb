"""The entry point: ``optitop [SUBCOMMAND] …`` dispatches to the subcommand's module in ``optitop.commands``.

Without a subcommand it is the live screen or the ``--once`` report (``optitop.commands.top``). The options every
subcommand shares, their bounds and the exit codes live in ``optitop.args``. Nothing imports this module but
``python -m optitop`` and the console script (the demo runs the live screen through ``optitop.commands.top``); each
subcommand's module is imported only when it runs, so ``optitop --help`` does not load the exporter or the UI.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from optitop.args import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError
from optitop.target import TargetError

__all__ = ["SUBCOMMANDS", "main"]


def cmd_doctor(argv: Sequence[str]) -> int:
    """Check every data source against the target (or the machine when no target is given)."""
    from optitop.commands.doctor import doctor_main

    return doctor_main(argv)


def cmd_demo(argv: Sequence[str]) -> int:
    """The bundled inference server with optitop attached."""
    try:
        from optitop.demo.cli import main as demo_main
    except ImportError as exc:
        raise UsageError(f"the demo needs the demo extra: pip install 'optitop[demo]' ({exc})") from exc
    return demo_main(argv)


def cmd_record(argv: Sequence[str]) -> int:
    """Record a target to a JSON Lines file."""
    from optitop.commands.record import record_main

    return record_main(argv)


def cmd_replay(argv: Sequence[str]) -> int:
    """Replay a recording in the TUI."""
    from optitop.commands.replay import replay_main

    return replay_main(argv)


def cmd_compare(argv: Sequence[str]) -> int:
    """Compare two recordings side by side."""
    from optitop.commands.compare import compare_main

    return compare_main(argv)


def cmd_export(argv: Sequence[str]) -> int:
    """Serve metrics and the verdict to Prometheus."""
    from optitop.commands.export import export_main

    return export_main(argv)


def cmd_bundle(argv: Sequence[str]) -> int:
    """Write an incident bundle."""
    from optitop.commands.bundle import bundle_main

    return bundle_main(argv)


def cmd_top(argv: Sequence[str]) -> int:
    """Live TUI, or ``--once`` headless report (no subcommand named)."""
    from optitop.commands.top import top_main

    return top_main(argv)


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
        return cmd_top(argv)
    except (TargetError, UsageError) as exc:
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
