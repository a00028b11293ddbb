"""GPM, the GPU's profiling metrics: SM, tensor-core, DRAM, PCIe and NvLink use, from two samples diffed.

What NVML really reports on an H100 (ARCHITECTURE.md): the legacy utilisation calls read 0 % under full load
while GPM tells a matmul, a copy loop, PCIe transfers and launch-bound tiny kernels apart. Rules kept here:
- GPM keeps the previous sample and diffs it against this tick's: the collector's ``sample()`` never sleeps;
- under MIG, GPM reads the target's GPU instance (``nvmlGpmMigSampleGet`` with the instance id from the v3
  process info), not the whole GPU;
- GPM sampling that keeps failing (no permission, counters held by Nsight Compute or DCGM profiling) falls back
  to the legacy readings, labelled "legacy" with the reason, and is retried now and then.
"""

from __future__ import annotations

from optitop.collectors.gpudevices import DeviceState, GpmState
from optitop.collectors.nvml import Nvml

MIB = 1024 * 1024
#: GPM needs its two samples more than this far apart (NVML refuses spans of 100 ms or less).
GPM_MIN_SPAN_S = 0.1
#: After this many GPM failures in a row a device falls back to the legacy utilisation readings.
GPM_FALLBACK_AFTER = 3
#: While fallen back, GPM is tried again this often (another profiler may have let go of the counters).
GPM_RETRY_S = 30.0
#: What NVML's v3 process info holds in gpuInstanceId outside MIG.
NO_GPU_INSTANCE = 0xFFFFFFFF

#: Why GPM sampling failed, by NVML error class, in words with the fix.
GPM_FAILURE_WORDS: dict[str, str] = {
    "NVMLError_InUse": "profiling counters are held by another tool (Nsight Compute, DCGM profiling)",
    "NVMLError_InsufficientResources": "profiling counters are held by another tool (Nsight Compute, DCGM profiling)",
    "NVMLError_NoPermission": "no permission to read the profiling counters (run as root, or load the driver"
    " with NVreg_RestrictProfilingToAdminUsers=0)",
    "NVMLError_NotSupported": "GPM sampling is not supported in this configuration (MIG or vGPU?)",
}

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


def gpm_readings(
    nvml: Nvml,
    dev: DeviceState,
    mono: float,
    missing: list[str],
    mig: bool | None,
    instances: dict[int, int],
    host_pids: dict[int, int],
    *,
    min_span_s: float,
) -> tuple[dict[str, float | None], int | None, GpmState]:
    """GPM values of the whole GPU, or under MIG of the GPU instance the target's processes run in.

    A device whose GPM sampling keeps failing is in fallback: nothing is read until a retry is due.
    ``min_span_s``: the shortest span metrics are computed over (the collector's ``gpm_min_span_s``).
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
            mig_state = dev.gpm_mig.setdefault(gi, GpmState())
            return gpm_metrics(nvml, dev, mig_state, mono, missing, gi, min_span_s=min_span_s), gi, mig_state
        missing.append("GPM: MIG is on and the target runs in no GPU instance here: whole-GPU readings")
    return gpm_metrics(nvml, dev, st, mono, missing, None, min_span_s=min_span_s), None, st


def gpm_failed(st: GpmState, kind: str, why: str, mono: float) -> None:
    """Count a failed GPM sample; after GPM_FALLBACK_AFTER in a row the device reads legacy values."""
    words = GPM_FAILURE_WORDS.get(kind) or (st.last_error if kind == "remembered" and st.last_error else why)
    st.last_error = words
    st.failures += 1
    if st.failures >= GPM_FALLBACK_AFTER and not st.fallback:
        st.fallback = words
    if st.fallback:
        st.fallback_mono = mono


def gpm_metrics(
    nvml: Nvml,
    dev: DeviceState,
    st: GpmState,
    mono: float,
    missing: list[str],
    gi: int | None,
    *,
    min_span_s: float,
) -> dict[str, float | None]:
    """GPM metrics between the previous tick's sample and this one's; empty on the first tick."""
    m = nvml.mod
    i = dev.static.nvml_index
    # NVML computes no metrics over 100 ms or less: equal to the limit is too soon too.
    too_soon = st.prev_mono is not None and mono - st.prev_mono <= min_span_s
    if st.prev is not None and too_soon and not st.fallback:
        missing.append(f"GPM: samples too close together (≤ {min_span_s:g} s)")
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
        gpm_failed(st, nvml.last_kind, why, mono)
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
        gpm_failed(st, nvml.last_kind, why, mono)
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
