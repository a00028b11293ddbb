"""One window, four readers: the verdict, the GPU pane, the exporter and compare must agree on which GPUs are the
target's and how busy they are (issue 21: "which GPUs" was computed three ways and "GPU busy %" four, two of them
falling back to NVML's legacy utilisation, which reads 0 % under load on Hopper; one window could read busy in the
verdict and idle in compare).

The window is a two-GPU host where the target runs on GPU 1 only: GPU 1 reads GPM (78 % SM, legacy 0 %), GPU 0 is
another tenant's legacy-only device at 99 %. A reader that judges every GPU says 99 (or 88.5 averaged); a reader that
takes the legacy number says 0; only the model's rule (``GpuSample.target_devices``, ``gpu_busy_pct``) says 78.
"""

from __future__ import annotations

import re

import pytest
import samplefactory
from prometheus_client import generate_latest

from optitop.analyzers.signals import extract
from optitop.exporter import make_registry
from optitop.model import GpuSample, ServingSample, ServingStats, TargetInfo, Window
from optitop.recording.compare import row_spec, run_of, value_of
from optitop.recording.scan import load
from optitop.recording.writer import write_snapshot
from optitop.store import Store
from optitop.tui.panes.gpu import GpuPane

WALL0 = 1_800_000_000.0
TARGET_BUSY = 78.0


def two_gpu_store(other_is_mine: bool = False) -> Store:
    """``other_is_mine``: the target runs on both GPUs (tensor parallel), one GPM-busy at 78 %, one legacy at 99 %."""
    other = samplefactory.gpu_device(
        index=0,
        uuid="GPU-0",
        util_source="legacy",
        sm_util_pct=None,
        legacy_gpu_util_pct=99.0 if not other_is_mine else 40.0,
        target_pids=() if not other_is_mine else (4242,),
    )
    mine = samplefactory.gpu_device(
        index=1, uuid="GPU-1", util_source="gpm", sm_util_pct=TARGET_BUSY, legacy_gpu_util_pct=0.0
    )
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"), clock=lambda: 13.0)
    for i in range(4):
        store.add("process", samplefactory.process_sample(WALL0 + i, 10.0 + i, 1.0 if i else None, cpu_pct=90.0))
        mine_at = (0, 1) if other_is_mine else (1,)
        store.add(
            "gpu", samplefactory.gpu_sample(WALL0 + i, 10.0 + i, devices=(other, mine), target_gpu_indices=mine_at)
        )
    return store


@pytest.fixture
def window() -> Window:
    return two_gpu_store().window()


def test_the_model_picks_the_targets_gpu(window: Window) -> None:
    sample = window.latest_of("gpu", GpuSample)
    assert sample is not None
    chosen = sample.target_devices()
    assert [d.index for d in chosen.devices] == [1]
    assert chosen.known is True
    assert sample.target_busy_pct() == TARGET_BUSY


def test_the_verdict_reads_the_targets_gpu(window: Window) -> None:
    assert extract(window).gpu_busy_pct == TARGET_BUSY


def test_the_gpu_pane_marks_and_reads_the_targets_gpu(window: Window) -> None:
    text = GpuPane().build(window, 78).plain
    assert "target on GPU 1" in text.splitlines()[0]
    block = text[text.index("\n1 ") :]  # GPU 1's block
    assert re.search(r"SM .* 78%", block), block


def test_the_exporter_reads_the_targets_gpu() -> None:
    page = generate_latest(make_registry(two_gpu_store())).decode()
    assert re.search(r"^optitop_gpu_target_busy_percent 78\.0$", page, re.M), page
    assert re.search(r'^optitop_gpu_busy_percent\{gpu="1",.*\} 78\.0$', page, re.M)
    assert re.search(r'^optitop_gpu_busy_percent\{gpu="0",.*\} 99\.0$', page, re.M)  # each GPU by the same policy


def test_compare_reads_the_targets_gpu(tmp_path) -> None:
    """Through the real path: the window written as a recording, read back, reduced to compare's row."""
    path = str(tmp_path / "run.jsonl")
    write_snapshot(two_gpu_store(), path)
    assert value_of(run_of(load(path)), row_spec("GPU busy (target)")) == TARGET_BUSY


def test_a_target_on_two_gpus_reads_its_busiest_everywhere(tmp_path) -> None:
    """Tensor parallel: the target's GPUs at 78 % (GPM) and 40 % (legacy). One saturated GPU is the bottleneck even
    when its neighbour idles, so every reader says 78, none the mean (59)."""
    store = two_gpu_store(other_is_mine=True)
    window = store.window()
    assert extract(window).gpu_busy_pct == TARGET_BUSY
    page = generate_latest(make_registry(store)).decode()
    assert re.search(r"^optitop_gpu_target_busy_percent 78\.0$", page, re.M), page
    path = str(tmp_path / "run.jsonl")
    write_snapshot(store, path)
    assert value_of(run_of(load(path)), row_spec("GPU busy (target)")) == TARGET_BUSY
    assert "target on GPU 0, 1" in GpuPane().build(window, 78).plain.splitlines()[0]


@pytest.mark.parametrize(
    ("waiting", "running", "in_system"),
    [(2.0, 3.0, 5.0), (None, 3.0, 3.0), (2.0, None, 2.0), (None, None, None), (0.0, 0.0, 0.0)],
)
def test_requests_in_system_is_one_rule_for_the_model_and_the_verdict(waiting, running, in_system) -> None:
    store = two_gpu_store()
    stats = ServingStats(requests_waiting=waiting, requests_running=running, request_rate_per_s=1.0)
    for i in range(4):
        store.add("queue", ServingSample(WALL0 + i, 10.0 + i, 1.0, "vllm @ test", "vllm", stats))
    assert stats.requests_in_system == in_system
    assert extract(store.window()).requests_in_system == in_system
