"""Synthetic windows for the analyzer tests.

The analyzer reads the model's sample types (``Window.of`` skips anything else), so every sample here is a real
one. The builders below take the numbers a scenario is about and fill the rest with quiet defaults (a GPU
device's readings the analyzer does not use are unknown).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from optitop.model import (
    Diagnosis,
    GpuDevice,
    GpuSample,
    ListenQueue,
    ProcessSample,
    PyStacksSample,
    PyThread,
    Sample,
    ServingSample,
    ServingStats,
    SocketSample,
    SourceState,
    SourceStatus,
    SystemSample,
    TargetInfo,
    ThreadSample,
    Window,
)

TARGET = TargetInfo(pid=4242, name="server", cmdline="python server.py", username="u", create_time_s=0.0, host="h")
GB = 1e9


def gpu_device(**fields: Any) -> GpuDevice:
    """An H100 read through GPM where the target holds 20 GiB, no utilisation known; ``fields`` override."""
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(GpuDevice) if f.default is dataclasses.MISSING}
    values.update(
        index=0,
        uuid="GPU-0",
        name="NVIDIA H100 80GB HBM3",
        util_source="gpm",
        pcie_link_bytes_per_s=63 * GB,
        dram_peak_bytes_per_s=3.35e12,
        mem_used_bytes=40 * 2**30,
        mem_total_bytes=80 * 2**30,
        power_w=300.0,
        power_limit_w=700.0,
        throttle_reasons=(),
        pcie_source="gpm",
        target_mem_bytes=20 * 2**30,
        target_pids=(),
        proc_util_note="",
    )
    values.update(fields)
    return GpuDevice(**values)


def gpu_sample(
    ts: float, mono: float, dt: float | None, devices: tuple[GpuDevice, ...], target_gpu_indices: tuple[int, ...]
) -> GpuSample:
    """A GPU sample of ``devices`` naming ``target_gpu_indices`` as the target's."""
    return GpuSample(ts, mono, dt, devices=devices, driver_version="580", nvml_version="13",
                     target_gpu_indices=target_gpu_indices, attribution_note="", host_dram_bw_note="")  # fmt: skip


def listen_queue(port: int = 8000, accept_queue: int = 0, backlog: int = 128) -> ListenQueue:
    """A listening socket on all addresses."""
    return ListenQueue(port=port, addr="0.0.0.0", accept_queue=accept_queue, backlog=backlog,  # noqa: S104
                       backlog_source="netlink sock_diag")  # fmt: skip


def socket_sample(ts: float, mono: float, dt: float | None, **fields: Any) -> SocketSample:
    """One listener with an empty accept queue, no connections, no retransmits; ``fields`` override."""
    values: dict[str, Any] = {
        "listeners": (listen_queue(),),
        "inbound_conns": 0,
        "inbound_recv_q_bytes": 0,
        "inbound_send_q_bytes": 0,
        "upstreams": (),
        "upstream_conns": 0,
        "upstream_recv_q_bytes": 0,
        "upstream_send_q_bytes": 0,
        "retrans_segs_per_s": 0.0,
        "retrans_pct": 0.0,
        "listen_overflows_per_s": 0.0,
    }
    return SocketSample(ts, mono, dt, **{**values, **fields})


def py_thread(
    tid: int,
    name: str,
    samples: int = 20,
    active_pct: float = 0.0,
    gil_pct: float = 0.0,
    top_frame: str = "",
    waits: tuple[tuple[str, float], ...] = (),
) -> PyThread:
    """One Python thread over a 20-sample window."""
    return PyThread(tid=tid, name=name, samples=samples, active_pct=active_pct, gil_pct=gil_pct,
                    top_frame=top_frame, wait="", waits=waits)  # fmt: skip


def pystacks_sample(ts: float, mono: float, dt: float | None, **fields: Any) -> PyStacksSample:
    """A 2-second stacks window with no threads and nothing sampled natively; ``fields`` override."""
    values: dict[str, Any] = {
        "mode": "record",
        "window_s": 2.0,
        "samples": 20,
        "threads": (),
        "gil_pct": 0.0,
        "active_pct": 0.0,
        "waits": (),
        "hot": (),
        "native_mix": None,
        "native_age_s": None,
        "trigger": "",
        "py_op_mix": None,
    }
    return PyStacksSample(ts, mono, dt, **{**values, **fields})


