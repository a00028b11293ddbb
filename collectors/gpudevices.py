"""The GPUs NVML shows and what is kept of each: static facts read once, readings kept between ticks.

Handles are fetched once; devices are listed in PCI bus order (as nvidia-smi does) and named by UUID, because
CUDA's default order (fastest first) can differ. A device that cannot be opened (no permission, lost) is left
out and the others are shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optitop.collectors.nvml import STABLE_ERRORS, GpuLost, Nvml, as_text
from optitop.model import SourceUnavailable


@dataclass
class _Static:
    """What does not change during a session, read once per device."""

    nvml_index: int
    uuid: str
    name: str
    bus_id: str
    gpm: bool
    gpm_reason: str
    bus_width_bits: int | None
    sm_clock_max_mhz: int | None
    mem_clock_max_mhz: int | None
    pcie_gen_max: int | None
    pcie_width_max: int | None
    power_limit_w: float | None
    nvlink_present: bool | None
    persistence_mode: bool | None = None


@dataclass
class GpmState:
    """The GPM samples of one device (or one MIG GPU instance) kept between ticks, and its failures."""

    prev: Any = None
    prev_mono: float | None = None
    spare: Any = None
    failures: int = 0
    last_error: str = ""
    fallback: str = ""
    fallback_mono: float | None = None


@dataclass
class DeviceState:
    """One device's cached handle, static facts and the readings kept between ticks."""

    handle: Any
    static: _Static
    gpm_state: GpmState = field(default_factory=GpmState)
    gpm_mig: dict[int, GpmState] = field(default_factory=dict)
    pcie_legacy: tuple[float | None, float | None] = (None, None)
    pcie_legacy_mono: float | None = None
    proc_util_seen_us: int = 0
    proc_util: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # pid -> (sm, mem, mono)
    lost: str = ""


def _sort_key(dev: DeviceState) -> tuple[str, int]:
    return (dev.static.bus_id.lower(), dev.static.nvml_index)


# -- finding the devices ------------------------------------------------------------------------------------
def discover_devices(nvml: Nvml) -> list[DeviceState]:
    """Every device NVML can open, in PCI bus order; SourceUnavailable with the fix when there is none."""
    count, why = nvml.call("nvmlDeviceGetCount")
    if count is None:
        raise SourceUnavailable(f"NVML cannot count the GPUs: {why}")
    if count == 0:
        raise SourceUnavailable(
            "NVML found no GPUs (driver loaded, no device visible): in a container, pass --gpus"
            " / NVIDIA_VISIBLE_DEVICES; on the host, check `nvidia-smi`"
        )
    devices = []
    for i in range(int(count)):
        try:
            handle, why = nvml.call("nvmlDeviceGetHandleByIndex", i)
            if handle is None:
                continue  # e.g. no permission on one device: show the others
            devices.append(DeviceState(handle=handle, static=read_static(nvml, i, handle)))
        except GpuLost as exc:
            why = f"GPU {i} is lost ({exc}): it needs a reset or a reboot"
    if not devices:
        raise SourceUnavailable(f"NVML lists {count} GPUs but none can be opened: {why}")
    devices.sort(key=_sort_key)  # PCI bus order, as nvidia-smi shows them
    return devices


def read_static(nvml: Nvml, i: int, h: Any) -> _Static:
    """The facts of device ``i`` (handle ``h``) that hold for the whole session."""
    m = nvml.mod
    pci, _ = nvml.call("nvmlDeviceGetPciInfo", h, dev=i)
    support, gpm_why = nvml.call("nvmlGpmQueryDeviceSupport", h, dev=i)
    gpm = bool(support is not None and getattr(support, "isSupportedDevice", 0))
    if support is not None and not gpm:
        gpm_why = "GPM not supported on this GPU (Hopper or newer needed)"
    limit, _ = nvml.call("nvmlDeviceGetEnforcedPowerLimit", h, dev=i)
    persistence, _ = nvml.call("nvmlDeviceGetPersistenceMode", h, dev=i)
    return _Static(
        nvml_index=i,
        uuid=as_text(nvml.call("nvmlDeviceGetUUID", h, dev=i)[0] or f"index-{i}"),
        name=as_text(nvml.call("nvmlDeviceGetName", h, dev=i)[0] or "NVIDIA GPU"),
        bus_id=as_text(getattr(pci, "busId", "") or ""),
        gpm=gpm,
        gpm_reason="" if gpm else f"GPM: {gpm_why}",
        bus_width_bits=nvml.call("nvmlDeviceGetMemoryBusWidth", h, dev=i)[0],
        sm_clock_max_mhz=nvml.call("nvmlDeviceGetMaxClockInfo", h, m.NVML_CLOCK_SM, dev=i)[0],
        mem_clock_max_mhz=nvml.call("nvmlDeviceGetMaxClockInfo", h, m.NVML_CLOCK_MEM, dev=i)[0],
        pcie_gen_max=nvml.call("nvmlDeviceGetMaxPcieLinkGeneration", h, dev=i)[0],
        pcie_width_max=nvml.call("nvmlDeviceGetMaxPcieLinkWidth", h, dev=i)[0],
        power_limit_w=None if limit is None else limit / 1000.0,
        nvlink_present=nvlink_present(nvml, h, i),
        persistence_mode=None if persistence is None else int(persistence) == int(m.NVML_FEATURE_ENABLED),
    )


def nvlink_present(nvml: Nvml, h: Any, i: int) -> bool | None:
    """Whether any NvLink link is active: ``nvmlDeviceGetNvLinkState`` answers 0 (inactive) or 1 per link."""
    top = int(getattr(nvml.mod, "NVML_NVLINK_MAX_LINKS", 18))
    seen = False
    for link in range(top):
        state, why = nvml.call("nvmlDeviceGetNvLinkState", h, link, dev=i)
        if state is None:
            if link == 0 and why == STABLE_ERRORS["NVMLError_NotSupported"]:
                return False
            break  # past the last link (invalid argument) or a transient error
        seen = True
        if int(state) == 1:
            return True
    return False if seen else None
