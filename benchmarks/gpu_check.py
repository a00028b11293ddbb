"""Check the GPU collector on a real NVIDIA GPU: run known torch workloads one after another and print what it read.

    python benchmarks/gpu_check.py [--seconds 5] [--interval 0.5] [--ratio 1.5] [--json out.json] [--sim]

Each workload runs in its own child process (the collector's target, so attribution is checked too):
a bf16 matmul loop, a device-to-device copy loop, pinned host<->device copies in both directions at once,
tiny kernels with ``.item()`` each step (launch/host-bound), and an idle process holding a CUDA context.
The readings must separate them as ARCHITECTURE.md's measured facts do (tensor high for the matmul, DRAM
bandwidth high for the copy, PCIe high with SM idle for the transfers, graphics busy with SM ~0 for the
tiny kernels); the script prints a table, then one PASS/FAIL line per expectation, and exits 1 on a FAIL.
Each worker also reports the rate it achieved itself, and the checks are two-sided: NVML's DRAM GB/s, PCIe GB/s
each way and tensor % must lie within ``--ratio`` (either way) of what the worker measured, not just above a floor.

``--sim`` rehearses the script without a GPU: the simulated libnvidia-ml (tests/collectors/nvml_sim.py) stands in
under the real bindings, and the workers are CPU processes that report what an H200 achieved on the same workload
(so the rehearsal checks units, conversions and plumbing, not the hardware).

Needs torch with CUDA and nvidia-ml-py; not textual/py-spy/plotext. Exits 2 with a message when there is no GPU.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ("matmul", "d2d_copy", "pinned_h2d_d2h", "tiny_item", "idle")
SIM_LIBRARY = ROOT / "tests" / "collectors" / "nvml_sim.py"
#: Dense bf16 tensor-core peak by chip (NVIDIA's datasheets, SXM parts): tensor % ~ achieved / peak.
PEAK_BF16_DENSE_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "B200": 2250e12}
MIB = 1024 * 1024
#: What the --sim workers say they achieved: an H200 on the same workloads, matching the simulator's readings.
SIM_ACHIEVED: dict[str, dict[str, float]] = {
    "matmul": {"flops": 0.75 * 989.4e12, "steps": 40.0},
    "d2d_copy": {"bytes_dram": 0.9 * 6144 * 3201e6 * 2 / 8, "steps": 200.0},
    "pinned_h2d_d2h": {"bytes_h2d": 17000 * MIB, "bytes_d2h": 17000 * MIB, "steps": 20.0},
    "tiny_item": {"steps": 300.0},
    "idle": {"steps": 20.0},
}
SIM_WORKER = r"""
import json, signal, sys, time
done = False
def stop(*_):
    global done
    done = True
signal.signal(signal.SIGTERM, stop)
print(json.dumps({"ready": True, "uuid": ""}), flush=True)
while not done:
    time.sleep(0.05)
print(sys.argv[2], flush=True)
"""

WORKER = r"""
import json, signal, sys, time
import torch

mode = sys.argv[1]
dev = torch.device("cuda", 0)
done = False
moved = {"bytes_h2d": 0, "bytes_d2h": 0, "bytes_dram": 0, "flops": 0, "steps": 0}

def stop(*_):
    global done
    done = True

signal.signal(signal.SIGTERM, stop)
torch.cuda.init()
props = torch.cuda.get_device_properties(dev)
uuid = str(getattr(props, "uuid", "") or "")
if uuid and not uuid.startswith("GPU-"):
    uuid = "GPU-" + uuid
if mode == "matmul":
    n = 8192
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    def step():
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        moved["flops"] += 10 * 2 * n ** 3
elif mode == "d2d_copy":
    size = 1 << 30
    x = torch.empty(size, dtype=torch.uint8, device=dev)
    y = torch.empty_like(x)
    def step():
        for _ in range(10):
            y.copy_(x)
        torch.cuda.synchronize()
        moved["bytes_dram"] += 10 * 2 * size  # each copy reads and writes
elif mode == "pinned_h2d_d2h":
    size = 256 << 20
    h_in = torch.empty(size, dtype=torch.uint8).pin_memory()
    h_out = torch.empty(size, dtype=torch.uint8).pin_memory()
    d_in = torch.empty(size, dtype=torch.uint8, device=dev)
    d_out = torch.empty(size, dtype=torch.uint8, device=dev)
    up, down = torch.cuda.Stream(), torch.cuda.Stream()
    def step():
        for _ in range(4):
            with torch.cuda.stream(up):
                d_in.copy_(h_in, non_blocking=True)
            with torch.cuda.stream(down):
                h_out.copy_(d_out, non_blocking=True)
        torch.cuda.synchronize()
        moved["bytes_h2d"] += 4 * size
        moved["bytes_d2h"] += 4 * size
