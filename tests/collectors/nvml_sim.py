"""A simulated ``libnvidia-ml`` under the REAL nvidia-ml-py bindings: only the C functions are pretend.

CI has no GPU. Instead of a look-alike ``pynvml`` module, this installs a stand-in for the C library as
``pynvml.nvmlLib``, so every real wrapper runs unchanged: the ctypes structs, ``byref`` out-parameters, the
two-call "how many? now fill this array" patterns, ``throwOnVersionMismatch``, and the mapping of
``NVML_ERROR_*`` return codes onto ``NVMLError_*`` classes. A bug in how optitop calls the bindings (a wrong
argument, an exception class it does not expect) shows up here as it would on a GPU machine.

Each simulated C function receives the ctypes arguments the bindings pass and writes its answers into the
caller's memory through ``ctypes.cast`` (``byref(x)`` and pointers alike), returning an ``nvmlReturn_t``.
The device modelled is an H100/H200-like chip: GPM support and samples whose metrics follow a workload
scenario, MIG on/off with GPU instances (``nvmlGpmMigSampleGet``), v3 process lists carrying the GPU
instance id, per-process utilisation samples, NvLink link states 0/1, clock-event reasons, persistence
mode, PCIe throughput, and any error code on demand (``errors``) or missing function (``missing``).

Use ``make_sim(gpus)``: it returns a module proxy (the real ``pynvml`` plus ``.state`` and ``.sim``) to pass
to ``GpuCollector(nvml=...)``; touching it (re)installs its library as ``pynvml.nvmlLib``. ``uninstall()``
puts the bindings back as they were (no library loaded).

The same simulator stands in for a GPU in the device script's rehearsal (benchmarks/device_check.py):
with ``OPTITOP_NVML_SIM=<path of this file>`` set, optitop's GPU collector calls ``install_from_env()``
(a test-only hook; the product ignores it unless the variable is set). ``OPTITOP_NVML_SIM_SCENARIO``
picks the GPM readings, ``OPTITOP_NVML_SIM_PIDS`` (``all`` or pids) the compute processes listed,
``OPTITOP_NVML_SIM_PERSISTENCE=0`` turns persistence mode off and ``OPTITOP_NVML_SIM_GPM_ERROR=IN_USE`` (any
``NVML_ERROR_*`` suffix) makes every GPM sample fail so.
"""

# ruff: noqa: N802 - simulated C functions keep NVML's names

from __future__ import annotations

import ctypes
import itertools
import os
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

GIB = 1024**3
NO_INSTANCE = 0xFFFFFFFF

#: GPM metric numbers on an H100 under the workloads ARCHITECTURE.md measured.
H100_MATMUL = {"SM_UTIL": 78.0, "ANY_TENSOR_UTIL": 75.0, "HMMA_TENSOR_UTIL": 75.0, "DRAM_BW_UTIL": 23.0}
H100_COPY = {"DRAM_BW_UTIL": 90.0, "SM_UTIL": 99.5, "SM_OCCUPANCY": 80.0, "GRAPHICS_UTIL": 100.0}
H100_PCIE = {"PCIE_RX_PER_SEC": 17000.0, "PCIE_TX_PER_SEC": 17000.0, "GRAPHICS_UTIL": 40.0}
H100_TINY = {"GRAPHICS_UTIL": 26.0, "SM_UTIL": 0.03}
#: Pageable host->device copies staged by one CPU thread: ~1.8 GB/s one way, SMs idle.
H100_PAGEABLE = {"PCIE_RX_PER_SEC": 1720.0, "PCIE_TX_PER_SEC": 60.0, "GRAPHICS_UTIL": 12.0, "SM_UTIL": 0.5}
H100_IDLE: dict[str, float] = {}

