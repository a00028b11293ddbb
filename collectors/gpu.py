"""The GPU collector: NVML per device (GPM profiling metrics where supported) and the target's share of each GPU.

What NVML really reports on an H100 (ARCHITECTURE.md): the legacy utilisation calls read 0 % under full load
while GPM tells a matmul, a copy loop, PCIe transfers and launch-bound tiny kernels apart. So GPM is used
wherever ``nvmlGpmQueryDeviceSupport`` says yes, the legacy calls elsewhere, and every value names its source.

Rules kept here, each learned from another monitor's bug (research/monitors.md):
- every NVML call goes through one funnel (``Nvml.call``) that returns the value or None with the reason;
- ``pynvml`` is imported on the first sample, not at module import, so starting optitop costs nothing;
- handles are fetched once; devices are listed in PCI bus order (as nvidia-smi does) and named by UUID;
- GPM keeps the previous sample and diffs it against this tick's: ``sample()`` never sleeps;
- the legacy PCIe throughput call blocks ~20 ms, so it runs at most every ``legacy_pcie_every_s``;
- NVML reports host pids: inside a container's PID namespace they cannot be matched, and the sample says so;
- under MIG there is no per-process utilisation: "not available on MIG", never zeros; GPM reads the target's
  GPU instance (``nvmlGpmMigSampleGet`` with the instance id from the v3 process info), not the whole GPU;
- GPM sampling that keeps failing (no permission, counters held by Nsight Compute or DCGM profiling) falls back
  to the legacy readings, labelled "legacy" with the reason, and is retried now and then;
- only the bindings' own errors are expected from a call, and ``NVMLLibraryMismatchError`` (a plain Exception
  the unversioned process calls raise on drivers without the v3 call) is one of them.

``OPTITOP_NVML_SIM`` (test-only): the path of a simulated libnvidia-ml (tests/collectors/nvml_sim.py) to
install under the real bindings; the device script's rehearsal uses it. Unset, nothing changes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from optitop.collectors.procfs import read_status_field
from optitop.config import CollectorContext
from optitop.model import GpuDevice, GpuSample, SourceUnavailable

MIB = 1024 * 1024
#: How often the slow legacy PCIe throughput call (blocks ~20 ms per call) may run.
LEGACY_PCIE_EVERY_S = 5.0
#: GPM needs its two samples more than this far apart (NVML refuses spans of 100 ms or less).
GPM_MIN_SPAN_S = 0.1
#: After this many GPM failures in a row a device falls back to the legacy utilisation readings.
GPM_FALLBACK_AFTER = 3
#: While fallen back, GPM is tried again this often (another profiler may have let go of the counters).
GPM_RETRY_S = 30.0
#: What NVML's v3 process info holds in gpuInstanceId outside MIG.
NO_GPU_INSTANCE = 0xFFFFFFFF
#: Per-process utilisation does not exist on MIG: said instead of a number.
MIG_PROC_UTIL = "not available on MIG"
#: The funnel's reason for a call the driver lacks though the bindings have it (NVMLLibraryMismatchError).
MISMATCH_REASON = "not in this driver (nvidia-ml-py is newer than the driver)"
#: The test-only hook: the path of a simulated libnvidia-ml to install under the real bindings.
NVML_SIM_ENV = "OPTITOP_NVML_SIM"
#: A per-process utilisation sample older than this many seconds no longer counts as the process's share.
PROC_UTIL_MAX_AGE_S = 5.0
#: How often the target's process tree is rescanned for GPU attribution (new workers show up within this).
TREE_EVERY_S = 5.0
#: The inode of the initial PID namespace (PROC_PID_INIT_INO in the kernel): NVML's pids live there.
INIT_PID_NS = "pid:[4026531836]"
#: Where the kernel lists the CPU PMU that host DRAM bandwidth counters would come from.
CPU_PMU_PATH = "/sys/bus/event_source/devices/cpu"
HOST_DRAM_BW_UNAVAILABLE = "host DRAM bandwidth: unavailable (no CPU performance counters on this machine)"
HOST_DRAM_BW_NOT_COLLECTED = (
    "host DRAM bandwidth: not collected (a CPU PMU exists; `perf stat -M memory_bandwidth_total` can measure it)"
)

CUDA_ORDER_NOTE = (
    "CUDA's default device order (fastest first) can differ from this PCI bus order;"
    " match GPUs by UUID, or set CUDA_DEVICE_ORDER=PCI_BUS_ID"
)

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

#: Why GPM sampling failed, by NVML error class, in words with the fix.
GPM_FAILURE_WORDS: dict[str, str] = {
    "NVMLError_InUse": "profiling counters are held by another tool (Nsight Compute, DCGM profiling)",
    "NVMLError_InsufficientResources": "profiling counters are held by another tool (Nsight Compute, DCGM profiling)",
    "NVMLError_NoPermission": "no permission to read the profiling counters (run as root, or load the driver"
    " with NVreg_RestrictProfilingToAdminUsers=0)",
    "NVMLError_NotSupported": "GPM sampling is not supported in this configuration (MIG or vGPU?)",
}
PERSISTENCE_OFF = (
    "persistence mode off: each NVML start costs ~1.5 s and clocks drop between requests"
    " (enable it: nvidia-smi -pm 1, or run nvidia-persistenced)"
)

#: GPM metric name in pynvml (``NVML_GPM_METRIC_<name>``) -> GpuDevice field.
GPM_FIELDS: tuple[tuple[str, str], ...] = (
    ("GRAPHICS_UTIL", "graphics_util_pct"),
    ("SM_UTIL", "sm_util_pct"),
    ("SM_OCCUPANCY", "sm_occupancy_pct"),
    ("ANY_TENSOR_UTIL", "tensor_util_pct"),
    ("HMMA_TENSOR_UTIL", "hmma_util_pct"),
    ("IMMA_TENSOR_UTIL", "imma_util_pct"),
    ("DFMA_TENSOR_UTIL", "dfma_util_pct"),
    ("FP16_UTIL", "fp16_util_pct"),
    ("FP32_UTIL", "fp32_util_pct"),
    ("FP64_UTIL", "fp64_util_pct"),
    ("DRAM_BW_UTIL", "dram_bw_util_pct"),
    ("PCIE_RX_PER_SEC", "pcie_rx_bytes_per_s"),
    ("PCIE_TX_PER_SEC", "pcie_tx_bytes_per_s"),
    ("NVLINK_TOTAL_RX_PER_SEC", "nvlink_rx_bytes_per_s"),
    ("NVLINK_TOTAL_TX_PER_SEC", "nvlink_tx_bytes_per_s"),
)
#: GPM metrics that NVML reports in MiB/s (converted to bytes/s).
GPM_MIB_PER_S = {"PCIE_RX_PER_SEC", "PCIE_TX_PER_SEC", "NVLINK_TOTAL_RX_PER_SEC", "NVLINK_TOTAL_TX_PER_SEC"}


# -- small pure helpers ------------------------------------------------------------------------------------
def host_dram_bw_note(pmu_path: str = CPU_PMU_PATH) -> str:
    """The honest host DRAM bandwidth line: without a CPU PMU there are no counters to read it from."""
    return HOST_DRAM_BW_NOT_COLLECTED if os.path.isdir(pmu_path) else HOST_DRAM_BW_UNAVAILABLE


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


def newest_per_pid(samples: list[Any]) -> dict[int, Any]:
    """NVML's process-utilisation buffer holds several samples per pid: keep the newest of each."""
    out: dict[int, Any] = {}
    for s in samples:
        prev = out.get(int(s.pid))
        if prev is None or int(s.timeStamp) > int(prev.timeStamp):
            out[int(s.pid)] = s
    return out


