"""Per source, the window averages the analyzer's signals are made of, read from the model's typed samples.

Each reader takes one collector's samples as their model type (``Window.of`` hands them over typed, skipping
anything else a recording or a test put in the series) and returns signal name -> value for ``Signals``. A
value is None when the source produced nothing that says it: a missing number must never read as 0 (0 % GPU is
a verdict, "no GPU counters" is not). Which GPUs are the target's and how busy a GPU is are the model's answers
(``GpuSample.target_devices``, ``gpu_busy_pct``), so the verdict reads a window as the panes and compare do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from optitop.model import (
    GpuDevice,
    GpuSample,
    ProcessSample,
    PyStacksSample,
    PyThread,
    ServingSample,
    ServingStats,
    SocketSample,
    SystemSample,
    pcie_bytes_per_s,
    requests_in_system,
    sum_known,
)

T = TypeVar("T")

#: A thread counts as busy at this share of one core (averaged over the window).
BUSY_THREAD_PCT = 50.0
#: Clock-event reasons that limit throughput (power, thermal, board); idle, sync boost and app clocks do not.
LIMITING_THROTTLE = frozenset({"power cap", "HW slowdown", "SW thermal", "HW thermal", "HW power brake", "board limit"})
#: PCIe traffic (both directions) from which a sample counts towards the copy duty.
PCIE_ACTIVE_BYTES_PER_S = 0.5e9


# -- small helpers -------------------------------------------------------------------------------------
def mean(values: Iterable[float | None]) -> float | None:
    """The mean of the known values; None when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _avg(items: Sequence[T], pick: Callable[[T], float | None]) -> float | None:
    """The mean of ``pick`` over ``items`` (unknown values left out)."""
    return mean(pick(item) for item in items)


