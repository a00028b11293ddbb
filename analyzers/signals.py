"""Signals: one flat, typed record of what a window says, averaged over the window.

This is the only module that knows the collectors' sample field names. It reads them by name
(``getattr``), never by importing the collector modules, because those import vendors (psutil, NVML,
py-spy) and the analyzer must stay pure and importable anywhere. Every signal is None when its source
produced nothing in the window: a missing number must never read as 0 (0 % GPU is a verdict, "no GPU
counters" is not).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from optitop.analyzers.latency import decompose, latency_signals
from optitop.model import Latency, SourceState, Window, gpu_busy_pct

#: A thread counts as busy at this share of one core (averaged over the window).
BUSY_THREAD_PCT = 50.0
#: Sources the analyzer reads; "logs" fills the gaps of "queue" (both carry ServingStats).
SOURCES: tuple[str, ...] = ("process", "system", "gpu", "queue", "logs", "sockets", "pystacks")


@dataclass(frozen=True, slots=True)
class Signals:
    """What one window says, as window averages. Percentages are 0..100, fractions 0..1.

    Attributes:
        process_samples: process samples in the window (the analyzer needs two for rates).
        sources: the sources that produced at least one sample in the window.
        statuses: (source, state, reason) for every source the session knows about.
        runnable_threads: threads in state R per sample, on average (CPU demand, even when starved).
        runnable_per_core: runnable_threads over the cores the target may use (1 or more: the target
            alone could fill its cores, so a queue is not the scheduler's doing).
        minor_faults_per_cpu_s: minor faults per second of the target's CPU time (fresh pages touched per
            unit of work: streaming tensors reads ~10x more than math, even on a contended host).
        gpu_busy_pct: SM activity on GPM devices, legacy utilisation elsewhere (the busiest target GPU).
        gpu_pcie_both_bytes_per_s: PCIe bytes/s in both directions together (a pageable copy stream moves
            1-3 GB/s, far below the 10 % of a Gen5 link the pinned-copy rule needs).
        gpu_pcie_duty: the share of the window's samples with PCIe traffic at or above PCIE_ACTIVE_BYTES_PER_S
            (a steady copy stream is near 1; one burst is not a transfer-bound server).
        gpu_throttle: the clock-event reasons that limit throughput (power, thermal, board); idle, sync
            boost and application clocks are left out.
        requests_in_system: waiting + running.
        batch_fill_pct: the running batch as a share of the server's maximum.
        py_top_gil_share: how much of the busiest Python thread's activity held the GIL (interpreter-bound
            near 1, native code that released it near 0).
        py_wait_*: shares of the Python threads' time whose cause the stack rules could name ("other"
            left out, so parked bystander threads do not dilute a real wait); py_parked = queue + sleep.
        native_memory: native samples in copy/elementwise (memory) and allocator (alloc) code.
        py_op_*: shares of the on-CPU Python samples by the op their frames name (math: matmul/linear/conv;
            memory: copies, gathers, elementwise, norms; interpreter: plain Python): the CPU's arithmetic
            intensity read from the frames py-spy already returns, without pausing the target.
        py_wait_loop: share of time threads sat in an event loop's selector (waiting for any event). It is added to
            py_wait_network only when the sockets say the process waits on the network (upstream connections
            open, or slow clients with send queues building); otherwise it is an idle loop.
        latency: where a request's time goes (analyzers/latency.py); lat_* are its numbers for the rules:
            residence, the share spent waiting, the share that is service demand (CPU + GPU).
        framework: the server the fixes should name (serving profile, else ``pytorch`` when torch frames
            are seen); never used to decide the class.
    """

    process_samples: int = 0
    sources: frozenset[str] = frozenset()
    statuses: tuple[tuple[str, str, str], ...] = ()
    # -- process tree (CPU of one core: two full cores read 200 %)
    proc_cpu_pct: float | None = None
    proc_cpu_of_allowed_pct: float | None = None
    allowed_cores: int | None = None
    top_thread_cpu_pct: float | None = None
    top_thread_name: str | None = None
    busy_threads: int | None = None
    runnable_threads: float | None = None
    runnable_per_core: float | None = None
    other_threads_cpu_pct: float | None = None
    major_faults_per_s: float | None = None
    minor_faults_per_s: float | None = None
    minor_faults_per_cpu_s: float | None = None
    invol_ctx_switches_per_s: float | None = None
    # -- host
    host_cpu_busy_pct: float | None = None
    iowait_pct: float | None = None
    steal_pct: float | None = None
    swap_bytes_per_s: float | None = None
    # -- GPU (the devices the target uses; all devices when that is unknown)
    gpu_devices: int | None = None
    gpu_used_by_target: bool | None = None
    gpu_util_source: str | None = None
    gpu_name_hint: str | None = None
    gpu_busy_pct: float | None = None
    gpu_sm_pct: float | None = None
    gpu_occupancy_pct: float | None = None
    gpu_tensor_pct: float | None = None
    gpu_dram_pct: float | None = None
    gpu_dram_peak_bytes_per_s: float | None = None
    gpu_graphics_pct: float | None = None
    gpu_legacy_util_pct: float | None = None
    gpu_legacy_mem_pct: float | None = None
    gpu_pcie_bytes_per_s: float | None = None
    gpu_pcie_both_bytes_per_s: float | None = None
    gpu_pcie_duty: float | None = None
    gpu_pcie_link_pct: float | None = None
    gpu_mem_used_pct: float | None = None
    gpu_power_pct: float | None = None
    gpu_throttle: tuple[str, ...] = ()
    # -- serving statistics (queue metrics, else server logs)
    serving_profile: str | None = None
    requests_waiting: float | None = None
    requests_running: float | None = None
    requests_in_system: float | None = None
    batch_size: float | None = None
    max_running: float | None = None
    batch_fill_pct: float | None = None
    kv_cache_pct: float | None = None
    preemptions_per_min: float | None = None
    request_rate_per_s: float | None = None
    queue_time_p50_s: float | None = None
    ttft_p50_s: float | None = None
    e2e_p50_s: float | None = None
    # -- kernel sockets
    accept_queue: float | None = None
    inbound_recv_q_bytes: float | None = None
    listen_overflows_per_s: float | None = None
    inbound_conns: float | None = None
    inbound_send_q_bytes: float | None = None
    upstream_conns: float | None = None
    upstream_send_q_bytes: float | None = None
    upstream_recv_q_bytes: float | None = None
    retrans_pct: float | None = None
    # -- Python threads (py-spy)
    py_active_pct: float | None = None
    py_gil_pct: float | None = None
    py_top_active_pct: float | None = None
    py_top_gil_share: float | None = None
    py_top_thread: str | None = None
    py_wait_network: float | None = None
    py_wait_loop: float | None = None
    py_wait_queue: float | None = None
    py_wait_sleep: float | None = None
    py_wait_gpu_sync: float | None = None
    py_wait_gil: float | None = None
    py_wait_io: float | None = None
    py_parked: float | None = None
    py_frames: tuple[str, ...] = ()
    py_op_math: float | None = None
    py_op_memory: float | None = None
    py_op_interpreter: float | None = None
    native_math: float | None = None
    native_memory: float | None = None
    native_interpreter: float | None = None
    framework: str | None = None
    # -- where a request's time goes
    latency: Latency | None = None
    lat_residence_s: float | None = None
    lat_waiting_share: float | None = None
    lat_service_share: float | None = None

    def get(self, name: str) -> Any:
        """A signal by name (the rules table names signals as strings)."""
        return getattr(self, name)


SIGNAL_NAMES: frozenset[str] = frozenset(f.name for f in fields(Signals))


# -- small helpers -------------------------------------------------------------------------------------
def _num(obj: Any, name: str) -> float | None:
    """A numeric field by name, None when absent or not a number (bool is not a number here)."""
    value = getattr(obj, name, None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the known values; None when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _avg(samples: Sequence[Any], name: str) -> float | None:
    return mean(_num(s, name) for s in samples)


def _avg_of(samples: Sequence[Any], pick: Callable[[Any], float | None]) -> float | None:
    return mean(pick(s) for s in samples)


def _sum_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _ratio_pct(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return 100.0 * num / den


def _fracs(pairs: Any) -> dict[str, float]:
    """A tuple of (class, fraction) pairs as a dict (tolerates None and malformed entries)."""
    out: dict[str, float] = {}
    for item in pairs or ():
        try:
            key, frac = item
        except (TypeError, ValueError):
            continue
        if isinstance(key, str) and isinstance(frac, (int, float)):
            out[key] = out.get(key, 0.0) + float(frac)
    return out


# -- per source ----------------------------------------------------------------------------------------
def _process(samples: Sequence[Any]) -> dict[str, Any]:
    if not samples:
        return {}
    out: dict[str, Any] = {
        "proc_cpu_pct": _avg(samples, "cpu_pct"),
        "proc_cpu_of_allowed_pct": _avg(samples, "cpu_pct_of_allowed"),
        "major_faults_per_s": _avg(samples, "major_faults_per_s"),
        "minor_faults_per_s": _avg(samples, "minor_faults_per_s"),
        "invol_ctx_switches_per_s": _avg(samples, "invol_ctx_switches_per_s"),
    }
    minor, cpu = out["minor_faults_per_s"], out["proc_cpu_pct"]
    # Per CPU-second, so a streaming loop slowed by a busy host still reads as streaming.
    out["minor_faults_per_cpu_s"] = minor / max(cpu / 100.0, 0.05) if minor is not None and cpu is not None else None
    cores = _num(samples[-1], "allowed_cores")
    out["allowed_cores"] = int(cores) if cores is not None else None
    out.update(_threads(samples))
    runnable = out.get("runnable_threads")
    cores_known = out["allowed_cores"]
    out["runnable_per_core"] = runnable / cores_known if runnable is not None and cores_known else None
    return out


#: Clock-event reasons that limit throughput (power, thermal, board); idle, sync boost and app clocks do not.
LIMITING_THROTTLE = frozenset({"power cap", "HW slowdown", "SW thermal", "HW thermal", "HW power brake", "board limit"})
#: PCIe traffic (both directions) from which a sample counts towards the copy duty.
PCIE_ACTIVE_BYTES_PER_S = 0.5e9


def _is_legacy(device: Any) -> bool:
    return str(getattr(device, "util_source", "") or "") == "legacy"


def _threads(samples: Sequence[Any]) -> dict[str, Any]:
    """Per-thread CPU averaged over the samples that carry a thread list (a thread absent counts 0).

    The thread list keeps only the busiest threads, so the runnable and busy counts come from the
    sample's own counts over every thread where it has them (``runnable_threads``, ``busy_threads``).
    Busy is then judged per tick, not per thread over the window: a server that starts a thread per
    request has each worker alive for a tick or two, and its window average would never reach busy.
    """
    with_threads = [s for s in samples if getattr(s, "threads", None)]
    if not with_threads:
        return {}
    total: dict[int, float] = {}
    names: dict[int, str] = {}
    for s in with_threads:
        for t in s.threads:
            tid = getattr(t, "tid", None)
            cpu = _num(t, "cpu_pct")
            if tid is None or cpu is None:
                continue
            total[tid] = total.get(tid, 0.0) + cpu
            names[tid] = str(getattr(t, "name", "") or "")
    if not total:
        return {}
    n = len(with_threads)
    avg = {tid: v / n for tid, v in total.items()}
    top = max(avg, key=lambda tid: avg[tid])
    busy_per_tick = _avg(with_threads, "busy_threads")
    return {
        "top_thread_cpu_pct": avg[top],
        "top_thread_name": names.get(top) or str(top),
        "busy_threads": (
            sum(1 for v in avg.values() if v >= BUSY_THREAD_PCT) if busy_per_tick is None else round(busy_per_tick)
        ),
        "runnable_threads": _runnable(with_threads),
        "other_threads_cpu_pct": sum(v for tid, v in avg.items() if tid != top),
    }


def _runnable(samples: Sequence[Any]) -> float:
    """Threads in state R per sample: what the target wants to run, even when a busy host starves it.

    The sample's count over every thread where it has one; else (older recordings) the kept threads.
    """
    counted = _avg(samples, "runnable_threads")
    if counted is not None:
        return counted
    return sum(1 for s in samples for t in s.threads if getattr(t, "state", "") == "R") / len(samples)


def _system(samples: Sequence[Any]) -> dict[str, Any]:
    if not samples:
        return {}
    return {
        "host_cpu_busy_pct": _avg(samples, "cpu_busy_pct"),
        "iowait_pct": _avg(samples, "iowait_pct"),
        "steal_pct": _avg(samples, "steal_pct"),
        "swap_bytes_per_s": _avg_of(
            samples, lambda s: _sum_known((_num(s, "swap_in_bytes_per_s"), _num(s, "swap_out_bytes_per_s")))
        ),
    }


def _target_devices(sample: Any) -> tuple[tuple[Any, ...], bool | None]:
    """The devices the target uses, and whether that attribution is known.

    NVML's per-process lists name the devices holding the target's context; when the collector could
    not tell (containers often hide other pids), every device is judged and the answer is None.
    """
    devices = tuple(getattr(sample, "devices", ()) or ())
    indices = getattr(sample, "target_gpu_indices", None)
    if indices:
        chosen = tuple(d for i, d in enumerate(devices) if getattr(d, "index", i) in set(indices))
        return (chosen or devices), True
    used = [d for d in devices if (_num(d, "target_mem_bytes") or 0) > 0 or (_num(d, "target_sm_pct") or 0) > 0]
    if used:
        return tuple(used), True
    if indices is not None and any(_num(d, "target_mem_bytes") is not None for d in devices):
        return devices, False
    return devices, None


def _device_pct(devices: Sequence[Any], name: str) -> float | None:
    """The busiest device's value: one saturated GPU is a bottleneck even when its neighbour idles."""
    return _max_known(_num(d, name) for d in devices)