def in_initial_pid_namespace() -> bool | None:
    """Whether optitop shares the host's PID namespace (where NVML's pids live); None when unknown."""
    try:
        return os.readlink("/proc/self/ns/pid") == INIT_PID_NS
    except OSError:
        return None


def tree_pids(pid: int) -> list[int]:
    """The target and its descendants, from one pass over /proc (no psutil: the GPU check runs without it)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        if len(rest) > 1:
            children.setdefault(int(rest[1]), []).append(int(entry))
    if not os.path.exists(f"/proc/{pid}"):
        return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _import_pynvml() -> ModuleType:
    """Import NVIDIA's bindings on first use (they cost nothing until a GPU is asked about)."""
    try:
        import pynvml
    except ImportError as exc:
        raise SourceUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py") from exc
    sim = os.environ.get(NVML_SIM_ENV)
    if sim:
        _install_simulator(sim)
    return pynvml


def _install_simulator(path: str) -> None:
    """Test-only: load a simulated libnvidia-ml from ``path`` and install it under the real bindings."""
    try:
        spec = importlib.util.spec_from_file_location("optitop_nvml_sim", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"not a Python file: {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        module.install_from_env()
    except Exception as exc:
        raise SourceUnavailable(f"{NVML_SIM_ENV}={path}: cannot load the NVML simulator: {exc}") from exc


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- the funnel --------------------------------------------------------------------------------------------
class GpuLost(Exception):  # noqa: N818 - a state, not a programming error
    """A device fell off the bus (NVML_ERROR_GPU_IS_LOST): it needs a reset; other devices keep going."""


#: NVML error class name -> what it means for the whole library, with the fix (these end the session's NVML).
FATAL_ERRORS: dict[str, str] = {
    "NVMLError_LibraryNotFound": "NVML not found (libnvidia-ml.so.1): no NVIDIA driver on this machine;"
    " install the driver, or run with --no-gpu",
    "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded: `nvidia-smi` says why;"
    " load it (modprobe nvidia) or run with --no-gpu",
    "NVMLError_LibRmVersionMismatch": "NVML library and kernel driver versions differ (driver upgraded without"
    " a reboot?): reboot or reload the nvidia kernel modules",
    "NVMLError_Uninitialized": "NVML lost its initialisation (driver reloaded?): retrying",
}
#: Errors that only doom NVML when nvmlInit itself fails with them (a single call may fail so and others work).
INIT_ERRORS: dict[str, str] = {
    **FATAL_ERRORS,
    "NVMLError_NoPermission": "no permission to open the NVIDIA devices (/dev/nvidia*): run as root or add"
    " the user to the group owning them",
    "NVMLError_OperatingSystem": "the operating system blocked NVML: check the container's device access"
    " (--gpus) or run on the host",
}
#: Error class names whose meaning is "this device or driver cannot give this value" (stable: not retried).
STABLE_ERRORS: dict[str, str] = {
    "NVMLError_NotSupported": "not supported on this GPU",
    "NVMLError_FunctionNotFound": "not in this driver",
    "NVMLError_NoPermission": "needs root (insufficient permissions)",
}


@dataclass
class Nvml:
    """The one place NVML is called: every call returns (value, "") or (None, reason).

    Stable refusals (not supported, function missing) are remembered per (function, device) so they cost
    one call per session; errors that doom the whole library raise SourceUnavailable with the fix; a lost
    GPU raises GpuLost for its device only.
    """

    mod: ModuleType
    refused: dict[tuple[str, int], str] = field(default_factory=dict)
    calls: int = 0
    #: The error class name of the last failed call ("" after a success): callers that must tell
    #: NOT_FOUND ("no samples") from NO_PERMISSION read it.
    last_kind: str = ""

    def call(self, fn: str, *args: Any, dev: int = -1) -> tuple[Any, str]:
        """Call ``pynvml.<fn>(*args)``; ``dev`` keys remembered refusals per device."""
        known = self.refused.get((fn, dev))
        if known is not None:
            self.last_kind = "remembered"
            return None, known
        func: Callable[..., Any] | None = getattr(self.mod, fn, None)
        if func is None:
            reason = "not in this nvidia-ml-py (upgrade it)"
            self.refused[(fn, dev)] = reason
            self.last_kind = "missing"
            return None, reason
        self.calls += 1
        mismatch: Any = getattr(self.mod, "NVMLLibraryMismatchError", None) or ()
        try:
            value = func(*args)
        except self.mod.NVMLError as exc:
            kind = self.last_kind = type(exc).__name__
            if kind == "NVMLError_GpuIsLost":
                raise GpuLost(str(exc)) from exc
            if kind in FATAL_ERRORS:
                raise SourceUnavailable(FATAL_ERRORS[kind]) from exc
            if kind in STABLE_ERRORS:
                self.refused[(fn, dev)] = STABLE_ERRORS[kind]
                return None, STABLE_ERRORS[kind]
            return None, str(exc) or kind
        except mismatch:
            # The unversioned process calls on a driver without their _v3 function: a plain Exception.
            self.last_kind = "NVMLLibraryMismatchError"
            self.refused[(fn, dev)] = MISMATCH_REASON
            return None, MISMATCH_REASON
        self.last_kind = ""
        return value, ""


# -- per-device state ------------------------------------------------------------------------------------
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
class _GpmState:
    """The GPM samples of one device (or one MIG GPU instance) kept between ticks, and its failures."""

    prev: Any = None
    prev_mono: float | None = None
    spare: Any = None
    failures: int = 0
    last_error: str = ""
    fallback: str = ""
    fallback_mono: float | None = None


@dataclass
class _DeviceState:
    """One device's cached handle, static facts and the readings kept between ticks."""

    handle: Any
    static: _Static
    gpm_state: _GpmState = field(default_factory=_GpmState)
    gpm_mig: dict[int, _GpmState] = field(default_factory=dict)
    pcie_legacy: tuple[float | None, float | None] = (None, None)
    pcie_legacy_mono: float | None = None
    proc_util_seen_us: int = 0
    proc_util: dict[int, tuple[float, float, float]] = field(default_factory=dict)  # pid -> (sm, mem, mono)
    lost: str = ""


def _sort_key(dev: _DeviceState) -> tuple[str, int]:
    return (dev.static.bus_id.lower(), dev.static.nvml_index)


class GpuCollector:
    """Samples every NVIDIA GPU through NVML; raises SourceUnavailable with the fix when NVML cannot work."""

    name = "gpu"
    #: Seconds between runs of the slow legacy PCIe throughput call (tests shorten it).
    legacy_pcie_every_s: float = LEGACY_PCIE_EVERY_S
    #: The shortest span GPM metrics are computed over (tests, which never sleep, lower it).
    gpm_min_span_s: float = GPM_MIN_SPAN_S
    #: Seconds between rescans of the target's process tree.
    tree_every_s: float = TREE_EVERY_S

    def __init__(self, ctx: CollectorContext, nvml: ModuleType | None = None) -> None:
        """Prepare to watch ``ctx.pid``; ``nvml`` replaces ``pynvml`` (tests pass a fake). Nothing is loaded yet."""
        self.interval_s = max(ctx.options.interval_s, GPM_MIN_SPAN_S * 2)
        self.pid = ctx.pid
        self._module = nvml
        self._nvml: Nvml | None = None
        self._devices: list[_DeviceState] = []
        self._driver = ""
        self._nvml_version = ""
        self._prev_mono: float | None = None
        self._host_dram_note = host_dram_bw_note()
        self._in_root_ns = in_initial_pid_namespace()
        self._tree: tuple[list[int], dict[int, int], str] = ([], {}, "")
        self._tree_mono: float | None = None
        #: The clock ticks are timed with (tests pass a fake one to place GPM samples exactly).
        self.clock: Callable[[], float] = time.monotonic

    # -- life cycle --------------------------------------------------------------------------------------
    def _load(self) -> Nvml:
        """Import pynvml and initialise NVML once; every failure becomes an actionable SourceUnavailable."""
        if self._nvml is not None:
            return self._nvml
        mod = self._module if self._module is not None else _import_pynvml()
        nvml = Nvml(mod)
        try:
            mod.nvmlInit()
        except mod.NVMLError as exc:
            kind = type(exc).__name__
            raise SourceUnavailable(INIT_ERRORS.get(kind, f"NVML failed to start: {exc}")) from exc
        try:
            self._devices = self._discover(nvml)
        except BaseException:
            with contextlib.suppress(Exception):
                mod.nvmlShutdown()
            raise
        self._driver = _text(nvml.call("nvmlSystemGetDriverVersion")[0] or "")
        self._nvml_version = _text(nvml.call("nvmlSystemGetNVMLVersion")[0] or "")
        self._nvml = nvml
        return nvml

    def _discover(self, nvml: Nvml) -> list[_DeviceState]:
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
                devices.append(_DeviceState(handle=handle, static=self._read_static(nvml, i, handle)))
            except GpuLost as exc:
                why = f"GPU {i} is lost ({exc}): it needs a reset or a reboot"
        if not devices:
            raise SourceUnavailable(f"NVML lists {count} GPUs but none can be opened: {why}")
        devices.sort(key=_sort_key)  # PCI bus order, as nvidia-smi shows them
        return devices

    def _read_static(self, nvml: Nvml, i: int, h: Any) -> _Static:
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
            uuid=_text(nvml.call("nvmlDeviceGetUUID", h, dev=i)[0] or f"index-{i}"),
            name=_text(nvml.call("nvmlDeviceGetName", h, dev=i)[0] or "NVIDIA GPU"),
            bus_id=_text(getattr(pci, "busId", "") or ""),
            gpm=gpm,
            gpm_reason="" if gpm else f"GPM: {gpm_why}",
            bus_width_bits=nvml.call("nvmlDeviceGetMemoryBusWidth", h, dev=i)[0],
            sm_clock_max_mhz=nvml.call("nvmlDeviceGetMaxClockInfo", h, m.NVML_CLOCK_SM, dev=i)[0],
            mem_clock_max_mhz=nvml.call("nvmlDeviceGetMaxClockInfo", h, m.NVML_CLOCK_MEM, dev=i)[0],
            pcie_gen_max=nvml.call("nvmlDeviceGetMaxPcieLinkGeneration", h, dev=i)[0],
            pcie_width_max=nvml.call("nvmlDeviceGetMaxPcieLinkWidth", h, dev=i)[0],
            power_limit_w=None if limit is None else limit / 1000.0,
            nvlink_present=self._nvlink_present(nvml, h, i),
            persistence_mode=None if persistence is None else int(persistence) == int(m.NVML_FEATURE_ENABLED),
        )

    def _nvlink_present(self, nvml: Nvml, h: Any, i: int) -> bool | None:
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

    def close(self) -> None:
        """Free the GPM samples and shut NVML down."""
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        for dev in self._devices:
            states = [dev.gpm_state, *dev.gpm_mig.values()]
            for s in [x for st in states for x in (st.prev, st.spare)]:
                if s is not None:
                    with contextlib.suppress(Exception):
                        nvml.mod.nvmlGpmSampleFree(s)
        self._devices = []
        with contextlib.suppress(Exception):
            nvml.mod.nvmlShutdown()

    def describe(self) -> str:
        """The doctor line: devices, driver and whether GPM works on each."""
        gpm = sum(1 for d in self._devices if d.static.gpm and not d.gpm_state.fallback)
        names = ", ".join(sorted({d.static.name for d in self._devices}))
        line = (
            f"NVML {self._nvml_version or '?'}, driver {self._driver or '?'}: {len(self._devices)} GPU(s) ({names});"
            f" GPM profiling metrics on {gpm} of {len(self._devices)}"
        )
        for d in self._devices:
            st = d.gpm_state
            if d.static.gpm and (st.fallback or st.last_error):
                what = "legacy utilisation instead" if st.fallback else f"legacy after {GPM_FALLBACK_AFTER} failures"
                line += f"; GPU {d.static.nvml_index}: GPM sampling fails: {st.fallback or st.last_error} ({what})"
        off = [str(d.static.nvml_index) for d in self._devices if d.static.persistence_mode is False]
        if off:
            line += f"; warning: GPU {', '.join(off)}: {PERSISTENCE_OFF}"
        return line

    # -- one tick ----------------------------------------------------------------------------------------
    def sample(self) -> GpuSample:
        """Read every device once; the first tick has no GPM values (GPM needs two samples)."""
        nvml = self._load()
        ts = time.time()
        mono = self.clock()
        dt = None if self._prev_mono is None else mono - self._prev_mono
        self._prev_mono = mono
        pids, host_pids, attribution = self._target_tree(mono)
        try:
            devices = [self._read_device(nvml, d, mono, host_pids) for d in self._devices]
        except SourceUnavailable:
            self.close()  # re-initialise on the next try (the session backs off)
            raise
        if all(d.lost for d in self._devices):
            reasons = self._devices[0].lost if self._devices else ""
            self.close()
            raise SourceUnavailable(
                f"every GPU is lost ({reasons}): the GPU needs a reset or a reboot; see dmesg (Xid)"
            )
        used = tuple(d.index for d in devices if d.target_pids)
        if not attribution:
            attribution = self._attribution_hint(pids, devices)
        return GpuSample(
            ts_s=ts,
            mono_s=mono,
            dt_s=dt,
            devices=tuple(devices),
            driver_version=self._driver,
            nvml_version=self._nvml_version,
            target_gpu_indices=used,
            attribution_note=attribution,
            host_dram_bw_note=self._host_dram_note,
            cuda_order_note=CUDA_ORDER_NOTE if len(devices) > 1 else "",
        )

    # -- the target tree and pid namespaces ------------------------------------------------------------------
    def _target_tree(self, mono: float) -> tuple[list[int], dict[int, int], str]:
        """The target tree with its NVML pid mapping, rescanned every TREE_EVERY_S (a /proc scan is not free)."""
        stale = self._tree_mono is None or mono - self._tree_mono >= self.tree_every_s
        if stale or not os.path.exists(f"/proc/{self.pid}"):
            pids = tree_pids(self.pid)
            host_pids, note = self._translate(pids)
            self._tree, self._tree_mono = (pids, host_pids, note), mono
        return self._tree

    def _translate(self, pids: list[int]) -> tuple[dict[int, int], str]:
        """Map the host pids NVML reports to the target tree's pids, with a note when that is impossible.

        NVML lives in the initial PID namespace. On the host, /proc pids are host pids. Inside a container
        the leftmost NSpid entry is this namespace's pid, and host pids are simply not visible: attribution
        is impossible, and the note says how to make it possible.
        """
        if not pids:
            return {}, f"the target (pid {self.pid}) has exited: no GPU attribution"
        mapping: dict[int, int] = {}
        for p in pids:
            ns = read_status_field(p, "NSpid")
            ids = [int(x) for x in ns.split()] if ns else [p]
            mapping[ids[0]] = p  # the pid in /proc's own namespace: the host pid when optitop runs on the host
        if self._in_root_ns is False:
            # Matching anyway would pair unrelated processes that happen to share a number.
            return {}, (
                "optitop runs inside a PID namespace (a container): NVML reports host pids, which this /proc"
                " cannot translate (NSpid shows no host pid), so the target's GPU use cannot be attributed;"
                " run optitop on the host or give the container the host's PID namespace (--pid=host)"
            )
        return mapping, ""

    def _attribution_hint(self, pids: list[int], devices: list[GpuDevice]) -> str:
        if any(d.target_pids for d in devices):
            return ""
        if all(d.gpu_procs is None for d in devices):
            return "NVML would not list the GPU processes: no attribution"
        others = sum(d.gpu_procs or 0 for d in devices)
        return f"the target tree ({len(pids)} processes) uses no GPU ({others} other GPU processes)"

    # -- one device ------------------------------------------------------------------------------------------
    def _read_device(self, nvml: Nvml, dev: _DeviceState, mono: float, host_pids: dict[int, int]) -> GpuDevice:
        if dev.lost:
            return self._lost_device(dev)
        try:
            return self._read_live(nvml, dev, mono, host_pids)
        except GpuLost as exc:
            dev.lost = str(exc) or "GPU is lost"
            return self._lost_device(dev)

    def _lost_device(self, dev: _DeviceState) -> GpuDevice:
        s = dev.static
        values: dict[str, Any] = {name: None for _, name in GPM_FIELDS}
        return GpuDevice(
            index=s.nvml_index,
            uuid=s.uuid,
            name=s.name,
            util_source="gpm" if s.gpm and not dev.gpm_state.fallback else "legacy",
            legacy_gpu_util_pct=None,
            legacy_mem_util_pct=None,
            pcie_source="",
            dram_peak_bytes_per_s=dram_peak_bytes_per_s(s.bus_width_bits, s.mem_clock_max_mhz),
            dram_bytes_per_s=None,
            pcie_link_bytes_per_s=None,
            pcie_gen=None,
            pcie_width=None,
            pcie_gen_max=s.pcie_gen_max,
            pcie_width_max=s.pcie_width_max,
            mem_used_bytes=None,
            mem_total_bytes=None,
            power_w=None,
            power_limit_w=s.power_limit_w,
            temperature_c=None,
            sm_clock_mhz=None,
            sm_clock_max_mhz=s.sm_clock_max_mhz,
            mem_clock_mhz=None,
            mem_clock_max_mhz=s.mem_clock_max_mhz,
            throttle_reasons=(),
            mig_mode=None,
            target_mem_bytes=None,
            target_sm_pct=None,
            target_mem_pct=None,
            target_pids=(),
            proc_util_note="GPU lost",
            pci_bus_id=s.bus_id,
            nvlink_present=s.nvlink_present,
            note=f"GPU lost ({dev.lost}): it needs a reset (nvidia-smi -r) or a reboot; see dmesg for Xid errors",
            **values,
        )

    def _read_live(self, nvml: Nvml, dev: _DeviceState, mono: float, host_pids: dict[int, int]) -> GpuDevice:
        s = dev.static
        h = dev.handle
        m = nvml.mod
        i = s.nvml_index
        missing: list[str] = []

        def get(what: str, fn: str, *args: Any) -> Any:
            value, why = nvml.call(fn, h, *args, dev=i)
            if value is None:
                missing.append(f"{what}: {why}")
            return value

        procs, instances = self._procs(nvml, h, i, missing)
        target_pids = tuple(sorted({host_pids[p] for p in (procs or {}) if p in host_pids}))
        mig = self._mig(nvml, h, i)
        gpm: dict[str, float | None] = {}
        gpu_instance: int | None = None
        state = dev.gpm_state
        if s.gpm:
            gpm, gpu_instance, state = self._gpm_readings(nvml, dev, mono, missing, mig, instances, host_pids)
        elif s.gpm_reason:
            missing.append(s.gpm_reason)
        use_gpm = s.gpm and not state.fallback
        util_note = ""
        if state.fallback:
            util_note = (
                f"GPM sampling failed {state.failures}× in a row: {state.fallback};"
                f" showing the legacy readings (GPM retried every {GPM_RETRY_S:g} s)"
            )
        util = get("legacy utilisation", "nvmlDeviceGetUtilizationRates")
        mem = get("memory", "nvmlDeviceGetMemoryInfo")
        power = get("power", "nvmlDeviceGetPowerUsage")
        temp = get("temperature", "nvmlDeviceGetTemperature", m.NVML_TEMPERATURE_GPU)
        sm_clock = get("SM clock", "nvmlDeviceGetClockInfo", m.NVML_CLOCK_SM)
        mem_clock = get("memory clock", "nvmlDeviceGetClockInfo", m.NVML_CLOCK_MEM)
        gen = get("PCIe generation", "nvmlDeviceGetCurrPcieLinkGeneration")
        width = get("PCIe width", "nvmlDeviceGetCurrPcieLinkWidth")
        throttle = self._throttle(nvml, h, i, missing)
        if use_gpm:
            pcie_rx, pcie_tx, pcie_source = gpm.get("pcie_rx_bytes_per_s"), gpm.get("pcie_tx_bytes_per_s"), "gpm"
        else:
            pcie_rx, pcie_tx, pcie_source = self._legacy_pcie(nvml, dev, mono, missing)
        target_mem: int | None = None
        if procs is not None and host_pids:
            known = [procs[p] for p in procs if p in host_pids]
            target_mem = sum(v for v in known if v is not None) if all(v is not None for v in known) else None
        sm_share, mem_share, proc_note = self._proc_util(nvml, dev, mono, mig, host_pids, target_pids)
        peak = dram_peak_bytes_per_s(s.bus_width_bits, s.mem_clock_max_mhz)
        dram_util = gpm.get("dram_bw_util_pct")
        link = pcie_link_bytes_per_s(s.pcie_gen_max or gen, s.pcie_width_max or width)
        values: dict[str, Any] = {name: gpm.get(name) for _, name in GPM_FIELDS}
        values.update(pcie_rx_bytes_per_s=pcie_rx, pcie_tx_bytes_per_s=pcie_tx)
        if not s.nvlink_present:
            values.update(nvlink_rx_bytes_per_s=None, nvlink_tx_bytes_per_s=None)
        return GpuDevice(
            index=i,
            uuid=s.uuid,
            name=s.name,
            util_source="gpm" if use_gpm else "legacy",
            legacy_gpu_util_pct=None if util is None else float(util.gpu),
            legacy_mem_util_pct=None if util is None else float(util.memory),
            pcie_source=pcie_source,
            dram_peak_bytes_per_s=peak,
            dram_bytes_per_s=None if peak is None or dram_util is None else peak * dram_util / 100.0,
            pcie_link_bytes_per_s=link,
            pcie_gen=gen,
            pcie_width=width,
            pcie_gen_max=s.pcie_gen_max,
            pcie_width_max=s.pcie_width_max,
            mem_used_bytes=None if mem is None else int(mem.used),
            mem_total_bytes=None if mem is None else int(mem.total),
            power_w=None if power is None else power / 1000.0,
            power_limit_w=s.power_limit_w,
            temperature_c=None if temp is None else float(temp),
            sm_clock_mhz=sm_clock,
            sm_clock_max_mhz=s.sm_clock_max_mhz,
            mem_clock_mhz=mem_clock,
            mem_clock_max_mhz=s.mem_clock_max_mhz,
            throttle_reasons=throttle,
            mig_mode=mig,
            target_mem_bytes=target_mem,
            target_sm_pct=sm_share,
            target_mem_pct=mem_share,
            target_pids=target_pids,
            proc_util_note=proc_note,
            pci_bus_id=s.bus_id,
            nvlink_present=s.nvlink_present,
            gpu_procs=None if procs is None else len(procs),
            missing=tuple(missing),
            util_note=util_note,
            persistence_mode=s.persistence_mode,
            gpu_instance_id=gpu_instance,
            **values,
        )

    # -- GPM ---------------------------------------------------------------------------------------------
    def _gpm_readings(
        self,
        nvml: Nvml,
        dev: _DeviceState,
        mono: float,
        missing: list[str],
        mig: bool | None,
        instances: dict[int, int],
        host_pids: dict[int, int],
    ) -> tuple[dict[str, float | None], int | None, _GpmState]:
        """GPM values of the whole GPU, or under MIG of the GPU instance the target's processes run in.

        A device whose GPM sampling keeps failing is in fallback: nothing is read until a retry is due.
        """
        st = dev.gpm_state
        if st.fallback and st.fallback_mono is not None and mono - st.fallback_mono < GPM_RETRY_S:
            return {}, None, st
        if mig:
            ours = sorted({gi for p, gi in instances.items() if p in host_pids and gi != NO_GPU_INSTANCE})
            if ours:
                gi = ours[0]
                if len(ours) > 1:
                    missing.append(f"GPM: the target spans GPU instances {ours}; showing instance {gi}")
                mig_state = dev.gpm_mig.setdefault(gi, _GpmState())
                return self._gpm(nvml, dev, mig_state, mono, missing, gi), gi, mig_state
            missing.append("GPM: MIG is on and the target runs in no GPU instance here: whole-GPU readings")
        return self._gpm(nvml, dev, st, mono, missing, None), None, st

    def _gpm_failed(self, st: _GpmState, kind: str, why: str, mono: float) -> None:
        """Count a failed GPM sample; after GPM_FALLBACK_AFTER in a row the device reads legacy values."""
        words = GPM_FAILURE_WORDS.get(kind) or (st.last_error if kind == "remembered" and st.last_error else why)
        st.last_error = words
        st.failures += 1
        if st.failures >= GPM_FALLBACK_AFTER and not st.fallback:
            st.fallback = words
        if st.fallback:
            st.fallback_mono = mono

    def _gpm(
        self, nvml: Nvml, dev: _DeviceState, st: _GpmState, mono: float, missing: list[str], gi: int | None
    ) -> dict[str, float | None]:
        """GPM metrics between the previous tick's sample and this one's; empty on the first tick."""
        m = nvml.mod
        i = dev.static.nvml_index
        # NVML computes no metrics over 100 ms or less: equal to the limit is too soon too.
        too_soon = st.prev_mono is not None and mono - st.prev_mono <= self.gpm_min_span_s
        if st.prev is not None and too_soon and not st.fallback:
            missing.append(f"GPM: samples too close together (≤ {self.gpm_min_span_s:g} s)")
            return {}  # keep the older sample: the next tick diffs over a longer span
        cur = st.spare
        if cur is None:
            cur, why = nvml.call("nvmlGpmSampleAlloc", dev=i)
            if cur is None:
                missing.append(f"GPM sample: {why}")
                return {}
        if gi is None:
            got, why = nvml.call("nvmlGpmSampleGet", dev.handle, cur, dev=i)
        else:
            got, why = nvml.call("nvmlGpmMigSampleGet", dev.handle, gi, cur, dev=i)
        if got is None:
            st.spare = cur
            self._gpm_failed(st, nvml.last_kind, why, mono)
            missing.append(f"GPM sample: {st.last_error}")
            return {}
        if st.fallback:  # GPM answers again: back to it (values from the next tick)
            st.fallback, st.fallback_mono, st.failures, st.last_error = "", None, 0, ""
            st.prev, cur = cur, st.prev
            st.spare, st.prev_mono = cur, mono
            missing.append("GPM: sampling works again (values from the next tick)")
            return {}
        prev, st.prev, st.prev_mono, st.spare = st.prev, cur, mono, st.prev
        if prev is None:
            missing.append("GPM: first sample (values from the next tick)")
            return {}
        req = m.c_nvmlGpmMetricsGet_t()
        req.version = m.NVML_GPM_METRICS_GET_VERSION
        req.numMetrics = len(GPM_FIELDS)
        req.sample1 = prev
        req.sample2 = cur
        for k, (metric, _) in enumerate(GPM_FIELDS):
            req.metrics[k].metricId = getattr(m, f"NVML_GPM_METRIC_{metric}")
        res, why = nvml.call("nvmlGpmMetricsGet", req, dev=i)
        if res is None:
            self._gpm_failed(st, nvml.last_kind, why, mono)
            missing.append(f"GPM metrics: {why}")
            return {}
        st.failures, st.last_error = 0, ""
        out: dict[str, float | None] = {}
        for k, (metric, name) in enumerate(GPM_FIELDS):
            entry = res.metrics[k]
            if int(entry.nvmlReturn) != 0:
                out[name] = None
                missing.append(f"GPM {metric}: NVML error {int(entry.nvmlReturn)}")
                continue
            value = float(entry.value)
            out[name] = value * MIB if metric in GPM_MIB_PER_S else value
        return out

    # -- the other per-device reads --------------------------------------------------------------------------
    def _throttle(self, nvml: Nvml, h: Any, i: int, missing: list[str]) -> tuple[str, ...]:
        mask, why = nvml.call("nvmlDeviceGetCurrentClocksEventReasons", h, dev=i)
        if mask is None:
            mask, why = nvml.call("nvmlDeviceGetCurrentClocksThrottleReasons", h, dev=i)
        if mask is None:
            missing.append(f"clock-event reasons: {why}")
            return ()
        return decode_throttle(int(mask))

    def _mig(self, nvml: Nvml, h: Any, i: int) -> bool | None:
        modes, why = nvml.call("nvmlDeviceGetMigMode", h, dev=i)
        if modes is None:
            return False if why == STABLE_ERRORS["NVMLError_NotSupported"] else None
        return int(modes[0]) == int(getattr(nvml.mod, "NVML_DEVICE_MIG_ENABLE", 1))

    def _legacy_pcie(
        self, nvml: Nvml, dev: _DeviceState, mono: float, missing: list[str]
    ) -> tuple[float | None, float | None, str]:
        """The legacy PCIe counter (KB/s over a 20 ms window, blocking ~20 ms) at most every few seconds."""
        m = nvml.mod
        i = dev.static.nvml_index
        due = dev.pcie_legacy_mono is None or mono - dev.pcie_legacy_mono >= self.legacy_pcie_every_s
        if due:
            rx, why_rx = nvml.call("nvmlDeviceGetPcieThroughput", dev.handle, m.NVML_PCIE_UTIL_RX_BYTES, dev=i)
            tx, why_tx = nvml.call("nvmlDeviceGetPcieThroughput", dev.handle, m.NVML_PCIE_UTIL_TX_BYTES, dev=i)
            if rx is None or tx is None:
                missing.append(f"PCIe throughput: {why_rx or why_tx}")
            dev.pcie_legacy = (None if rx is None else rx * 1024.0, None if tx is None else tx * 1024.0)
            dev.pcie_legacy_mono = mono
        source = f"legacy (20 ms window, every {self.legacy_pcie_every_s:g} s)"
        return dev.pcie_legacy[0], dev.pcie_legacy[1], source

    def _procs(
        self, nvml: Nvml, h: Any, i: int, missing: list[str]
    ) -> tuple[dict[int, int | None] | None, dict[int, int]]:
        """Host pid -> GPU memory bytes of every compute and graphics process (None when NVML refuses), and
        host pid -> the MIG GPU instance it runs in (from the v3 process info)."""
        out: dict[int, int | None] = {}
        instances: dict[int, int] = {}
        ok = False
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            procs, why = nvml.call(fn, h, dev=i)
            if procs is None and why == MISMATCH_REASON:
                procs, why = nvml.call(fn + "_v2", h, dev=i)  # a driver older than the bindings' v3 default
            if procs is None:
                missing.append(f"{fn[len('nvmlDeviceGet') :]}: {why}")
                continue
            ok = True
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                pid = int(p.pid)
                gi = getattr(p, "gpuInstanceId", None)
                if gi is not None:
                    instances.setdefault(pid, int(gi))
                if pid in out and out[pid] is not None and used is not None:
                    out[pid] = max(int(out[pid] or 0), int(used))
                elif pid not in out:
                    out[pid] = None if used is None else int(used)
        return (out if ok else None), instances

    def _proc_util(
        self,
        nvml: Nvml,
        dev: _DeviceState,
        mono: float,
        mig: bool | None,
        host_pids: dict[int, int],
        target_pids: tuple[int, ...],
    ) -> tuple[float | None, float | None, str]:
        """The target's SM and memory share from NVML's per-process sample buffer (newest sample per pid)."""
        if mig:
            return None, None, MIG_PROC_UTIL
        i = dev.static.nvml_index
        since = dev.proc_util_seen_us or int((time.time() - 2 * self.interval_s) * 1e6)
        samples, why = nvml.call("nvmlDeviceGetProcessUtilization", dev.handle, since, dev=i)
        if samples is None and nvml.last_kind == "NVMLError_NotFound":
            samples, why = [], ""  # no process ran a kernel since `since`
        if samples is None:
            return None, None, f"per-process utilisation: {why}"
        for pid, s in newest_per_pid(list(samples)).items():
            dev.proc_util[pid] = (float(s.smUtil), float(s.memUtil), mono)
            dev.proc_util_seen_us = max(dev.proc_util_seen_us, int(s.timeStamp))
        dev.proc_util = {p: v for p, v in dev.proc_util.items() if mono - v[2] <= PROC_UTIL_MAX_AGE_S}
        if not target_pids:
            return (0.0, 0.0, "") if host_pids else (None, None, "")
        ours = [v for p, v in dev.proc_util.items() if p in host_pids]
        if not ours:
            return None, None, f"no per-process sample for {PROC_UTIL_MAX_AGE_S:g} s"
        return min(100.0, sum(v[0] for v in ours)), min(100.0, sum(v[1] for v in ours)), ""
