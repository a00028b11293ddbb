"""The system collector: per-core busy %, iowait and steal, load, memory and swap — the host around the target.

Each rate divides by the measured interval between two readings of cumulative counters.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from optitop.collectors.hostmem import host_dram_bw_note
from optitop.config import CollectorContext
from optitop.model import SystemSample


def _busy_pct(now: Any, before: Any) -> tuple[float, float, float]:
    """(busy %, iowait %, steal %) between two cumulative cpu_times readings."""
    total = sum(now) - sum(before)
    if total <= 0:
        return 0.0, 0.0, 0.0
    idle = (now.idle - before.idle) + (getattr(now, "iowait", 0.0) - getattr(before, "iowait", 0.0))
    iowait = getattr(now, "iowait", 0.0) - getattr(before, "iowait", 0.0)
    steal = getattr(now, "steal", 0.0) - getattr(before, "steal", 0.0)
    return (
        max(0.0, min(100.0, 100.0 * (total - idle) / total)),
        max(0.0, 100.0 * iowait / total),
        max(0.0, 100.0 * steal / total),
    )


class SystemCollector:
    """Samples host-wide CPU, memory and swap."""

    name = "system"

    def __init__(self, ctx: CollectorContext) -> None:
        """Take the first cumulative readings so the first tick can already be a rate."""
        self.interval_s = ctx.options.interval_s
        self._prev_total = psutil.cpu_times()
        self._prev_cores = psutil.cpu_times(percpu=True)
        swap = psutil.swap_memory()
        self._prev_swap = (swap.sin, swap.sout)
        self._prev_mono = time.monotonic()
        self._host_dram_bw_note = host_dram_bw_note()

    def close(self) -> None:
        """Nothing to release."""

    def sample(self) -> SystemSample:
        """Read the host counters once."""
        ts = time.time()
        mono = time.monotonic()
        dt = mono - self._prev_mono
        total = psutil.cpu_times()
        cores = psutil.cpu_times(percpu=True)
        busy, iowait, steal = _busy_pct(total, self._prev_total)
        per_core = tuple(_busy_pct(n, b)[0] for n, b in zip(cores, self._prev_cores, strict=False))
        vm = psutil.virtual_memory()
        swap = psutil.swap_memory()
        sin = (swap.sin - self._prev_swap[0]) / dt if dt > 0 else None
        sout = (swap.sout - self._prev_swap[1]) / dt if dt > 0 else None
        load = os.getloadavg()
        self._prev_total, self._prev_cores, self._prev_swap, self._prev_mono = (
            total,
            cores,
            (swap.sin, swap.sout),
            mono,
        )
        return SystemSample(
            ts_s=ts,
            mono_s=mono,
            dt_s=dt,
            cpu_busy_pct=busy,
            per_core_busy_pct=per_core,
            iowait_pct=iowait,
            steal_pct=steal,
            load_1m=load[0],
            load_5m=load[1],
            load_15m=load[2],
            num_cores=len(cores),
            mem_total_bytes=vm.total,
            mem_available_bytes=vm.available,
            swap_total_bytes=swap.total,
            swap_used_bytes=swap.used,
            swap_in_bytes_per_s=None if sin is None else max(0.0, sin),
            swap_out_bytes_per_s=None if sout is None else max(0.0, sout),
            host_dram_bw_note=self._host_dram_bw_note,
        )