def _gpu(samples: Sequence[Any]) -> dict[str, Any]:
    chosen = [(_target_devices(s)) for s in samples]
    per_sample = [devs for devs, _ in chosen if devs]
    if not per_sample:
        return {}
    attributions = [used for _, used in chosen]
    used = True if True in attributions else (False if False in attributions else None)

    def pct(name: str) -> float | None:
        return mean(_device_pct(devs, name) for devs in per_sample)

    def legacy(name: str) -> float | None:
        # Legacy utilisation reads 0 % on busy Hopper GPUs (measured): only trust it where GPM is absent.
        return mean(_device_pct([d for d in devs if _is_legacy(d)], name) for devs in per_sample)

    def busy(devs: Sequence[Any]) -> float | None:
        return _max_known(gpu_busy_pct(d) for d in devs)

    def pcie_bytes(devs: Sequence[Any]) -> float | None:
        return _max_known(_max_known((_num(d, "pcie_rx_bytes_per_s"), _num(d, "pcie_tx_bytes_per_s"))) for d in devs)

    def pcie_both(devs: Sequence[Any]) -> float | None:
        return _max_known(_sum_known((_num(d, "pcie_rx_bytes_per_s"), _num(d, "pcie_tx_bytes_per_s"))) for d in devs)

    both = [pcie_both(devs) for devs in per_sample]
    known_both = [b for b in both if b is not None]
    duty = sum(b >= PCIE_ACTIVE_BYTES_PER_S for b in known_both) / len(known_both) if known_both else None

    def pcie_link(devs: Sequence[Any]) -> float | None:
        return _max_known(
            _ratio_pct(
                _max_known((_num(d, "pcie_rx_bytes_per_s"), _num(d, "pcie_tx_bytes_per_s"))),
                _num(d, "pcie_link_bytes_per_s"),
            )
            for d in devs
        )

    def mem_used(devs: Sequence[Any]) -> float | None:
        return _max_known(_ratio_pct(_num(d, "mem_used_bytes"), _num(d, "mem_total_bytes")) for d in devs)

    def power(devs: Sequence[Any]) -> float | None:
        return _max_known(_ratio_pct(_num(d, "power_w"), _num(d, "power_limit_w")) for d in devs)

    last = per_sample[-1]
    sources = Counter(str(getattr(d, "util_source", "") or "") for d in last)
    throttle = sorted(
        {str(r) for d in last for r in (getattr(d, "throttle_reasons", None) or ()) if str(r) in LIMITING_THROTTLE}
    )
    return {
        "gpu_devices": len(last),
        "gpu_used_by_target": used,
        "gpu_util_source": sources.most_common(1)[0][0] or None,
        "gpu_name_hint": str(getattr(last[0], "name", "") or "") or None,
        "gpu_busy_pct": mean(busy(devs) for devs in per_sample),
        "gpu_sm_pct": pct("sm_util_pct"),
        "gpu_occupancy_pct": pct("sm_occupancy_pct"),
        "gpu_tensor_pct": pct("tensor_util_pct"),
        "gpu_dram_pct": pct("dram_bw_util_pct"),
        "gpu_dram_peak_bytes_per_s": _max_known(_num(d, "dram_peak_bytes_per_s") for d in last),
        "gpu_graphics_pct": pct("graphics_util_pct"),
        "gpu_legacy_util_pct": legacy("legacy_gpu_util_pct"),
        "gpu_legacy_mem_pct": legacy("legacy_mem_util_pct"),
        "gpu_pcie_bytes_per_s": mean(pcie_bytes(devs) for devs in per_sample),
        "gpu_pcie_both_bytes_per_s": mean(both),
        "gpu_pcie_duty": duty,
        "gpu_pcie_link_pct": mean(pcie_link(devs) for devs in per_sample),
        "gpu_mem_used_pct": mean(mem_used(devs) for devs in per_sample),
        "gpu_power_pct": mean(power(devs) for devs in per_sample),
        "gpu_throttle": tuple(throttle),
    }


