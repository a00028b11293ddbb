"""One run that checks optitop's GPU path on a real GPU machine, writing every result under one folder.

    benchmarks/device_check.sh [--sim] [--quick]          # installs the carried wheels first, then runs this
    python benchmarks/device_check.py --out DIR [--sim] [--quick] [--skip STEP,...]

Steps (each timed, each failure recorded and the next step run):
1. ``facts``: what NVML says about each GPU (GPM support, bus width x max memory clock = DRAM peak, PCIe
   generation and width, MIG mode, persistence mode, clock-event reasons, NvLink links up) and the cost of every
   NVML call the collector makes per tick (mean microseconds over repeated calls), plus one whole tick.
2. ``gpu_check``: benchmarks/gpu_check.py, whose checks are two-sided (DRAM GB/s, PCIe GB/s each way and tensor %
   within a ratio of what the worker itself achieved).
3. ``accuracy``: the demo's GPU scenarios (compute, memory_io pageable and pinned, host_cpu launch-bound,
   scheduling, idle) through the real ``optitop --once --json``: verdict, confidence and the GPU readings.
4. ``tui``: optitop's live screen for 20 s in tmux when tmux is there (the text of the screen is kept).
5. ``screenshots``: the live screen captured by Textual as SVG at 160x48 and 80x24 (a GPU target).

Out (at most 8 files, as the device tool brings back): ``summary.md`` (every table), ``results.json``,
``log.txt`` (from device_check.sh), ``tui.txt`` and ``screens.tar.gz``.

``--sim`` rehearses all of it without a GPU: ``OPTITOP_NVML_SIM`` makes optitop load the simulated
libnvidia-ml (tests/collectors/nvml_sim.py) under the real nvidia-ml-py, and the workloads run on the CPU.
``--quick`` shortens every step (the test that rehearses the script uses it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIM_LIBRARY = ROOT / "tests" / "collectors" / "nvml_sim.py"
STEPS = ("facts", "gpu_check", "accuracy", "tui", "screenshots")
#: accuracy runs: (label, demo scenario, expected verdict, extra environment, simulated GPU scenario)
ACCURACY_RUNS: tuple[tuple[str, str, str, dict[str, str], str], ...] = (
    ("compute", "compute", "compute", {}, "compute"),
    ("memory_io pageable", "memory_io", "memory_io", {}, "pageable"),
    ("memory_io pinned", "memory_io", "memory_io", {"OPTITOP_DEMO_PINNED": "1"}, "pinned_h2d_d2h"),
    ("host_cpu launch", "host_cpu", "host_cpu", {}, "host_cpu"),
    ("scheduling", "scheduling", "scheduling", {}, "scheduling"),
    ("idle", "idle", "idle", {}, "idle"),
)


#: Where optitop's subprocesses run: not the checkout, whose optitop/ folder would shadow the installed package.
NEUTRAL_CWD = tempfile.gettempdir()


def optitop_cmd() -> list[str]:
    """optitop as installed for this interpreter (the wheels' copy first on PYTHONPATH when carried)."""
    return [sys.executable, "-m", "optitop"]


def load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- 1. NVML facts and the cost of each call -------------------------------------------------------------------
def step_facts(ctx: dict[str, Any]) -> dict[str, Any]:
    from optitop.collectors.gpu import GpuCollector
    from optitop.collectors.gpupeaks import decode_throttle, dram_peak_bytes_per_s, pcie_link_bytes_per_s
    from optitop.collectors.nvml import import_pynvml
    from optitop.config import CollectorContext, Options

    if ctx["sim"]:
        os.environ["OPTITOP_NVML_SIM_SCENARIO"] = "compute"
    m = import_pynvml()
    m.nvmlInit()
    devices = []
    costs: dict[str, float] = {}
    try:

        def safe(fn: Callable[..., Any], *args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as exc:  # a fact NVML will not give is written down as such
                return f"error: {type(exc).__name__}: {exc}"

        for i in range(m.nvmlDeviceGetCount()):
            h = m.nvmlDeviceGetHandleByIndex(i)
            width = safe(m.nvmlDeviceGetMemoryBusWidth, h)
            mem_max = safe(m.nvmlDeviceGetMaxClockInfo, h, m.NVML_CLOCK_MEM)
            gen, lanes = safe(m.nvmlDeviceGetMaxPcieLinkGeneration, h), safe(m.nvmlDeviceGetMaxPcieLinkWidth, h)
            support = safe(m.nvmlGpmQueryDeviceSupport, h)
            reasons = safe(m.nvmlDeviceGetCurrentClocksEventReasons, h)
            links = []
            for link in range(int(getattr(m, "NVML_NVLINK_MAX_LINKS", 18))):
                state = safe(m.nvmlDeviceGetNvLinkState, h, link)
                if isinstance(state, str):
                    break
                links.append(int(state))
            nums = isinstance(width, int) and isinstance(mem_max, int)
            devices.append(
                {
                    "index": i,
                    "name": safe(m.nvmlDeviceGetName, h),
                    "driver": safe(m.nvmlSystemGetDriverVersion),
                    "gpm_supported": getattr(support, "isSupportedDevice", support),
                    "bus_width_bits": width,
                    "mem_clock_max_mhz": mem_max,
                    "dram_peak_bytes_per_s": dram_peak_bytes_per_s(width, mem_max) if nums else None,
                    "pcie_max": f"Gen{gen} x{lanes}",
                    "pcie_now": f"Gen{safe(m.nvmlDeviceGetCurrPcieLinkGeneration, h)}"
                    f" x{safe(m.nvmlDeviceGetCurrPcieLinkWidth, h)}",
                    "pcie_link_bytes_per_s": pcie_link_bytes_per_s(gen, lanes)
                    if isinstance(gen, int) and isinstance(lanes, int)
                    else None,
                    "mig_mode": safe(m.nvmlDeviceGetMigMode, h),
                    "persistence_mode": safe(m.nvmlDeviceGetPersistenceMode, h),
                    "clock_event_reasons": decode_throttle(reasons) if isinstance(reasons, int) else reasons,
                    "nvlink_links_up": f"{sum(links)} of {len(links)}" if links else "not supported",
                    "power_limit_w": (lambda v: v / 1000 if isinstance(v, int) else v)(
                        safe(m.nvmlDeviceGetEnforcedPowerLimit, h)
                    ),
                }
            )
        # the calls one tick makes per device, each timed over repeats (the legacy PCIe call blocks ~20 ms)
        h = m.nvmlDeviceGetHandleByIndex(0)
        per_tick: list[tuple[str, tuple[Any, ...], int]] = [
            ("nvmlDeviceGetUtilizationRates", (h,), 50),
            ("nvmlDeviceGetMemoryInfo", (h,), 50),
            ("nvmlDeviceGetPowerUsage", (h,), 50),
            ("nvmlDeviceGetTemperature", (h, m.NVML_TEMPERATURE_GPU), 50),
            ("nvmlDeviceGetClockInfo", (h, m.NVML_CLOCK_SM), 50),
            ("nvmlDeviceGetCurrPcieLinkGeneration", (h,), 50),
            ("nvmlDeviceGetCurrentClocksEventReasons", (h,), 50),
            ("nvmlDeviceGetMigMode", (h,), 50),
            ("nvmlDeviceGetComputeRunningProcesses", (h,), 50),
            ("nvmlDeviceGetGraphicsRunningProcesses", (h,), 50),
            ("nvmlDeviceGetProcessUtilization", (h, int((time.time() - 2) * 1e6)), 20),
            ("nvmlDeviceGetPcieThroughput", (h, m.NVML_PCIE_UTIL_RX_BYTES), 5),
        ]
        sample = safe(m.nvmlGpmSampleAlloc)
        if not isinstance(sample, str):
            per_tick.append(("nvmlGpmSampleGet", (h, sample), 20))
        for name, args, reps in per_tick:
            fn = getattr(m, name)
            t0 = time.perf_counter()
            failed = ""
            for _ in range(reps):
                try:
                    fn(*args)
                except Exception as exc:  # NOT_FOUND from process utilisation is normal: time it anyway
                    failed = type(exc).__name__
            costs[name + (f" ({failed})" if failed else "")] = (time.perf_counter() - t0) / reps * 1e6
        if not isinstance(sample, str):
            with contextlib.suppress(Exception):
                m.nvmlGpmSampleFree(sample)
    finally:
        with contextlib.suppress(Exception):
            m.nvmlShutdown()
    collector = GpuCollector(CollectorContext(pid=os.getpid(), options=Options(interval_s=0.5)))
    ticks = []
    try:
        collector.sample()
        for _ in range(3 if ctx["quick"] else 8):
            time.sleep(0.15)
            t0 = time.perf_counter()
            collector.sample()
            ticks.append((time.perf_counter() - t0) * 1000)
        calls_per_tick = collector._nvml.calls if collector._nvml else None
        describe = collector.describe()
    finally:
        collector.close()
    return {
        "devices": devices,
        "call_cost_us": costs,
        "tick_ms": ticks,
        "nvml_calls_total": calls_per_tick,
        "doctor_line": describe,
    }


def facts_table(r: dict[str, Any]) -> str:
    lines = []
    for d in r["devices"]:
        lines.append(f"### GPU {d['index']}: {d['name']} (driver {d['driver']})")
        lines.append("| fact | value |\n| --- | --- |")
        for k, v in d.items():
            if k in ("index", "name", "driver"):
                continue
            if k.endswith("bytes_per_s") and isinstance(v, (int, float)):
                v = f"{v / 1e9:.1f} GB/s"
            lines.append(f"| {k} | {v} |")
    lines.append("\n| NVML call (per tick) | mean µs |\n| --- | --- |")
    for name, us in r["call_cost_us"].items():
        lines.append(f"| {name} | {us:.1f} |")
    ticks = r["tick_ms"]
    if ticks:
        lines.append(f"\nwhole collector tick: mean {sum(ticks) / len(ticks):.2f} ms, max {max(ticks):.2f} ms")
    lines.append(f"\ndoctor: {r['doctor_line']}")
    return "\n".join(lines)


# -- 2. gpu_check ------------------------------------------------------------------------------------------
def step_gpu_check(ctx: dict[str, Any]) -> dict[str, Any]:
    out = Path(ctx["work"]) / "gpu_check.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--json", str(out)]
    cmd += ["--seconds", "1" if ctx["quick"] else "5", "--interval", "0.25" if ctx["quick"] else "0.5"]
    if ctx["sim"]:
        cmd.append("--sim")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    print(done.stdout[-6000:], done.stderr[-3000:], sep="\n")
    doc = json.loads(out.read_text()) if out.exists() else {}
    return {"rc": done.returncode, "stdout": done.stdout, **doc}


def gpu_check_table(r: dict[str, Any]) -> str:
    table = r.get("stdout", "").strip()
    return f"exit {r.get('rc')}\n\n```\n{table}\n```"


# -- 3. accuracy through optitop --once --json -------------------------------------------------------------------
def start_demo(scenario: str, device: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], int, str | None]:
    proc = subprocess.Popen(
        [*optitop_cmd(), "demo", "--scenario", scenario, "--serve-only", "--device", device],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **env},
        cwd=NEUTRAL_CWD,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first.isdigit():
        stop_demo(proc)
        raise RuntimeError(f"demo {scenario} did not print its pid (got {first!r})")
    second = proc.stdout.readline().strip()
    return proc, int(first), second if second.startswith("http") else None


