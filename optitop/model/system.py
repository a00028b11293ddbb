"""The host around the target over one tick: what the system collector produces."""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model.core import Sample


@dataclass(frozen=True, slots=True)
class SystemSample(Sample):
    """The host over the last tick; rates are None on the first tick."""

    cpu_busy_pct: float | None
    per_core_busy_pct: tuple[float, ...]
    iowait_pct: float | None
    steal_pct: float | None
    load_1m: float
    load_5m: float
    load_15m: float
    num_cores: int
    mem_total_bytes: int
    mem_available_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    swap_in_bytes_per_s: float | None
    swap_out_bytes_per_s: float | None
    host_dram_bw_note: str = ""