#: Scenario name (the demo's and gpu_check's workloads) -> GPM readings and legacy busy %.
SCENARIOS: dict[str, tuple[dict[str, float], int, int]] = {
    "compute": (H100_MATMUL, 100, 30),
    "matmul": (H100_MATMUL, 100, 30),
    "memory_io": (H100_PAGEABLE, 10, 1),
    "pageable": (H100_PAGEABLE, 10, 1),
    "d2d_copy": (H100_COPY, 100, 95),
    "pinned_h2d_d2h": (H100_PCIE, 40, 1),
    "host_cpu": (H100_TINY, 26, 0),
    "tiny_item": (H100_TINY, 26, 0),
    "scheduling": ({"SM_UTIL": 20.0, "ANY_TENSOR_UTIL": 12.0, "GRAPHICS_UTIL": 25.0, "DRAM_BW_UTIL": 8.0}, 25, 5),
    "idle": (H100_IDLE, 0, 0),
    "none": ({"SM_UTIL": 35.0, "ANY_TENSOR_UTIL": 20.0, "GRAPHICS_UTIL": 40.0, "DRAM_BW_UTIL": 15.0}, 40, 10),
    "network": (H100_IDLE, 0, 0),
}

_METRIC_NAMES = {getattr(real, n): n[len("NVML_GPM_METRIC_") :] for n in dir(real) if n.startswith("NVML_GPM_METRIC_")}


@dataclass
class SimGpu:
    """One simulated device; every field is what NVML would report (mW, MHz, bytes, KB/s for legacy PCIe).

    ``compute_procs`` entries are ``(pid, used bytes or None, gpu instance id)`` (the id may be left out);
    ``mig_instances`` maps a GPU instance id to its own GPM readings; ``nvlink_states`` lists each link's
    state (0 inactive, 1 active; empty: NvLink not supported); ``errors`` makes a C function return that
    ``NVML_ERROR_*`` code (keyed by the C name with or without its ``_vN`` suffix).
    """

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-8f6d4c1e-0000-0000-0000-000000000001"
    bus_id: str = "00000000:18:00.0"
    gpm: bool = True
    mig: bool = False
    nvlink: bool = False
    nvlink_states: tuple[int, ...] | None = None
    persistence: bool = True
    bus_width_bits: int = 5120
    sm_clock_max_mhz: int = 1980
    mem_clock_max_mhz: int = 2619
    sm_clock_mhz: int = 1980
    mem_clock_mhz: int = 2619
    pcie_gen: int = 5
    pcie_width: int = 16
    pcie_gen_max: int = 5
    pcie_width_max: int = 16
    power_mw: int = 312_000
    power_limit_mw: int = 700_000
    temperature_c: int = 64
    mem_used: int = 40 * GIB
    mem_total: int = 80 * GIB
    util_gpu: int = 0
    util_mem: int = 0
    pcie_rx_kb_s: int = 500
    pcie_tx_kb_s: int = 400
    throttle_mask: int = 0x4 | 0x20
    event_reasons_api: bool = True
    gpm_values: dict[str, float] = field(default_factory=dict)
    gpm_metric_errors: dict[str, int] = field(default_factory=dict)
    mig_instances: dict[int, dict[str, float]] = field(default_factory=dict)
    compute_procs: list[tuple[Any, ...]] = field(default_factory=list)
    graphics_procs: list[tuple[Any, ...]] = field(default_factory=list)
    proc_util: list[tuple[int, int, int, int]] = field(default_factory=list)  # pid, timeStamp us, sm, mem
    errors: dict[str, int] = field(default_factory=dict)
    lost: bool = False

    def links(self) -> tuple[int, ...]:
        if self.nvlink_states is not None:
            return self.nvlink_states
        return (1,) * 18 if self.nvlink else ()


# The look-alike's names, so tests read the same either way.
FakeGpu = SimGpu


def h100(**kw: Any) -> SimGpu:
    """An H100 SXM: GPM supported, Gen5 x16, 5120-bit HBM3 at 2619 MHz."""
    return SimGpu(**kw)


def h200(**kw: Any) -> SimGpu:
    """An H200: the H100's GPM and PCIe, 141 GB of HBM3e on a 6144-bit bus at 3201 MHz."""
    base: dict[str, Any] = dict(
        name="NVIDIA H200",
        uuid="GPU-42000000-0000-0000-0000-000000000200",
        bus_width_bits=6144,
        mem_clock_max_mhz=3201,
        mem_clock_mhz=3201,
        mem_total=143771 * 1024**2,
        power_limit_mw=700_000,
    )
    base.update(kw)
    return SimGpu(**base)


