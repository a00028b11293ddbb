"""The GPU and memory-bandwidth panes, rendered from a Store filled by the real collectors.

GPU samples come from the GpuCollector driven by the fake pynvml (CI has no GPU); process and system samples
come from the real collectors watching real processes the tests start.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pynvml
import pytest
from conftest import wait_for
from textual.app import App, ComposeResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collectors"))
from nvml_sim import H100_COPY, H100_MATMUL, H100_PCIE, a100_legacy, h100, make_fake  # noqa: E402

from optitop.collectors.gpu import GpuCollector  # noqa: E402
from optitop.collectors.hostmem import HOST_DRAM_BW_UNAVAILABLE  # noqa: E402
from optitop.collectors.process import ProcessCollector  # noqa: E402
from optitop.collectors.system import SystemCollector  # noqa: E402
from optitop.config import CollectorContext, Options  # noqa: E402
from optitop.model import SourceState, SourceStatus, TargetInfo, Window  # noqa: E402
from optitop.store import Store  # noqa: E402
from optitop.tui.format import fmt_si_rate  # noqa: E402
from optitop.tui.panes.gpu import GpuPane  # noqa: E402
from optitop.tui.panes.membw import HOST_DRAM_UNKNOWN, MemBwPane  # noqa: E402

WIDTH = 78
NO_DRIVER = (
    "NVML not found (libnvidia-ml.so.1): no NVIDIA driver on this machine; install the driver, or run with --no-gpu"
)


def new_store(pid: int | None = None) -> Store:
    pid = pid or os.getpid()
    return Store(TargetInfo(pid, "python", "python serve.py", "root", time.time(), "host"))


def gpu_store(gpus: list, ticks: int = 3, pid: int | None = None) -> tuple[Store, GpuCollector]:
    store = new_store(pid)
    c = GpuCollector(CollectorContext(pid or os.getpid(), Options()), nvml=make_fake(gpus))
    c.gpm_min_span_s = 0.0
    for _ in range(ticks):
        store.add("gpu", c.sample())
    store.set_status(SourceStatus("gpu", SourceState.OK))
    return store, c


def render(pane_cls: type, window: Window, width: int = WIDTH) -> list[str]:
    lines = pane_cls().build(window, width).plain.split("\n")
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    return lines


# -- the GPU pane --------------------------------------------------------------------------------------------
def test_one_h100_block_reads_at_78_columns() -> None:
    me = os.getpid()
    store, _ = gpu_store([h100(gpm_values=H100_MATMUL, compute_procs=[(me, 20 * 1024**3)])])
    text = "\n".join(render(GpuPane, store.window()))
    assert "NVIDIA H100 80GB HBM3 [gpm]" in text and "64°C" in text and "312/700 W" in text
    sm = next(line for line in text.splitlines() if line.startswith("SM "))
    assert "78%" in sm and "tensor" in sm and "75%" in sm
    assert "DRAM bw" in text and "23%" in text and "graphic" in text
    assert "mem 40.0 GiB/80.0 GiB · target 20.0 GiB · SM –: no per-process sample for 5 s" in text
    assert f"pid {me}" not in text  # no room left at 78 columns: the pid is dropped, not the numbers
    assert "throttle: power cap, SW thermal" in text
    assert "of 63 GB/s (Gen5×16)" in text
    assert "hist SM" in text
    assert "target on GPU 0" in text
    assert len(text.splitlines()) <= 10  # leaves room on an 80×24 screen


def test_target_share_of_sm_from_the_newest_process_sample() -> None:
    me = os.getpid()
    now_us = int(time.time() * 1e6)
    store, _ = gpu_store([h100(compute_procs=[(me, 1024**3)], proc_util=[(me, now_us, 60, 30)])])
    text = "\n".join(render(GpuPane, store.window()))
    assert f"mem 40.0 GiB/80.0 GiB · target 1.0 GiB SM 60% mem-ctl 30% pid {me}" in text


def test_legacy_gpu_is_labelled() -> None:
    store, _ = gpu_store([a100_legacy()])
    text = "\n".join(render(GpuPane, store.window()))
    assert "[legacy]" in text and "busy" in text and "87%" in text and "mem-ctl" in text
    assert "legacy counters" in text  # says these are not SM or bandwidth numbers
    assert "tensor" not in text  # no GPM bars drawn as if they were measured
    assert "NVLink: needs GPM" in text


def test_eight_gpus_get_compact_rows() -> None:
    gpus = [h100(bus_id=f"00000000:{0x10 + i:02X}:00.0", uuid=f"GPU-{i}", gpm_values=H100_COPY) for i in range(7)]
    gpus.append(a100_legacy(bus_id="00000000:F0:00.0", compute_procs=[(os.getpid(), 1024**3)]))
    store, _ = gpu_store(gpus)
    lines = render(GpuPane, store.window())
    assert len(lines) <= 12
    rows = [line for line in lines if line[:2].strip().isdigit()]
    assert [int(r[:2]) for r in rows] == list(range(8))
    assert rows[7][2] == "*" and all(r[2] == " " for r in rows[:7])  # the target's GPU is marked
    assert "ˡ" in rows[7] and "legacy busy %" in lines[-1]
    assert " 99% " in rows[0] or "100%" in rows[0] or "99%" in rows[0]


def test_no_gpu_is_one_line_with_the_reason() -> None:
    store = new_store()
    store.set_status(SourceStatus("gpu", SourceState.UNAVAILABLE, NO_DRIVER))
    text = GpuPane().build(store.window(), WIDTH).plain
    assert "\n" not in text
    assert NO_DRIVER in text and text.startswith("GPU ")


def test_waiting_before_the_first_sample() -> None:
    store = new_store()
    store.register("gpu", 1.0)
    assert "waiting for the first sample" in GpuPane().build(store.window(), WIDTH).plain


def test_lost_gpu_and_mig_are_said() -> None:
    gpus = [h100(), a100_legacy(mig=True, bus_id="00000000:20:00.0")]
    store, c = gpu_store(gpus)
    gpus[0].lost = True
    store.add("gpu", c.sample())
    text = "\n".join(render(GpuPane, store.window()))
    assert "GPU lost" in text and "reset" in text
    assert "MIG" in text and "not available on MIG" in text


def test_attribution_note_is_shown(start_target) -> None:
    target = start_target("ready()\ntime.sleep(60)\n")
    store, _ = gpu_store([h100(compute_procs=[(999_999_999, 1024)])], pid=target.pid)
    text = "\n".join(render(GpuPane, store.window()))
    assert "target on no GPU" in text and "uses no GPU" in text


# -- the memory-bandwidth pane ---------------------------------------------------------------------------------
def test_dram_and_pcie_as_rates_and_percent_of_peak() -> None:
    gpu = h100(gpm_values=H100_COPY)
    store, c = gpu_store([gpu])
    text = "\n".join(render(MemBwPane, store.window()))
    # 90 % of 5120 bit × 2619 MHz × 2 / 8 = 3.35 TB/s
    assert "90% ≈ 3.02 TB/s of 3.35 TB/s peak (est.)" in text
    gpu.gpm_values = H100_PCIE
    store.add("gpu", c.sample())
    text = "\n".join(render(MemBwPane, store.window()))
    # 17,000 MiB/s = 17.8 GB/s, 28 % of a Gen5 ×16 link's 63 GB/s
    assert "PCIe rx 17.8 GB/s (28%) · tx 17.8 GB/s (28%) of 63 GB/s each way (Gen5×16)" in text
    assert "peak 90%" in text  # the DRAM history keeps the copy's peak
    assert "PCIe GB/s" in text and "peak 35.7" in text
    assert HOST_DRAM_BW_UNAVAILABLE in text or "not collected" in text


def test_legacy_dram_is_not_called_bandwidth() -> None:
    store, _ = gpu_store([a100_legacy()])
    text = "\n".join(render(MemBwPane, store.window()))
    assert "mem-ctl" in text and "41%" in text and "legacy: time, not bw" in text
    assert "≈" not in text  # no GB/s estimate from a busy-time counter
    assert "[legacy]" in text and "500 kB/s" not in text and fmt_si_rate(500 * 1024) in text


def test_capacity_and_target_share() -> None:
    store, _ = gpu_store([h100(compute_procs=[(os.getpid(), 8 * 1024**3)])])
    text = "\n".join(render(MemBwPane, store.window()))
    assert "mem 40.0 GiB / 80.0 GiB (50%) · target 8.0 GiB (10% of the GPU)" in text


def test_missing_metrics_show_dashes_not_zero() -> None:
    store, _ = gpu_store([h100(gpm_metric_errors={"DRAM_BW_UTIL": 3, "PCIE_RX_PER_SEC": 3})])
    text = "\n".join(render(MemBwPane, store.window()))
    assert "DRAM bw" in text and "   –" in text and "≈ – of 3.35 TB/s" in text
    assert "PCIe rx – (–)" in text


def test_many_gpus_one_row_each() -> None:
    gpus = [h100(bus_id=f"00000000:{0x10 + i:02X}:00.0", uuid=f"GPU-{i}", gpm_values=H100_COPY) for i in range(8)]
    store, _ = gpu_store(gpus)
    lines = render(MemBwPane, store.window())
    assert sum(1 for line in lines if line.startswith("GPU")) == 8


def test_no_gpu_still_shows_the_host_side() -> None:
    store = new_store()
    store.set_status(SourceStatus("gpu", SourceState.UNAVAILABLE, NO_DRIVER))
    text = "\n".join(render(MemBwPane, store.window(), width=200))
    assert "GPU: unavailable: " + NO_DRIVER in text
    assert HOST_DRAM_UNKNOWN in text  # the GPU collector is where the PMU check lives


FAULTER = """
ready()
chunks = []
while True:
    chunks.append(bytearray(8 * 1024 * 1024))  # fresh pages: one minor fault per page touched
    if len(chunks) > 24:
        chunks.clear()
    time.sleep(0.02)