SERVING_FIELDS = (
    "requests_waiting",
    "requests_running",
    "batch_size",
    "max_running",
    "kv_cache_usage_pct",
    "preemptions_per_s",
    "request_rate_per_s",
    "queue_time_p50_s",
    "ttft_p50_s",
    "e2e_p50_s",
)


def _serving(primary: Sequence[Any], fallback: Sequence[Any]) -> dict[str, Any]:
    """Queue metrics first; server logs fill only what the metrics did not carry."""
    values: dict[str, float | None] = {}
    profile: str | None = None
    for series in (primary, fallback):
        stats = [getattr(s, "stats", None) for s in series]
        stats = [s for s in stats if s is not None]
        if not stats:
            continue
        for name in SERVING_FIELDS:
            if values.get(name) is None:
                values[name] = _avg(stats, name)
        if profile is None:
            profile = str(getattr(series[-1], "profile", "") or "") or None
    if not values:
        return {}
    waiting, running = values.get("requests_waiting"), values.get("requests_running")
    preempt = values.get("preemptions_per_s")
    return {
        "serving_profile": profile,
        "requests_waiting": waiting,
        "requests_running": running,
        "requests_in_system": _sum_known((waiting, running)),
        "batch_size": values.get("batch_size"),
        "max_running": values.get("max_running"),
        "batch_fill_pct": _ratio_pct(values.get("batch_size") or running, values.get("max_running")),
        "kv_cache_pct": values.get("kv_cache_usage_pct"),
        "preemptions_per_min": preempt * 60.0 if preempt is not None else None,
        "request_rate_per_s": values.get("request_rate_per_s"),
        "queue_time_p50_s": values.get("queue_time_p50_s"),
        "ttft_p50_s": values.get("ttft_p50_s"),
        "e2e_p50_s": values.get("e2e_p50_s"),
    }