def _max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _ratio_pct(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den <= 0:
        return None
    return 100.0 * num / den


def _fracs(pairs: Iterable[Any] | None) -> dict[str, float]:
    """A tuple of (class, fraction) pairs as a dict (tolerates None and malformed entries from old recordings)."""
    out: dict[str, float] = {}
    for item in pairs or ():
        try:
            key, frac = item
        except (TypeError, ValueError):
            continue
        if isinstance(key, str) and isinstance(frac, (int, float)):
            out[key] = out.get(key, 0.0) + float(frac)
    return out


# -- process tree and host -----------------------------------------------------------------------------
def process(samples: Sequence[ProcessSample]) -> dict[str, Any]:
    """The target tree's CPU, faults and context switches, its threads, and the cores it may use."""
    if not samples:
        return {}
    out: dict[str, Any] = {
        "proc_cpu_pct": _avg(samples, lambda s: s.cpu_pct),
        "proc_cpu_of_allowed_pct": _avg(samples, lambda s: s.cpu_pct_of_allowed),
        "major_faults_per_s": _avg(samples, lambda s: s.major_faults_per_s),
        "minor_faults_per_s": _avg(samples, lambda s: s.minor_faults_per_s),
        "invol_ctx_switches_per_s": _avg(samples, lambda s: s.invol_ctx_switches_per_s),
    }
    minor, cpu = out["minor_faults_per_s"], out["proc_cpu_pct"]
    # Per CPU-second, so a streaming loop slowed by a busy host still reads as streaming.
    out["minor_faults_per_cpu_s"] = minor / max(cpu / 100.0, 0.05) if minor is not None and cpu is not None else None
    cores = samples[-1].allowed_cores
    out["allowed_cores"] = cores
    out.update(_threads(samples))
    runnable = out.get("runnable_threads")
    out["runnable_per_core"] = runnable / cores if runnable is not None and cores else None
    return out


def _threads(samples: Sequence[ProcessSample]) -> dict[str, Any]:
    """Per-thread CPU averaged over the samples that carry a thread list (a thread absent counts 0).

    The thread list keeps only the busiest threads, so the runnable and busy counts come from the
    sample's own counts over every thread where it has them (``runnable_threads``, ``busy_threads``).
    Busy is then judged per tick, not per thread over the window: a server that starts a thread per
    request has each worker alive for a tick or two, and its window average would never reach busy.
    """
    with_threads = [s for s in samples if s.threads]
    if not with_threads:
        return {}
    total: dict[int, float] = {}
    names: dict[int, str] = {}
    for s in with_threads:
        for t in s.threads:
            total[t.tid] = total.get(t.tid, 0.0) + t.cpu_pct
            names[t.tid] = t.name
    n = len(with_threads)
    avg = {tid: v / n for tid, v in total.items()}
    top = max(avg, key=lambda tid: avg[tid])
    busy_per_tick = _avg(with_threads, lambda s: s.busy_threads)
    return {
        "top_thread_cpu_pct": avg[top],
        "top_thread_name": names.get(top) or str(top),
        "busy_threads": (
            sum(1 for v in avg.values() if v >= BUSY_THREAD_PCT) if busy_per_tick is None else round(busy_per_tick)
        ),
        "runnable_threads": _runnable(with_threads),
        "other_threads_cpu_pct": sum(v for tid, v in avg.items() if tid != top),
    }


def _runnable(samples: Sequence[ProcessSample]) -> float:
    """Threads in state R per sample: what the target wants to run, even when a busy host starves it.

    The sample's count over every thread where it has one; else (older recordings) the kept threads.
    """
    counted = _avg(samples, lambda s: s.runnable_threads)
    if counted is not None:
        return counted
    return sum(1 for s in samples for t in s.threads if t.state == "R") / len(samples)


def system(samples: Sequence[SystemSample]) -> dict[str, Any]:
    """The host's CPU, I/O wait, steal and swap traffic."""
    if not samples:
        return {}
    return {
        "host_cpu_busy_pct": _avg(samples, lambda s: s.cpu_busy_pct),
        "iowait_pct": _avg(samples, lambda s: s.iowait_pct),
        "steal_pct": _avg(samples, lambda s: s.steal_pct),
        "swap_bytes_per_s": _avg(samples, lambda s: sum_known((s.swap_in_bytes_per_s, s.swap_out_bytes_per_s))),
    }


# -- GPU -----------------------------------------------------------------------------------------------
def _busiest(devices: Iterable[GpuDevice], pick: Callable[[GpuDevice], float | None]) -> float | None:
    """The busiest device's value: one saturated GPU is a bottleneck even when its neighbour idles."""
    return _max_known(pick(d) for d in devices)


def _pcie_max(d: GpuDevice) -> float | None:
    """The busier PCIe direction of one device."""
    return _max_known((d.pcie_rx_bytes_per_s, d.pcie_tx_bytes_per_s))


def gpu(samples: Sequence[GpuSample]) -> dict[str, Any]:
    """The target's GPUs (every GPU when which are the target's is not known), each value the busiest's."""
    chosen = [s.target_devices() for s in samples]
    per_sample = [c.devices for c in chosen if c.devices]
    if not per_sample:
        return {}
    attributions = [c.known for c in chosen]
    used = True if True in attributions else (False if False in attributions else None)

    def pct(pick: Callable[[GpuDevice], float | None]) -> float | None:
        return mean(_busiest(devs, pick) for devs in per_sample)

    def legacy(pick: Callable[[GpuDevice], float | None]) -> float | None:
        # Legacy utilisation reads 0 % on busy Hopper GPUs (measured): only trust it where GPM is absent.
        return mean(_busiest([d for d in devs if d.util_source == "legacy"], pick) for devs in per_sample)

    both = [_busiest(devs, pcie_bytes_per_s) for devs in per_sample]
    known_both = [b for b in both if b is not None]
    duty = sum(b >= PCIE_ACTIVE_BYTES_PER_S for b in known_both) / len(known_both) if known_both else None
    last = per_sample[-1]
    sources = Counter(d.util_source for d in last)
    throttle = sorted({r for d in last for r in d.throttle_reasons if r in LIMITING_THROTTLE})
    return {
        "gpu_devices": len(last),
        "gpu_used_by_target": used,
        "gpu_util_source": sources.most_common(1)[0][0] or None,
        "gpu_name_hint": last[0].name or None,
        "gpu_busy_pct": mean(s.target_busy_pct() for s in samples),
        "gpu_sm_pct": pct(lambda d: d.sm_util_pct),
        "gpu_occupancy_pct": pct(lambda d: d.sm_occupancy_pct),
        "gpu_tensor_pct": pct(lambda d: d.tensor_util_pct),
        "gpu_dram_pct": pct(lambda d: d.dram_bw_util_pct),
        "gpu_dram_peak_bytes_per_s": _busiest(last, lambda d: d.dram_peak_bytes_per_s),
        "gpu_graphics_pct": pct(lambda d: d.graphics_util_pct),
        "gpu_legacy_util_pct": legacy(lambda d: d.legacy_gpu_util_pct),
        "gpu_legacy_mem_pct": legacy(lambda d: d.legacy_mem_util_pct),
        "gpu_pcie_bytes_per_s": pct(_pcie_max),
        "gpu_pcie_both_bytes_per_s": mean(both),
        "gpu_pcie_duty": duty,
        "gpu_pcie_link_pct": pct(lambda d: _ratio_pct(_pcie_max(d), d.pcie_link_bytes_per_s)),
        "gpu_mem_used_pct": pct(lambda d: _ratio_pct(d.mem_used_bytes, d.mem_total_bytes)),
        "gpu_power_pct": pct(lambda d: _ratio_pct(d.power_w, d.power_limit_w)),
        "gpu_throttle": tuple(throttle),
    }


# -- serving statistics and kernel sockets -------------------------------------------------------------
def _stats_means(stats: Sequence[ServingStats]) -> dict[str, float | None]:
    """The window mean of each serving statistic the analyzer reads, by ``ServingStats`` field."""

    def avg(pick: Callable[[ServingStats], float | None]) -> float | None:
        return _avg(stats, pick)

    return {
        "requests_waiting": avg(lambda s: s.requests_waiting),
        "requests_running": avg(lambda s: s.requests_running),
        "batch_size": avg(lambda s: s.batch_size),
        "max_running": avg(lambda s: s.max_running),
        "kv_cache_usage_pct": avg(lambda s: s.kv_cache_usage_pct),
        "preemptions_per_s": avg(lambda s: s.preemptions_per_s),
        "request_rate_per_s": avg(lambda s: s.request_rate_per_s),
        "queue_time_p50_s": avg(lambda s: s.queue_time_p50_s),
        "ttft_p50_s": avg(lambda s: s.ttft_p50_s),
        "e2e_p50_s": avg(lambda s: s.e2e_p50_s),
    }


def serving(primary: Sequence[ServingSample], fallback: Sequence[ServingSample]) -> dict[str, Any]:
    """Queue metrics first; server logs fill only what the metrics did not carry."""
    values: dict[str, float | None] = {}
    profile: str | None = None
    for series in (primary, fallback):
        if not series:
            continue
        for name, value in _stats_means([s.stats for s in series]).items():
            if values.get(name) is None:
                values[name] = value
        if profile is None:
            profile = series[-1].profile or None
    if not values:
        return {}
    waiting, running = values.get("requests_waiting"), values.get("requests_running")
    preempt = values.get("preemptions_per_s")
    return {
        "serving_profile": profile,
        "requests_waiting": waiting,
        "requests_running": running,
        "requests_in_system": requests_in_system(waiting, running),
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


def sockets(samples: Sequence[SocketSample]) -> dict[str, Any]:
    """The kernel's queues: accept queues (summed over listeners), connections, unsent bytes, retransmits."""
    if not samples:
        return {}
    return {
        "accept_queue": _avg(samples, lambda s: sum_known(q.accept_queue for q in s.listeners) or 0.0),
        "listen_overflows_per_s": _avg(samples, lambda s: s.listen_overflows_per_s),
        "inbound_conns": _avg(samples, lambda s: s.inbound_conns),
        "inbound_recv_q_bytes": _avg(samples, lambda s: s.inbound_recv_q_bytes),
        "inbound_send_q_bytes": _avg(samples, lambda s: s.inbound_send_q_bytes),
        "upstream_conns": _avg(samples, lambda s: s.upstream_conns),
        "upstream_send_q_bytes": _avg(samples, lambda s: s.upstream_send_q_bytes),
        "upstream_recv_q_bytes": _avg(samples, lambda s: s.upstream_recv_q_bytes),
        "retrans_pct": _avg(samples, lambda s: s.retrans_pct),
    }


# -- Python threads ------------------------------------------------------------------------------------
def pystacks(samples: Sequence[PyStacksSample]) -> dict[str, Any]:
    """Where the Python threads' time goes: waits by cause, the busiest thread, the op mixes, the frames."""
    if not samples:
        return {}
    waits = [w for w in (_explained(_fracs(s.waits)) for s in samples) if w]

    def wait(cls: str) -> float | None:
        return mean(w.get(cls, 0.0) for w in waits) if waits else None

    natives = [n for n in (_fracs(s.native_mix) for s in samples) if n]

    def native(*classes: str) -> float | None:
        return mean(sum(n.get(c, 0.0) for c in classes) for n in natives) if natives else None

    ops = [o for o in (_fracs(s.py_op_mix) for s in samples) if o]

    def op(cls: str) -> float | None:
        return mean(o.get(cls, 0.0) for o in ops) if ops else None

    frames = tuple(dict.fromkeys(t.top_frame for s in samples for t in s.threads))
    parked = _parked_of_working(samples)
    if parked is None and waits:
        parked = mean(w.get("queue", 0.0) + w.get("sleep", 0.0) for w in waits)
    return {
        "py_active_pct": _avg(samples, lambda s: s.active_pct),
        "py_gil_pct": _avg(samples, lambda s: s.gil_pct),
        **_top_python_thread(samples),
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


def _parked_of_working(samples: Sequence[PyStacksSample]) -> float | None:
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
    working = {_thread_key(t) for s in samples for t in s.threads if t.active_pct > 0}
    shares = []
    for s in samples:
        parked = explained = total = 0.0
        for t in s.threads:
            fracs = _fracs(t.waits)
            if not fracs or _thread_key(t) not in working:
                continue
            n = t.samples or 1.0
            total += n * sum(fracs.values())
            explained += n * sum(v for k, v in fracs.items() if k != "other")
            parked += n * (fracs.get("queue", 0.0) + fracs.get("sleep", 0.0))
        if total > 0 and explained > 0.05 * total:
            shares.append(parked / explained)
    return mean(shares)


def _thread_key(t: PyThread) -> int | str:
    """A thread across samples: its tid, else (a stack reader that gives none) its name."""
    return t.tid or t.name


def _top_python_thread(samples: Sequence[PyStacksSample]) -> dict[str, Any]:
    """The most active Python thread, and how much of its activity held the GIL (interpreter vs native)."""
    active: dict[int | str, float] = {}
    gil: dict[int | str, float] = {}
    names: dict[int | str, str] = {}
    for s in samples:
        for t in s.threads:
            key = _thread_key(t)
            active[key] = active.get(key, 0.0) + t.active_pct
            gil[key] = gil.get(key, 0.0) + (t.gil_pct or 0.0)
            names[key] = t.name or str(key)
    if not active:
        return {}
    top = max(active, key=lambda k: active[k])
    n = len(samples)
    share = min(1.0, gil[top] / active[top]) if active[top] > 0 else None
    return {"py_top_active_pct": active[top] / n, "py_top_gil_share": share, "py_top_thread": names[top]}
