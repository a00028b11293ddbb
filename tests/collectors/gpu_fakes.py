"""A fake ``pynvml`` module: the NVML API surface the GPU collector uses, with configurable devices.

CI has no GPU, so this is the one thing the tests fake. It behaves like nvidia-ml-py where the collector can
tell: the constants and the ``NVMLError`` class hierarchy are the real ones (``NVMLError(code)`` becomes
``NVMLError_NotSupported`` and friends), strings come back as ``str`` except the PCI bus id (bytes, as the
ctypes struct gives it), process-utilisation calls return only samples newer than the timestamp passed and
raise NOT_FOUND when there are none, and GPM metrics can only be computed from two samples taken in order on
the same device.
"""

# ruff: noqa: N802 - the fake keeps pynvml's function names

from __future__ import annotations

import itertools
import types
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

GIB = 1024**3

#: The GPM metric numbers on an H100 under the workloads ARCHITECTURE.md measured.
H100_MATMUL = {"SM_UTIL": 78.0, "ANY_TENSOR_UTIL": 75.0, "HMMA_TENSOR_UTIL": 75.0, "DRAM_BW_UTIL": 23.0}
H100_COPY = {"DRAM_BW_UTIL": 90.0, "SM_UTIL": 99.5, "SM_OCCUPANCY": 80.0, "GRAPHICS_UTIL": 100.0}
H100_PCIE = {"PCIE_RX_PER_SEC": 17000.0, "PCIE_TX_PER_SEC": 17000.0, "GRAPHICS_UTIL": 40.0}
H100_TINY = {"GRAPHICS_UTIL": 26.0, "SM_UTIL": 0.03}


@dataclass
class FakeGpu:
    """One fake device; every field is what NVML would return (mW, MHz, bytes, KB/s for legacy PCIe)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-8f6d4c1e-0000-0000-0000-000000000001"
    bus_id: str = "00000000:18:00.0"
    gpm: bool = True
    mig: bool = False
    nvlink: bool = False
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
    compute_procs: list[tuple[int, int | None]] = field(default_factory=list)
    graphics_procs: list[tuple[int, int | None]] = field(default_factory=list)
    proc_util: list[tuple[int, int, int, int]] = field(default_factory=list)  # pid, timeStamp us, sm, mem
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code raised on call
    lost: bool = False


def h100(**kw: Any) -> FakeGpu:
    """An H100 SXM: GPM supported, Gen5 x16, 5120-bit HBM3 at 2619 MHz."""
    return FakeGpu(**kw)


def a100_legacy(**kw: Any) -> FakeGpu:
    """An A100 (pre-Hopper): no GPM, so only the legacy utilisation and PCIe counters; NVLink present."""
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
    return FakeGpu(**base)


class _GpmSample:
    """An opaque GPM sample buffer; records which device filled it and in what order."""

    def __init__(self) -> None:
        self.device: int | None = None
        self.seq: int | None = None
        self.freed = False


class _Metric:
    def __init__(self) -> None:
        self.metricId = 0
        self.nvmlReturn = 0
        self.value = 0.0


class GpmMetricsGet:
    """Stands in for ``c_nvmlGpmMetricsGet_t`` (same field names)."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: _GpmSample | None = None
        self.sample2: _GpmSample | None = None
        self.metrics = [_Metric() for _ in range(real.NVML_GPM_METRIC_MAX)]


class _Handle:
    def __init__(self, index: int) -> None:
        self.index = index


