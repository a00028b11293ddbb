"""``optitop compare before.jsonl after.jsonl``: two recordings side by side, with the delta and the better side.

Measure, change one thing, measure again: this is the "again". The rows are the balance the product brief
asks for (throughput, latency, queue, utilisation, bandwidth, memory, verdicts), never one score, and a
comparison that is unfair (another GPU, another host, a very different load) says so before anyone trusts it.

Every value is a mean over the run of what the collectors reported (latency percentiles are the server's
windowed percentiles, averaged), except GPU memory, which is the peak.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from optitop.replay import Recording, RecordingError, Replayer, load
from optitop.serialize import SCHEMA_VERSION
from optitop.types import CATEGORIES, Diagnosis, Sample

#: Relative difference under which two values count as the same.
SAME_WITHIN = 0.02
#: Request rates further apart than this factor make latency and utilisation incomparable.
LOAD_RATIO_WARN = 1.5
#: A run shorter than this many seconds gives noisy means.
SHORT_RUN_S = 20.0

HIGHER, LOWER, NEUTRAL = "higher", "lower", "neutral"

Extract = Callable[[Sample], "float | None"]


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One row of the table: where its value comes from and which direction is better.

    Attributes:
        label: what the row is called.
        series: "serving" (queue, else logs), "process", "system" or "gpu".
        extract: the value of one sample (None when unknown).
        unit: "/s", "s", "%", "B/s", "B" or "" (how values are printed).
        better: HIGHER, LOWER or NEUTRAL (no side is better: the row is context).
        peak: take the run's maximum instead of its mean.
    """

    label: str
    series: str
    extract: Extract
    unit: str
    better: str
    peak: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    """One compared metric."""

    metric: str
    unit: str
    before: float | None
    after: float | None
    delta: float | None
    delta_pct: float | None
    better: str  # "before", "after", "same", "" (no direction) or "n/a" (a side has no data)


def _stat(name: str) -> Extract:
    def get(sample: Sample) -> float | None:
        stats = getattr(sample, "stats", None)
        value = getattr(stats, name, None)
        return float(value) if isinstance(value, (int, float)) else None

    return get


def _field(name: str) -> Extract:
    def get(sample: Sample) -> float | None:
        value = getattr(sample, name, None)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    return get


def _target_devices(sample: Sample) -> list[Any]:
    """The GPUs the target runs on (all GPUs when it is not known which)."""
    devices = list(getattr(sample, "devices", ()))
    mine = set(getattr(sample, "target_gpu_indices", ()))
    picked = [d for d in devices if d.index in mine]
    return picked or devices


def _gpu_mean(pick: Callable[[Any], float | None]) -> Extract:
    def get(sample: Sample) -> float | None:
        values = [v for v in (pick(d) for d in _target_devices(sample)) if v is not None]
        return sum(values) / len(values) if values else None

    return get


def _gpu_sum(pick: Callable[[Any], float | None]) -> Extract:
    def get(sample: Sample) -> float | None:
        values = [v for v in (pick(d) for d in _target_devices(sample)) if v is not None]
        return float(sum(values)) if values else None

    return get


def _sm_util(device: Any) -> float | None:
    return device.sm_util_pct if device.sm_util_pct is not None else device.legacy_gpu_util_pct


def _pcie(device: Any) -> float | None:
    parts = [p for p in (device.pcie_rx_bytes_per_s, device.pcie_tx_bytes_per_s) if p is not None]
    return sum(parts) if parts else None


