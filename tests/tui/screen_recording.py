"""A deterministic recording of a busy GPU inference server, written line by line and replayed into a store.

The snapshot tests need a screen that is the same on every run and every machine: no collector runs, every
number and timestamp here is a constant or a function of the sample index, and the store is the replay's,
whose clock is the recording's last instant (so "the last N seconds", the uptime and the verdict strip are
fixed). The analyzer still runs over the replayed data, so the verdict on screen is the real one.
"""

from __future__ import annotations

from optitop.model import (
    GpuDevice,
    GpuSample,
    HotFunction,
    ListenQueue,
    ProcessSample,
    ProcInfo,
    PyStacksSample,
    PyThread,
    Sample,
    SelfCost,
    ServingSample,
    ServingStats,
    SocketSample,
    SourceState,
    SourceStatus,
    SystemSample,
    TargetInfo,
    ThreadSample,
)
from optitop.recording.codec import HEADER_TYPE, SCHEMA_VERSION, sample_line, to_jsonable
from optitop.recording.replayer import Replayer, ReplayStore
from optitop.recording.scan import load
from optitop.recording.writer import LineWriter

#: 2026-03-12 03:12:00 UTC; the monotonic clock of the recording starts at MONO0.
WALL0 = 1773285120.0
MONO0 = 5000.0
SECONDS = 60
PID = 4242
TARGET = TargetInfo(PID, "python", "python -m vllm.entrypoints.openai.api_server --model llama-3-8b", "infer",
                    WALL0 - 3 * 3600 - 17 * 60, "gpu-node-07")  # fmt: skip
SOURCES = ("process", "system", "gpu", "queue", "sockets", "pystacks")
URL = "http://127.0.0.1:8000/metrics"


def _wave(i: int, low: float, high: float, period: int = 12) -> float:
    """A deterministic triangle wave between ``low`` and ``high``, so sparklines have a shape."""
    phase = i % period
    half = period / 2
    frac = phase / half if phase <= half else (period - phase) / half
    return round(low + (high - low) * frac, 1)


def process(i: int) -> ProcessSample:
    cpu = _wave(i, 92.0, 118.0)
    threads = (
        ThreadSample(PID + 1, PID, "vllm-engine", "R", _wave(i, 80.0, 98.0)),
        ThreadSample(PID + 2, PID, "uvicorn", "S", _wave(i, 6.0, 14.0, 8)),
        ThreadSample(PID + 3, PID, "[bold]tokenizer[/]", "S", 3.0),
        ThreadSample(PID + 4, PID, "pt_autograd_0", "S", 0.5),
    )
    return ProcessSample(
        WALL0 + i, MONO0 + i, 1.0 if i else None, pid=PID,
        cpu_pct=cpu if i else None, cpu_pct_of_allowed=cpu / 16 if i else None, allowed_cores=16,
        rss_bytes=(7 << 30) + i * (1 << 20), vol_ctx_switches_per_s=850.0, invol_ctx_switches_per_s=12.0,
        minor_faults_per_s=40.0, major_faults_per_s=0.0, read_bytes_per_s=0.0, write_bytes_per_s=4096.0,
        num_threads=len(threads), num_fds=212, num_procs=1, status="running",
        threads=threads if i else (),
        procs=(ProcInfo(PID, 1, "python", TARGET.cmdline, cpu, (7 << 30) + i * (1 << 20), 4, "running", 0),)
        if i else (),
    )  # fmt: skip


def system(i: int) -> SystemSample:
    cores = tuple(_wave(i + c, 5.0, 95.0 if c == 3 else 30.0) for c in range(16))
    return SystemSample(
        ts_s=WALL0 + i, mono_s=MONO0 + i, dt_s=1.0 if i else None, cpu_busy_pct=round(sum(cores) / 16, 1),
        per_core_busy_pct=cores, iowait_pct=0.2, steal_pct=0.0, load_1m=2.1, load_5m=2.0, load_15m=1.9,
        num_cores=16, mem_total_bytes=256 << 30, mem_available_bytes=190 << 30, swap_total_bytes=0,
        swap_used_bytes=0, swap_in_bytes_per_s=0.0, swap_out_bytes_per_s=0.0,
    )  # fmt: skip


def gpu(i: int) -> GpuSample:
    sm = _wave(i, 88.0, 97.0, 10)
    device = GpuDevice(
        index=0, uuid="GPU-00000000-1111-2222-3333-444444444444", name="NVIDIA H100 80GB HBM3", util_source="gpm",
        sm_util_pct=sm, sm_occupancy_pct=61.0, tensor_util_pct=round(sm * 0.8, 1), hmma_util_pct=round(sm * 0.8, 1),
        imma_util_pct=0.0, dfma_util_pct=0.0, fp16_util_pct=4.0, fp32_util_pct=9.0, fp64_util_pct=0.0,
        dram_bw_util_pct=_wave(i, 30.0, 42.0, 10), graphics_util_pct=99.0, legacy_gpu_util_pct=100.0,
        legacy_mem_util_pct=38.0, pcie_rx_bytes_per_s=1.2e9, pcie_tx_bytes_per_s=0.4e9, pcie_source="gpm",
        nvlink_rx_bytes_per_s=None, nvlink_tx_bytes_per_s=None, dram_peak_bytes_per_s=3.35e12,
        dram_bytes_per_s=3.35e12 * _wave(i, 30.0, 42.0, 10) / 100, pcie_link_bytes_per_s=63e9, pcie_gen=5,
        pcie_width=16, pcie_gen_max=5, pcie_width_max=16, mem_used_bytes=71 << 30, mem_total_bytes=80 << 30,
        power_w=_wave(i, 560.0, 640.0, 10), power_limit_w=700.0, temperature_c=71.0, sm_clock_mhz=1755,
        sm_clock_max_mhz=1980, mem_clock_mhz=2619, mem_clock_max_mhz=2619, throttle_reasons=("power cap",),
        mig_mode=False, target_mem_bytes=68 << 30, target_sm_pct=sm, target_mem_pct=36.0, target_pids=(PID,),
        proc_util_note="", pci_bus_id="00000000:18:00.0", nvlink_present=False, gpu_procs=1,
    )  # fmt: skip
    return GpuSample(
        WALL0 + i, MONO0 + i, 1.0 if i else None, devices=(device,), driver_version="550.54.15",
        nvml_version="12.550.54.15", target_gpu_indices=(0,), attribution_note="", host_dram_bw_note="",
    )  # fmt: skip


