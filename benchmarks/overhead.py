"""How much optitop costs: its own CPU, memory and terminal bytes, and what it takes from the server it watches.

    python benchmarks/overhead.py [--part ui,target,work,startup,ticks] [--seconds 20] [--rounds 3]
                                  [--sizes 80x24,160x48] [--rates 1,4] [--warmup 3] [--ui-rounds 1]
                                  [--json out.json]

Figures, not pass/fail tests (the README keeps the tables). Everything runs against the bundled demo server
(``optitop demo --serve-only``), so the numbers are for a real PyTorch inference process:

- ``ui``: the live screen in a real terminal (tmux) at 80×24 and 160×48, at 1 Hz and 4 Hz, py-spy on and off:
  optitop's CPU (% of one core; ``cpu_with_children_pct`` adds its py-spy children, ended ones included), RSS,
  and bytes written to the terminal per second (what tmux's ``pipe-pane`` received from the pane;
  ``/proc/PID/io`` wchar would also count optitop's HTTP scrapes and netlink requests). When ``htop`` and
  ``glances`` are on PATH they run in the same tmux size at the same refresh, and the table shows optitop's CPU
  (children included) as a ratio to theirs. ``--warmup 45`` measures after py-spy has slowed down for a steady
  verdict. ``--ui-rounds N`` runs the tools N times, interleaved, and prints medians: on this shared 2-core
  machine one run's figure moves by ±25 % between runs minutes apart (optitop 1.5-2.0 %, glances 2.5-3.1 %).
  Targets: at 1 Hz at most half of glances's CPU; ≤ 2 KiB/s at 80×24.
- ``target``: the demo server's throughput (requests/s from its own counter) with nothing attached vs optitop
  attached headless (``--once``) with py-spy off, with py-spy at the default rate, and with native bursts when the
  CLI offers them; conditions alternate round by round (A/B/C, A/B/C …) and the medians are compared.
  Targets: < 1 % loss without py-spy, < 3 % with it.
- ``work``: the same A/B on a fixed torch matmul loop on both cores (matmuls/s), whose rate varies far less
  than the demo's request rate; the table also gives the median of per-round paired losses and a 95 % bootstrap
  interval of their mean.
- ``startup``: seconds from launching the screen to its first full frame (the footer drawn), and to the first
  verdict (the verdict pane past "not judged yet").
- ``ticks``: the cost of one sampling tick per collector, as the session measured it (``--once --json`` sources).

On a shared machine, run-queue wait (other processes' load) moves every figure: the script prints the host's
load average next to each table so a reader can tell.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BIN = Path(sys.executable).parent
OPTITOP = str(BIN / "optitop")
SESSION_IDS = itertools.count(1)
SESSION = ""  # the current tmux session's name, new for every run


# -- the demo server --------------------------------------------------------------------------------------
@dataclass
class Demo:
    """A running ``optitop demo --serve-only``."""

    proc: subprocess.Popen[str]
    pid: int
    metrics_url: str


@contextmanager
def demo(scenario: str, duration_s: float) -> Iterator[Demo]:
    """Start the demo server for ``scenario``; stop it (and its children) on exit."""
    argv = [OPTITOP, "demo", "--scenario", scenario, "--serve-only", "--duration", str(duration_s)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        url = proc.stdout.readline().strip()
        yield Demo(proc, pid, url)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def requests_ok(url: str) -> float:
    """The server's count of successful requests."""
    with urllib.request.urlopen(url, timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("optitop_demo:requests_total{") and 'outcome="ok"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- measuring a process ----------------------------------------------------------------------------------
def cpu_s(proc: psutil.Process, with_children: bool) -> float:
    """User+system CPU seconds of ``proc``, and with ``with_children`` of all its descendants.

    Descendants are counted twice over: those that already ended and were waited for (the kernel adds their
    time to the parent's ``children_user``/``children_system``), and those still running. Counting only the
    live ones missed every py-spy window that started and ended between two readings.
    """
    procs = [proc, *(proc.children(recursive=True) if with_children else [])]
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
        if with_children:
            total += t.children_user + t.children_system
    return total


def measure(pid: int, seconds: float, terminal_log: Path | None = None) -> dict[str, float]:
    """CPU % of one core (self, and with children), RSS MiB and terminal bytes/s of ``pid`` over ``seconds``.

    ``terminal_log`` is the file tmux copies the pane's output to while measuring (None: not measured).
    """
    proc = psutil.Process(pid)
    size0 = terminal_log.stat().st_size if terminal_log and terminal_log.exists() else 0
    c0, a0, t0 = cpu_s(proc, False), cpu_s(proc, True), time.monotonic()
    time.sleep(seconds)
    c1, a1, t1 = cpu_s(proc, False), cpu_s(proc, True), time.monotonic()
    size1 = terminal_log.stat().st_size if terminal_log and terminal_log.exists() else 0
    dt = t1 - t0
    return {
        "cpu_pct": (c1 - c0) / dt * 100,
        "cpu_with_children_pct": (a1 - a0) / dt * 100,
        "rss_mib": proc.memory_info().rss / 2**20,
        "terminal_bytes_per_s": (size1 - size0) / dt if terminal_log else float("nan"),
    }


# -- tmux -------------------------------------------------------------------------------------------------
def tmux(*args: str) -> str:
    """Run a tmux command and return its stdout."""
    out = subprocess.run(["tmux", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"tmux {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


@contextmanager
def in_tmux(argv: list[str], size: tuple[int, int]) -> Iterator[int]:
    """Run ``argv`` in a detached tmux session of ``size``; yield its pid; kill the session on exit."""
    global SESSION
    SESSION = f"optitop-overhead-{os.getpid()}-{next(SESSION_IDS)}"
    cols, rows = size
    cmd = " ".join(_quote(a) for a in argv)
    for attempt in range(5):
        try:
            tmux("new-session", "-d", "-s", SESSION, "-x", str(cols), "-y", str(rows), cmd)
            break
        except RuntimeError:
            # The tmux server exits with its last session and a new one can race that exit: try again.
            if attempt == 4:
                raise
            time.sleep(0.5)
    try:
        pane_pid = int(tmux("display-message", "-p", "-t", SESSION, "#{pane_pid}").strip())
        yield _tool_pid(pane_pid)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)


def _tool_pid(pane_pid: int) -> int:
    """The tool's pid: the pane's process, or its only child when tmux's shell did not exec the command."""
    proc = psutil.Process(pane_pid)
    if proc.name() in {"sh", "bash", "dash", "zsh"}:
        children = proc.children()
        if len(children) == 1:
            return children[0].pid
    return pane_pid


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


def screen() -> str:
    """The tmux pane's text now."""
    return tmux("capture-pane", "-p", "-t", SESSION)


def poll(predicate: Callable[[], object], timeout_s: float, every_s: float = 0.05) -> float | None:
    """Seconds until ``predicate`` is truthy, or None at the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if predicate():
            return time.monotonic() - start
        time.sleep(every_s)
    return None


def frame_complete(text: str) -> bool:
    """A judged frame: the footer is drawn and the verdict pane no longer says it has not judged yet."""
    return "q quit" in text and not any(m in text for m in ("gathering data", "NOT JUDGED YET"))


# -- parts ------------------------------------------------------------------------------------------------
def part_ui(args: argparse.Namespace) -> list[dict[str, Any]]:
    """optitop's own cost with the full UI, and htop/glances beside it when installed."""
    rows: list[dict[str, Any]] = []
    if shutil.which("tmux") is None:
        print("ui: skipped, tmux is not installed (apt-get install tmux)", file=sys.stderr)
        return rows
    runs = len(args.sizes) * len(args.rates) * 4 * args.ui_rounds
    with demo("none", (args.seconds + args.warmup + 10) * runs + 120) as d:
        for round_no in range(args.ui_rounds):
            for size in args.sizes:
                for hz in args.rates:
                    for pyspy in (False, True):
                        argv = [OPTITOP, "--pid", str(d.pid), "--metrics-url", d.metrics_url, "--interval", str(1 / hz)]
                        if not pyspy:
                            argv.append("--no-pystacks")
                        row = _ui_row("optitop", argv, size, hz, pyspy, args.seconds, args.warmup)
                        rows.append({**row, "round": round_no})
                    for tool, argv in _others(hz):
                        row = _ui_row(tool, argv, size, hz, None, args.seconds, args.warmup)
                        rows.append({**row, "round": round_no})
    _ratios(rows)
    return _medians(rows) if args.ui_rounds > 1 else rows


def _medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per tool, size, rate and py-spy setting: the median of every figure over the rounds.

    The ratios are medians of each round's ratio (optitop against the tool that ran minutes apart in the same
    round), which a slow spell of the shared machine moves less than a ratio of medians. ``x_glances_runs``
    lists the rounds' ratios.
    """
    groups: dict[tuple[object, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["tool"], row["size"], row["hz"], row["pyspy"]), []).append(row)
    out = []
    for (tool, size, hz, pyspy), members in groups.items():
        merged: dict[str, Any] = {"tool": tool, "size": size, "hz": hz, "pyspy": pyspy, "rounds": len(members)}
        for key in members[0]:
            values = [m[key] for m in members if isinstance(m.get(key), (int, float)) and not isinstance(m[key], bool)]
            if key not in merged and key != "round" and values:
                merged[key] = statistics.median(values)
        if tool == "optitop":
            merged["x_glances_runs"] = [m["x_glances"] for m in members if "x_glances" in m]
        out.append(merged)
    return out


def _others(hz: float) -> list[tuple[str, list[str]]]:
    out = []
    if shutil.which("htop"):
        out.append(("htop", ["htop", "-d", str(max(1, round(10 / hz)))]))
    if shutil.which("glances"):
        out.append(("glances", ["glances", "-t", str(1 / hz)]))
    return out


def _ui_row(
    tool: str, argv: list[str], size: tuple[int, int], hz: float, pyspy: bool | None, secs: float, warmup_s: float
) -> dict:
    with in_tmux(argv, size) as pane_pid, tempfile.TemporaryDirectory() as tmp:
        poll(lambda: len(screen().strip()) > 0, 15)
        time.sleep(warmup_s)  # past start-up (and, with a long warm-up, past py-spy's slowing down)
        log = Path(tmp) / "pane.out"
        tmux("pipe-pane", "-o", "-t", SESSION, f"cat >> {_quote(str(log))}")
        got = measure(pane_pid, secs, log)
        tmux("pipe-pane", "-t", SESSION)
    row = {"tool": tool, "size": f"{size[0]}x{size[1]}", "hz": hz, "pyspy": pyspy, **got}
    row["load1"] = os.getloadavg()[0]
    return row


def _ratios(rows: list[dict[str, Any]]) -> None:
    """optitop's CPU as a ratio to htop's and glances's at the same size and rate, in the same round."""
    for row in rows:
        if row["tool"] != "optitop":
            continue
        for other in ("htop", "glances"):
            peer = next(
                (
                    r
                    for r in rows
                    if r["tool"] == other
                    and r["size"] == row["size"]
                    and r["hz"] == row["hz"]
                    and r.get("round") == row.get("round")
                ),
                None,
            )
            if peer and peer["cpu_with_children_pct"] > 0:
                row[f"x_{other}"] = row["cpu_with_children_pct"] / peer["cpu_with_children_pct"]


def _native_flag() -> list[str] | None:
    """The CLI's native-burst option when it has one (the collector supports bursts; the flag may come later)."""
    help_text = subprocess.run([OPTITOP, "--help"], capture_output=True, text=True).stdout
    for flag in ("--native-every", "--pyspy-native-every"):
        if flag in help_text:
            return [flag, "10"]
    return None


def part_target(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The server's throughput with nothing attached vs optitop attached, alternating conditions per round."""
    conditions: list[tuple[str, list[str] | None]] = [
        ("nothing attached", None),
        ("optitop, py-spy off", ["--no-pystacks"]),
        ("optitop, py-spy default", []),
    ]
    native = _native_flag()
    if native is not None:
        conditions.append(("optitop, py-spy + native bursts", native))
    rates: dict[str, list[float]] = {name: [] for name, _ in conditions}
    window = args.seconds
    with demo(args.scenario, (window + 8) * len(conditions) * args.rounds + 120) as d:
        time.sleep(5)  # warm-up: the first batches pay for allocation
        for _ in range(args.rounds):
            for name, extra in conditions:
                rates[name].append(_throughput(d, extra, window))
    base = statistics.median(rates["nothing attached"])
    rows = []
    for name, values in rates.items():
        med = statistics.median(values)
        loss = (1 - med / base) * 100 if base else float("nan")
        rows.append({"condition": name, "median_rps": med, "runs": values, "loss_pct": loss})
    return rows


def _throughput(d: Demo, extra: list[str] | None, window: float) -> float:
    attached = None
    if extra is not None:
        argv = [OPTITOP, "--pid", str(d.pid), "--metrics-url", d.metrics_url, "--once", "--json"]
        argv += ["--duration", str(window + 6), *extra]
        attached = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)  # the collectors are up and py-spy attached
    n0, t0 = requests_ok(d.metrics_url), time.monotonic()
    time.sleep(window)
    n1, t1 = requests_ok(d.metrics_url), time.monotonic()
    if attached is not None:
        attached.wait(60)
    else:
        time.sleep(2)  # the same gap as an attached run's tail, so rounds stay evenly spaced
    return (n1 - n0) / (t1 - t0)


#: A fixed CPU workload: torch matmuls on two threads (plus a Python thread, so py-spy has stacks to read),
#: printing its count of finished matmuls every 0.25 s. Its rate varies far less than the demo server's
#: request rate, whose batches form differently from run to run.
WORK = """
import sys, threading, time, torch
torch.set_num_threads(2)
a = torch.randn(384, 384)
count = 0
def report():
    while True:
        time.sleep(0.25)
        print(count, flush=True)
threading.Thread(target=report, daemon=True).start()
print("ready", flush=True)
while True:
    a = torch.tanh(a @ a) * 0.5
    count += 1
"""


def part_work(args: argparse.Namespace) -> list[dict[str, Any]]:
    """A fixed CPU-bound torch workload's rate with nothing attached vs optitop attached, many short rounds."""
    conditions: list[tuple[str, list[str] | None]] = [
        ("nothing attached", None),
        ("optitop, py-spy off", ["--no-pystacks"]),
        ("optitop, py-spy default", []),
    ]
    rates: dict[str, list[float]] = {name: [] for name, _ in conditions}
    work = subprocess.Popen([sys.executable, "-c", WORK], stdout=subprocess.PIPE, text=True)
    assert work.stdout is not None
    try:
        if work.stdout.readline().strip() != "ready":
            raise RuntimeError("the workload did not start (is torch installed? pip install '.[demo]')")
        latest = [0]

        def follow() -> None:
            assert work.stdout is not None
            for line in work.stdout:
                latest[0] = int(line)

        threading.Thread(target=follow, daemon=True).start()
        time.sleep(5)  # warm-up
        for _ in range(args.rounds):
            for name, extra in conditions:
                rates[name].append(_work_rate(work.pid, latest, extra, args.seconds))
    finally:
        work.kill()
        work.wait()
    base = statistics.median(rates["nothing attached"])
    rows = []
    for name, values in rates.items():
        paired = [(1 - v / b) * 100 for v, b in zip(values, rates["nothing attached"], strict=True)]
        rows.append(
            {
                "condition": name,
                "median_per_s": statistics.median(values),
                "loss_pct": (1 - statistics.median(values) / base) * 100 if base else float("nan"),
                "paired_loss_pct": statistics.median(paired),
                "paired_loss_ci95_pct": _bootstrap_ci95(paired),
                "runs": [round(v, 1) for v in values],
            }
        )
    return rows


def _bootstrap_ci95(values: list[float], draws: int = 5000) -> list[float]:
    """A 95 % bootstrap interval of the mean of ``values`` (fixed seed: the same data give the same interval).

    Rounds vary by several % on a shared machine; the interval says whether a loss under 1 % is shown (its upper
    end below 1) or merely not ruled out.
    """
    if len(values) < 2:
        return [float("nan"), float("nan")]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(draws))
    return [means[int(0.025 * draws)], means[int(0.975 * draws) - 1]]