elif mode == "tiny_item":
    x = torch.zeros(16, device=dev)
    def step():
        for _ in range(100):
            x.add_(1)
            x.sum().item()
elif mode == "idle":
    x = torch.zeros(16, device=dev)
    torch.cuda.synchronize()
    def step():
        time.sleep(0.05)
else:
    raise SystemExit(f"unknown mode {mode}")
step()
torch.cuda.synchronize()
print(json.dumps({"ready": True, "uuid": uuid}), flush=True)
start = time.monotonic()
while not done:
    step()
    moved["steps"] += 1
elapsed = time.monotonic() - start
print(json.dumps({k: v / elapsed for k, v in moved.items()}), flush=True)
"""


def load_collector() -> Any:
    """GpuCollector from the installed optitop, or straight from this checkout (the GPU machine may lack it)."""
    try:
        from optitop.collectors.gpu import GpuCollector

        return GpuCollector
    except ImportError:
        pass
    sys.path.insert(0, str(ROOT))
    import optitop  # noqa: F401 - the trunk package from the checkout

    spec = importlib.util.spec_from_file_location(
        "optitop.collectors", ROOT / "collectors" / "__init__.py", submodule_search_locations=[str(ROOT / "collectors")]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["optitop.collectors"] = module
    spec.loader.exec_module(module)
    from optitop.collectors.gpu import GpuCollector

    return GpuCollector


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the check, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install torch, a CUDA build)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception as exc:  # any NVML failure means there is nothing to check against
        return f"NVML does not work here: {type(exc).__name__}: {exc}"
    return None


def start_worker(mode: str, sim: bool = False) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    argv = [sys.executable, "-c", SIM_WORKER, mode, json.dumps(SIM_ACHIEVED[mode])] if sim else None
    argv = argv or [sys.executable, "-c", WORKER, mode]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        raise SystemExit(f"gpu_check: the {mode} worker failed to start (exit {proc.returncode})")
    return proc, json.loads(line)


def stop_worker(proc: subprocess.Popen[str]) -> dict[str, float]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {}
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_one(collector_cls: Any, mode: str, seconds: float, interval: float, sim: bool = False) -> dict[str, Any]:
    from optitop.config import CollectorContext, Options

    if sim:
        os.environ["OPTITOP_NVML_SIM_SCENARIO"] = mode  # read when the collector installs the simulator
    proc, hello = start_worker(mode, sim)
    try:
        collector = collector_cls(CollectorContext(pid=proc.pid, options=Options(interval_s=interval)))
        samples = []
        latencies = []
        collector.sample()  # GPM needs a first sample to diff against
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(interval)  # the harness paces the ticks, as the session's runner would
            t0 = time.monotonic()
            samples.append(collector.sample())
            latencies.append(time.monotonic() - t0)
        collector.close()
    finally:
        achieved = stop_worker(proc)
    return summarise(mode, samples, latencies, hello.get("uuid", ""), proc.pid, achieved)


FIELDS = (
    "sm_util_pct",
    "sm_occupancy_pct",
    "tensor_util_pct",
    "dram_bw_util_pct",
    "dram_bytes_per_s",
    "graphics_util_pct",
    "pcie_rx_bytes_per_s",
    "pcie_tx_bytes_per_s",
    "legacy_gpu_util_pct",
    "legacy_mem_util_pct",
    "power_w",
    "sm_clock_mhz",
    "target_mem_bytes",
    "target_sm_pct",
)


def summarise(mode: str, samples: list[Any], latencies: list[float], uuid: str, pid: int, achieved: dict) -> dict:
    def pick(sample: Any) -> Any:
        by_uuid = [d for d in sample.devices if uuid and d.uuid == uuid]
        by_target = [d for d in sample.devices if d.target_pids]
        return (by_uuid or by_target or list(sample.devices))[0]

    devs = [pick(s) for s in samples]
    row: dict[str, Any] = {"workload": mode, "pid": pid, "n": len(devs)}
    for name in FIELDS:
        vals = [getattr(d, name) for d in devs if getattr(d, name) is not None]
        row[name] = mean(vals) if vals else None
    last = devs[-1] if devs else None
    row["device"] = f"{last.index} {last.name} [{last.util_source}]" if last else "?"
    row["throttle"] = ", ".join(sorted({r for d in devs for r in d.throttle_reasons})) or "-"
    row["attributed"] = any(d.target_pids for d in devs)
    row["sample_ms_max"] = 1000 * max(latencies) if latencies else None
    row["achieved"] = achieved
    return row


def fmt(v: Any, scale: float = 1.0, digits: int = 1) -> str:
    return "–" if v is None else f"{v / scale:.{digits}f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"device: {rows[0]['device']}")
    head = (
        f"{'workload':<15} {'SM%':>5} {'occ%':>5} {'TC%':>5} {'DRAM%':>6} {'DRAM GB/s':>9} {'gfx%':>5}"
        f" {'PCIe rx':>8} {'PCIe tx':>8} {'lgcy%':>6} {'lgcyM%':>6} {'W':>5} {'SM MHz':>6}"
        f" {'tgt GiB':>7} {'tgt SM%':>7} {'ms':>5}  achieved by the worker"
    )
    print(head)
    for r in rows:
        a = r["achieved"]
        got = []
        if a.get("flops"):
            got.append(f"{a['flops'] / 1e12:.0f} TFLOP/s")
        if a.get("bytes_dram"):
            got.append(f"{a['bytes_dram'] / 1e9:.0f} GB/s DRAM r+w")
        if a.get("bytes_h2d"):
            got.append(f"H2D {a['bytes_h2d'] / 1e9:.1f} GB/s, D2H {a['bytes_d2h'] / 1e9:.1f} GB/s")
        if r["workload"] == "tiny_item" and a.get("steps"):
            got.append(f"{a['steps'] * 100:.0f} .item()/s")
        print(
            f"{r['workload']:<15} {fmt(r['sm_util_pct']):>5} {fmt(r['sm_occupancy_pct']):>5}"
            f" {fmt(r['tensor_util_pct']):>5} {fmt(r['dram_bw_util_pct']):>6} {fmt(r['dram_bytes_per_s'], 1e9):>9}"
            f" {fmt(r['graphics_util_pct']):>5} {fmt(r['pcie_rx_bytes_per_s'], 1e9):>8}"
            f" {fmt(r['pcie_tx_bytes_per_s'], 1e9):>8} {fmt(r['legacy_gpu_util_pct']):>6}"
            f" {fmt(r['legacy_mem_util_pct']):>6} {fmt(r['power_w'], 1, 0):>5} {fmt(r['sm_clock_mhz'], 1, 0):>6}"
            f" {fmt(r['target_mem_bytes'], 1024**3, 2):>7} {fmt(r['target_sm_pct']):>7}"
            f" {fmt(r['sample_ms_max'], 1, 0):>5}  {'; '.join(got)}"
        )
    print("throttle reasons seen: " + "; ".join(f"{r['workload']}: {r['throttle']}" for r in rows))


def within(measured: float | None, achieved: float | None, ratio: float) -> bool:
    """Two-sided: ``measured`` lies within ``ratio`` of ``achieved`` either way (False when either is unknown)."""
    if measured is None or not achieved or measured != measured:
        return False
    return 1 / ratio <= measured / achieved <= ratio


def peak_flops(device: str) -> float | None:
    """The dense bf16 peak of the chip named in a row's device label, when known."""
    return next((v for k, v in PEAK_BF16_DENSE_FLOPS.items() if k in device), None)


