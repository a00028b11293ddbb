"""Analyzer accuracy on targets shaped like the servers issue 22 found misjudged outside the benchmark.

Three small, self-contained targets in benchmarks/wild/ (nothing to install beyond optitop's own venv):

* ``batching/scheduling``: an asyncio HTTP server with an adaptive batcher (max batch 64, max wait 0.5 s)
  under 4 clients; /metrics has only a requests-in-progress gauge and a request-duration histogram.
* ``membound/memory_io``: a CPU torch step streaming preallocated ~192 MB tensors (copy_/mul_/add_) and
  gathering from a large table (index_select), two intra-op threads, no page churn.
* ``prefork/scheduling``: a master that forks one sync worker, ~50 ms of CPU per request, 8 clients: the
  worker pegs a core and connections queue in the accept queue; optitop attaches to the master.

Each case starts its target, loads it (optitop's own load generator), warms up, records with ``optitop
record`` and judges the verdicts as benchmarks/accuracy.py does (share on class, time to the first right one).

    .venv/bin/python benchmarks/wild.py                         # every case, 20 s each
    .venv/bin/python benchmarks/wild.py --cases prefork/scheduling --keep /tmp/wild
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import Result, judge, read_verdicts, run_cases  # noqa: E402
from frameworks import _read_line, free_port, kill_group  # noqa: E402

HERE = Path(__file__).resolve().parent / "wild"
OPTITOP = str(Path(sys.executable).parent / "optitop")


@dataclass(frozen=True)
class Case:
    """One target and the class its configuration puts it in."""

    target: str  # batching | membound | prefork
    expected: str
    concurrency: int = 0  # 0: no load (the target loads itself)

    @property
    def name(self) -> str:
        return f"{self.target}/{self.expected}"


CASES = (
    Case("batching", "scheduling", concurrency=4),
    Case("membound", "memory_io"),
    Case("prefork", "scheduling", concurrency=8),
)


def start_target(case: Case) -> tuple[subprocess.Popen[str], int, str | None, str | None]:
    """Start the case's target; returns the process, the pid to attach to, the load URL and the metrics URL."""
    port = free_port()
    metrics = None
    if case.target == "batching":
        mport = free_port()
        cmd = [sys.executable, str(HERE / "batcher_server.py"), "--port", str(port), "--metrics-port", str(mport)]
    elif case.target == "membound":
        cmd = [sys.executable, str(HERE / "membound.py")]
    else:
        cmd = [sys.executable, str(HERE / "prefork.py"), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    pid = int(_read_line(proc, 60))
    line = _read_line(proc, 120)
    if line.startswith("http"):
        metrics = line
        line = _read_line(proc, 60)
    if line != "ready":
        raise RuntimeError(f"{case.target} printed {line!r}, not ready")
    url = f"http://127.0.0.1:{port}/infer" if case.concurrency else None
    return proc, pid, url, metrics


def start_load(url: str, concurrency: int, seconds: float) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "optitop.demo.load", "--url", url, "--duration", str(seconds),
           "--concurrency", str(concurrency), "--parent-pid", str(__import__("os").getpid())]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True, cwd=HERE)


def run_case(case: Case, args: argparse.Namespace) -> Result:
    result = Result(case.name, case.expected)
    proc, pid, url, metrics = start_target(case)
    load = start_load(url, case.concurrency, args.warmup + args.duration + 30) if url else None
    try:
        time.sleep(args.warmup)  # a benchmark, not a test: the load needs time to reach its steady state
        with tempfile.TemporaryDirectory() as tmp:
            out = (args.keep or Path(tmp)) / f"{case.target}-{case.expected}.jsonl"
            out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [OPTITOP, "record", "--pid", str(pid), "-o", str(out), "--duration", str(args.duration)]
            cmd += ["--interval", str(args.interval), "--force"]
            if metrics:
                cmd += ["--metrics-url", metrics]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 90)
            if done.returncode != 0:
                result.error = (done.stderr.strip().splitlines() or [f"rc {done.returncode}"])[-1]
            judge(result, read_verdicts(out))
    finally:
        if load is not None:
            kill_group(load, grace_s=5)
        kill_group(proc, grace_s=10)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(c.name for c in CASES))
    parser.add_argument("--duration", type=float, default=20.0, help="seconds recorded per case")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of load before attaching")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep the recordings in this folder")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = parser.parse_args()
    by_name = {c.name: c for c in CASES}
    chosen = [by_name[n] for n in args.cases.split(",") if n]
    run = lambda case: run_case(case, args)  # noqa: E731
    return run_cases(chosen, run, label="case", noun="cases", name_w=20, json_path=args.json_path)


if __name__ == "__main__":
    raise SystemExit(main())
