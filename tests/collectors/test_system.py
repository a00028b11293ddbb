"""The system collector: per-core busy %, memory, swap rates."""

from __future__ import annotations

import time

import psutil
from conftest import wait_for

from optitop.collectors.system import SystemCollector
from optitop.config import CollectorContext, Options


def test_cores_and_memory_are_read(start_target):
    start_target("threading.Thread(target=spin, args=('burner',), daemon=True).start()\nready()\ntime.sleep(600)\n")
    c = SystemCollector(CollectorContext(pid=1, options=Options()))
    start = time.monotonic()
    wait_for(lambda: time.monotonic() - start > 0.5)
    s = c.sample()
    assert len(s.per_core_busy_pct) == psutil.cpu_count()
    assert s.cpu_busy_pct is not None and s.cpu_busy_pct > 100 / psutil.cpu_count() / 2  # the burner shows
    assert max(s.per_core_busy_pct) > 40
    assert 0 < s.mem_available_bytes <= s.mem_total_bytes
    assert s.swap_in_bytes_per_s is not None and s.swap_in_bytes_per_s >= 0
    assert s.dt_s is not None and s.dt_s >= 0.5