def ratio_checks(rows: list[dict[str, Any]], ratio: float) -> list[tuple[bool, str]]:
    """Each reading against what the worker achieved itself, within ``ratio`` either way."""
    by = {r["workload"]: r for r in rows}
    out: list[tuple[bool, str]] = []

    def got(mode: str, key: str) -> float | None:
        v = by.get(mode, {}).get("achieved", {}).get(key)
        return None if v is None else float(v)

    def read(mode: str, key: str) -> float | None:
        v = by.get(mode, {}).get(key)
        return None if v is None else float(v)

    def line(label: str, measured: float | None, achieved: float | None, scale: float, unit: str) -> str:
        m = "–" if measured is None else f"{measured / scale:.1f}"
        a = "–" if achieved is None else f"{achieved / scale:.1f}"
        return f"{label}: NVML {m} vs worker {a} {unit} (within {ratio:g}x either way)"

    if "d2d_copy" in by:
        m, a = read("d2d_copy", "dram_bytes_per_s"), got("d2d_copy", "bytes_dram")
        out.append((within(m, a, ratio), line("d2d copy DRAM", m, a, 1e9, "GB/s")))
    if "pinned_h2d_d2h" in by:
        for key, ach in (("pcie_rx_bytes_per_s", "bytes_h2d"), ("pcie_tx_bytes_per_s", "bytes_d2h")):
            m, a = read("pinned_h2d_d2h", key), got("pinned_h2d_d2h", ach)
            label = "pinned PCIe rx (H2D)" if ach == "bytes_h2d" else "pinned PCIe tx (D2H)"
            out.append((within(m, a, ratio), line(label, m, a, 1e9, "GB/s")))
    if "matmul" in by:
        peak = peak_flops(str(by["matmul"].get("device", "")))
        flops = got("matmul", "flops")
        expect = None if peak is None or flops is None else 100 * flops / peak
        m = read("matmul", "tensor_util_pct")
        if expect is not None:
            out.append((within(m, expect, ratio), line("matmul tensor %", m, expect, 1, "% (achieved/peak)")))
        sm = read("matmul", "sm_util_pct")
        out.append((sm is not None and 50 <= sm <= 100.5, f"matmul: SM {sm if sm is not None else '–'} % in 50..100"))
    return out


