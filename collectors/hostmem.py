"""The host DRAM bandwidth line: said honestly, not measured.

Host memory bandwidth would come from the CPU's performance counters (uncore PMU), which optitop does not read.
The system collector and the GPU collector both show the line, so it says whether the counters exist at all
(then `perf stat` can measure it) or not (a VM without a PMU).
"""

from __future__ import annotations

import os

#: Where the kernel lists the CPU PMU that host DRAM bandwidth counters would come from.
CPU_PMU_PATH = "/sys/bus/event_source/devices/cpu"
HOST_DRAM_BW_UNAVAILABLE = "host DRAM bandwidth: unavailable (no CPU performance counters on this machine)"
HOST_DRAM_BW_NOT_COLLECTED = (
    "host DRAM bandwidth: not collected (a CPU PMU exists; `perf stat -M memory_bandwidth_total` can measure it)"
)


def host_dram_bw_note(pmu_path: str = CPU_PMU_PATH) -> str:
    """The honest host DRAM bandwidth line: without a CPU PMU there are no counters to read it from."""
    return HOST_DRAM_BW_NOT_COLLECTED if os.path.isdir(pmu_path) else HOST_DRAM_BW_UNAVAILABLE
