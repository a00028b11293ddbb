"""Analyzer accuracy on real workloads: run every demo scenario, attach optitop, compare the verdict.

For each scenario this starts ``optitop demo --scenario NAME --serve-only`` (a real torch server with its
own load), lets it warm up, records it with ``optitop record --duration S`` and reads the verdicts back
from the recording. It prints a confusion matrix, each scenario's final verdict and confidence, the time from
attaching to the first right verdict (t→1st), the share of the verdicts from then on that stayed right (on class:
flapping shows here, a final verdict alone hides it) and the time to the right verdict that then held to the
end (t→held). Exit status 0 when every scenario is classified correctly.

    python benchmarks/accuracy.py                      # all scenarios, 20 s each
    python benchmarks/accuracy.py --scenarios compute,idle --duration 15 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCENARIOS = ("compute", "memory_io", "memory_io_stream", "scheduling", "network", "host_cpu", "idle", "none")
CLASSES = ("compute", "memory_io", "scheduling", "network", "host_cpu", "idle", "none", "unknown")
OPTITOP = str(Path(sys.executable).parent / "optitop")


@dataclass
class Result:
    scenario: str
    expected: str
    final: str = "unknown"
    confidence: float = 0.0
    time_to_correct_s: float | None = None
    #: seconds from the first verdict to the first right one (None: never right)
    time_to_first_right_s: float | None = None
    #: share of the verdicts from the first right one on that are right (flapping shows here)
    share_on_class: float | None = None
    verdicts: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def correct(self) -> bool:
        return self.final == self.expected


def start_demo(scenario: str, extra: list[str]) -> tuple[subprocess.Popen[str], int, str | None]:
    proc = subprocess.Popen(
        [OPTITOP, "demo", "--scenario", scenario, "--serve-only", *extra],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    if not first.isdigit():
        proc.kill()
        raise RuntimeError(f"demo {scenario} did not print its pid (got {first!r})")
    url = None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and url is None:
        line = proc.stdout.readline()
        if line.strip().startswith("http"):
            url = line.strip()
        elif not line:
            time.sleep(0.05)
    return proc, int(first), url


def stop(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def read_verdicts(path: Path) -> list[tuple[float, dict]]:
    opener = gzip.open if path.suffix == ".gz" else open
    out = []
    with opener(path, "rt") as fh:
        for line in fh:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                break
            if event.get("type") == "diagnosis":
                out.append((float(event["mono_s"]), event["data"]))
    return out


def run_scenario(
    scenario: str, duration_s: float, warmup_s: float, interval_s: float, extra: list[str], keep: Path | None = None
) -> Result:
    from optitop.demo.scenarios import get

    result = Result(scenario, expected=get(scenario).category)
    proc, pid, url = start_demo(scenario, extra)
    try:
        time.sleep(warmup_s)  # a benchmark, not a test: the workload needs time to reach its steady state
        with tempfile.TemporaryDirectory() as tmp:
            path = (keep or Path(tmp)) / f"{scenario}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            cmd = [OPTITOP, "record", "--pid", str(pid), "-o", str(path), "--duration", str(duration_s), "--force"]
            cmd += ["--interval", str(interval_s)]
            if url:
                cmd += ["--metrics-url", url]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
            if done.returncode != 0:
                result.error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"
                return result
            verdicts = read_verdicts(path)
    finally:
        stop(proc)
    judge(result, verdicts)
    return result


def judge(result: Result, verdicts: list[tuple[float, dict]]) -> None:
    """Fill ``result`` from a recording's verdicts: the last one, and when the verdict became right for good."""
    if not verdicts:
        result.error = result.error or "no verdicts recorded"
        return
    start = verdicts[0][0]
    result.verdicts = [v["category"] for _, v in verdicts]
    result.final = verdicts[-1][1]["category"]
    result.confidence = float(verdicts[-1][1]["confidence"])
    result.evidence = list(verdicts[-1][1].get("evidence", []))[:3]
    first = next((i for i, (_, v) in enumerate(verdicts) if v["category"] == result.expected), None)
    if first is not None:
        result.time_to_first_right_s = verdicts[first][0] - start
        after = [v["category"] for _, v in verdicts[first:]]
        result.share_on_class = sum(c == result.expected for c in after) / len(after)
    # first moment from which the verdict was right until the end
    for i in range(len(verdicts)):
        if all(v["category"] == result.expected for _, v in verdicts[i:]):
            result.time_to_correct_s = verdicts[i][0] - start
            break