def _sockets(samples: Sequence[Any]) -> dict[str, Any]:
    if not samples:
        return {}

    def accept(s: Any) -> float | None:
        listeners = getattr(s, "listeners", None)
        if listeners is None:
            return None
        return _sum_known(_num(q, "accept_queue") for q in listeners) or 0.0

    return {
        "accept_queue": _avg_of(samples, accept),
        "listen_overflows_per_s": _avg(samples, "listen_overflows_per_s"),
        "inbound_conns": _avg(samples, "inbound_conns"),
        "inbound_recv_q_bytes": _avg(samples, "inbound_recv_q_bytes"),
        "inbound_send_q_bytes": _avg(samples, "inbound_send_q_bytes"),
        "upstream_conns": _avg(samples, "upstream_conns"),
        "upstream_send_q_bytes": _avg(samples, "upstream_send_q_bytes"),
        "upstream_recv_q_bytes": _avg(samples, "upstream_recv_q_bytes"),
        "retrans_pct": _avg(samples, "retrans_pct"),
    }


def _pystacks(samples: Sequence[Any]) -> dict[str, Any]:
    if not samples:
        return {}
    waits = [_explained(_fracs(getattr(s, "waits", None))) for s in samples]
    waits = [w for w in waits if w]

    def wait(cls: str) -> float | None:
        return mean(w.get(cls, 0.0) for w in waits) if waits else None

    natives = [_fracs(getattr(s, "native_mix", None)) for s in samples]
    natives = [n for n in natives if n]

    def native(*classes: str) -> float | None:
        return mean(sum(n.get(c, 0.0) for c in classes) for n in natives) if natives else None

    ops = [_fracs(getattr(s, "py_op_mix", None)) for s in samples]
    ops = [o for o in ops if o]

    def op(cls: str) -> float | None:
        return mean(o.get(cls, 0.0) for o in ops) if ops else None

    top = _top_python_thread(samples)
    frames = tuple(
        dict.fromkeys(
            str(getattr(t, "top_frame", "") or "") for s in samples for t in (getattr(s, "threads", None) or ())
        )
    )
    parked = _parked_of_working(samples)
    if parked is None and waits:
        parked = mean(w.get("queue", 0.0) + w.get("sleep", 0.0) for w in waits)
    return {
        "py_active_pct": _avg(samples, "active_pct"),
        "py_gil_pct": _avg(samples, "gil_pct"),
        **top,
        "py_wait_network": wait("network"),
        "py_wait_loop": wait("loop"),
        "py_wait_queue": wait("queue"),
        "py_wait_sleep": wait("sleep"),
        "py_wait_gpu_sync": wait("gpu_sync"),
        "py_wait_gil": wait("gil"),
        "py_wait_io": wait("io"),
        "py_parked": parked,
        "py_frames": tuple(f for f in frames if f)[:20],
        "py_op_math": op("math"),
        "py_op_memory": op("memory"),
        "py_op_interpreter": op("interpreter"),
        "native_math": native("math"),
        "native_memory": native("memory", "alloc"),
        "native_interpreter": native("interpreter"),
    }


