"""``optitop compare before.jsonl after.jsonl [--json]``: read two recordings, print the table or the JSON.

The maths (rows, sums, better sides, fairness) is ``optitop.recording.compare``; here are the reading (one
streamed pass per file, with a progress line) and the two ways of showing the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from optitop.commands.progress import read_with_progress
from optitop.recording.codec import SCHEMA_VERSION
from optitop.recording.compare import Row, Run, RunStats, compare, describe_run, run_of
from optitop.recording.reader import RecordingError
from optitop.recording.scan import Recording
from optitop.safetext import printable


def read_run(path: str) -> Run:
    """Read one recording in a single streamed pass, summing as it goes (memory does not grow with the file)."""
    stats = RunStats()
    return Run(read_with_progress(path, stats.add), stats)


# -- printing -------------------------------------------------------------------------------------------
def fmt_value(value: float | None, unit: str) -> str:
    """A value in the row's unit, for people."""
    from optitop.tui.format import fmt_bytes, fmt_si_rate

    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 10 else f"{value:.1f} s"
    if unit == "%":
        return f"{value:.1f}%"
    if unit in ("B/s", "B"):  # bandwidth in decimal units as the GPU pane and the specs say it, sizes in binary
        text = fmt_si_rate(abs(value)) if unit == "B/s" else fmt_bytes(abs(value))
        return f"-{text}" if value < 0 else text
    if unit == "/s":
        return f"{value:.3g}/s"
    return f"{value:.3g}"


def fmt_delta(row: Row) -> str:
    """The delta with its sign and, where meaningful, the relative change."""
    if row.delta is None:
        return "–"
    sign = "+" if row.delta >= 0 else "-"
    text = sign + fmt_value(abs(row.delta), row.unit).lstrip("-")
    if row.delta_pct is not None and row.unit != "%":
        text += f" ({row.delta_pct:+.0f}%)"
    return text


def format_table(before: Recording | Run, after: Recording | Run, rows: list[Row], warnings: list[str]) -> str:
    """The side-by-side table as text (every line printable: a recording's host or path may hold escapes)."""
    lines = []
    for name, run in (("before", before), ("after", after)):
        d = describe_run(run_of(run))
        gpus = ", ".join(d["gpus"]) or "no GPU"
        lines.append(f"{name:<6}  {d['file']}  {d['host']}  pid {d['pid']}  {d['duration_s']:.0f} s  {gpus}")
    lines.append("")
    width = max(len(r.metric) for r in rows) + 2
    lines.append(f"{'metric':<{width}}{'before':>12}{'after':>12}{'delta':>20}  better")
    for r in rows:
        better = {"": "", "n/a": "", "same": "≈"}.get(r.better, r.better)
        lines.append(
            f"{r.metric:<{width}}{fmt_value(r.before, r.unit):>12}{fmt_value(r.after, r.unit):>12}"
            f"{fmt_delta(r):>20}  {better}"
        )
    if warnings:
        lines.append("")
        lines.append("the comparison may be unfair:")
        lines.extend(f"  ! {w}" for w in warnings)
    return "\n".join(printable(line) for line in lines)


def to_json(before: Recording | Run, after: Recording | Run, rows: list[Row], warnings: list[str]) -> dict[str, Any]:
    """The comparison as a JSON document (JSON escapes control characters itself)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "before": describe_run(run_of(before)),
        "after": describe_run(run_of(after)),
        "rows": [
            {
                "metric": r.metric,
                "unit": r.unit,
                "before": r.before,
                "after": r.after,
                "delta": r.delta,
                "delta_pct": r.delta_pct,
                "better": r.better,
            }
            for r in rows
        ],
        "warnings": warnings,
    }


# -- ``optitop compare`` --------------------------------------------------------------------------------
def compare_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop compare``."""
    from optitop.args import Parser

    parser = Parser(
        prog="optitop compare",
        description="Two recordings side by side: throughput, latency, queue, utilisation, bandwidth, memory "
        "and verdicts, with the delta and the better side per row.",
    )
    parser.add_argument("before", help="the recording before the change")
    parser.add_argument("after", help="the recording after the change")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    return parser


def compare_main(argv: Sequence[str]) -> int:
    """``optitop compare before.jsonl after.jsonl [--json]``; returns the exit code."""
    from optitop.args import EXIT_OK, EXIT_USAGE

    args = compare_parser().parse_args(argv)
    runs: list[Run] = []
    try:
        for path in (args.before, args.after):
            try:
                runs.append(read_run(path))
            except RecordingError as exc:
                print(f"optitop: {printable(str(exc))}", file=sys.stderr)
                return EXIT_USAGE
        before, after = runs
        rows, warnings = compare(before, after)
        if args.json:
            print(json.dumps(to_json(before, after, rows, warnings), indent=2))
        else:
            print(format_table(before, after, rows, warnings))
        return EXIT_OK
    finally:
        for run in runs:
            run.rec.close()
