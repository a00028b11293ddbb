"""The target's process tree over one tick: what the process collector produces (vendor-free: no psutil here)."""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model.core import Sample


@dataclass(frozen=True, slots=True)
class ThreadSample:
    """One thread over the last tick."""

    tid: int
    pid: int
    name: str
    state: str
    cpu_pct: float


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """One process of the target tree over the last tick."""

    pid: int
    ppid: int
    name: str
    cmdline: str
    cpu_pct: float | None
    rss_bytes: int | None
    num_threads: int | None
    status: str
    depth: int


@dataclass(frozen=True, slots=True)
class ProcessSample(Sample):
    """The target tree over the last tick; rates are None on the first tick.

    CPU percentages are of one core (a process using two full cores reads 200 %); ``cpu_pct_of_allowed``
    divides by the cores the target may run on. ``threads`` keeps only the busiest TOP_THREADS, so the
    counts the analyzer needs are taken over every thread of the tree: ``runnable_threads`` (state R now)
    and ``busy_threads`` (above BUSY_THREAD_PCT of a core over the tick; None on the first tick).
    ``exited_threads_cpu_pct`` is the CPU the processes used that no live thread accounts for: threads that
    started and ended between two ticks (thread pools that spawn per request, e.g. Ray Serve's replicas), which
    no per-thread view can show. These default to None so recordings made before they existed still load.
    """

    pid: int
    cpu_pct: float | None
    cpu_pct_of_allowed: float | None
    allowed_cores: int
    rss_bytes: int
    vol_ctx_switches_per_s: float | None
    invol_ctx_switches_per_s: float | None
    minor_faults_per_s: float | None
    major_faults_per_s: float | None
    read_bytes_per_s: float | None
    write_bytes_per_s: float | None
    num_threads: int
    num_fds: int | None
    num_procs: int
    status: str
    threads: tuple[ThreadSample, ...]
    procs: tuple[ProcInfo, ...]
    denied: tuple[str, ...] = ()
    runnable_threads: int | None = None
    busy_threads: int | None = None
    exited_threads_cpu_pct: float | None = None