def stop_demo(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def once(pid: int, url: str | None, duration_s: float, env: dict[str, str]) -> dict[str, Any]:
    cmd = [*optitop_cmd(), "--pid", str(pid), "--once", "--json", "--duration", str(duration_s)]
    if url:
        cmd += ["--metrics-url", url]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=duration_s + 90,
        check=False,
        env={**os.environ, **env},
        cwd=NEUTRAL_CWD,
    )
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise RuntimeError(f"optitop --once exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return dict(json.loads(done.stdout))


def gpu_of(report: dict[str, Any]) -> dict[str, Any]:
    latest = report.get("metrics", {}).get("gpu", {}).get("latest") or {}
    devs = latest.get("devices") or []
    d = devs[0] if devs else {}
    keys = ("util_source", "sm_util_pct", "tensor_util_pct", "dram_bw_util_pct", "graphics_util_pct")
    out = {k: d.get(k) for k in keys}
    out.update(
        pcie_rx_gb_s=None if d.get("pcie_rx_bytes_per_s") is None else d["pcie_rx_bytes_per_s"] / 1e9,
        pcie_tx_gb_s=None if d.get("pcie_tx_bytes_per_s") is None else d["pcie_tx_bytes_per_s"] / 1e9,
        target_gpus=latest.get("target_gpu_indices"),
    )
    return out


def step_accuracy(ctx: dict[str, Any]) -> dict[str, Any]:
    device = "cpu" if ctx["sim"] else "cuda"
    runs = ACCURACY_RUNS[-1:] if ctx["quick"] else ACCURACY_RUNS
    warmup, duration = (2.0, 3.0) if ctx["quick"] else (5.0, 12.0)
    rows = []
    for label, scenario, expected, env, sim_scenario in runs:
        env = {**env, "OPTITOP_NVML_SIM_SCENARIO": sim_scenario} if ctx["sim"] else dict(env)
        row: dict[str, Any] = {"run": label, "expected": expected}
        print(f"… accuracy: {label}", flush=True)
        try:
            proc, pid, url = start_demo(scenario, device, env)
            try:
                time.sleep(warmup)  # the load reaches its steady state before optitop attaches
                report = once(pid, url, duration, env)
            finally:
                stop_demo(proc)
            diag = report.get("diagnosis", {})
            row.update(
                verdict=diag.get("category"),
                confidence=diag.get("confidence"),
                evidence=list(diag.get("evidence", []))[:3],
                gpu=gpu_of(report),
                gpu_status=report.get("sources", {}).get("gpu"),
            )
        except Exception as exc:  # one broken run must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"
        row["ok"] = row.get("verdict") == expected
        rows.append(row)
        print(f"  {row.get('verdict')} {row.get('confidence')} {row.get('error', '')}", flush=True)
    return {"device": device, "rows": rows}


def accuracy_table(r: dict[str, Any]) -> str:
    lines = [
        f"demo device: {r['device']}",
        "",
        "| run | expected | verdict | conf | source | SM % | tensor % | DRAM % | gfx % | PCIe rx/tx GB/s | evidence |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def f(v: Any, digits: int = 0) -> str:
        return "–" if v is None else f"{v:.{digits}f}"

    for row in r["rows"]:
        g = row.get("gpu") or {}
        ev = row.get("error") or "; ".join(row.get("evidence") or [])
        lines.append(
            f"| {row['run']} | {row['expected']} | {row.get('verdict') or '–'} {'✓' if row['ok'] else '✗'}"
            f" | {f(row.get('confidence'), 2)} | {g.get('util_source') or '–'} | {f(g.get('sm_util_pct'))}"
            f" | {f(g.get('tensor_util_pct'))} | {f(g.get('dram_bw_util_pct'))} | {f(g.get('graphics_util_pct'))}"
            f" | {f(g.get('pcie_rx_gb_s'), 1)}/{f(g.get('pcie_tx_gb_s'), 1)} | {ev[:160].replace('|', '/')} |"
        )
    right = sum(row["ok"] for row in r["rows"])
    lines.append(f"\n{right}/{len(r['rows'])} runs read as expected")
    return "\n".join(lines)


# -- 4. the live screen in tmux ------------------------------------------------------------------------------
def step_tui(ctx: dict[str, Any]) -> dict[str, Any]:
    tmux = shutil.which("tmux")
    device = "cpu" if ctx["sim"] else "cuda"
    env = {"OPTITOP_NVML_SIM_SCENARIO": "compute"} if ctx["sim"] else {}
    seconds = 8.0 if ctx["quick"] else 20.0
    proc, pid, url = start_demo("compute", device, env)
    out = Path(ctx["out"]) / "tui.txt"
    try:
        time.sleep(2.0)
        if tmux is None:
            report = once(pid, url, min(seconds, 10.0), env)
            out.write_text("tmux not installed: the headless report instead\n" + json.dumps(report, indent=2))
            return {"mode": "headless", "verdict": report.get("diagnosis", {}).get("category")}
        session = f"optitop-device-{os.getpid()}"
        # A tmux server of our own (-L): a running one would start the command with *its* environment.
        tmux_cmd = [tmux, "-L", session]
        cmd = " ".join([*optitop_cmd(), "--pid", str(pid)] + (["--metrics-url", url] if url else []))
        passed = {k: v for k, v in os.environ.items() if k.startswith(("OPTITOP_", "PYTHONPATH", "CUDA_"))}
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in {**passed, **env}.items())
        subprocess.run(
            [*tmux_cmd, "new-session", "-d", "-s", session, "-x", "160", "-y", "48", "-c", NEUTRAL_CWD]
            + [f"env {envs} {cmd}"],
            check=True,
            env=os.environ,
        )
        try:
            time.sleep(seconds)
            screen = subprocess.run(
                [*tmux_cmd, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
            ).stdout
        finally:
            subprocess.run([*tmux_cmd, "kill-server"], check=False, capture_output=True)
        out.write_text(screen)
        gpu_lines = [ln for ln in screen.splitlines() if "GPU" in ln or "NVIDIA" in ln]
        named = any("NVIDIA" in ln for ln in gpu_lines)  # a GPU block, not "GPU unavailable: …"
        return {"mode": "tmux", "seconds": seconds, "gpu_named": named, "gpu_lines": gpu_lines[:8]}
    finally:
        stop_demo(proc)


# -- 5. screenshots through Textual ---------------------------------------------------------------------------
def step_screenshots(ctx: dict[str, Any]) -> dict[str, Any]:
    from optitop.config import Options
    from optitop.runtime import live_runtime
    from optitop.tui.app import OptitopApp

    device = "cpu" if ctx["sim"] else "cuda"
    env = {"OPTITOP_NVML_SIM_SCENARIO": "compute"} if ctx["sim"] else {}
    os.environ.update(env)
    seconds = 3.0 if ctx["quick"] else 10.0
    folder = Path(ctx["work"]) / "screens"
    folder.mkdir(exist_ok=True)
    proc, pid, url = start_demo("compute", device, env)
    written = []
    try:
        time.sleep(2.0)
        sizes = [((160, 48), "gpu-160x48.svg")] + ([] if ctx["quick"] else [((80, 24), "gpu-80x24.svg")])
        for size, name in sizes:
            options = Options(interval_s=1.0, metrics_urls=(url,) if url else ())

            async def capture(size: tuple[int, int] = size, name: str = name, options: Options = options) -> None:
                live = live_runtime(pid, options)
                app = OptitopApp(live, options)
                try:
                    async with app.run_test(size=size) as pilot:
                        deadline = time.monotonic() + seconds
                        while time.monotonic() < deadline:
                            await pilot.pause(0.5)
                        app.save_screenshot(filename=name, path=str(folder))
                finally:
                    live.stop()

            asyncio.run(capture())
            written.append(name)
    finally:
        stop_demo(proc)
    with tarfile.open(Path(ctx["out"]) / "screens.tar.gz", "w:gz") as tar:
        for name in written:
            tar.add(folder / name, arcname=name)
    return {"screenshots": written}


# -- the run ----------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "device_out"))
    parser.add_argument("--sim", action="store_true", help="the simulated NVML and CPU workloads (no GPU)")
    parser.add_argument("--quick", action="store_true", help="every step shortened (the rehearsal test)")
    parser.add_argument("--skip", default="", help="comma-separated steps to leave out: " + ",".join(STEPS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.sim:
        os.environ.setdefault("OPTITOP_NVML_SIM", str(SIM_LIBRARY))
        os.environ.setdefault("OPTITOP_NVML_SIM_PIDS", "all")
    os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    skip = {s for s in args.skip.split(",") if s}
    work = tempfile.mkdtemp(prefix="optitop-device-")
    ctx = {"sim": args.sim, "quick": args.quick, "out": str(out), "work": work}
    steps: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], Callable[[dict[str, Any]], str] | None]] = {
        "facts": (step_facts, facts_table),
        "gpu_check": (step_gpu_check, gpu_check_table),
        "accuracy": (step_accuracy, accuracy_table),
        "tui": (step_tui, None),
        "screenshots": (step_screenshots, None),
    }
    results: dict[str, Any] = {"sim": args.sim, "quick": args.quick, "started": time.time(), "steps": {}}
    mode = "SIMULATED NVML, CPU workloads (no GPU)" if args.sim else "real GPU"
    summary = [f"# optitop device check ({mode})", ""]
    for name in STEPS:
        if name in skip:
            continue
        fn, table = steps[name]
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            r = fn(ctx)
            entry = {"ok": True, "seconds": round(time.monotonic() - t0, 1), **r}
        except Exception as exc:
            traceback.print_exc()
            entry = {"ok": False, "seconds": round(time.monotonic() - t0, 1), "error": f"{type(exc).__name__}: {exc}"}
        results["steps"][name] = entry
        summary.append(f"## {name} ({entry['seconds']} s){'' if entry['ok'] else ' FAILED: ' + entry['error']}")
        if entry["ok"]:
            summary.append(table(entry) if table else "```\n" + json.dumps(r, indent=1, default=str)[:3000] + "\n```")
        summary.append("")
        (out / "summary.md").write_text("\n".join(summary))  # partial results survive a kill
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    shutil.rmtree(work, ignore_errors=True)
    print("\n".join(summary))
    return 0 if all(s["ok"] for s in results["steps"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