def run_cases(
    cases: list[Any], run: Callable[[Any], Result], *, label: str, noun: str, name_w: int, json_path: str | None
) -> int:
    """Run each case (one broken case must not hide the others' figures), then print the confusion matrix and the
    table, and write the JSON when asked; exit 0 only when every case read right. SIGTERM stops between cases."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    results: list[Result] = []
    for case in cases:
        print(f"… {case.name}", file=sys.stderr, flush=True)
        try:
            results.append(run(case))
        except KeyboardInterrupt:
            print("interrupted: servers stopped", file=sys.stderr)
            break
        except Exception as exc:  # noqa: BLE001 - reported in the table
            results.append(Result(case.name, case.expected, error=f"{type(exc).__name__}: {exc}"))
        print(f"  {results[-1].final} ({results[-1].confidence:.2f}) {results[-1].error}", file=sys.stderr)
    print(confusion(results, label=f"{label} \\ got", width=name_w + 2))
    print()
    print(table(results, noun=noun, name_w=name_w, evidence_w=110))
    if json_path:
        Path(json_path).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if results and all(r.correct for r in results) else 1


def confusion(results: list[Result], label: str = "expected \\ got", width: int = 16) -> str:
    """Rows: what each run was made to be; columns: the classes expected or given."""
    cols = [c for c in CLASSES if any(r.final == c or r.expected == c for r in results)]
    lines = [label.ljust(width) + "".join(c[:10].rjust(11) for c in cols)]
    for r in results:
        lines.append(r.scenario.ljust(width) + "".join(("1" if r.final == c else "·").rjust(11) for c in cols))
    return "\n".join(lines)


def table(results: list[Result], noun: str = "scenarios", name_w: int = 12, evidence_w: int = 90) -> str:
    """Verdict, confidence, time to the correct verdict and the leading evidence per run."""
    head = f"{noun.split()[-1][:-1]:<{name_w}} {'verdict':<12} {'ok':<3} {'conf':>5} {'t→1st':>6} {'on class':>8}"
    lines = [head + f" {'t→held':>7}  evidence"]
    for r in results:
        ttc = "–" if r.time_to_correct_s is None else f"{r.time_to_correct_s:.0f} s"
        first = "–" if r.time_to_first_right_s is None else f"{r.time_to_first_right_s:.0f} s"
        share = "–" if r.share_on_class is None else f"{r.share_on_class:.0%}"
        ev = r.error or "; ".join(r.evidence)[:evidence_w]
        ok = "✓" if r.correct else "✗"
        lines.append(
            f"{r.scenario:<{name_w}} {r.final:<12} {ok:<3} {r.confidence:5.2f} {first:>6} {share:>8} {ttc:>7}  {ev}"
        )
    right = sum(r.correct for r in results)
    lines.append(f"{right}/{len(results)} {noun} classified correctly")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--duration", type=float, default=20.0, help="seconds recorded per scenario")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before attaching")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--device", default=None, help="passed to the demo (cpu or cuda)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    parser.add_argument("--keep", type=Path, default=None, help="keep the recordings in this folder")
    args = parser.parse_args()
    extra = ["--device", args.device] if args.device else []
    results = []
    for scenario in [s for s in args.scenarios.split(",") if s]:
        print(f"… {scenario}", file=sys.stderr, flush=True)
        try:
            results.append(run_scenario(scenario, args.duration, args.warmup, args.interval, extra, args.keep))
        except Exception as exc:  # one broken scenario must not hide the others' figures
            results.append(Result(scenario, scenario, error=f"{type(exc).__name__}: {exc}"))
        print(f"  {results[-1].final} ({results[-1].confidence:.2f}) {results[-1].error}", file=sys.stderr)
    print(confusion(results))
    print()
    print(table(results))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.correct for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