def serving(i: int) -> ServingSample:
    stats = ServingStats(
        requests_waiting=float(i % 4), requests_running=24.0, batch_size=24.0, max_running=256.0,
        kv_cache_usage_pct=_wave(i, 55.0, 71.0), preemptions_per_s=0.0, request_rate_per_s=6.5,
        error_rate_per_s=0.0, queue_time_p50_s=0.004, queue_time_p95_s=0.03, ttft_p50_s=0.09, ttft_p95_s=0.31,
        itl_p50_s=0.021, itl_p95_s=0.034, e2e_p50_s=3.2, e2e_p95_s=7.9, prompt_tokens_per_s=4100.0,
        generation_tokens_per_s=_wave(i, 1500.0, 1900.0), prefix_cache_hit_pct=42.0,
    )  # fmt: skip
    return ServingSample(WALL0 + i, MONO0 + i, 1.0 if i else None, source=f"vllm @ {URL}", profile="vllm",
                         stats=stats)  # fmt: skip


def sockets(i: int) -> SocketSample:
    return SocketSample(
        WALL0 + i, MONO0 + i, 1.0 if i else None, listeners=(ListenQueue(8000, "0.0.0.0", i % 3, 4096, "ss"),),
        inbound_conns=31, inbound_recv_q_bytes=0, inbound_send_q_bytes=18_000, upstreams=(), upstream_conns=0,
        upstream_recv_q_bytes=0, upstream_send_q_bytes=0, retrans_segs_per_s=0.0, retrans_pct=0.0,
        listen_overflows_per_s=0.0,
    )  # fmt: skip


def pystacks(i: int) -> PyStacksSample:
    return PyStacksSample(
        WALL0 + i, MONO0 + i, 2.0, mode="record", window_s=2.0, samples=200,
        threads=(
            PyThread(PID + 1, "vllm-engine", 200, 96.0, 94.0, "execute_model (vllm/worker/model_runner.py:1450)",
                     "", (("active", 0.96), ("gpu_sync", 0.04))),
            PyThread(PID + 2, "uvicorn", 200, 9.0, 8.0, "select (selectors.py:468)", "network",
                     (("network", 0.91), ("active", 0.09))),
        ),
        gil_pct=95.0, active_pct=96.0, waits=(("active", 0.6), ("network", 0.35), ("gpu_sync", 0.05)),
        hot=(HotFunction("forward", "vllm/model_executor/models/llama.py:352", 41.0, 88.0, False),
             HotFunction("_sample", "vllm/model_executor/layers/sampler.py:97", 12.0, 14.0, False)),
        native_mix=None, native_age_s=None, trigger="",
    )  # fmt: skip


BUILDERS = {"process": process, "system": system, "gpu": gpu, "queue": serving, "sockets": sockets}


def header() -> dict[str, object]:
    """The header line, with fixed times (record.header stamps 'now')."""
    statuses = {name: to_jsonable(SourceStatus(name, SourceState.OK)) for name in SOURCES}
    return {
        "type": HEADER_TYPE,
        "schema_version": SCHEMA_VERSION,
        "optitop_version": "0.0.0-test",
        "created_at": WALL0,
        "created_mono_s": MONO0,
        "host": TARGET.host,
        "target": to_jsonable(TARGET),
        "collectors": sorted(SOURCES),
        "sources": statuses,
        "options": {"interval_s": 1.0, "history_s": 600.0, "analysis_window_s": 10.0, "pyspy_rate_hz": 100},
    }


def samples() -> list[tuple[str, Sample]]:
    """Every sample of the recording in time order (py-spy every 2 s, like its window)."""
    out: list[tuple[str, Sample]] = []
    for i in range(SECONDS):
        out.extend((name, build(i)) for name, build in BUILDERS.items())
        if i and i % 2 == 0:
            out.append(("pystacks", pystacks(i)))
    return out


def write_recording(path: str) -> None:
    """Write the recording to ``path`` (plain JSON Lines; ``.gz`` compresses)."""
    writer = LineWriter(path)
    try:
        writer.write(header())
        for name, sample in samples():
            writer.write(sample_line(name, sample))
        cost = SelfCost(cpu_pct=1.4, rss_bytes=61 << 20)
        writer.write({"type": "self", "mono_s": MONO0 + SECONDS - 1, "data": to_jsonable(cost)})
        writer.write({"type": "end", "mono_s": MONO0 + SECONDS - 1, "ts_s": WALL0 + SECONDS - 1, "events": 0})
    finally:
        writer.close()


def replayed_store(path: str) -> ReplayStore:
    """Write the recording, load it back and replay all of it: the store the snapshot screen shows."""
    write_recording(path)
    replayer = Replayer(load(path))
    replayer.run_to_end()
    assert not load(path).problems(), load(path).problems()
    return replayer.store
