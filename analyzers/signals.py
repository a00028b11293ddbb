"""Signals: one flat, typed record of what a window says, averaged over the window.

The window hands each collector's samples over as their model type (``Window.of``), and the readers in
``analyzers/readings.py`` read their fields as attributes mypy checks; nothing here imports a collector module,
because those import vendors (psutil, NVML, py-spy) and the analyzer must stay pure and importable anywhere.
Every signal is None when its source produced nothing in the window: a missing number must never read as 0
(0 % GPU is a verdict, "no GPU counters" is not). Signals themselves are read by name (``Signals.get``): the
rules are data keyed by signal names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from optitop.analyzers import readings
from optitop.analyzers.latency import decompose, latency_signals
from optitop.model import (
    SAMPLE_TYPES,
    GpuSample,
    Latency,
    ProcessSample,
    PyStacksSample,
    ServingSample,
    SocketSample,
    SourceState,
    SystemSample,
    Window,
)

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
    process = window.of("process", ProcessSample)
    values: dict[str, Any] = {}
    values.update(readings.process(process))
    values.update(readings.system(window.of("system", SystemSample)))
    values.update(readings.gpu(window.of("gpu", GpuSample)))
    values.update(readings.serving(window.of("queue", ServingSample), window.of("logs", ServingSample)))
    values.update(readings.sockets(window.of("sockets", SocketSample)))
    values.update(readings.pystacks(window.of("pystacks", PyStacksSample)))
    values["framework"] = _framework(values.get("serving_profile"), values.get("py_frames", ()))
    _judge_loop_waits(values)
    values.update(latency_signals(decompose(values)))
    return Signals(
        process_samples=len(process),
        sources=frozenset(name for name in SOURCES if window.of(name, SAMPLE_TYPES[name])),
        statuses=_statuses(window),
        **values,
    )
