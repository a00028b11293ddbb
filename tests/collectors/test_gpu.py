"""The GPU collector over the real nvidia-ml-py with a simulated libnvidia-ml (CI has no GPU), and real targets.

Only the C library is simulated (nvml_sim.py): the bindings' wrappers, structs, byref out-parameters, two-call
patterns and error classes are the real ones. The target trees, /proc, NSpid and PID namespaces are real.
One test uses the real nvidia-ml-py on a machine without an NVIDIA driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest
from nvml_sim import (
    H100_COPY,
    H100_MATMUL,
    H100_PAGEABLE,
    H100_PCIE,
    H100_TINY,
    a100_legacy,
    calls,
    h100,
    make_fake,
    uninstall,
)

from optitop.collectors.gpm import GPM_FALLBACK_AFTER, GPM_RETRY_S
from optitop.collectors.gpu import GpuCollector
from optitop.collectors.gpupeaks import decode_throttle, dram_peak_bytes_per_s, pcie_link_bytes_per_s
from optitop.collectors.hostmem import HOST_DRAM_BW_NOT_COLLECTED, HOST_DRAM_BW_UNAVAILABLE, host_dram_bw_note
from optitop.config import CollectorContext, Options
from optitop.model import GpuSample, SourceUnavailable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
MIB = 1024 * 1024


def collector(fake: object, pid: int | None = None) -> GpuCollector:
    c = GpuCollector(CollectorContext(pid=pid or os.getpid(), options=Options(interval_s=1.0)), nvml=fake)  # type: ignore[arg-type]
    c.gpm_min_span_s = 0.0  # the tests never sleep between ticks
    return c


def two(c: GpuCollector) -> GpuSample:
    c.sample()
    return c.sample()


@pytest.fixture
def target() -> Iterator[subprocess.Popen[bytes]]:
    """A real target tree: a Python parent with one child (like a server with an engine worker)."""
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    proc.child_pid = int(proc.stdout.readline())  # type: ignore[attr-defined]
    yield proc
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.child_pid, signal.SIGKILL)  # type: ignore[attr-defined]
    proc.kill()
    proc.wait()


# -- pure arithmetic -----------------------------------------------------------------------------------------
def test_peaks_from_nvml_numbers() -> None:
    # H100 SXM: 5120-bit HBM3 at 2619 MHz -> ~3.35 TB/s; Gen5 x16 -> ~63 GB/s each way.
    assert dram_peak_bytes_per_s(5120, 2619) == pytest.approx(3.352e12, rel=1e-3)
    assert pcie_link_bytes_per_s(5, 16) == pytest.approx(63.0e9, rel=0.01)
    assert pcie_link_bytes_per_s(4, 16) == pytest.approx(31.5e9, rel=0.01)
    assert pcie_link_bytes_per_s(3, 8) == pytest.approx(7.88e9, rel=0.01)
    assert dram_peak_bytes_per_s(None, 2619) is None
    assert pcie_link_bytes_per_s(None, 16) is None


def test_throttle_bits_in_words() -> None:
    assert decode_throttle(pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown) == (
        "power cap",
        "HW thermal",
    )
    assert decode_throttle(pynvml.nvmlClocksEventReasonGpuIdle) == ("idle",)
    assert decode_throttle(0) == ()


def test_host_dram_note_follows_the_pmu(tmp_path: Path) -> None:
    assert host_dram_bw_note(str(tmp_path / "absent")) == HOST_DRAM_BW_UNAVAILABLE
    assert host_dram_bw_note(str(tmp_path)) == HOST_DRAM_BW_NOT_COLLECTED
    expected = (
        HOST_DRAM_BW_NOT_COLLECTED if os.path.isdir("/sys/bus/event_source/devices/cpu") else HOST_DRAM_BW_UNAVAILABLE
    )
    assert two(collector(make_fake([h100()]))).host_dram_bw_note == expected


# -- GPM path ------------------------------------------------------------------------------------------------
def test_gpm_needs_two_ticks_and_never_sleeps() -> None:
    fake = make_fake([h100(gpm_values=H100_MATMUL)])
    c = collector(fake)
    start = time.monotonic()
    first = c.sample()
    assert first.devices[0].sm_util_pct is None  # one GPM sample gives no metric: missing, not 0
    assert first.dt_s is None
    second = c.sample()
    assert time.monotonic() - start < 2.0
    dev = second.devices[0]
    assert dev.util_source == "gpm"
    assert dev.sm_util_pct == 78.0 and dev.tensor_util_pct == 75.0 and dev.hmma_util_pct == 75.0
    assert dev.dram_bw_util_pct == 23.0
    assert second.dt_s is not None and second.dt_s >= 0
    assert calls(fake, "nvmlGpmMetricsGet") == 1
    assert calls(fake, "nvmlGpmSampleAlloc") == 2  # two buffers, then reused in turn
    third = c.sample()
    assert third.devices[0].sm_util_pct == 78.0
    assert calls(fake, "nvmlGpmSampleAlloc") == 2


def test_gpm_separates_the_measured_workloads() -> None:
    gpu = h100()
    fake = make_fake([gpu])
    c = collector(fake)
    c.sample()
    seen = {}
    for label, values in (("matmul", H100_MATMUL), ("copy", H100_COPY), ("pcie", H100_PCIE), ("tiny", H100_TINY)):
        gpu.gpm_values = values
        seen[label] = c.sample().devices[0]
    assert seen["matmul"].tensor_util_pct > 50 > seen["copy"].tensor_util_pct
    assert seen["copy"].dram_bw_util_pct == 90.0
    assert seen["copy"].dram_bytes_per_s == pytest.approx(0.9 * 3.352e12, rel=1e-3)
    assert seen["pcie"].pcie_rx_bytes_per_s == 17000.0 * MIB and seen["pcie"].sm_util_pct == 0.0
    assert seen["pcie"].pcie_source == "gpm"
    assert seen["tiny"].graphics_util_pct == 26.0 and seen["tiny"].sm_util_pct < 1


def test_gpm_samples_too_close_keep_the_older_one() -> None:
    fake = make_fake([h100(gpm_values=H100_MATMUL)])
    c = collector(fake)
    c.gpm_min_span_s = 3600.0
    c.sample()
    dev = c.sample().devices[0]
    assert dev.sm_util_pct is None
    assert any("too close" in m for m in dev.missing)
    assert calls(fake, "nvmlGpmSampleGet") == 1  # the first sample is kept to diff over a longer span


def test_gpm_metric_error_is_none_with_reason() -> None:
    fake = make_fake(
        [h100(gpm_values=H100_MATMUL, gpm_metric_errors={"DRAM_BW_UTIL": pynvml.NVML_ERROR_NOT_SUPPORTED})]
    )
    dev = two(collector(fake)).devices[0]
    assert dev.dram_bw_util_pct is None and dev.dram_bytes_per_s is None
    assert dev.sm_util_pct == 78.0
    assert any("DRAM_BW_UTIL" in m for m in dev.missing)


def test_device_facts() -> None:
    dev = two(collector(make_fake([h100()]))).devices[0]
    assert dev.uuid.startswith("GPU-") and dev.name == "NVIDIA H100 80GB HBM3"
    assert dev.mem_used_bytes == 40 * 1024**3 and dev.mem_total_bytes == 80 * 1024**3
    assert dev.power_w == 312.0 and dev.power_limit_w == 700.0 and dev.temperature_c == 64.0
    assert (dev.sm_clock_mhz, dev.sm_clock_max_mhz, dev.mem_clock_mhz, dev.mem_clock_max_mhz) == (
        1980,
        1980,
        2619,
        2619,
    )
    assert (dev.pcie_gen, dev.pcie_width, dev.pcie_gen_max, dev.pcie_width_max) == (5, 16, 5, 16)
    assert dev.pcie_link_bytes_per_s == pytest.approx(63.0e9, rel=0.01)
    assert dev.throttle_reasons == ("power cap", "SW thermal")
    assert dev.mig_mode is False
    assert dev.nvlink_present is False and dev.nvlink_rx_bytes_per_s is None
    assert dev.pci_bus_id == "00000000:18:00.0"


# -- legacy path -----------------------------------------------------------------------------------------------
def test_legacy_gpu_labels_its_source_and_throttles_the_slow_call() -> None:
    fake = make_fake([a100_legacy()])
    c = collector(fake)
    c.legacy_pcie_every_s = 3600.0
    s = c.sample()
    for _ in range(3):
        s = c.sample()
    dev = s.devices[0]
    assert dev.util_source == "legacy"
    assert dev.legacy_gpu_util_pct == 87.0 and dev.legacy_mem_util_pct == 41.0
    assert dev.sm_util_pct is None and dev.tensor_util_pct is None and dev.dram_bw_util_pct is None
    assert dev.dram_bytes_per_s is None  # memory-controller busy time is not bandwidth
    assert dev.dram_peak_bytes_per_s == pytest.approx(5120 * 1215e6 * 2 / 8)
    assert dev.pcie_rx_bytes_per_s == 500 * 1024.0 and dev.pcie_tx_bytes_per_s == 400 * 1024.0
    assert dev.pcie_source.startswith("legacy")
    assert calls(fake, "nvmlDeviceGetPcieThroughput") == 2  # rx + tx once in four ticks
    assert calls(fake, "nvmlGpmSampleGet") == 0
    assert any("GPM" in m and "not supported" in m for m in dev.missing)
    # older driver: the clocks-event name is missing, the throttle-reasons name still answers
    assert calls(fake, "nvmlDeviceGetCurrentClocksEventReasons") == 1
    assert calls(fake, "nvmlDeviceGetCurrentClocksThrottleReasons") == 4
    assert dev.nvlink_present is True and dev.nvlink_rx_bytes_per_s is None
    c.legacy_pcie_every_s = 0.0
    c.sample()
    assert calls(fake, "nvmlDeviceGetPcieThroughput") == 4


def test_not_supported_is_asked_once_and_is_none() -> None:
    fake = make_fake([h100(errors={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED})])
    c = collector(fake)
    for _ in range(3):
        dev = c.sample().devices[0]
    assert dev.power_w is None
    assert "power: not supported on this GPU" in dev.missing
    assert calls(fake, "nvmlDeviceGetPowerUsage") == 1


def test_pci_bus_order_and_uuid() -> None:
    # NVML index order differs from the bus order here; devices come out in bus order, keeping NVML's index.
    gpus = [h100(bus_id="00000000:C1:00.0", uuid="GPU-c1"), h100(bus_id="00000000:1A:00.0", uuid="GPU-1a")]
    s = two(collector(make_fake(gpus)))
    assert [d.uuid for d in s.devices] == ["GPU-1a", "GPU-c1"]
    assert [d.index for d in s.devices] == [1, 0]
    assert "CUDA_DEVICE_ORDER=PCI_BUS_ID" in s.cuda_order_note


def test_handles_are_fetched_once() -> None:
    fake = make_fake([h100(), h100(bus_id="00000000:19:00.0")])
    c = collector(fake)
    for _ in range(5):
        c.sample()
    assert calls(fake, "nvmlDeviceGetHandleByIndex") == 2
    assert calls(fake, "nvmlDeviceGetMemoryBusWidth") == 2
    assert calls(fake, "nvmlInit") == 1


# -- attribution -----------------------------------------------------------------------------------------------
def test_target_tree_memory_and_newest_util_sample(target: subprocess.Popen[bytes]) -> None:
    child = target.child_pid  # type: ignore[attr-defined]
    now_us = int(time.time() * 1e6)
    gpu = h100(
        compute_procs=[(child, 30 * 1024**3), (999_999_999, 5 * 1024**3)],
        graphics_procs=[(child, 30 * 1024**3)],  # the same process in both lists counts once
        proc_util=[(child, now_us - 500_000, 10, 5), (child, now_us, 60, 30), (999_999_999, now_us, 20, 20)],
    )
    s = two(collector(make_fake([gpu]), pid=target.pid))
    dev = s.devices[0]
    assert dev.target_pids == (child,)
    assert dev.target_mem_bytes == 30 * 1024**3
    assert dev.target_sm_pct == 60.0 and dev.target_mem_pct == 30.0  # the newest sample, not the sum
    assert s.target_gpu_indices == (0,)
    assert s.attribution_note == ""
    assert dev.gpu_procs == 2


def test_a_new_worker_is_found_at_the_next_tree_rescan() -> None:
    code = (
        "import subprocess, sys, time\n"
        "sys.stdin.readline()\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    worker = None
    try:
        gpu = h100()
        c = collector(make_fake([gpu]), pid=proc.pid)
        c.tree_every_s = 3600.0
        two(c)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        worker = int(proc.stdout.readline())  # an engine worker starts after attaching
        gpu.compute_procs = [(worker, 1024**3)]
        assert c.sample().devices[0].target_pids == ()  # the cached tree does not know it yet
        c.tree_every_s = 0.0
        assert c.sample().devices[0].target_pids == (worker,)
    finally:
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_target_on_no_gpu_says_so(target: subprocess.Popen[bytes]) -> None:
    s = two(collector(make_fake([h100(compute_procs=[(999_999_999, 1024)])]), pid=target.pid))
    assert s.target_gpu_indices == ()
    assert "uses no GPU" in s.attribution_note and "1 other GPU processes" in s.attribution_note
    dev = s.devices[0]
    assert dev.target_mem_bytes == 0 and dev.target_pids == ()


def test_mig_says_unsupported_never_zero(target: subprocess.Popen[bytes]) -> None:
    child = target.child_pid  # type: ignore[attr-defined]
    fake = make_fake([a100_legacy(mig=True, compute_procs=[(child, None)])])
    dev = two(collector(fake, pid=target.pid)).devices[0]
    assert dev.mig_mode is True
    assert dev.proc_util_note == "not available on MIG"
    assert dev.target_sm_pct is None and dev.target_mem_pct is None
    assert dev.target_pids == (child,)
    assert dev.target_mem_bytes is None  # NVML gave no per-process memory under MIG: unknown, not 0
    assert calls(fake, "nvmlDeviceGetProcessUtilization") == 0
    assert dev.legacy_gpu_util_pct is None


def test_target_exit_keeps_devices() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    s = two(collector(make_fake([h100()]), pid=proc.pid))
    assert len(s.devices) == 1
    assert "exited" in s.attribution_note


UNSHARE = shutil.which("unshare")


def _unshare_works() -> bool:
    if UNSHARE is None:
        return False
    r = subprocess.run([UNSHARE, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False)
    return r.returncode == 0


needs_pidns = pytest.mark.skipif(not _unshare_works(), reason="needs `unshare --pid` (root or user namespaces)")


@needs_pidns
def test_target_in_its_own_pid_namespace_is_attributed_from_the_host(tmp_path: Path) -> None:
    # A containerised server seen from the host: /proc shows host pids, NSpid lists the inner ones too.
    proc = subprocess.Popen([UNSHARE, "--pid", "--fork", sys.executable, "-c", "import time; time.sleep(60)"])  # type: ignore[list-item]
    try:
        deadline = time.monotonic() + 10
        inner = None
        while time.monotonic() < deadline and inner is None:
            out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False).stdout
            inner = int(out.split()[0]) if out.split() else None
        assert inner is not None
        nspid = Path(f"/proc/{inner}/status").read_text().split("NSpid:")[1].split("\n")[0].split()
        assert len(nspid) == 2 and nspid[1] == "1"  # really in a nested namespace
        s = two(collector(make_fake([h100(compute_procs=[(inner, 2 * 1024**3)])]), pid=proc.pid))
        assert s.devices[0].target_pids == (inner,)
        assert s.devices[0].target_mem_bytes == 2 * 1024**3
    finally:
        proc.kill()
        proc.wait()


RUN_INSIDE = textwrap.dedent(
    """
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from nvml_sim import h100, make_fake
    from optitop.collectors.gpu import GpuCollector
    from optitop.config import CollectorContext, Options
    host_pid = int(sys.argv[2])
    gpu = h100(compute_procs=[(host_pid, 1 << 30), (os.getpid(), 1 << 30)])
    c = GpuCollector(CollectorContext(os.getpid(), Options()), nvml=make_fake([gpu]))
    c.gpm_min_span_s = 0.0
    c.sample()
    s = c.sample()
    print(json.dumps({"pid": os.getpid(), "note": s.attribution_note, "devices": len(s.devices),
                      "target_pids": list(s.devices[0].target_pids), "mem": s.devices[0].target_mem_bytes}))
    """
)


@needs_pidns
def test_inside_a_pid_namespace_attribution_is_impossible_and_said() -> None:
    # optitop inside a container: NVML's host pids cannot be matched (NSpid shows no host pid). The fake lists
    # a host pid *and* a pid that equals the in-namespace one: neither may be attributed, and devices still show.
    r = subprocess.run(
        [UNSHARE, "--pid", "--fork", "--mount-proc", sys.executable, "-c", RUN_INSIDE, str(HERE), str(os.getpid())],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",  # not the checkout: its optitop/ would shadow the installed package
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["pid"] < 10  # it really ran in a fresh namespace
    assert got["devices"] == 1
    assert got["target_pids"] == [] and got["mem"] is None
    assert "PID namespace" in got["note"] and "--pid=host" in got["note"]


# -- failing paths ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "words"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, "no NVIDIA driver"),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "modprobe nvidia"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "reboot"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "run as root"),
        (pynvml.NVML_ERROR_UNKNOWN, "NVML failed to start"),
    ],
)
def test_init_failures_are_actionable(code: int, words: str) -> None:
    c = collector(make_fake([h100()], init_error=code))
    with pytest.raises(SourceUnavailable, match=words):
        c.sample()


def test_no_devices() -> None:
    with pytest.raises(SourceUnavailable, match="no GPUs"):
        collector(make_fake([])).sample()


def test_real_nvml_without_a_driver() -> None:
    uninstall()  # no simulated library left behind by another test: the bindings look for the real one
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        pass
    else:
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is installed here: the no-driver path cannot be shown with the real library")
    c = GpuCollector(CollectorContext(pid=os.getpid(), options=Options()))
    with pytest.raises(SourceUnavailable, match=r"NVML not found \(libnvidia-ml.so.1\)"):
        c.sample()


def test_gpu_lost_mid_session_keeps_the_others() -> None:
    gpus = [h100(gpm_values=H100_MATMUL), h100(bus_id="00000000:19:00.0", uuid="GPU-b", gpm_values=H100_COPY)]
    c = collector(make_fake(gpus))
    two(c)
    gpus[0].lost = True
    s = c.sample()
    lost, ok = s.devices
    assert "GPU lost" in lost.note and "reset" in lost.note
    assert lost.sm_util_pct is None and lost.mem_used_bytes is None
    assert ok.dram_bw_util_pct == 90.0 and ok.note == ""
    gpus[1].lost = True
    with pytest.raises(SourceUnavailable, match="every GPU is lost"):
        c.sample()


def test_gpu_lost_at_start_shows_the_others() -> None:
    gpus = [h100(lost=True), h100(bus_id="00000000:19:00.0", uuid="GPU-b")]
    s = two(collector(make_fake(gpus)))
    assert [d.uuid for d in s.devices] == ["GPU-b"]
    with pytest.raises(SourceUnavailable, match="lost"):
        collector(make_fake([h100(lost=True)])).sample()


def test_driver_gone_mid_session_then_back() -> None:
    fake = make_fake([h100(gpm_values=H100_MATMUL)])
    c = collector(fake)
    two(c)
    fake.state.fail_all = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    with pytest.raises(SourceUnavailable, match="driver is not loaded"):
        c.sample()
    fake.state.fail_all = None  # the driver is back: the session's retry re-initialises NVML
    c.sample()
    assert c.sample().devices[0].sm_util_pct == 78.0
    assert calls(fake, "nvmlInit") == 2


def test_transient_error_is_one_missing_value() -> None:
    gpu = h100()
    c = collector(make_fake([gpu]))
    two(c)
    gpu.errors["nvmlDeviceGetMemoryInfo"] = pynvml.NVML_ERROR_UNKNOWN
    dev = c.sample().devices[0]
    assert dev.mem_used_bytes is None and dev.power_w == 312.0
    assert any(m.startswith("memory: Unknown Error") for m in dev.missing)
    del gpu.errors["nvmlDeviceGetMemoryInfo"]
    assert c.sample().devices[0].mem_used_bytes == 40 * 1024**3  # not remembered as unsupported


def test_close_frees_gpm_samples_and_shuts_down() -> None:
    fake = make_fake([h100()])
    c = collector(fake)
    two(c)
    c.close()
    assert calls(fake, "nvmlGpmSampleFree") == 2
    assert calls(fake, "nvmlShutdown") == 1


def test_describe_for_doctor() -> None:
    c = collector(make_fake([h100(), a100_legacy()]))
    c.sample()
    line = c.describe()
    assert "2 GPU(s)" in line and "GPM profiling metrics on 1 of 2" in line and "580.65.06" in line


def test_importing_the_module_does_not_load_pynvml() -> None:
    code = "import sys, optitop.collectors.gpu; print('pynvml' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout
    assert out.strip() == "False"


# -- issue 23: the failure modes a real GPU machine has, over the real bindings ----------------------------------
class FakeClock:
    """A monotonic clock the test moves by hand (the collector and the simulator read the same one)."""

    def __init__(self) -> None:
        self.now = 0.0  # 0.1 - 0.0 is exactly 0.1 in floating point

    def __call__(self) -> float:
        return self.now


def test_gpm_sample_failures_fall_back_to_legacy_with_the_reason() -> None:
    # Nsight Compute (or DCGM profiling) holds the counters: nvmlGpmSampleGet fails every tick.
    gpu = h100(gpm_values=H100_MATMUL, util_gpu=97, util_mem=35, errors={"nvmlGpmSampleGet": pynvml.NVML_ERROR_IN_USE})
    fake = make_fake([gpu])
    c = collector(fake)
    c.clock = clock = FakeClock()
    first = c.sample().devices[0]
    assert first.util_source == "gpm" and first.util_note == ""  # one failure is not yet a pattern
    for _ in range(GPM_FALLBACK_AFTER - 1):
        clock.now += 1.0
        dev = c.sample().devices[0]
    assert dev.util_source == "legacy"
    assert dev.legacy_gpu_util_pct == 97.0 and dev.sm_util_pct is None
    assert "profiling counters are held by another tool (Nsight Compute, DCGM profiling)" in dev.util_note
    assert dev.pcie_source.startswith("legacy")
    assert "held by another tool" in c.describe() and "GPM profiling metrics on 0 of 1" in c.describe()
    tries = calls(fake, "nvmlGpmSampleGet")
    clock.now += 1.0
    c.sample()
    assert calls(fake, "nvmlGpmSampleGet") == tries  # fallen back: not asked every tick
    del gpu.errors["nvmlGpmSampleGet"]  # the profiler exits
    clock.now += GPM_RETRY_S
    assert c.sample().devices[0].util_source == "gpm"
    clock.now += 1.0
    back = c.sample().devices[0]
    assert back.util_source == "gpm" and back.sm_util_pct == 78.0 and back.util_note == ""


def test_gpm_fallback_feeds_the_analyzer_legacy_busy() -> None:
    # The case: legacy utilisation 97 % under a matmul, GPM refused. It read "none 0.12" before.
    sys.path.insert(0, str(ROOT / "tests" / "analyzers"))
    from analyzer_fakes import proc, window

    from optitop.analyzers.signals import extract

    gpu = h100(util_gpu=97, util_mem=35, errors={"nvmlGpmSampleGet": pynvml.NVML_ERROR_NO_PERMISSION})
    c = collector(make_fake([gpu]))
    samples = [c.sample() for _ in range(6)]
    w = window(proc(cpu=100))
    w = dataclasses.replace(w, samples={**w.samples, "gpu": tuple(samples[GPM_FALLBACK_AFTER:])})
    s = extract(w)
    assert s.gpu_util_source == "legacy"
    assert s.gpu_busy_pct == pytest.approx(97.0) and s.gpu_legacy_util_pct == pytest.approx(97.0)
    assert "no permission" in samples[-1].devices[0].util_note


def test_mig_reads_the_targets_gpu_instance(target: subprocess.Popen[bytes]) -> None:
    child = target.child_pid  # type: ignore[attr-defined]
    gpu = h100(
        mig=True,
        gpm_values=H100_COPY,  # the whole GPU: someone else's copy loop
        mig_instances={1: {"SM_UTIL": 3.0}, 2: H100_MATMUL},
        compute_procs=[(child, 10 * 1024**3, 2), (999_999_999, 1024**3, 1)],
    )
    fake = make_fake([gpu])
    dev = two(collector(fake, pid=target.pid)).devices[0]
    assert dev.gpu_instance_id == 2
    assert dev.sm_util_pct == 78.0 and dev.tensor_util_pct == 75.0  # instance 2's numbers, not the GPU's
    assert calls(fake, "nvmlGpmMigSampleGet") == 2 and calls(fake, "nvmlGpmSampleGet") == 0
    assert dev.proc_util_note == "not available on MIG" and dev.target_sm_pct is None  # never 0 %
    assert dev.target_pids == (child,)


def test_a_driver_without_the_v3_process_calls(target: subprocess.Popen[bytes]) -> None:
    child = target.child_pid  # type: ignore[attr-defined]
    missing = {"nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v3"}
    fake = make_fake([h100(compute_procs=[(child, 3 * 1024**3)])], missing=missing)
    c = collector(fake, pid=target.pid)
    s = two(c)  # the real bindings raise NVMLLibraryMismatchError, a plain Exception, here
    dev = s.devices[0]
    assert dev.target_pids == (child,) and dev.target_mem_bytes == 3 * 1024**3  # through the _v2 calls
    with pytest.raises(pynvml.NVMLLibraryMismatchError):
        pynvml.nvmlDeviceGetComputeRunningProcesses(fake.nvmlDeviceGetHandleByIndex(0))


def test_nvlink_state_zero_is_inactive() -> None:
    inactive = two(collector(make_fake([h100(nvlink_states=(0,) * 18)]))).devices[0]
    assert inactive.nvlink_present is False
    one_up = two(collector(make_fake([h100(nvlink_states=(0, 0, 1) + (0,) * 15)]))).devices[0]
    assert one_up.nvlink_present is True
    assert two(collector(make_fake([h100()]))).devices[0].nvlink_present is False  # not supported


def test_only_power_and_thermal_reasons_earn_the_throttle_fix() -> None:
    sys.path.insert(0, str(ROOT / "tests" / "analyzers"))
    from analyzer_fakes import proc, window

    from optitop.analyzers.verdict import analyze

    def verdict(mask: int) -> Any:
        gpu = h100(gpm_values=H100_MATMUL, throttle_mask=mask, power_mw=400_000, compute_procs=[(os.getpid(), 1 << 30)])
        c = collector(make_fake([gpu]))
        w = window(proc(cpu=100))
        return analyze(dataclasses.replace(w, samples={**w.samples, "gpu": tuple(c.sample() for _ in range(4))}))

    benign = pynvml.nvmlClocksEventReasonGpuIdle | pynvml.nvmlClocksEventReasonSyncBoost | 0x2  # app clocks
    d = verdict(benign)
    assert d.category == "compute"
    assert not any("power and cooling" in f for f in d.fixes) and not any("throttled" in e for e in d.evidence)
    d = verdict(pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonSyncBoost)
    assert "power and cooling" in d.fixes[0] and any("throttled: power cap" in e for e in d.evidence)


def test_gpm_span_of_exactly_100_ms_is_too_short() -> None:
    fake = make_fake([h100(gpm_values=H100_MATMUL)])
    fake.sim.gpm_min_span_s = 0.1  # as NVML: no metrics over 100 ms or less
    c = collector(fake)
    c.gpm_min_span_s = 0.1
    c.clock = fake.sim.clock = clock = FakeClock()
    c.sample()
    clock.now += 0.1
    dev = c.sample().devices[0]
    assert any("too close" in m for m in dev.missing)
    assert not any("NVML error" in m for m in dev.missing)  # never asked NVML for a span it refuses
    clock.now += 0.05
    assert c.sample().devices[0].sm_util_pct == 78.0  # diffed against the kept older sample: 150 ms


def test_per_process_utilisation_without_permission_is_said(target: subprocess.Popen[bytes]) -> None:
    child = target.child_pid  # type: ignore[attr-defined]
    gpu = h100(
        compute_procs=[(child, 1024**3)],
        errors={"nvmlDeviceGetProcessUtilization": pynvml.NVML_ERROR_NO_PERMISSION},
    )
    dev = two(collector(make_fake([gpu]), pid=target.pid)).devices[0]
    assert dev.target_sm_pct is None
    assert "permission" in dev.proc_util_note and "no per-process sample" not in dev.proc_util_note


def test_persistence_mode_off_is_warned() -> None:
    c = collector(make_fake([h100(persistence=False)]))
    dev = two(c).devices[0]
    assert dev.persistence_mode is False
    assert "persistence mode off" in c.describe() and "nvidia-smi -pm 1" in c.describe()
    on = collector(make_fake([h100()]))
    assert two(on).devices[0].persistence_mode is True and "persistence" not in on.describe()


def test_the_simulator_hook_is_ignored_unless_set(tmp_path: Path) -> None:
    code = (
        "from optitop.collectors.gpu import GpuCollector\n"
        "from optitop.config import CollectorContext, Options\n"
        "import os\n"
        "c = GpuCollector(CollectorContext(os.getpid(), Options()))\n"
        "try:\n"
        "    print(c.sample().devices[0].name)\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTITOP_NVML_SIM")}
    plain = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/", check=True)
    env["OPTITOP_NVML_SIM"] = str(HERE / "nvml_sim.py")
    sim = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd="/", check=True)
    assert sim.stdout.strip() == "NVIDIA H200"
    assert plain.stdout.strip() != "NVIDIA H200"


def test_pageable_copy_stream_reads_memory_io_not_host_cpu() -> None:
    # ~1.8 GB/s host->device from pageable memory, the staging thread pegged: PCIe is the limit, not Python.
    sys.path.insert(0, str(ROOT / "tests" / "analyzers"))
    from analyzer_fakes import proc, system, window

    from optitop.analyzers.verdict import analyze

    gpu = h100(gpm_values=H100_PAGEABLE, compute_procs=[(os.getpid(), 1 << 30)])
    c = collector(make_fake([gpu]))
    samples = tuple(c.sample() for _ in range(7))[1:]
    assert 1.7e9 < samples[-1].devices[0].pcie_rx_bytes_per_s < 1.9e9  # 1720 MiB/s through the real structs
    w = window(proc(cpu=100, threads=(("python", 98.0), ("pin", 2.0))), system(busy=55))
    d = analyze(dataclasses.replace(w, samples={**w.samples, "gpu": samples}))
    assert d.category == "memory_io", (d.category, d.evidence)
    assert "steady copy stream" in d.evidence[0]
    assert not any("pegged" in e for e in d.evidence)


def test_doctor_says_persistence_off_and_why_gpm_fails(start_target) -> None:
    # `optitop doctor` as a user runs it, the simulated library loaded through the product's test-only hook.
    target = start_target("ready()\ntime.sleep(60)\n")
    env = {
        **os.environ,
        "OPTITOP_NVML_SIM": str(HERE / "nvml_sim.py"),
        "OPTITOP_NVML_SIM_PERSISTENCE": "0",
        "OPTITOP_NVML_SIM_GPM_ERROR": "IN_USE",
    }
    optitop = str(Path(sys.executable).parent / "optitop")
    args = [optitop, "doctor", "--pid", str(target.pid), "--json", "--interval", "0.2"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd="/", timeout=120, check=False)
    gpu = json.loads(done.stdout)["sources"]["gpu"]
    assert gpu["ok"] is True, gpu
    assert "persistence mode off" in gpu["detail"] and "nvidia-smi -pm 1" in gpu["detail"]
    assert "profiling counters are held by another tool (Nsight Compute, DCGM profiling)" in gpu["detail"]