def a100_legacy(**kw: Any) -> SimGpu:
    """An A100 (pre-Hopper): no GPM, so only the legacy utilisation and PCIe counters; NvLink present."""
    base: dict[str, Any] = dict(
        name="NVIDIA A100-SXM4-40GB",
        uuid="GPU-a100a100-0000-0000-0000-000000000002",
        bus_id="00000000:3B:00.0",
        gpm=False,
        nvlink=True,
        mem_clock_max_mhz=1215,
        mem_clock_mhz=1215,
        sm_clock_max_mhz=1410,
        sm_clock_mhz=1410,
        pcie_gen=4,
        pcie_gen_max=4,
        power_limit_mw=400_000,
        mem_total=40 * GIB,
        util_gpu=87,
        util_mem=41,
        throttle_mask=0,
        event_reasons_api=False,
    )
    base.update(kw)
    return SimGpu(**base)


# -- ctypes plumbing ---------------------------------------------------------------------------------------
def _out(arg: Any, ctype: Any) -> Any:
    """The object an out-parameter (``byref(x)`` or a pointer) points at, viewed as ``ctype``."""
    return ctypes.cast(arg, ctypes.POINTER(ctype)).contents


def _addr(ptr: Any) -> int:
    """The address an opaque handle (``c_nvmlDevice_t``, ``c_nvmlGpmSample_t``) holds."""
    return int(ctypes.cast(ptr, ctypes.c_void_p).value or 0)


def _val(arg: Any) -> int:
    """A by-value argument as an int, whether the bindings passed a ctypes scalar or a Python int."""
    return int(getattr(arg, "value", arg))


def _put_str(buf: Any, size: Any, text: str) -> int:
    data = text.encode()
    if len(data) + 1 > _val(size):
        return real.NVML_ERROR_INSUFFICIENT_SIZE
    ctypes.memmove(buf, data + b"\0", len(data) + 1)
    return real.NVML_SUCCESS


class _Opaque:
    """A block of memory whose address stands for a handle NVML would hand out."""

    def __init__(self) -> None:
        self.mem = ctypes.create_string_buffer(16)
        self.addr = ctypes.addressof(self.mem)


@dataclass
class _Sample:
    opaque: _Opaque
    device: int | None = None
    instance: int | None = None
    seq: int | None = None
    mono: float | None = None
    freed: bool = False


class _CFunction:
    """What ``getattr(nvmlLib, name)`` gives: callable with the C arguments; ``restype`` may be set on it."""

    def __init__(self, sim: NvmlSim, name: str, impl: Callable[..., Any]) -> None:
        self.sim, self.name, self.impl = sim, name, impl
        self.restype: Any = ctypes.c_int
        self.argtypes: Any = None

    def __call__(self, *args: Any) -> Any:
        return self.sim.dispatch(self.name, self.impl, args)


class SimLib:
    """The stand-in for ``CDLL("libnvidia-ml.so.1")``: an attribute per C function this driver has."""

    def __init__(self, sim: NvmlSim) -> None:
        self._sim = sim

    def __getattr__(self, name: str) -> _CFunction:
        impl = getattr(self._sim, "c_" + name, None)
        if impl is None or name in self._sim.missing:
            raise AttributeError(name)
        return _CFunction(self._sim, name, impl)


def _base_name(name: str) -> str:
    head, _, tail = name.rpartition("_v")
    return head if head and tail.isdigit() else name


