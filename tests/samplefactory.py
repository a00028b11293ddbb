"""Sample builders shared by tests: one complete, plausible sample of each collector's type.

Why one module: the sample types have many required fields, and every test that builds a store by hand
(the exporter, record/replay, the record reader's property tests) used to spell all of them out again.
Each builder takes the sample's times and any field to override by keyword; the defaults describe one
busy Python server (pid 4242) on a 2-core host with an H100.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from optitop.model import GpuDevice, GpuSample, ProcessSample, ServingSample, ServingStats, SystemSample

PID = 4242


def process_sample(ts_s: float, mono_s: float, dt_s: float | None = 1.0, **fields: Any) -> ProcessSample:
    """The target process at 87.5 % CPU of 4 allowed cores, 1 GiB resident; ``fields`` override."""
    values: dict[str, Any] = {
        "pid": PID,
        "cpu_pct": 87.5,
        "cpu_pct_of_allowed": 21.9,
        "allowed_cores": 4,
        "rss_bytes": 1 << 30,
        "vol_ctx_switches_per_s": 10.0,
        "invol_ctx_switches_per_s": None,
        "minor_faults_per_s": 1.0,
        "major_faults_per_s": 0.0,
        "read_bytes_per_s": None,
        "write_bytes_per_s": 4096.0,
        "num_threads": 3,
        "num_fds": 12,
        "num_procs": 1,
        "status": "running",
        "threads": (),
        "procs": (),
    }
    return ProcessSample(ts_s, mono_s, dt_s, **{**values, **fields})


def system_sample(ts_s: float, mono_s: float, dt_s: float | None = 1.0, **fields: Any) -> SystemSample:
    """A 2-core host half busy (one core hot), 8 GiB with half available, no swap; ``fields`` override."""
    values: dict[str, Any] = {
        "cpu_busy_pct": 50.0,
        "per_core_busy_pct": (90.0, 10.0),
        "iowait_pct": 0.5,
        "steal_pct": None,
        "load_1m": 1.0,
        "load_5m": 1.0,
        "load_15m": 1.0,
        "num_cores": 2,
        "mem_total_bytes": 8 << 30,
        "mem_available_bytes": 4 << 30,
        "swap_total_bytes": 0,
        "swap_used_bytes": 0,
        "swap_in_bytes_per_s": None,
        "swap_out_bytes_per_s": None,
    }
    return SystemSample(ts_s, mono_s, dt_s, **{**values, **fields})


def required_none(cls: type) -> dict[str, Any]:
    """None for every field of ``cls`` without a default (a field added later with a default keeps it)."""
    return {f.name: None for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}


def gpu_device(**fields: Any) -> GpuDevice:
    """An H100 read through GPM at 78 % SM, used by the target, power capped; every other reading unknown."""
    values: dict[str, Any] = required_none(GpuDevice)
    values.update(
        index=0,
        uuid="GPU-1",
        name="NVIDIA H100 80GB HBM3",
        util_source="gpm",
        sm_util_pct=78.0,
        pcie_source="gpm",
        throttle_reasons=("power cap",),
        target_pids=(PID,),
        proc_util_note="",
        pci_bus_id="",
        note="",
        missing=(),
    )
    values.update(fields)
    return GpuDevice(**values)


def gpu_sample(ts_s: float, mono_s: float, dt_s: float | None = 1.0, **fields: Any) -> GpuSample:
    """One ``gpu_device()`` that the target uses; ``fields`` override (``devices`` among them)."""
    values: dict[str, Any] = {
        "devices": (gpu_device(),),
        "driver_version": "580",
        "nvml_version": "13",
        "target_gpu_indices": (0,),
        "attribution_note": "",
        "host_dram_bw_note": "",
    }
    return GpuSample(ts_s, mono_s, dt_s, **{**values, **fields})


def serving_sample(
    ts_s: float, mono_s: float, dt_s: float | None = 1.0, stats: ServingStats | None = None, **fields: Any
) -> ServingSample:
    """vLLM's /metrics with ``stats`` (default: 7 waiting, 3 running); ``fields`` override."""
    values: dict[str, Any] = {"source": "vllm @ http://x/metrics", "profile": "vllm"}
    stats = stats if stats is not None else ServingStats(requests_waiting=7.0, requests_running=3.0)
    return ServingSample(ts_s, mono_s, dt_s, stats=stats, **{**values, **fields})
