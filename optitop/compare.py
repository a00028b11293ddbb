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
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from optitop.commands.replay import read_with_progress
from optitop.model import CATEGORIES, Sample, gpu_busy_pct
from optitop.recording.codec import SCHEMA_VERSION, Event
from optitop.recording.reader import RecordingError
from optitop.recording.replayer import Replayer
from optitop.recording.scan import Recording
from optitop.safetext import printable

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
    return gpu_busy_pct(device)


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
_ROWS_OF = {group: tuple(s for s in ROWS if s.series == group) for group in ("serving", "process", "system", "gpu")}


# -- one run --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Sums:
    """A running mean and peak of one row's finite values."""

    total: float = 0
    count: int = 0
    peak: float = -math.inf

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1
        self.peak = max(self.peak, value)


#: The series each group of rows reads ("serving" reads "queue", else "logs").
_GROUP_OF = {"queue": "serving", "logs": "serving", "process": "process", "system": "system", "gpu": "gpu"}


class RunStats:
    """What a comparison needs from one run, summed event by event: the run's events are never all held.

    Fed in one pass (``add``), in file order while the file is read, or in time order from a loaded
    recording: the means do not depend on the order, and the GPU models are those of the earliest sample.
    """

    def __init__(self) -> None:
        """Nothing seen yet."""
        self._sums: dict[tuple[str, str], _Sums] = {}
        self._serving_with_data: set[str] = set()
        self.verdict_counts: Counter[str] = Counter()
        self.gpus: list[str] = []
        self._gpus_key = (math.inf, math.inf)
        self._seen = 0

    def add(self, event: Event) -> None:
        """Take one event (a sample or a recorded verdict; others are ignored)."""
        self._seen += 1
        if event.kind == "diagnosis":
            self.verdict_counts[event.value.category] += 1
            return
        group = _GROUP_OF.get(event.series)
        if event.kind != "sample" or group is None:
            return
        sample = event.value
        if group == "serving":
            if not getattr(sample, "source", ""):
                return
            self._serving_with_data.add(event.series)
        for spec in _ROWS_OF[group]:
            value = spec.extract(sample)
            if value is not None and math.isfinite(value):
                self._sums.setdefault((event.series, spec.label), _Sums()).add(value)
        devices = getattr(sample, "devices", ()) if group == "gpu" else ()
        if devices and (event.mono_s, self._seen) < self._gpus_key:
            self._gpus_key = (event.mono_s, self._seen)
            self.gpus = sorted(d.name for d in devices)

    def value(self, spec: RowSpec) -> float | None:
        """The run's mean (or peak) of one row; None when no sample had it."""
        series = spec.series
        if series == "serving":  # the Prometheus series when it has data, else the log one
            series = "queue" if "queue" in self._serving_with_data else "logs"
        sums = self._sums.get((series, spec.label))
        if sums is None or not sums.count:
            return None
        return sums.peak if spec.peak else sums.total / sums.count


@dataclass(slots=True)
class Run:
    """One side of a comparison: the recording (its header and extent) and its sums."""

    rec: Recording
    stats: RunStats


def run_of(rec: Recording | Run) -> Run:
    """A loaded recording summed (a Run stays as it is)."""
    if isinstance(rec, Run):
        return rec
    stats = RunStats()
    events: Iterable[Event] = rec.iter_events()
    for event in events:
        stats.add(event)
    for diagnosis in rec.diagnoses:
        stats.add(Event(diagnosis.mono_s, "diagnosis", "", diagnosis))
    return Run(rec, stats)


def read_run(path: str) -> Run:
    """Read one recording in a single streamed pass, summing as it goes (memory does not grow with the file)."""
    stats = RunStats()
    return Run(read_with_progress(path, stats.add), stats)


def value_of(run: Run, spec: RowSpec) -> float | None:
    """The run's mean (or peak) of one row; None when no sample had it."""
    return run.stats.value(spec)


def verdict_shares(run: Run) -> dict[str, float]:
    """Per class, the % of verdicts (one per interval, so the share of time) that named it.

    The recorded verdicts; re-judged from the samples (another pass) when the file has none.
    """
    counts = run.stats.verdict_counts
    if not counts:
        replayer = Replayer(run.rec)
        replayer.run_to_end()
        counts = Counter(d.category for d in replayer.store.window().diagnoses)
    total = sum(counts.values())
    return {c: 100.0 * n / total for c, n in counts.items()} if total else {}


def describe_run(run: Run) -> dict[str, Any]:
    """Who, where, how long: the columns' headings."""
    rec = run.rec
    return {
        "file": rec.path,
        "host": rec.header.get("host", ""),
        "target": rec.target.cmdline,
        "pid": rec.target.pid,
        "started_at": rec.wall_time(rec.start_mono_s),
        "duration_s": rec.end_mono_s - rec.start_mono_s,
        "gpus": run.stats.gpus,
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


def compare(before: Recording | Run, after: Recording | Run) -> tuple[list[Row], list[str]]:
    """The rows (metrics, then the share of time in each verdict) and the fairness warnings."""
    b, a = run_of(before), run_of(after)
    rows = [make_row(s.label, s.unit, value_of(b, s), value_of(a, s), s.better) for s in ROWS]
    shares_b, shares_a = verdict_shares(b), verdict_shares(a)
    for category in CATEGORIES:
        if category in shares_b or category in shares_a:
            sb = shares_b.get(category, 0.0) if shares_b else None
            sa = shares_a.get(category, 0.0) if shares_a else None
            rows.append(make_row(f"time judged {category}", "%", sb, sa, NEUTRAL))
    return rows, fairness_warnings(b, a)


def fairness_warnings(before: Run, after: Run) -> list[str]:
    """Why the two runs may not be comparable (empty when nothing stands out)."""
    out = []
    host_b, host_a = before.rec.header.get("host"), after.rec.header.get("host")
    if host_b != host_a:
        out.append(f"different hosts: {host_b} vs {host_a} (other CPUs, drivers, neighbours)")
    gpus_b, gpus_a = before.stats.gpus, after.stats.gpus
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
    for name, run in (("before", before), ("after", after)):
        length = run.rec.end_mono_s - run.rec.start_mono_s
        if length < SHORT_RUN_S:
            out.append(f"the {name} run is only {length:.0f} s long: its means are noisy")
        out.extend(f"{name}: {p}" for p in run.rec.problems())
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


# -- ``optitop compare`` ---------------------------------------------------------------------------------
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
