"""What a GPU's links and memory could carry at most, and why its clocks are held back: units and tables.

A bandwidth in bytes/s means little alone; against the peak the hardware allows it says "the PCIe link is full"
or "DRAM is idle". The peaks come from static facts NVML reports (bus width, max memory clock, PCIe generation
and width) and public tables; no call to NVML is made here.
"""

from __future__ import annotations

#: Usable bytes/s per lane, one direction, by PCIe generation (after 8b/10b or 128b/130b encoding).
PCIE_LANE_BYTES_PER_S: dict[int, float] = {
    1: 250e6,
    2: 500e6,
    3: 8e9 * 128 / 130 / 8,
    4: 16e9 * 128 / 130 / 8,
    5: 32e9 * 128 / 130 / 8,
    6: 64e9 * 242 / 256 / 8,
}

#: Clock-event ("throttle") reason bits, as NVML defines them, in words a person reads.
THROTTLE_WORDS: tuple[tuple[int, str], ...] = (
    (0x1, "idle"),
    (0x2, "app clocks"),
    (0x4, "power cap"),
    (0x8, "HW slowdown"),
    (0x10, "sync boost"),
    (0x20, "SW thermal"),
    (0x40, "HW thermal"),
    (0x80, "HW power brake"),
    (0x100, "display clocks"),
    (0x200, "board limit"),
    (0x400, "reliability"),
)


def decode_throttle(mask: int) -> tuple[str, ...]:
    """Clock-event reason bits as words; an empty tuple means the clocks are not held back."""
    return tuple(word for bit, word in THROTTLE_WORDS if mask & bit)


def dram_peak_bytes_per_s(bus_width_bits: int | None, mem_clock_max_mhz: int | None) -> float | None:
    """Theoretical DRAM bandwidth: bus width x max memory clock x 2 (double data rate) / 8 bits."""
    if not bus_width_bits or not mem_clock_max_mhz:
        return None
    return bus_width_bits * mem_clock_max_mhz * 1e6 * 2 / 8


def pcie_link_bytes_per_s(gen: int | None, width: int | None) -> float | None:
    """One direction's usable PCIe bandwidth for a link generation and width (Gen5 x16 ~ 63 GB/s)."""
    if not gen or not width or gen not in PCIE_LANE_BYTES_PER_S:
        return None
    return PCIE_LANE_BYTES_PER_S[gen] * width