"""


def test_host_paging_of_a_real_process(start_target) -> None:
    target = start_target(FAULTER)
    ctx = CollectorContext(target.pid, Options(interval_s=0.2))
    proc_c, sys_c = ProcessCollector(ctx), SystemCollector(ctx)
    store = new_store(target.pid)
    gpu_store_, _ = gpu_store([h100()], ticks=2)
    store.add("gpu", gpu_store_.window().latest("gpu"))  # type: ignore[arg-type]

    def faults() -> float:
        store.add("process", proc_c.sample())
        store.add("system", sys_c.sample())
        rate = store.window().latest("process").minor_faults_per_s  # type: ignore[union-attr]
        return rate if rate and rate > 1000 else 0.0

    rate = wait_for(faults, timeout_s=20.0, every_s=0.2)
    text = "\n".join(render(MemBwPane, store.window()))
    host = next(line for line in text.splitlines() if line.startswith("host target:"))
    assert "k/s minor" in host or "M/s minor" in host, (host, rate)
    assert "RSS" in host and "/s (" in host
    swap = next(line for line in text.splitlines() if line.startswith("host swap:"))
    if psutil.swap_memory().total == 0:
        assert "none configured" in swap
    else:
        assert "in " in swap and "out " in swap
    assert text.splitlines()[-1] in (HOST_DRAM_BW_UNAVAILABLE, store.window().latest("gpu").host_dram_bw_note)  # type: ignore[union-attr]


# -- mounted in a real Textual app -------------------------------------------------------------------------------
class PanesApp(App[None]):
    def __init__(self, window: Window) -> None:
        super().__init__()
        self.window = window

    def compose(self) -> ComposeResult:
        yield GpuPane(id="gpu")
        yield MemBwPane(id="membw")

    def on_mount(self) -> None:
        for pane in self.query(GpuPane):
            pane.show(self.window)
        for pane in self.query(MemBwPane):
            pane.show(self.window)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_panes_mount_and_render(size: tuple[int, int]) -> None:
    store, _ = gpu_store([h100(gpm_values=H100_MATMUL)])
    app = PanesApp(store.window())
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        gpu = app.query_one(GpuPane)
        assert "tensor" in str(gpu.render())
        assert "3.35 TB/s" in str(app.query_one(MemBwPane).render())
        # showing the same window twice changes nothing the second time (panes redraw only on change)
        gpu.show(store.window())
        assert gpu.show(store.window()) is False


async def test_without_a_gpu_the_pane_is_rebuilt_only_when_its_status_changes() -> None:
    store = new_store()
    store.set_status(SourceStatus("gpu", SourceState.UNAVAILABLE, NO_DRIVER))
    app = PanesApp(store.window())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        gpu = app.query_one(GpuPane)
        gpu.show(store.window())  # at its laid-out width
        builds = []
        real = gpu.build
        gpu.build = lambda window, width: builds.append(1) or real(window, width)  # type: ignore[method-assign]
        gpu.show(store.window())
        gpu.show(store.window())
        assert builds == []  # the same status: one line that cannot have changed
        store.set_status(SourceStatus("gpu", SourceState.UNAVAILABLE, "NVML: driver/library version mismatch"))
        assert gpu.show(store.window()) is True
        assert builds == [1] and "version mismatch" in str(gpu.render())
        store.add("gpu", gpu_store([h100(gpm_values=H100_MATMUL)])[1].sample())
        gpu.show(store.window())
        gpu.show(store.window())
        assert builds == [1, 1, 1]  # with samples, every tick (the numbers and their history move)
        assert "tensor" in str(gpu.render())


async def test_a_pane_keeps_its_background_until_the_theme_changes() -> None:
    from textual.dom import DOMNode

    store, _ = gpu_store([h100(gpm_values=H100_MATMUL)])
    app = PanesApp(store.window())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        gpu = app.query_one(GpuPane)
        before = gpu.background_colors
        assert before == DOMNode.background_colors.fget(gpu)  # type: ignore[attr-defined]
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await pilot.pause()
        after = gpu.background_colors
        assert after == DOMNode.background_colors.fget(gpu)  # type: ignore[attr-defined]
        assert after != before


def test_gpm_fallback_and_persistence_off_are_warned_in_the_block() -> None:
    from optitop.collectors.gpm import GPM_FALLBACK_AFTER

    gpu = h100(util_gpu=97, persistence=False, errors={"nvmlGpmSampleGet": pynvml.NVML_ERROR_IN_USE})
    store, _ = gpu_store([gpu], ticks=GPM_FALLBACK_AFTER)
    text = "\n".join(render(GpuPane, store.window()))
    assert "[legacy]" in text and "97%" in text
    assert "held by another tool (Nsight" in text.replace("\n", " ")
    assert "persistence mode off" in text and "nvidia-smi -pm 1" in text.replace("\n", " ")


def test_mig_block_names_the_targets_gpu_instance() -> None:
    me = os.getpid()
    gpu = h100(mig=True, mig_instances={3: H100_MATMUL}, compute_procs=[(me, 4 * 1024**3, 3)])
    store, _ = gpu_store([gpu])
    text = "\n".join(render(GpuPane, store.window()))
    assert "NVIDIA H100 80GB HBM3 GI 3 [gpm]" in text and "MIG" in text
    assert "78%" in text  # the instance's SM, from nvmlGpmMigSampleGet
    assert "SM –: not available on MIG" in text
