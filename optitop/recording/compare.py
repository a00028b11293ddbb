"""The maths of ``optitop compare``: two recordings summed row by row, with the delta and the better side.

Measure, change one thing, measure again: this is the "again". The rows are the balance the product brief
asks for (throughput, latency, queue, utilisation, bandwidth, memory, verdicts), never one score, and a
comparison that is unfair (another GPU, another host, a very different load) says so before anyone trusts it.

Every value is a mean over the run of what the collectors reported (latency percentiles are the server's
windowed percentiles, averaged), except GPU memory, which is the peak. Samples are read through the model's
types (a row's ``extract`` names its fields, which the type checker knows), and "which GPUs" and "how busy"
are the model's answers (``GpuSample.target_devices``, ``gpu_busy_pct``), the ones the verdict and panes use.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from optitop.model import (
    CATEGORIES,
    GpuDevice,
    GpuSample,
    ProcessSample,
    Sample,
    ServingSample,
    ServingStats,
    SystemSample,
    pcie_bytes_per_s,
)
from optitop.recording.codec import DIAGNOSIS, SAMPLE, Event
from optitop.recording.replayer import Replayer
from optitop.recording.scan import Recording

#: Relative difference under which two values count as the same.
SAME_WITHIN = 0.02
#: Request rates further apart than this factor make latency and utilisation incomparable.
LOAD_RATIO_WARN = 1.5
#: A run shorter than this many seconds gives noisy means.
SHORT_RUN_S = 20.0

HIGHER, LOWER, NEUTRAL = "higher", "lower", "neutral"

Extract = Callable[[Sample], "float | None"]
S = TypeVar("S", bound=Sample)


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One row of the table: where its value comes from and which direction is better.

    Attributes:
        label: what the row is called.
        series: "serving" (queue, else logs), "process", "system" or "gpu".
        extract: the value of one sample, read through its type (``_of``); None for another type or no reading.
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


def _of(kind: type[S], read: Callable[[S], float | None]) -> Extract:
    """A row's extract: ``read`` of a sample of type ``kind`` (None for any other sample, or no reading)."""

    def get(sample: Sample) -> float | None:
        if not isinstance(sample, kind):
            return None
        value = read(sample)
        return None if value is None else float(value)

    return get


def _serving(read: Callable[[ServingStats], float | None]) -> Extract:
    """A row's extract from a serving sample's stats."""
    return _of(ServingSample, lambda s: read(s.stats))


def _gpu_sum(pick: Callable[[GpuDevice], float | int | None]) -> Callable[[GpuSample], float | None]:
    """The sum of ``pick`` over the target's GPUs (None when none has it)."""

    def get(sample: GpuSample) -> float | None:
        values = [v for v in (pick(d) for d in sample.target_devices().devices) if v is not None]
        return float(sum(values)) if values else None

    return get


ROWS: tuple[RowSpec, ...] = (
    RowSpec("requests/s", "serving", _serving(lambda st: st.request_rate_per_s), "/s", HIGHER),
    RowSpec("generated tokens/s", "serving", _serving(lambda st: st.generation_tokens_per_s), "/s", HIGHER),
    RowSpec("prompt tokens/s", "serving", _serving(lambda st: st.prompt_tokens_per_s), "/s", HIGHER),
    RowSpec("TTFT p50", "serving", _serving(lambda st: st.ttft_p50_s), "s", LOWER),
    RowSpec("TTFT p95", "serving", _serving(lambda st: st.ttft_p95_s), "s", LOWER),
    RowSpec("ITL p50", "serving", _serving(lambda st: st.itl_p50_s), "s", LOWER),
    RowSpec("ITL p95", "serving", _serving(lambda st: st.itl_p95_s), "s", LOWER),
    RowSpec("end-to-end p50", "serving", _serving(lambda st: st.e2e_p50_s), "s", LOWER),
    RowSpec("end-to-end p95", "serving", _serving(lambda st: st.e2e_p95_s), "s", LOWER),
    RowSpec("queue: waiting", "serving", _serving(lambda st: st.requests_waiting), "", LOWER),
    RowSpec("queue: in flight", "serving", _serving(lambda st: st.requests_running), "", NEUTRAL),
    RowSpec("KV cache used", "serving", _serving(lambda st: st.kv_cache_usage_pct), "%", NEUTRAL),
    RowSpec("target CPU (of one core)", "process", _of(ProcessSample, lambda s: s.cpu_pct), "%", LOWER),
    RowSpec("host CPU busy", "system", _of(SystemSample, lambda s: s.cpu_busy_pct), "%", LOWER),
    # the busiest of the target's GPUs by the model's one busy policy: what the verdict and the exporter read
    RowSpec("GPU busy (target)", "gpu", _of(GpuSample, lambda s: s.target_busy_pct()), "%", HIGHER),
    RowSpec("GPU DRAM bandwidth", "gpu", _of(GpuSample, _gpu_sum(lambda d: d.dram_bytes_per_s)), "B/s", NEUTRAL),
    RowSpec("PCIe bandwidth (rx+tx)", "gpu", _of(GpuSample, _gpu_sum(pcie_bytes_per_s)), "B/s", NEUTRAL),
    RowSpec(
        "GPU memory used (peak)", "gpu", _of(GpuSample, _gpu_sum(lambda d: d.mem_used_bytes)), "B", LOWER, peak=True
    ),
)
_ROWS_OF = {group: tuple(s for s in ROWS if s.series == group) for group in ("serving", "process", "system", "gpu")}


def row_spec(label: str) -> RowSpec:
    """The row called ``label`` (KeyError when there is none)."""
    for spec in ROWS:
        if spec.label == label:
            return spec
    raise KeyError(label)


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
        if event.kind == DIAGNOSIS:
            self.verdict_counts[event.value.category] += 1
            return
        group = _GROUP_OF.get(event.series)
        if event.kind != SAMPLE or group is None:
            return
        sample = event.value
        if group == "serving":
            if not (isinstance(sample, ServingSample) and sample.source):
                return
            self._serving_with_data.add(event.series)
        for spec in _ROWS_OF[group]:
            value = spec.extract(sample)
            if value is not None and math.isfinite(value):
                self._sums.setdefault((event.series, spec.label), _Sums()).add(value)
        devices = sample.devices if group == "gpu" and isinstance(sample, GpuSample) else ()
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
        stats.add(Event(diagnosis.mono_s, DIAGNOSIS, "", diagnosis))
    return Run(rec, stats)


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


# -- two runs -------------------------------------------------------------------------------------------
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
    rate = row_spec("requests/s")
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