def checks(rows: list[dict[str, Any]]) -> list[tuple[bool, str]]:
    """The separations ARCHITECTURE.md measured, as pass/fail lines (only GPM rows can separate the classes)."""
    by = {r["workload"]: r for r in rows}

    def val(mode: str, name: str) -> float:
        v = by.get(mode, {}).get(name)
        return float("nan") if v is None else float(v)

    out = [
        (
            val("matmul", "tensor_util_pct") > 40,
            f"matmul: tensor util high ({val('matmul', 'tensor_util_pct'):.1f} > 40)",
        ),
        (
            val("d2d_copy", "dram_bw_util_pct") > 60,
            f"d2d copy: DRAM bw util high ({val('d2d_copy', 'dram_bw_util_pct'):.1f} > 60)",
        ),
        (
            val("d2d_copy", "tensor_util_pct") < 5,
            f"d2d copy: tensor ~0 ({val('d2d_copy', 'tensor_util_pct'):.1f} < 5)",
        ),
        (
            min(val("pinned_h2d_d2h", "pcie_rx_bytes_per_s"), val("pinned_h2d_d2h", "pcie_tx_bytes_per_s")) > 5e9,
            "pinned copies: PCIe rx and tx > 5 GB/s each"
            f" ({val('pinned_h2d_d2h', 'pcie_rx_bytes_per_s') / 1e9:.1f} / "
            f"{val('pinned_h2d_d2h', 'pcie_tx_bytes_per_s') / 1e9:.1f})",
        ),
        (
            val("pinned_h2d_d2h", "sm_util_pct") < 20,
            f"pinned copies: SM idle ({val('pinned_h2d_d2h', 'sm_util_pct'):.1f} < 20)",
        ),
        (
            val("tiny_item", "graphics_util_pct") > 5 and val("tiny_item", "sm_util_pct") < 5,
            f"tiny kernels: graphics busy ({val('tiny_item', 'graphics_util_pct'):.1f} > 5) but SM ~0"
            f" ({val('tiny_item', 'sm_util_pct'):.2f} < 5)",
        ),
        (val("idle", "sm_util_pct") < 5, f"idle: SM ~0 ({val('idle', 'sm_util_pct'):.2f} < 5)"),
        (all(r["attributed"] for r in rows), "every worker's GPU process is attributed to it (target pids)"),
        (
            all((r["sample_ms_max"] or 0) < 200 for r in rows),
            "sample() never takes 200 ms (no sleeping, no slow legacy call on GPM devices)",
        ),
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of sampling per workload")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between collector ticks")
    parser.add_argument("--only", choices=WORKLOADS, action="append", help="run only these workloads")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--ratio", type=float, default=1.5, help="two-sided tolerance against the workers' rates")
    parser.add_argument("--sim", action="store_true", help="rehearse on the simulated NVML with CPU workers")
    args = parser.parse_args()
    if args.sim:
        os.environ.setdefault("OPTITOP_NVML_SIM", str(SIM_LIBRARY))
    reason = None if args.sim else no_gpu_reason()
    if reason:
        print(f"gpu_check: no GPU to check on this machine: {reason}. Run it on a machine with an NVIDIA GPU.")
        return 2
    collector_cls = load_collector()
    rows = []
    for mode in args.only or WORKLOADS:
        print(f"running {mode} for {args.seconds:g} s …", flush=True)
        rows.append(run_one(collector_cls, mode, args.seconds, args.interval, args.sim))
    print()
    print_table(rows)
    print()
    results = (checks(rows) if not args.only else []) + ratio_checks(rows, args.ratio)
    for ok, line in results:
        print(("PASS  " if ok else "FAIL  ") + line)
    if args.json:
        doc = {"rows": rows, "checks": [{"ok": ok, "check": line} for ok, line in results], "sim": args.sim}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
    return 0 if all(ok for ok, _ in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # cuda:0 is NVML's index 0
    sys.exit(main())