def _explained(fracs: dict[str, float]) -> dict[str, float]:
    """Wait shares of the time whose cause is known: "other" (idle, cause unknown) is left out.

    A server keeps many threads parked in places the stack rules cannot name; counting them would dilute
    the waits that matter (a thread blocked on an upstream socket) below any threshold.
    """
    explained = {k: v for k, v in fracs.items() if k != "other"}
    total = sum(explained.values())
    if total <= 0.05:
        return {}
    return {k: v / total for k, v in explained.items()}


def _parked_of_working(samples: Sequence[Any]) -> float | None:
    """Parked share (queue + sleep) of the explained time of the threads that worked in the window.

    A server keeps bystander threads that never run while it serves: executor workers parked on their
    queue, a GC or metrics thread on an Event. Counted in, they make a fully busy server look parked (0.36
    on Ray Serve computing flat out). A thread with no active sample in the whole window is such a
    bystander, whatever its wait: it is left out rather than down-weighted, because any weight lets enough
    idle threads outvote the few that do the work. A worker held back by a batch timer still runs between
    timers, so it stays in. Each sample's share is over its threads' stack samples, then averaged.

    Returns None when no thread carries its own breakdown (older samples) or none worked in the window,
    so the caller falls back to the process-wide waits.
    """
    threads = [t for s in samples for t in getattr(s, "threads", None) or ()]
    working = {_thread_key(t) for t in threads if (_num(t, "active_pct") or 0.0) > 0}
    shares = []
    for s in samples:
        parked = explained = total = 0.0
        for t in getattr(s, "threads", None) or ():
            fracs = _fracs(getattr(t, "waits", None))
            if not fracs or _thread_key(t) not in working:
                continue
            n = _num(t, "samples") or 1.0
            total += n * sum(fracs.values())
            explained += n * sum(v for k, v in fracs.items() if k != "other")
            parked += n * (fracs.get("queue", 0.0) + fracs.get("sleep", 0.0))
        if total > 0 and explained > 0.05 * total:
            shares.append(parked / explained)
    return mean(shares)