ROWS: tuple[RowSpec, ...] = (
    RowSpec("requests/s", "serving", _stat("request_rate_per_s"), "/s", HIGHER),
    RowSpec("generated tokens/s", "serving", _stat("generation_tokens_per_s"), "/s", HIGHER),
    RowSpec("prompt tokens/s", "serving", _stat("prompt_tokens_per_s"), "/s", HIGHER),
    RowSpec("TTFT p50", "serving", _stat("ttft_p50_s"), "s", LOWER),
    RowSpec("TTFT p95", "serving", _stat("ttft_p95_s"), "s", LOWER),
    RowSpec("ITL p50", "serving", _stat("itl_p50_s"), "s", LOWER),
    RowSpec("ITL p95", "serving", _stat("itl_p95_s"), "s", LOWER),
    RowSpec("end-to-end p50", "serving", _stat("e2e_p50_s"), "s", LOWER),
    RowSpec("end-to-end p95", "serving", _stat("e2e_p95_s"), "s", LOWER),
    RowSpec("queue: waiting", "serving", _stat("requests_waiting"), "", LOWER),
    RowSpec("queue: in flight", "serving", _stat("requests_running"), "", NEUTRAL),
    RowSpec("KV cache used", "serving", _stat("kv_cache_usage_pct"), "%", NEUTRAL),
    RowSpec("target CPU (of one core)", "process", _field("cpu_pct"), "%", LOWER),
    RowSpec("host CPU busy", "system", _field("cpu_busy_pct"), "%", LOWER),
    RowSpec("GPU SM util", "gpu", _gpu_mean(_sm_util), "%", HIGHER),
    RowSpec("GPU DRAM bandwidth", "gpu", _gpu_sum(lambda d: d.dram_bytes_per_s), "B/s", NEUTRAL),
    RowSpec("PCIe bandwidth (rx+tx)", "gpu", _gpu_sum(_pcie), "B/s", NEUTRAL),
    RowSpec("GPU memory used (peak)", "gpu", _gpu_sum(lambda d: d.mem_used_bytes), "B", LOWER, peak=True),
)


# -- one run --------------------------------------------------------------------------------------------
def serving_samples(rec: Recording) -> list[Sample]:
    """The serving series to read: the Prometheus one when it has data, else the log one."""
    for series in ("queue", "logs"):
        samples = [s for s in rec.samples(series) if getattr(s, "source", "")]
        if samples:
            return samples
    return []


def _samples_for(rec: Recording, series: str) -> list[Sample]:
    return serving_samples(rec) if series == "serving" else rec.samples(series)


def value_of(rec: Recording, spec: RowSpec) -> float | None:
    """The run's mean (or peak) of one row; None when no sample had it."""
    values = [v for v in (spec.extract(s) for s in _samples_for(rec, spec.series)) if v is not None]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return None
    return max(values) if spec.peak else sum(values) / len(values)


def verdicts(rec: Recording) -> list[Diagnosis]:
    """The recorded verdicts; re-judged from the samples when the file has none."""
    if rec.diagnoses:
        return rec.diagnoses
    replayer = Replayer(rec)
    replayer.run_to_end()
    return list(replayer.store.window().diagnoses)


def verdict_shares(rec: Recording) -> dict[str, float]:
    """Per class, the % of verdicts (one per interval, so the share of time) that named it."""
    counts = Counter(d.category for d in verdicts(rec))
    total = sum(counts.values())
    return {c: 100.0 * n / total for c, n in counts.items()} if total else {}


def gpu_models(rec: Recording) -> list[str]:
    """The GPU models of the run (sorted, one entry per device)."""
    for sample in rec.samples("gpu"):
        devices = getattr(sample, "devices", ())
        if devices:
            return sorted(d.name for d in devices)
    return []


def describe_run(rec: Recording) -> dict[str, Any]:
    """Who, where, how long: the columns' headings."""
    return {
        "file": rec.path,
        "host": rec.header.get("host", ""),
        "target": rec.target.cmdline,
        "pid": rec.target.pid,
        "started_at": rec.wall_time(rec.start_mono_s),
        "duration_s": rec.end_mono_s - rec.start_mono_s,
        "gpus": gpu_models(rec),
        "problems": rec.problems(),
    }


# -- two runs --------------------------------------------------------------------------------------------
def better_side(before: float | None, after: float | None, direction: str) -> str:
    """Which side wins one row: "before", "after", "same", "" (no direction) or "n/a"."""
    if before is None or after is None:
        return "n/a"
    scale = max(abs(before), abs(after))
    if scale == 0 or abs(after - before) / scale < SAME_WITHIN:
        return "same"
    if direction == NEUTRAL:
        return ""
    after_higher = after > before
    return "after" if after_higher == (direction == HIGHER) else "before"


