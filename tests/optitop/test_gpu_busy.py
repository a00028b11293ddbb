"""GPU busy % is one policy: the verdict's signals, the GPU pane's history, compare and the GPU-dip trigger read the
same window the same way (issue 21: two of four fell back to the legacy utilisation, which reads 0 % under load on
Hopper, so one window could read busy in the verdict and idle in compare)."""

from __future__ import annotations

import pytest
import samplefactory

from optitop.analyzers.signals import extract
from optitop.model import TargetInfo, gpu_busy_pct
from optitop.recording.compare import row_spec
from optitop.store import Store
from optitop.tui.panes.gpu import util_history

WALL0 = 1_800_000_000.0


def readings(device) -> dict[str, float | None]:
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"), clock=lambda: 12.0)
    for i in range(3):
        store.add("process", samplefactory.process_sample(WALL0 + i, 10.0 + i, 1.0 if i else None, cpu_pct=90.0))
        store.add("gpu", samplefactory.gpu_sample(WALL0 + i, 10.0 + i, devices=(device,)))
    window = store.window()
    sample = window.latest("gpu")
    return {
        "policy": gpu_busy_pct(device),
        "verdict": extract(window).gpu_busy_pct,
        "pane": util_history(window, device.index)[0][-1],
        "compare": row_spec("GPU busy (target)").extract(sample),
        "gpu-dip": sample.target_busy_pct(),  # what optitop.policies.GpuDipDump compares
    }


@pytest.mark.parametrize(
    ("fields", "busy"),
    [
        ({"util_source": "gpm", "sm_util_pct": 78.0, "legacy_gpu_util_pct": 0.0}, 78.0),  # Hopper under a matmul
        ({"util_source": "gpm", "sm_util_pct": None, "legacy_gpu_util_pct": 0.0}, None),  # no SM reading: unknown
        ({"util_source": "legacy", "sm_util_pct": None, "legacy_gpu_util_pct": 97.0}, 97.0),  # no GPM, or fell back
    ],
    ids=["gpm", "gpm-without-a-reading", "legacy"],
)
def test_every_reader_of_one_window_agrees_on_how_busy_the_gpu_is(fields, busy):
    got = readings(samplefactory.gpu_device(**fields))
    assert got == dict.fromkeys(got, busy)
