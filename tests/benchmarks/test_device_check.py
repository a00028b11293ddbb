"""The GPU machine's one-run check, rehearsed here: the simulated libnvidia-ml under the real bindings, CPU workloads.

The script is what a session runs the first time a GPU is at hand, with minutes of device time: it must not fail
there for a reason a CPU machine could have shown. So the test runs the real shell script end to end (wheel
install when .whl/ is there, NVML facts, gpu_check, one accuracy run through ``optitop --once --json``, the live
screen in tmux, a Textual screenshot) and checks what it leaves in $OUT.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check_for_test", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ratio_checks_are_two_sided() -> None:
    gc = load_gpu_check()
    row = {"workload": "d2d_copy", "dram_bytes_per_s": 4.3e12, "achieved": {"bytes_dram": 4.2e12}}
    assert all(ok for ok, _ in gc.ratio_checks([row], 1.5))
    too_high = {**row, "dram_bytes_per_s": 3 * 4.2e12}  # a floor-only check ("> 60 %") would pass this
    too_low = {**row, "dram_bytes_per_s": 0.3 * 4.2e12}
    assert not any(ok for ok, _ in gc.ratio_checks([too_high], 1.5))
    assert not any(ok for ok, _ in gc.ratio_checks([too_low], 1.5))
    pinned = {"workload": "pinned_h2d_d2h", "pcie_rx_bytes_per_s": 17e9, "pcie_tx_bytes_per_s": None}
    pinned["achieved"] = {"bytes_h2d": 18e9, "bytes_d2h": 18e9}
    assert [ok for ok, _ in gc.ratio_checks([pinned], 1.5)] == [True, False]  # a missing reading fails


@pytest.mark.timeout(420)
def test_the_device_script_runs_end_to_end_on_the_simulated_library(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    env = {k: v for k, v in env.items() if not k.startswith("OPTITOP_NVML_SIM")}
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "device_check.sh"), "--sim", "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for name in ("summary.md", "results.json", "log.txt", "tui.txt", "screens.tar.gz"):
        assert (out / name).is_file(), name
    assert len(list(out.iterdir())) <= 8  # the device tool brings back at most 8 files
    results = json.loads((out / "results.json").read_text())
    steps = results["steps"]
    assert set(steps) == {"facts", "gpu_check", "accuracy", "tui", "screenshots"}
    assert all(s["ok"] for s in steps.values()), {k: s.get("error") for k, s in steps.items()}
    facts = steps["facts"]["devices"][0]
    assert facts["name"] == "NVIDIA H200" and facts["gpm_supported"] == 1
    assert facts["dram_peak_bytes_per_s"] == pytest.approx(6144 * 3201e6 * 2 / 8)
    assert "nvmlGpmSampleGet" in steps["facts"]["call_cost_us"]
    assert steps["gpu_check"]["rc"] == 0 and all(c["ok"] for c in steps["gpu_check"]["checks"])
    assert any("within 1.5x either way" in c["check"] for c in steps["gpu_check"]["checks"])
    run = steps["accuracy"]["rows"][0]
    assert run.get("verdict"), run  # optitop --once --json answered
    assert run["gpu"]["util_source"] == "gpm"  # through the simulator, loaded by the product's hook
    tui = steps["tui"]
    assert tui["mode"] == "headless" or tui["gpu_named"], tui  # the live screen shows the (simulated) GPU
    summary = (out / "summary.md").read_text()
    assert "SIMULATED NVML" in summary and "| nvmlGpmSampleGet |" in summary
    with tarfile.open(out / "screens.tar.gz") as tar:
        svg = tar.extractfile("gpu-160x48.svg")
        assert svg is not None and b"H200" in svg.read()
    assert "device_check.sh done: exit 0" in (out / "log.txt").read_text()
