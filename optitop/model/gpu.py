"""Every GPU and the target's share of each, plus the values every reader derives from them, computed here once.

The NVML collector (``collectors/gpu.py``) produces these; the verdict, the GPU and memory panes, compare, the
exporter and the GPU-dip stack dump read them. "How busy is this GPU" and "which GPUs are the target's" have
one answer each, below, so the same window never reads busy in one place and idle in another.
"""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model.core import Sample, sum_known


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU over the last tick. Utilisations are 0..100 %, None when unknown (never 0 for missing).

    ``util_source`` says where the utilisation numbers came from: "gpm" (profiling counters, Hopper and newer)
    or "legacy" (``nvmlDeviceGetUtilizationRates``: the share of time a kernel / a memory access was in
    flight, which reads 0 % under full load on some machines). ``dram_bytes_per_s`` is DRAM_BW_UTIL times the
    peak derived from bus width and max memory clock: an estimate. ``missing`` lists "what: why" for values
    NVML would not give; ``note`` carries a device-level problem (a lost GPU). ``util_note`` says why a GPM
    device reads "legacy" (GPM sampling kept failing). ``gpu_instance_id`` names the MIG GPU instance the
    GPM numbers are of (the target's), None for the whole GPU.
    """

    index: int
    uuid: str
    name: str
    util_source: str
    sm_util_pct: float | None
    sm_occupancy_pct: float | None
    tensor_util_pct: float | None
    hmma_util_pct: float | None
    imma_util_pct: float | None
    dfma_util_pct: float | None
    fp16_util_pct: float | None
    fp32_util_pct: float | None
    fp64_util_pct: float | None
    dram_bw_util_pct: float | None
    graphics_util_pct: float | None
    legacy_gpu_util_pct: float | None
    legacy_mem_util_pct: float | None
    pcie_rx_bytes_per_s: float | None
    pcie_tx_bytes_per_s: float | None
    pcie_source: str
    nvlink_rx_bytes_per_s: float | None
    nvlink_tx_bytes_per_s: float | None
    dram_peak_bytes_per_s: float | None
    dram_bytes_per_s: float | None
    pcie_link_bytes_per_s: float | None
    pcie_gen: int | None
    pcie_width: int | None
    pcie_gen_max: int | None
    pcie_width_max: int | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    power_w: float | None
    power_limit_w: float | None
    temperature_c: float | None
    sm_clock_mhz: int | None
    sm_clock_max_mhz: int | None
    mem_clock_mhz: int | None
    mem_clock_max_mhz: int | None
    throttle_reasons: tuple[str, ...]
    mig_mode: bool | None
    target_mem_bytes: int | None
    target_sm_pct: float | None
    target_mem_pct: float | None
    target_pids: tuple[int, ...]
    proc_util_note: str
    pci_bus_id: str = ""
    nvlink_present: bool | None = None
    gpu_procs: int | None = None
    missing: tuple[str, ...] = ()
    note: str = ""
    util_note: str = ""
    persistence_mode: bool | None = None
    gpu_instance_id: int | None = None


def pcie_bytes_per_s(device: GpuDevice) -> float | None:
    """PCIe traffic of one GPU, both directions together (None only when neither direction is known): what the
    verdict's PCIe duty, the memory pane and compare read."""
    return sum_known((device.pcie_rx_bytes_per_s, device.pcie_tx_bytes_per_s))


@dataclass(frozen=True, slots=True)
class GpuSample(Sample):
    """Every GPU (PCI bus order) and where the target runs on them.

    ``target_gpu_indices`` lists the GPUs that run a process of the target tree; ``attribution_note`` says
    why that may be incomplete (a PID namespace NVML's host pids cannot be matched across, the target using
    no GPU). ``host_dram_bw_note`` is the host DRAM bandwidth line the memory pane prints.
    """

    devices: tuple[GpuDevice, ...]
    driver_version: str
    nvml_version: str
    target_gpu_indices: tuple[int, ...]
    attribution_note: str
    host_dram_bw_note: str
    cuda_order_note: str = ""

    def target_devices(self) -> TargetDevices:
        """The GPUs the target runs on, by one rule for every reader (see ``TargetDevices``)."""
        return target_devices(self)

    def target_busy_pct(self) -> float | None:
        """The busiest of the target's GPUs by ``gpu_busy_pct``: one saturated GPU is a bottleneck even when its
        neighbour idles. None when no device has a reading."""
        values = [v for v in (gpu_busy_pct(d) for d in self.target_devices().devices) if v is not None]
        return max(values) if values else None


def gpu_busy_pct(device: GpuDevice) -> float | None:
    """How busy a GPU is, by one policy for the verdict, the pane, compare, the GPU-dip dump and the exporter.

    GPM's SM activity where the device reads GPM; NVML's legacy utilisation only where it does not (``util_source``
    "legacy": no GPM, or GPM failed and fell back). Never the legacy number on a GPM device: on Hopper it read 0 %
    during a busy matmul (ARCHITECTURE.md), so a GPM device without an SM reading is unknown, not idle.
    """
    if device.util_source == "legacy":
        return device.legacy_gpu_util_pct
    return device.sm_util_pct


@dataclass(frozen=True, slots=True)
class TargetDevices:
    """The GPUs a reader should judge for the target, and whether that attribution is known.

    Attributes:
        devices: the target's GPUs; every GPU when it is not known which are the target's.
        known: True when NVML named the target's GPUs (its per-process lists, or the target's memory or SM share
            on a device); False when NVML could see per-process numbers and the target held none (every device is
            judged, and the target uses no GPU as far as NVML can tell); None when NVML could not tell at all
            (a container's PID namespace hides the host pids).
    """

    devices: tuple[GpuDevice, ...]
    known: bool | None


def target_devices(sample: GpuSample) -> TargetDevices:
    """Which GPUs are the target's: the verdict, the panes, compare, the exporter and the GPU-dip dump all ask here.

    NVML's per-process lists name the devices holding the target's context (``target_gpu_indices``); failing that,
    a device where the target holds memory or SM time; failing that, every device, with ``known`` saying why.
    """
    devices = sample.devices
    wanted = set(sample.target_gpu_indices)
    if wanted:
        chosen = tuple(d for d in devices if d.index in wanted)
        return TargetDevices(chosen or devices, True)
    used = tuple(d for d in devices if (d.target_mem_bytes or 0) > 0 or (d.target_sm_pct or 0) > 0)
    if used:
        return TargetDevices(used, True)
    if any(d.target_mem_bytes is not None for d in devices):
        return TargetDevices(devices, False)
    return TargetDevices(devices, None)