def make_fake(
    gpus: list[FakeGpu],
    *,
    init_error: int | None = None,
    driver: str = "580.65.06",
) -> types.ModuleType:
    """A module with pynvml's names, backed by ``gpus`` (listed in NVML index order)."""
    m = types.ModuleType("pynvml")
    for name in dir(real):
        if name.startswith(("NVML_", "NVMLError", "nvmlClocks")) or name == "nvmlExceptionClass":
            setattr(m, name, getattr(real, name))
    state = types.SimpleNamespace(
        gpus=gpus, inited=False, init_error=init_error, fail_all=None, calls={}, seq=itertools.count(1)
    )
    m.state = state  # type: ignore[attr-defined]
    m.c_nvmlGpmMetricsGet_t = GpmMetricsGet  # type: ignore[attr-defined]

    def api(fn: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            state.calls[fn.__name__] = state.calls.get(fn.__name__, 0) + 1
            if fn.__name__ != "nvmlInit":
                if not state.inited:
                    raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)
                if state.fail_all is not None:
                    raise real.NVMLError(state.fail_all)
            if args and isinstance(args[0], _Handle):
                gpu = gpus[args[0].index]
                if gpu.lost:
                    raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
                if fn.__name__ in gpu.errors:
                    raise real.NVMLError(gpu.errors[fn.__name__])
            return fn(*args)

        wrapper.__name__ = fn.__name__
        setattr(m, fn.__name__, wrapper)
        return wrapper

    def gpu_of(handle: _Handle) -> FakeGpu:
        return gpus[handle.index]

    @api
    def nvmlInit() -> None:
        if state.init_error is not None:
            raise real.NVMLError(state.init_error)
        state.inited = True

    @api
    def nvmlShutdown() -> None:
        state.inited = False

    @api
    def nvmlSystemGetDriverVersion() -> str:
        return driver

    @api
    def nvmlSystemGetNVMLVersion() -> str:
        return "12." + driver

    @api
    def nvmlDeviceGetCount() -> int:
        return len(gpus)

    @api
    def nvmlDeviceGetHandleByIndex(i: int) -> _Handle:
        if not 0 <= i < len(gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(i)

    @api
    def nvmlDeviceGetUUID(h: _Handle) -> str:
        return gpu_of(h).uuid

    @api
    def nvmlDeviceGetName(h: _Handle) -> str:
        return gpu_of(h).name

    @api
    def nvmlDeviceGetPciInfo(h: _Handle) -> Any:
        return types.SimpleNamespace(busId=gpu_of(h).bus_id.encode(), busIdLegacy=gpu_of(h).bus_id[4:].encode())

    @api
    def nvmlGpmQueryDeviceSupport(h: _Handle) -> Any:
        return types.SimpleNamespace(version=real.NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(gpu_of(h).gpm))

    @api
    def nvmlGpmSampleAlloc() -> _GpmSample:
        return _GpmSample()

    @api
    def nvmlGpmSampleFree(sample: _GpmSample) -> None:
        sample.freed = True

    @api
    def nvmlGpmSampleGet(h: _Handle, sample: _GpmSample) -> _GpmSample:
        if not gpu_of(h).gpm:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        sample.device = h.index
        sample.seq = next(state.seq)
        return sample

    @api
    def nvmlGpmMetricsGet(req: GpmMetricsGet) -> GpmMetricsGet:
        s1, s2 = req.sample1, req.sample2
        if req.version != real.NVML_GPM_METRICS_GET_VERSION:
            raise real.NVMLError(real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        if s1 is None or s2 is None or s1.seq is None or s2.seq is None or s1.freed or s2.freed:
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        if s1.device != s2.device or s1.seq >= s2.seq:  # two samples of one device, older first
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        gpu = gpus[s1.device or 0]
        names = {getattr(real, n): n[len("NVML_GPM_METRIC_") :] for n in dir(real) if n.startswith("NVML_GPM_METRIC_")}
        for k in range(req.numMetrics):
            metric = names.get(req.metrics[k].metricId, "?")
            err = gpu.gpm_metric_errors.get(metric, 0)
            req.metrics[k].nvmlReturn = err
            req.metrics[k].value = 0.0 if err else gpu.gpm_values.get(metric, 0.0)
        return req

    @api
    def nvmlDeviceGetUtilizationRates(h: _Handle) -> Any:
        gpu = gpu_of(h)
        if gpu.mig:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(gpu=gpu.util_gpu, memory=gpu.util_mem)

    @api
    def nvmlDeviceGetMemoryInfo(h: _Handle) -> Any:
        gpu = gpu_of(h)
        return types.SimpleNamespace(total=gpu.mem_total, used=gpu.mem_used, free=gpu.mem_total - gpu.mem_used)

    @api
    def nvmlDeviceGetPowerUsage(h: _Handle) -> int:
        return gpu_of(h).power_mw

    @api
    def nvmlDeviceGetEnforcedPowerLimit(h: _Handle) -> int:
        return gpu_of(h).power_limit_mw

    @api
    def nvmlDeviceGetTemperature(h: _Handle, sensor: int) -> int:
        assert sensor == real.NVML_TEMPERATURE_GPU
        return gpu_of(h).temperature_c

    @api
    def nvmlDeviceGetClockInfo(h: _Handle, kind: int) -> int:
        gpu = gpu_of(h)
        return {real.NVML_CLOCK_SM: gpu.sm_clock_mhz, real.NVML_CLOCK_MEM: gpu.mem_clock_mhz}[kind]

    @api
    def nvmlDeviceGetMaxClockInfo(h: _Handle, kind: int) -> int:
        gpu = gpu_of(h)
        return {real.NVML_CLOCK_SM: gpu.sm_clock_max_mhz, real.NVML_CLOCK_MEM: gpu.mem_clock_max_mhz}[kind]

    @api
    def nvmlDeviceGetMemoryBusWidth(h: _Handle) -> int:
        return gpu_of(h).bus_width_bits

    @api
    def nvmlDeviceGetCurrPcieLinkGeneration(h: _Handle) -> int:
        return gpu_of(h).pcie_gen

    @api
    def nvmlDeviceGetCurrPcieLinkWidth(h: _Handle) -> int:
        return gpu_of(h).pcie_width

    @api
    def nvmlDeviceGetMaxPcieLinkGeneration(h: _Handle) -> int:
        return gpu_of(h).pcie_gen_max

    @api
    def nvmlDeviceGetMaxPcieLinkWidth(h: _Handle) -> int:
        return gpu_of(h).pcie_width_max

    @api
    def nvmlDeviceGetPcieThroughput(h: _Handle, counter: int) -> int:
        gpu = gpu_of(h)
        return gpu.pcie_rx_kb_s if counter == real.NVML_PCIE_UTIL_RX_BYTES else gpu.pcie_tx_kb_s

    @api
    def nvmlDeviceGetNvLinkState(h: _Handle, link: int) -> int:
        if not gpu_of(h).nvlink:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return 1

    @api
    def nvmlDeviceGetCurrentClocksEventReasons(h: _Handle) -> int:
        if not gpu_of(h).event_reasons_api:  # an older driver: only the "throttle" name exists
            raise real.NVMLError(real.NVML_ERROR_FUNCTION_NOT_FOUND)
        return gpu_of(h).throttle_mask

    @api
    def nvmlDeviceGetCurrentClocksThrottleReasons(h: _Handle) -> int:
        return gpu_of(h).throttle_mask

    @api
    def nvmlDeviceGetMigMode(h: _Handle) -> list[int]:
        gpu = gpu_of(h)
        if not gpu.gpm and not gpu.nvlink and not gpu.mig:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return [int(gpu.mig), int(gpu.mig)]

    def _procs(entries: list[tuple[int, int | None]]) -> list[Any]:
        return [
            types.SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for pid, used in entries
        ]

    @api
    def nvmlDeviceGetComputeRunningProcesses(h: _Handle) -> list[Any]:
        return _procs(gpu_of(h).compute_procs)

    @api
    def nvmlDeviceGetGraphicsRunningProcesses(h: _Handle) -> list[Any]:
        return _procs(gpu_of(h).graphics_procs)

    @api
    def nvmlDeviceGetProcessUtilization(h: _Handle, since_us: int) -> list[Any]:
        gpu = gpu_of(h)
        if gpu.mig:
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        out = [
            types.SimpleNamespace(pid=pid, timeStamp=ts, smUtil=sm, memUtil=mem, encUtil=0, decUtil=0)
            for pid, ts, sm, mem in gpu.proc_util
            if ts > since_us
        ]
        if not out:
            raise real.NVMLError(real.NVML_ERROR_NOT_FOUND)
        return out

    return m


def calls(fake: types.ModuleType, name: str) -> int:
    """How many times the collector called ``name`` on ``fake``."""
    return int(fake.state.calls.get(name, 0))