# -- builders: each returns a function of (ts, mono, dt) -> sample ------------------------------------
def proc(
    cpu: float = 1.0,
    cores: int = 2,
    threads: tuple[tuple[str, float], ...] = (("python", 1.0),),
    major: float = 0.0,
    minor: float = 10.0,
    invol: float = 1.0,
) -> dict[str, Any]:
    """A process sample's numbers: CPU % of one core, per-thread CPU as (name, % of a core)."""
    return {"kind": "process", "cpu": cpu, "cores": cores, "threads": threads, "major": major, "minor": minor,
            "invol": invol}  # fmt: skip


def _process_sample(spec: dict[str, Any], ts: float, mono: float, dt: float | None) -> ProcessSample:
    threads = tuple(
        ThreadSample(tid=100 + i, pid=TARGET.pid, name=name, state="R" if cpu > 50 else "S", cpu_pct=cpu)
        for i, (name, cpu) in enumerate(spec["threads"])
    )
    first = dt is None
    return ProcessSample(
        ts_s=ts, mono_s=mono, dt_s=dt, pid=TARGET.pid,
        cpu_pct=None if first else spec["cpu"],
        cpu_pct_of_allowed=None if first else spec["cpu"] / spec["cores"],
        allowed_cores=spec["cores"], rss_bytes=500 * 2**20,
        vol_ctx_switches_per_s=None if first else 100.0,
        invol_ctx_switches_per_s=None if first else spec["invol"],
        minor_faults_per_s=None if first else spec["minor"],
        major_faults_per_s=None if first else spec["major"],
        read_bytes_per_s=None, write_bytes_per_s=None, num_threads=len(threads), num_fds=10, num_procs=1,
        status="running", threads=() if first else threads, procs=(),
    )  # fmt: skip


def system(busy: float = 5.0, cores: int = 2, swap_in: float = 0.0, iowait: float = 0.0) -> dict[str, Any]:
    """A system sample's numbers."""
    return {"kind": "system", "busy": busy, "cores": cores, "swap_in": swap_in, "iowait": iowait}


def _system_sample(spec: dict[str, Any], ts: float, mono: float, dt: float | None) -> SystemSample:
    return SystemSample(
        ts_s=ts, mono_s=mono, dt_s=dt, cpu_busy_pct=spec["busy"],
        per_core_busy_pct=tuple(spec["busy"] for _ in range(spec["cores"])),
        iowait_pct=spec["iowait"], steal_pct=0.0, load_1m=1.0, load_5m=1.0, load_15m=1.0,
        num_cores=spec["cores"], mem_total_bytes=16 * 2**30, mem_available_bytes=8 * 2**30,
        swap_total_bytes=2**30, swap_used_bytes=0, swap_in_bytes_per_s=spec["swap_in"], swap_out_bytes_per_s=0.0,
    )  # fmt: skip


def gpu(indices: tuple[int, ...] = (0,), **device: Any) -> dict[str, Any]:
    """A one-device GPU sample (``gpu_device`` fields as keywords)."""
    return {"kind": "gpu", "indices": indices, "device": device}


def serving(profile: str = "vllm", **stats: Any) -> dict[str, Any]:
    """A queue (metrics) sample with ServingStats fields as keywords."""
    return {"kind": "queue", "profile": profile, "stats": stats}


def sockets(accept: int = 0, **fields: Any) -> dict[str, Any]:
    """A socket sample (SocketSample fields as keywords; ``accept`` is the listener's accept queue)."""
    return {"kind": "sockets", "accept": accept, "fields": fields}