def _thread_key(t: Any) -> Any:
    return getattr(t, "tid", None) or getattr(t, "name", None)


def _top_python_thread(samples: Sequence[Any]) -> dict[str, Any]:
    """The most active Python thread, and how much of its activity held the GIL (interpreter vs native)."""
    active: dict[Any, float] = {}
    gil: dict[Any, float] = {}
    names: dict[Any, str] = {}
    for s in samples:
        for t in getattr(s, "threads", None) or ():
            key = getattr(t, "tid", None) or getattr(t, "name", None)
            a = _num(t, "active_pct")
            if key is None or a is None:
                continue
            active[key] = active.get(key, 0.0) + a
            gil[key] = gil.get(key, 0.0) + (_num(t, "gil_pct") or 0.0)
            names[key] = str(getattr(t, "name", "") or key)
    if not active:
        return {}
    top = max(active, key=lambda k: active[k])
    n = len(samples)
    share = min(1.0, gil[top] / active[top]) if active[top] > 0 else None
    return {"py_top_active_pct": active[top] / n, "py_top_gil_share": share, "py_top_thread": names[top]}


def _framework(profile: str | None, frames: Sequence[str]) -> str | None:
    """The server kind the fixes should name: the serving profile, else PyTorch seen in the stacks.

    Used only to word the fixes; the verdict never depends on it.
    """
    if profile and profile != "generic":
        return profile
    if any("torch" in f for f in frames):
        return "pytorch"
    return profile


