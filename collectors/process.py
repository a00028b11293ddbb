"""The process collector: the target and its descendants — CPU, threads, memory, faults, I/O.

The tree is re-scanned each tick, so DataLoader or engine workers are followed as they appear and exit.
Every rate divides by the measured interval between samples, and per-process counters are keyed by
(pid, create time) so a reused pid never produces a bogus delta.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from optitop.collectors.procfs import (
    CLOCK_TICKS_PER_S,
    STATE_NAMES,
    StatFields,
    boot_clock_s,
    read_stat,
    thread_stats,
)
from optitop.collectors.tree import TargetTree
from optitop.config import CollectorContext
from optitop.model import ProcessSample, ProcInfo, TargetGone, ThreadSample
from optitop.redact import redact_cmdline

#: How many threads the sample keeps (the busiest first).
TOP_THREADS = 24
#: How many processes of the tree the sample lists (the busiest first; the target always).
TOP_PROCS = 32
#: A thread counts as busy over a tick at this share of one core (the analyzer's threshold too).
BUSY_THREAD_PCT = 50.0


@dataclass(slots=True)
class _Counters:
    """Cumulative counters of one process at one tick."""

    cpu_s: float
    vol_ctx: int
    invol_ctx: int
    minor_faults: int
    major_faults: int
    read_bytes: int | None
    write_bytes: int | None


def _rate(now: float | None, before: float | None, dt: float) -> float | None:
    if now is None or before is None or dt <= 0:
        return None
    return max(0.0, (now - before) / dt)


class ProcessCollector:
    """Samples the target tree; raises TargetGone when the target exits or its pid is reused."""

    name = "process"

    def __init__(self, ctx: CollectorContext) -> None:
        """Attach to ``ctx.pid``; SourceUnavailable when it does not exist."""
        self.interval_s = ctx.options.interval_s
        self.pid = ctx.pid
        self._tree_of = TargetTree(ctx.pid)
        self._proc = self._tree_of.proc
        self._prev_mono: float | None = None
        #: Seconds since boot when the previous sample began: threads started after it were born in this tick.
        self._prev_boot_s: float | None = None
        self._prev: dict[tuple[int, float], _Counters] = {}
        self._prev_threads: dict[tuple[int, int], float] = {}
        self._procs: dict[int, tuple[int, psutil.Process]] = {}

    def close(self) -> None:
        """Nothing to release."""

    # -- the tree ----------------------------------------------------------------------------------------
    def _tree(self) -> list[tuple[psutil.Process, int, StatFields | None]]:
        """The target and its descendants with their depth and, for descendants, the stat just read.

        psutil objects are kept between ticks (keyed by pid and start time, so a reused pid gets a new one):
        making one costs a stat read, and the tree rarely changes. The stat read here is handed on, so each
        process's stat file is read once a tick.
        """
        found = self._tree_of.descendant_pids()
        depth: dict[int, int] = {self.pid: 0}
        out: list[tuple[psutil.Process, int, StatFields | None]] = [(self._proc, 0, None)]
        procs: dict[int, tuple[int, psutil.Process]] = {}
        for pid, parent in found:
            stat = read_stat(f"/proc/{pid}/stat")
            if stat is None:
                continue
            cached = self._procs.get(pid)
            if cached is not None and cached[0] == stat.start_ticks:
                proc = cached[1]
            else:
                try:
                    proc = psutil.Process(pid)
                except psutil.Error:
                    continue
            procs[pid] = (stat.start_ticks, proc)
            depth[pid] = depth.get(parent, 0) + 1
            out.append((proc, depth[pid], stat))
        self._procs = procs
        return out

    # -- one tick ----------------------------------------------------------------------------------------
    def sample(self) -> ProcessSample:
        """Read the whole tree once."""
        ts = time.time()
        mono = time.monotonic()
        boot_s = boot_clock_s()
        dt = None if self._prev_mono is None else mono - self._prev_mono
        tree = self._tree()
        denied: set[str] = set()
        counters: dict[tuple[int, float], _Counters] = {}
        procs: list[ProcInfo] = []
        threads: list[ThreadSample] = []
        thread_cpu: dict[tuple[int, int], float] = {}
        total_rss = 0
        total_threads = 0
        num_fds: int | None = 0
        target_status = "?"
        for proc, depth, stat in tree:
            info = self._read_proc(proc, depth, dt, counters, denied, stat)
            if info is None:
                continue
            procs.append(info)
            total_rss += info.rss_bytes or 0
            total_threads += info.num_threads or 0
            if proc.pid == self.pid:
                target_status = info.status
            try:
                if num_fds is not None:
                    num_fds += proc.num_fds()
            except psutil.AccessDenied:
                denied.add("open fds (needs the same user or root)")
                num_fds = None
            except psutil.NoSuchProcess:
                pass
            threads.extend(self._read_threads(proc.pid, dt, thread_cpu))
        if not procs:
            raise TargetGone(f"pid {self.pid} exited")

        def total_rate(field: str) -> float | None:
            if dt is None:
                return None
            acc = 0.0
            seen = False
            for key, now in counters.items():
                value = getattr(now, field)
                if value is None:
                    continue
                before = self._prev.get(key)
                if before is None:
                    # A process born during this tick: all of its counter happened within the tick.
                    if key[1] >= (ts - dt):
                        acc += value
                        seen = True
                    continue
                prev_value = getattr(before, field)
                if prev_value is not None:
                    acc += max(0, value - prev_value)
                    seen = True
            return acc / dt if seen and dt > 0 else (0.0 if dt and dt > 0 else None)

        rates = {
            f: total_rate(f)
            for f in ("cpu_s", "vol_ctx", "invol_ctx", "minor_faults", "major_faults", "read_bytes", "write_bytes")
        }
        cpu_pct = None if dt is None else 100.0 * (rates["cpu_s"] or 0.0)
        try:
            allowed = len(self._proc.cpu_affinity() or []) or (psutil.cpu_count() or 1)
        except (psutil.Error, AttributeError):
            allowed = psutil.cpu_count() or 1
        runnable = sum(1 for t in threads if t.state == "R")
        busy = None if dt is None else sum(1 for t in threads if t.cpu_pct >= BUSY_THREAD_PCT)
        exited = None if cpu_pct is None else max(0.0, cpu_pct - sum(t.cpu_pct for t in threads))
        threads.sort(key=lambda t: t.cpu_pct, reverse=True)
        procs_sorted = [procs[0]] + sorted(procs[1:], key=lambda p: p.cpu_pct or 0.0, reverse=True)
        self._prev = counters
        self._prev_threads = thread_cpu
        self._prev_mono = mono
        self._prev_boot_s = boot_s
        return ProcessSample(
            ts_s=ts,
            mono_s=mono,
            dt_s=dt,
            pid=self.pid,
            cpu_pct=cpu_pct,
            cpu_pct_of_allowed=None if cpu_pct is None else cpu_pct / allowed,
            allowed_cores=allowed,
            rss_bytes=total_rss,
            vol_ctx_switches_per_s=rates["vol_ctx"],
            invol_ctx_switches_per_s=rates["invol_ctx"],
            minor_faults_per_s=rates["minor_faults"],
            major_faults_per_s=rates["major_faults"],
            read_bytes_per_s=rates["read_bytes"],
            write_bytes_per_s=rates["write_bytes"],
            num_threads=total_threads,
            num_fds=num_fds,
            num_procs=len(procs),
            status=target_status,
            threads=tuple(threads[:TOP_THREADS]),
            procs=tuple(procs_sorted[:TOP_PROCS]),
            denied=tuple(sorted(denied)),
            runnable_threads=runnable,
            busy_threads=busy,
            exited_threads_cpu_pct=exited,
        )

    def _read_proc(
        self,
        proc: psutil.Process,
        depth: int,
        dt: float | None,
        counters: dict[tuple[int, float], _Counters],
        denied: set[str],
        stat: StatFields | None = None,
    ) -> ProcInfo | None:
        stat = stat or read_stat(f"/proc/{proc.pid}/stat")
        if stat is None:
            return None
        try:
            with proc.oneshot():
                key = (proc.pid, proc.create_time())
                ctx = proc.num_ctx_switches()
                mem = proc.memory_info()
                try:
                    io = proc.io_counters()
                    read_b: int | None = io.read_bytes
                    write_b: int | None = io.write_bytes
                except (psutil.AccessDenied, AttributeError):
                    denied.add("I/O bytes (needs the same user or root)")
                    read_b = write_b = None
                try:
                    cmdline = redact_cmdline(proc.cmdline())
                except psutil.AccessDenied:
                    cmdline = ""
                name = proc.name()
        except psutil.NoSuchProcess:
            return None
        except psutil.AccessDenied:
            denied.add(f"pid {proc.pid} details (needs the same user or root)")
            return None
        ppid = stat.ppid
        status = STATE_NAMES.get(stat.state, stat.state)
        now = _Counters(
            stat.cpu_s, ctx.voluntary, ctx.involuntary, stat.minor_faults, stat.major_faults, read_b, write_b
        )
        counters[key] = now
        before = self._prev.get(key)
        cpu_pct = None
        if dt is not None and dt > 0:
            cpu_pct = 100.0 * (now.cpu_s - before.cpu_s) / dt if before else None
        return ProcInfo(
            pid=proc.pid,
            ppid=ppid,
            name=name,
            cmdline=cmdline,
            cpu_pct=None if cpu_pct is None else max(0.0, cpu_pct),
            rss_bytes=mem.rss,
            num_threads=stat.num_threads,
            status=status,
            depth=depth,
        )

    def _read_threads(self, pid: int, dt: float | None, seen: dict[tuple[int, int], float]) -> list[ThreadSample]:
        out = []
        for tid, stat in thread_stats(pid).items():
            seen[(pid, tid)] = stat.cpu_s
            cpu = self._thread_cpu_pct(self._prev_threads.get((pid, tid)), stat.cpu_s, stat.start_ticks, dt)
            out.append(ThreadSample(tid=tid, pid=pid, name=stat.comm, state=stat.state, cpu_pct=cpu))
        return out

    def _thread_cpu_pct(self, before: float | None, cpu_s: float, start_ticks: int, dt: float | None) -> float:
        """One thread's CPU % of a core over the tick.

        A thread absent from the previous sample but started after it began was born during this tick: all
        of its CPU time happened within the tick, so it is charged in full (as ``total_rate`` charges a
        process born during the tick). Servers that start a thread per request (Ray Serve starts and ends
        several a second) would otherwise show their working threads at 0 %. A thread absent for another
        reason (its process just joined the tree) has no baseline and reads 0.
        """
        if dt is None or dt <= 0:
            return 0.0
        if before is not None:
            return max(0.0, 100.0 * (cpu_s - before) / dt)
        if (
            self._prev_boot_s is not None
            and start_ticks / CLOCK_TICKS_PER_S >= self._prev_boot_s - 1.0 / CLOCK_TICKS_PER_S
        ):
            return 100.0 * cpu_s / dt
        return 0.0