def pystacks(
    threads: tuple[tuple[str, float, float], ...] = (),
    waits: tuple[tuple[str, float], ...] = (("other", 1.0),),
    native: tuple[tuple[str, float], ...] | None = None,
    frame: str = "",
    gil: float | None = None,
    active: float | None = None,
    ops: tuple[tuple[str, float], ...] | None = None,
) -> dict[str, Any]:
    """Python threads as (name, active %, GIL %), process-wide waits and the native mix.

    ``gil``/``active`` are the process-wide shares (any thread holding the GIL / running); by default
    the busiest thread's.
    """
    return {"kind": "pystacks", "threads": threads, "waits": waits, "native": native, "frame": frame,
            "gil": gil, "active": active, "ops": ops}  # fmt: skip


def _sample(spec: dict[str, Any], ts: float, mono: float, dt: float | None) -> Sample:
    kind = spec["kind"]
    if kind == "process":
        return _process_sample(spec, ts, mono, dt)
    if kind == "system":
        return _system_sample(spec, ts, mono, dt)
    if kind == "gpu":
        return gpu_sample(ts, mono, dt, devices=(gpu_device(**spec["device"]),), target_gpu_indices=spec["indices"])
    if kind == "queue":
        return ServingSample(ts, mono, dt, source="test", profile=spec["profile"], stats=ServingStats(**spec["stats"]))
    if kind == "sockets":
        return socket_sample(ts, mono, dt, listeners=(listen_queue(accept_queue=spec["accept"]),), **spec["fields"])
    threads = tuple(
        py_thread(tid=100 + i, name=name, active_pct=act, gil_pct=gil, top_frame=spec["frame"])
        for i, (name, act, gil) in enumerate(spec["threads"])
    )
    gil = spec["gil"] if spec["gil"] is not None else max((t.gil_pct for t in threads), default=0.0)
    active = spec["active"] if spec["active"] is not None else max((t.active_pct for t in threads), default=0.0)
    return pystacks_sample(ts, mono, dt, threads=threads, gil_pct=gil, active_pct=active, waits=spec["waits"],
                           native_mix=spec["native"], py_op_mix=spec.get("ops"))  # fmt: skip


UNAVAILABLE = {
    "gpu": "NVML not found: no NVIDIA driver",
    "queue": "no /metrics endpoint found: pass --metrics-url",
    "logs": "no log given: pass --log",
    "sockets": "cannot read /proc/PID/fd: run as the target's user or root",
    "pystacks": "py-spy needs ptrace: run as root or set kernel.yama.ptrace_scope=0",
    "system": "cannot read /proc/stat",
}


def window(
    *specs: dict[str, Any],
    n: int = 6,
    interval_s: float = 1.0,
    now: float = 1000.0,
    diagnoses: tuple[Diagnosis, ...] = (),
    statuses: dict[str, SourceStatus] | None = None,
) -> Window:
    """A window of ``n`` samples per spec (the first process sample has no rates, as the real one).

    Sources not given are marked unavailable with a realistic reason, as the session would.
    """
    samples: dict[str, list[Sample]] = {}
    for spec in specs:
        key = spec["kind"]
        for i in range(n):
            mono = now - (n - 1 - i) * interval_s
            dt = None if i == 0 else interval_s
            samples.setdefault(key, []).append(_sample(spec, 1.7e9 + mono, mono, dt))
    st = {name: SourceStatus(name, SourceState.OK) for name in samples}
    for name, reason in UNAVAILABLE.items():
        if name not in st:
            st[name] = SourceStatus(name, SourceState.UNAVAILABLE, reason)
    st.update(statuses or {})
    return Window(
        samples={k: tuple(v) for k, v in samples.items()},
        statuses=st,
        target=TARGET,
        now_mono_s=now,
        span_s=n * interval_s,
        diagnoses=diagnoses,
    )


def sequence(*windows_specs: tuple[dict[str, Any], ...], n: int = 6) -> list[Window]:
    """Windows one second apart, one per spec tuple (for hysteresis tests)."""
    return [window(*specs, n=n, now=1000.0 + i) for i, specs in enumerate(windows_specs)]


@dataclass
class Scenario:
    """A named synthetic window and what the analyzer must make of it."""

    name: str
    specs: tuple[dict[str, Any], ...]
    expect: str
    min_conf: float = 0.0
    max_conf: float = 1.0
    evidence: tuple[str, ...] = field(default_factory=tuple)