#: Unacknowledged bytes to clients from which a loop's waits count as network (slow clients), as net.slow_clients.
SLOW_CLIENT_SEND_Q_BYTES = 262144


def _judge_loop_waits(values: dict[str, Any]) -> None:
    """Count event-loop waits as network waits only when the sockets say the loop waits on the network.

    A loop parked in its selector waits for any event. With upstream connections open (its replies are what the
    loop waits for) or send queues to clients building (slow readers), that is network time; with neither, the
    loop is idle between requests or timers, and calling it network would veto the scheduling rules on every
    asyncio server (issue 22: an adaptive batcher read "network" and its verdict fell to none).
    """
    loop = values.get("py_wait_loop")
    if not loop:
        return
    upstreams = values.get("upstream_conns")
    send_q = values.get("inbound_send_q_bytes")
    if (upstreams is not None and upstreams >= 1) or (send_q is not None and send_q >= SLOW_CLIENT_SEND_Q_BYTES):
        values["py_wait_network"] = (values.get("py_wait_network") or 0.0) + loop


def _statuses(window: Window) -> tuple[tuple[str, str, str], ...]:
    out = []
    for name, status in sorted(window.statuses.items()):
        state = status.state.value if isinstance(status.state, SourceState) else str(status.state)
        out.append((name, state, status.reason))
    return tuple(out)


def extract(window: Window) -> Signals:
    """Average every signal over ``window``; None for what no source measured."""
    values: dict[str, Any] = {}
    values.update(_process(window.series("process")))
    values.update(_system(window.series("system")))
    values.update(_gpu(window.series("gpu")))
    values.update(_serving(window.series("queue"), window.series("logs")))
    values.update(_sockets(window.series("sockets")))
    values.update(_pystacks(window.series("pystacks")))
    values["framework"] = _framework(values.get("serving_profile"), values.get("py_frames", ()))
    _judge_loop_waits(values)
    values.update(latency_signals(decompose(values)))
    return Signals(
        process_samples=len(window.series("process")),
        sources=frozenset(name for name in SOURCES if window.series(name)),
        statuses=_statuses(window),
        **values,
    )