def make_row(label: str, unit: str, before: float | None, after: float | None, direction: str) -> Row:
    """One row with its delta and winner."""
    delta = None if before is None or after is None else after - before
    pct = None if delta is None or not before else 100.0 * delta / abs(before)
    return Row(label, unit, before, after, delta, pct, better_side(before, after, direction))


def compare(before: Recording, after: Recording) -> tuple[list[Row], list[str]]:
    """The rows (metrics, then the share of time in each verdict) and the fairness warnings."""
    rows = [make_row(s.label, s.unit, value_of(before, s), value_of(after, s), s.better) for s in ROWS]
    shares_b, shares_a = verdict_shares(before), verdict_shares(after)
    for category in CATEGORIES:
        if category in shares_b or category in shares_a:
            b = shares_b.get(category, 0.0) if shares_b else None
            a = shares_a.get(category, 0.0) if shares_a else None
            rows.append(make_row(f"time judged {category}", "%", b, a, NEUTRAL))
    return rows, fairness_warnings(before, after)


def fairness_warnings(before: Recording, after: Recording) -> list[str]:
    """Why the two runs may not be comparable (empty when nothing stands out)."""
    out = []
    host_b, host_a = before.header.get("host"), after.header.get("host")
    if host_b != host_a:
        out.append(f"different hosts: {host_b} vs {host_a} (other CPUs, drivers, neighbours)")
    gpus_b, gpus_a = gpu_models(before), gpu_models(after)
    if gpus_b != gpus_a:
        show_b = ", ".join(gpus_b) or "no GPU"
        show_a = ", ".join(gpus_a) or "no GPU"
        out.append(f"different GPUs: {show_b} vs {show_a}")
    rate = next(s for s in ROWS if s.label == "requests/s")
    rate_b, rate_a = value_of(before, rate), value_of(after, rate)
    if rate_b and rate_a and max(rate_b, rate_a) / min(rate_b, rate_a) >= LOAD_RATIO_WARN:
        out.append(
            f"very different load: {rate_b:.3g} vs {rate_a:.3g} requests/s — latency and utilisation depend on "
            "load; drive both runs with the same fixed-rate load"
        )
    for name, rec in (("before", before), ("after", after)):
        length = rec.end_mono_s - rec.start_mono_s
        if length < SHORT_RUN_S:
            out.append(f"the {name} run is only {length:.0f} s long: its means are noisy")
        out.extend(f"{name}: {p}" for p in rec.problems())
    return out


# -- printing --------------------------------------------------------------------------------------------
def fmt_value(value: float | None, unit: str) -> str:
    """A value in the row's unit, for people."""
    from optitop.tui.format import fmt_bytes

    if value is None:
        return "–"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if abs(value) < 10 else f"{value:.1f} s"
    if unit == "%":
        return f"{value:.1f}%"
    if unit in ("B/s", "B"):
        text = fmt_bytes(abs(value), per_s=unit == "B/s")
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


def format_table(before: Recording, after: Recording, rows: list[Row], warnings: list[str]) -> str:
    """The side-by-side table as text."""
    lines = []
    for name, rec in (("before", before), ("after", after)):
        d = describe_run(rec)
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
    return "\n".join(lines)


def to_json(before: Recording, after: Recording, rows: list[Row], warnings: list[str]) -> dict[str, Any]:
    """The comparison as a JSON document."""
    return {
        "schema_version": SCHEMA_VERSION,
        "before": describe_run(before),
        "after": describe_run(after),
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


# -- ``optitop compare`` ---------------------------------------------------------------------------------
def compare_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop compare``."""
    from optitop.cli import _Parser

    parser = _Parser(
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
    from optitop.cli import EXIT_OK, EXIT_USAGE

    args = compare_parser().parse_args(argv)
    recs = []
    for path in (args.before, args.after):
        if not os.path.exists(path):
            print(f"optitop: no such file: {path}", file=sys.stderr)
            return EXIT_USAGE
        try:
            recs.append(load(path))
        except RecordingError as exc:
            print(f"optitop: {exc}", file=sys.stderr)
            return EXIT_USAGE
    before, after = recs
    rows, warnings = compare(before, after)
    if args.json:
        print(json.dumps(to_json(before, after, rows, warnings), indent=2))
    else:
        print(format_table(before, after, rows, warnings))
    return EXIT_OK
