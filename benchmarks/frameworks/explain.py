"""Why a recording got its verdict: the signals and class scores at a few points of a record file.

A debugging aid for the framework benchmark (run from optitop's virtualenv): it replays the file through
the analyzer as ``optitop replay`` does and prints, every ``--every`` seconds, the known signals, each
class's score and the rules that fired.

    .venv/bin/python benchmarks/frameworks/explain.py recordings/fw/ray-scheduling.jsonl --every 10
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from optitop.analyzers.scoring import assess
from optitop.recording.replayer import Replayer
from optitop.recording.scan import load


def show(replayer: Replayer) -> None:
    """Print the assessment of the window at the replayer's position."""
    a = assess(replayer.store.window(replayer.analysis_window_s))
    print(f"--- t={replayer.elapsed_s:.0f} s  leader={a.leader} ({a.why})")
    known = {f.name: getattr(a.signals, f.name) for f in fields(a.signals)}
    shown = {
        k: round(v, 3) if isinstance(v, float) else v for k, v in known.items() if isinstance(v, (int, float, str))
    }
    print("signals:", shown)
    for cat, score in sorted(a.scores.items(), key=lambda kv: -kv[1].score):
        fired = ", ".join(f"{h.rule.id}{h.rule.weight:+.2f}" for h in score.hits if h.fired)
        print(f"  {cat:<11} {score.score:.2f} cov {score.coverage:.2f}  {fired}")


def main() -> int:
    """Replay the file and print assessments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between printed assessments")
    args = parser.parse_args()
    replayer = Replayer(load(args.path))
    mark = replayer.start_mono_s
    while not replayer.at_end:
        mark = min(mark + args.every, replayer.end_mono_s)
        replayer.advance_to(mark)
        show(replayer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