def _work_rate(pid: int, latest: list[int], extra: list[str] | None, window: float) -> float:
    attached = None
    if extra is not None:
        argv = [OPTITOP, "--pid", str(pid), "--once", "--json", "--duration", str(window + 4), *extra]
        attached = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)  # attached: the collectors are up and py-spy attached; not: the same spacing
    n0, t0 = latest[0], time.monotonic()
    time.sleep(window)
    n1, t1 = latest[0], time.monotonic()
    if attached is not None:
        attached.wait(60)
    else:
        time.sleep(1)
    return (n1 - n0) / (t1 - t0)


def part_startup(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds from launch to the first full frame, a few times."""
    rows: list[dict[str, Any]] = []
    if shutil.which("tmux") is None:
        print("startup: skipped, tmux is not installed", file=sys.stderr)
        return rows
    with demo("none", 300) as d:
        for size in ((80, 24), (160, 48)):
            for _ in range(args.rounds):
                argv = [OPTITOP, "--pid", str(d.pid), "--metrics-url", d.metrics_url]
                start = time.monotonic()
                with in_tmux(argv, size):
                    first = poll(lambda: "q quit" in screen(), 30)
                    full = poll(lambda: frame_complete(screen()), 30)
                    total = time.monotonic() - start
                rows.append(
                    {"size": f"{size[0]}x{size[1]}", "first_frame_s": first, "verdict_s": total if full else None}
                )
    return rows


def part_ticks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The session's measured cost of one tick per collector, on a busy server."""
    with demo(args.scenario, 120) as d:
        argv = [OPTITOP, "--pid", str(d.pid), "--metrics-url", d.metrics_url, "--once", "--json"]
        out = subprocess.run([*argv, "--duration", str(args.seconds)], capture_output=True, text=True, timeout=300)
    doc = json.loads(out.stdout)
    rows = []
    for name, source in sorted(doc.get("sources", {}).items()):
        rows.append({"collector": name, "state": source.get("state"), "tick_ms": _ms(source.get("latency_s"))})
    return rows


def _ms(value: float | None) -> float | None:
    return None if value is None else value * 1000


# -- output -----------------------------------------------------------------------------------------------
def table(title: str, rows: list[dict[str, Any]]) -> str:
    """A Markdown table of ``rows`` (floats to 2 decimals)."""
    if not rows:
        return f"### {title}\n(no rows)\n"
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.2f}"
        if isinstance(v, list):
            return " ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in v)
        return "" if v is None else str(v)

    lines = [f"### {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


PARTS: dict[str, tuple[str, Callable[[argparse.Namespace], list[dict[str, Any]]]]] = {
    "ui": ("optitop's own cost in a terminal (CPU % of one core, RSS, terminal bytes/s)", part_ui),
    "target": ("impact on the watched server's throughput", part_target),
    "work": ("impact on a fixed CPU-bound torch workload (matmuls/s)", part_work),
    "startup": ("launch to first frame, and to the first verdict", part_startup),
    "ticks": ("one sampling tick per collector", part_ticks),
}


def main() -> int:
    """Run the chosen parts and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="ui,target,work,startup,ticks", help="comma-separated: " + ",".join(PARTS))
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window per run")
    parser.add_argument(
        "--warmup",
        type=float,
        default=3.0,
        help="ui: seconds after the first frame before measuring (45: past the steady-verdict slow-down of py-spy)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="A/B rounds (target) and repeats (startup)")
    parser.add_argument(
        "--ui-rounds",
        type=int,
        default=1,
        help="ui: run every tool this many times, interleaved, and print medians (the machine is shared and noisy)",
    )
    parser.add_argument("--scenario", default="compute", help="the demo scenario for target and ticks")
    parser.add_argument("--sizes", default="80x24,160x48", help="terminal sizes for the ui part")
    parser.add_argument("--rates", default="1,4", help="refresh rates (Hz) for the ui part")
    parser.add_argument("--json", type=Path, default=None, help="also write every row here")
    args = parser.parse_args()
    args.sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]
    args.rates = [float(rate) for rate in args.rates.split(",")]
    results: dict[str, list[dict[str, Any]]] = {}
    keeper = f"optitop-overhead-{os.getpid()}-keeper"
    if shutil.which("tmux"):
        # One idle session keeps the tmux server up between runs, so runs do not race its exit.
        subprocess.run(["tmux", "new-session", "-d", "-s", keeper, "sleep", "86400"], capture_output=True)
    try:
        _run_parts(args, results)
    finally:
        if shutil.which("tmux"):
            subprocess.run(["tmux", "kill-session", "-t", keeper], capture_output=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _run_parts(args: argparse.Namespace, results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"host: {psutil.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at start", flush=True)
    for part in args.part.split(","):
        title, fn = PARTS[part]
        results[part] = fn(args)
        print(table(f"{part}: {title} (load {os.getloadavg()[0]:.1f})", results[part]), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