class NvmlSim:
    """The simulated driver: devices, call counts, and the C functions (``c_<name>``)."""

    def __init__(
        self,
        gpus: list[SimGpu],
        *,
        init_error: int | None = None,
        driver: str = "580.65.06",
        missing: set[str] | None = None,
    ) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.driver = driver
        self.inited = 0
        self.fail_all: int | None = None
        self.calls: dict[str, int] = {}
        #: C functions this driver lacks: the bindings' lookup answers NVML_ERROR_FUNCTION_NOT_FOUND.
        self.missing: set[str] = set(missing or ())
        self.seq = itertools.count(1)
        self.clock: Callable[[], float] = time.monotonic
        #: NVML refuses GPM metrics over spans this short (it needs more than 100 ms); 0 in tests that never sleep.
        self.gpm_min_span_s = 0.0
        self.lock = threading.Lock()
        self._handles = [_Opaque() for _ in gpus]
        self._by_addr = {h.addr: i for i, h in enumerate(self._handles)}
        self._samples: dict[int, _Sample] = {}
        self.lib = SimLib(self)

    # -- dispatch ----------------------------------------------------------------------------------------
    def dispatch(self, name: str, impl: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            if name not in ("nvmlInitWithFlags", "nvmlInit_v2", "nvmlErrorString"):
                if not self.inited:
                    return real.NVML_ERROR_UNINITIALIZED
                if self.fail_all is not None:
                    return self.fail_all
            gpu = self._gpu_arg(args)
            if gpu is not None:
                if gpu.lost:
                    return real.NVML_ERROR_GPU_IS_LOST
                for key in (name, _base_name(name)):
                    if key in gpu.errors:
                        return gpu.errors[key]
            return impl(*args)

    def _gpu_arg(self, args: tuple[Any, ...]) -> SimGpu | None:
        if not args or not isinstance(args[0], real.c_nvmlDevice_t):
            return None
        return self.gpus[self._dev(args[0])]

    def _dev(self, handle: Any) -> int:
        return self._by_addr[_addr(handle)]

    def gpu(self, handle: Any) -> SimGpu:
        return self.gpus[self._dev(handle)]

    # -- life cycle ----------------------------------------------------------------------------------------
    def c_nvmlInitWithFlags(self, flags: Any) -> int:
        if self.init_error is not None:
            return self.init_error
        self.inited += 1
        return real.NVML_SUCCESS

    def c_nvmlShutdown(self) -> int:
        self.inited = max(0, self.inited - 1)
        return real.NVML_SUCCESS

    def c_nvmlErrorString(self, result: Any) -> bytes:
        code = _val(result)
        names = [n for n in dir(real) if n.startswith("NVML_ERROR_") and getattr(real, n) == code]
        return (names[0][len("NVML_ERROR_") :].replace("_", " ").title() if names else f"error {code}").encode()

    def c_nvmlSystemGetDriverVersion(self, buf: Any, size: Any) -> int:
        return _put_str(buf, size, self.driver)

    def c_nvmlSystemGetNVMLVersion(self, buf: Any, size: Any) -> int:
        return _put_str(buf, size, "12." + self.driver)

    def c_nvmlDeviceGetCount_v2(self, count: Any) -> int:
        _out(count, ctypes.c_uint).value = len(self.gpus)
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetHandleByIndex_v2(self, index: Any, handle: Any) -> int:
        i = _val(index)
        if not 0 <= i < len(self.gpus):
            return real.NVML_ERROR_INVALID_ARGUMENT
        if self.gpus[i].lost:
            return real.NVML_ERROR_GPU_IS_LOST
        _out(handle, ctypes.c_void_p).value = self._handles[i].addr
        return real.NVML_SUCCESS

    # -- identity and static facts -------------------------------------------------------------------------
    def c_nvmlDeviceGetUUID(self, h: Any, buf: Any, size: Any) -> int:
        return _put_str(buf, size, self.gpu(h).uuid)

    def c_nvmlDeviceGetName(self, h: Any, buf: Any, size: Any) -> int:
        return _put_str(buf, size, self.gpu(h).name)

    def c_nvmlDeviceGetPciInfo_v3(self, h: Any, info: Any) -> int:
        pci = _out(info, real.nvmlPciInfo_t)
        bus = self.gpu(h).bus_id
        pci.busId = bus.encode()
        pci.busIdLegacy = bus[4:].encode()
        pci.bus = int(bus.split(":")[1], 16)
        return real.NVML_SUCCESS

    def c_nvmlGpmQueryDeviceSupport(self, h: Any, support: Any) -> int:
        s = _out(support, real.c_nvmlGpmSupport_t)
        if s.version != real.NVML_GPM_SUPPORT_VERSION:
            return real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        s.isSupportedDevice = int(self.gpu(h).gpm)
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetMemoryBusWidth(self, h: Any, width: Any) -> int:
        _out(width, ctypes.c_uint).value = self.gpu(h).bus_width_bits
        return real.NVML_SUCCESS

    def _clock(self, h: Any, kind: Any, out: Any, current: bool) -> int:
        gpu = self.gpu(h)
        k = _val(kind)
        if k == real.NVML_CLOCK_SM:
            value = gpu.sm_clock_mhz if current else gpu.sm_clock_max_mhz
        elif k == real.NVML_CLOCK_MEM:
            value = gpu.mem_clock_mhz if current else gpu.mem_clock_max_mhz
        else:
            return real.NVML_ERROR_INVALID_ARGUMENT
        _out(out, ctypes.c_uint).value = value
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetClockInfo(self, h: Any, kind: Any, out: Any) -> int:
        return self._clock(h, kind, out, current=True)

    def c_nvmlDeviceGetMaxClockInfo(self, h: Any, kind: Any, out: Any) -> int:
        return self._clock(h, kind, out, current=False)

    def _uint(self, out: Any, value: int) -> int:
        _out(out, ctypes.c_uint).value = value
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetMaxPcieLinkGeneration(self, h: Any, out: Any) -> int:
        return self._uint(out, self.gpu(h).pcie_gen_max)

    def c_nvmlDeviceGetMaxPcieLinkWidth(self, h: Any, out: Any) -> int:
        return self._uint(out, self.gpu(h).pcie_width_max)

    def c_nvmlDeviceGetCurrPcieLinkGeneration(self, h: Any, out: Any) -> int:
        return self._uint(out, self.gpu(h).pcie_gen)

    def c_nvmlDeviceGetCurrPcieLinkWidth(self, h: Any, out: Any) -> int:
        return self._uint(out, self.gpu(h).pcie_width)

    def c_nvmlDeviceGetEnforcedPowerLimit(self, h: Any, out: Any) -> int:
        return self._uint(out, self.gpu(h).power_limit_mw)

    def c_nvmlDeviceGetPowerUsage(self, h: Any, out: Any) -> int:
        return self._uint(out, self.gpu(h).power_mw)

    def c_nvmlDeviceGetTemperature(self, h: Any, sensor: Any, out: Any) -> int:
        if _val(sensor) != real.NVML_TEMPERATURE_GPU:
            return real.NVML_ERROR_NOT_SUPPORTED
        return self._uint(out, self.gpu(h).temperature_c)

    def c_nvmlDeviceGetPersistenceMode(self, h: Any, out: Any) -> int:
        return self._uint(out, real.NVML_FEATURE_ENABLED if self.gpu(h).persistence else real.NVML_FEATURE_DISABLED)

    def c_nvmlDeviceGetNvLinkState(self, h: Any, link: Any, out: Any) -> int:
        links = self.gpu(h).links()
        if not links:
            return real.NVML_ERROR_NOT_SUPPORTED
        i = _val(link)
        if not 0 <= i < len(links):
            return real.NVML_ERROR_INVALID_ARGUMENT
        return self._uint(out, links[i])

    def c_nvmlDeviceGetMigMode(self, h: Any, current: Any, pending: Any) -> int:
        gpu = self.gpu(h)
        if not gpu.gpm and not gpu.nvlink and not gpu.mig:
            return real.NVML_ERROR_NOT_SUPPORTED  # a consumer card: no MIG at all
        mode = real.NVML_DEVICE_MIG_ENABLE if gpu.mig else real.NVML_DEVICE_MIG_DISABLE
        _out(current, ctypes.c_uint).value = mode
        _out(pending, ctypes.c_uint).value = mode
        return real.NVML_SUCCESS

    # -- per-tick readings ---------------------------------------------------------------------------------
    def c_nvmlDeviceGetUtilizationRates(self, h: Any, out: Any) -> int:
        gpu = self.gpu(h)
        if gpu.mig:
            return real.NVML_ERROR_NOT_SUPPORTED
        util = _out(out, real.c_nvmlUtilization_t)
        util.gpu, util.memory = gpu.util_gpu, gpu.util_mem
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetMemoryInfo(self, h: Any, out: Any) -> int:
        gpu = self.gpu(h)
        mem = _out(out, real.c_nvmlMemory_t)
        mem.total, mem.used, mem.free = gpu.mem_total, gpu.mem_used, gpu.mem_total - gpu.mem_used
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetPcieThroughput(self, h: Any, counter: Any, out: Any) -> int:
        gpu = self.gpu(h)
        rx = _val(counter) == real.NVML_PCIE_UTIL_RX_BYTES
        return self._uint(out, gpu.pcie_rx_kb_s if rx else gpu.pcie_tx_kb_s)

    def c_nvmlDeviceGetCurrentClocksEventReasons(self, h: Any, out: Any) -> int:
        if not self.gpu(h).event_reasons_api:
            return real.NVML_ERROR_FUNCTION_NOT_FOUND  # an older driver: only the "throttle" name answers
        _out(out, ctypes.c_ulonglong).value = self.gpu(h).throttle_mask
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetCurrentClocksThrottleReasons(self, h: Any, out: Any) -> int:
        _out(out, ctypes.c_ulonglong).value = self.gpu(h).throttle_mask
        return real.NVML_SUCCESS

    def _process_list(self, entries: list[tuple[Any, ...]], mig: bool, count: Any, procs: Any) -> int:
        n = len(entries)
        c_count = _out(count, ctypes.c_uint)
        if procs is None or c_count.value < n:
            c_count.value = n
            return real.NVML_SUCCESS if n == 0 and procs is None else real.NVML_ERROR_INSUFFICIENT_SIZE
        arr = ctypes.cast(procs, ctypes.POINTER(real.c_nvmlProcessInfo_v3_t))
        for k, entry in enumerate(entries):
            pid, used = entry[0], entry[1]
            gi = entry[2] if len(entry) > 2 else (0 if mig else NO_INSTANCE)
            arr[k].pid = pid
            # Under MIG the parent device reports no per-process memory (NVML_VALUE_NOT_AVAILABLE).
            arr[k].usedGpuMemory = real.NVML_VALUE_NOT_AVAILABLE_ulonglong.value if used is None or mig else used
            arr[k].gpuInstanceId = gi
            arr[k].computeInstanceId = 0 if gi != NO_INSTANCE else NO_INSTANCE
        c_count.value = n
        return real.NVML_SUCCESS

    def c_nvmlDeviceGetComputeRunningProcesses_v3(self, h: Any, count: Any, procs: Any) -> int:
        return self._process_list(self._listed(self.gpu(h)), self.gpu(h).mig, count, procs)

    def c_nvmlDeviceGetComputeRunningProcesses_v2(self, h: Any, count: Any, procs: Any) -> int:
        return self._process_list(self._listed(self.gpu(h)), self.gpu(h).mig, count, procs)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v3(self, h: Any, count: Any, procs: Any) -> int:
        return self._process_list(self.gpu(h).graphics_procs, self.gpu(h).mig, count, procs)

    def c_nvmlDeviceGetGraphicsRunningProcesses_v2(self, h: Any, count: Any, procs: Any) -> int:
        return self._process_list(self.gpu(h).graphics_procs, self.gpu(h).mig, count, procs)

    def _listed(self, gpu: SimGpu) -> list[tuple[Any, ...]]:
        return gpu.compute_procs

    def c_nvmlDeviceGetProcessUtilization(self, h: Any, samples: Any, count: Any, since: Any) -> int:
        gpu = self.gpu(h)
        if gpu.mig:
            return real.NVML_ERROR_NOT_SUPPORTED
        ts = _val(since)
        rows = [r for r in gpu.proc_util if r[1] > ts]
        c_count = _out(count, ctypes.c_uint)
        if not rows:
            return real.NVML_ERROR_NOT_FOUND
        if samples is None or c_count.value < len(rows):
            c_count.value = len(rows)
            return real.NVML_ERROR_INSUFFICIENT_SIZE
        arr = ctypes.cast(samples, ctypes.POINTER(real.c_nvmlProcessUtilizationSample_t))
        for k, (pid, stamp, sm, mem) in enumerate(rows):
            arr[k].pid, arr[k].timeStamp, arr[k].smUtil, arr[k].memUtil = pid, stamp, sm, mem
            arr[k].encUtil = arr[k].decUtil = 0
        c_count.value = len(rows)
        return real.NVML_SUCCESS

    # -- GPM -----------------------------------------------------------------------------------------------
    def c_nvmlGpmSampleAlloc(self, out: Any) -> int:
        s = _Sample(_Opaque())
        self._samples[s.opaque.addr] = s
        _out(out, ctypes.c_void_p).value = s.opaque.addr
        return real.NVML_SUCCESS

    def c_nvmlGpmSampleFree(self, sample: Any) -> int:
        s = self._samples.get(_addr(sample))
        if s is None or s.freed:
            return real.NVML_ERROR_INVALID_ARGUMENT
        s.freed = True
        return real.NVML_SUCCESS

    def _fill(self, h: Any, sample: Any, instance: int | None) -> int:
        gpu = self.gpu(h)
        if not gpu.gpm:
            return real.NVML_ERROR_NOT_SUPPORTED
        s = self._samples.get(_addr(sample))
        if s is None or s.freed:
            return real.NVML_ERROR_INVALID_ARGUMENT
        if instance is not None and instance not in gpu.mig_instances:
            return real.NVML_ERROR_NOT_FOUND if gpu.mig else real.NVML_ERROR_NOT_SUPPORTED
        s.device, s.instance, s.seq, s.mono = self._dev(h), instance, next(self.seq), self.clock()
        return real.NVML_SUCCESS

    def c_nvmlGpmSampleGet(self, h: Any, sample: Any) -> int:
        return self._fill(h, sample, None)

    def c_nvmlGpmMigSampleGet(self, h: Any, instance: Any, sample: Any) -> int:
        return self._fill(h, sample, _val(instance))

    def c_nvmlGpmMetricsGet(self, req_ptr: Any) -> int:
        req = _out(req_ptr, real.c_nvmlGpmMetricsGet_t)
        if req.version != real.NVML_GPM_METRICS_GET_VERSION:
            return real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH
        s1, s2 = self._samples.get(_addr(req.sample1)), self._samples.get(_addr(req.sample2))
        if s1 is None or s2 is None or s1.seq is None or s2.seq is None or s1.freed or s2.freed:
            return real.NVML_ERROR_INVALID_ARGUMENT
        if (s1.device, s1.instance) != (s2.device, s2.instance) or s1.seq >= s2.seq:
            return real.NVML_ERROR_INVALID_ARGUMENT  # two samples of one device (or instance), older first
        gpu = self.gpus[s1.device or 0]
        values = gpu.gpm_values if s1.instance is None else gpu.mig_instances[s1.instance]
        too_short = (s2.mono or 0) - (s1.mono or 0) <= self.gpm_min_span_s and self.gpm_min_span_s > 0
        for k in range(req.numMetrics):
            metric = _METRIC_NAMES.get(req.metrics[k].metricId, "?")
            err = real.NVML_ERROR_INVALID_ARGUMENT if too_short else gpu.gpm_metric_errors.get(metric, 0)
            req.metrics[k].nvmlReturn = err
            req.metrics[k].value = 0.0 if err else values.get(metric, 0.0)
        return real.NVML_SUCCESS


# -- installing it under the bindings ---------------------------------------------------------------------
_installed: NvmlSim | None = None


def install(sim: NvmlSim) -> None:
    """Make ``sim`` the library the real bindings call (drops their cached function pointers)."""
    global _installed
    if _installed is sim and real.nvmlLib is sim.lib:
        return
    with real.libLoadLock:
        real.nvmlLib = sim.lib
        real._nvmlGetFunctionPointer_cache.clear()
        real._nvmlLib_refcount = 0
    _installed = sim


def uninstall() -> None:
    """Back to no library loaded: the next ``nvmlInit`` looks for the real libnvidia-ml again."""
    global _installed
    with real.libLoadLock:
        real.nvmlLib = None
        real._nvmlGetFunctionPointer_cache.clear()
        real._nvmlLib_refcount = 0
    _installed = None


class SimModule(types.ModuleType):
    """The real ``pynvml`` module as the collector sees it, with the simulator behind it.

    Every attribute is the real binding's; fetching one first (re)installs this module's simulated library,
    so two simulators in one test each answer for their own collector.
    """

    def __init__(self, sim: NvmlSim) -> None:
        super().__init__("pynvml")
        self.sim = sim
        self.state = sim  # the look-alike's name for it (fail_all, calls)

    def __getattr__(self, name: str) -> Any:
        install(self.sim)
        return getattr(real, name)


def make_sim(
    gpus: list[SimGpu], *, init_error: int | None = None, driver: str = "580.65.06", missing: set[str] | None = None
) -> SimModule:
    """A ``pynvml`` for ``GpuCollector(nvml=...)`` whose C library is simulated over ``gpus`` (NVML index order)."""
    return SimModule(NvmlSim(gpus, init_error=init_error, driver=driver, missing=missing))


make_fake = make_sim

#: Python-level names whose C function carries a version suffix.
_C_NAMES = {
    "nvmlInit": "nvmlInitWithFlags",
    "nvmlDeviceGetHandleByIndex": "nvmlDeviceGetHandleByIndex_v2",
    "nvmlDeviceGetCount": "nvmlDeviceGetCount_v2",
    "nvmlDeviceGetPciInfo": "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetComputeRunningProcesses": "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetGraphicsRunningProcesses": "nvmlDeviceGetGraphicsRunningProcesses_v3",
}


def calls(mod: SimModule, name: str) -> int:
    """How many times the C function behind ``name`` was called (two-call patterns count twice)."""
    return int(mod.sim.calls.get(_C_NAMES.get(name, name), 0))


# -- the device script's rehearsal hook ------------------------------------------------------------------
def _env_pids(gpu: SimGpu) -> list[tuple[Any, ...]]:
    """``OPTITOP_NVML_SIM_PIDS``: ``all`` lists every process this user runs as a compute process."""
    spec = os.environ.get("OPTITOP_NVML_SIM_PIDS", "all")
    if spec == "all":
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    else:
        pids = [int(p) for p in spec.split(",") if p.strip().isdigit()]
    return [(p, 2 * GIB) for p in pids]


class _EnvSim(NvmlSim):
    def _listed(self, gpu: SimGpu) -> list[tuple[Any, ...]]:
        return gpu.compute_procs or _env_pids(gpu)


def env_gpu() -> SimGpu:
    """The H200 the rehearsal pretends to have, reading ``OPTITOP_NVML_SIM_SCENARIO``."""
    scenario = os.environ.get("OPTITOP_NVML_SIM_SCENARIO", "idle")
    values, busy, mem = SCENARIOS.get(scenario, SCENARIOS["idle"])
    persistence = os.environ.get("OPTITOP_NVML_SIM_PERSISTENCE", "1") != "0"
    gpm_error = os.environ.get("OPTITOP_NVML_SIM_GPM_ERROR")  # e.g. IN_USE: counters held by another tool
    errors = {"nvmlGpmSampleGet": int(getattr(real, f"NVML_ERROR_{gpm_error}"))} if gpm_error else {}
    return h200(
        gpm_values=dict(values), util_gpu=busy, util_mem=mem, throttle_mask=0, persistence=persistence, errors=errors
    )


def install_from_env() -> NvmlSim:
    """The test-only hook optitop calls when ``OPTITOP_NVML_SIM`` is set: one simulated H200 under pynvml."""
    sim = _EnvSim([env_gpu()], driver="580.159.04")
    sim.gpm_min_span_s = 0.1
    install(sim)
    return sim
