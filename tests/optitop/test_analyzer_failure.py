"""An analyzer that raises is a bug; wherever it runs, the user gets the reason, never a traceback or a stale verdict.

The live session already shows an ``analyzer`` status (tests/optitop/test_session.py). These cover the other places
that judge windows: a replay (and so compare, which replays each run), a bundle's verdict, and the bundle command's
one judgement through ``Session.analyze_now``.
"""

from __future__ import annotations

import samplefactory

import optitop.analyzers
from optitop.bundle import latest_verdict
from optitop.config import Options
from optitop.model import SourceState, TargetInfo
from optitop.recording.compare import run_of, verdict_shares
from optitop.recording.replayer import Replayer
from optitop.recording.scan import load
from optitop.recording.writer import write_snapshot
from optitop.session import Session
from optitop.store import Store

WALL0 = 1_800_000_000.0
FAILED = "the analyzer failed on this window (ZeroDivisionError: division by zero): no verdict"


def broken(window, state):
    raise ZeroDivisionError("division by zero")


def recording(tmp_path) -> str:
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"), clock=lambda: 40.0)
    for i in range(30):
        store.add("process", samplefactory.process_sample(WALL0 + i, 10.0 + i, 1.0 if i else None, cpu_pct=90.0))
    path = str(tmp_path / "run.jsonl")
    write_snapshot(store, path)
    return path


def test_a_replay_goes_on_and_each_verdict_says_why_there_is_none(tmp_path):
    replayer = Replayer(load(recording(tmp_path)), analyzer=broken)
    replayer.run_to_end()
    diagnoses = replayer.store.window().diagnoses
    assert diagnoses and replayer.at_end
    assert {d.category for d in diagnoses} == {"unknown"}
    assert all(d.evidence[0] == FAILED for d in diagnoses)


def test_compare_counts_the_failed_windows_as_unknown(tmp_path, monkeypatch):
    monkeypatch.setattr(optitop.analyzers, "judge", broken)  # what the replayer compare runs picks up
    assert verdict_shares(run_of(load(recording(tmp_path)))) == {"unknown": 100.0}


def test_a_bundles_verdict_says_the_analyzer_failed(monkeypatch):
    monkeypatch.setattr(optitop.analyzers, "judge", broken)
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"), clock=lambda: 12.0)
    store.add("process", samplefactory.process_sample(WALL0, 10.0, None))
    verdict = latest_verdict(store.window())
    assert verdict.category == "unknown" and verdict.evidence[0] == FAILED


def test_analyze_now_shows_the_status_and_stores_nothing():
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"))
    session = Session(store, [], Options(interval_s=0.1), analyzer=broken)
    assert session.analyze_now() is None
    status = store.window().statuses["analyzer"]
    assert status.state is SourceState.ERROR and "ZeroDivisionError" in status.reason
    assert store.window().diagnoses == ()


def test_the_once_report_comes_with_a_verdict_that_says_why_there_is_none(start_target, monkeypatch):
    from optitop.commands.top import run_headless

    monkeypatch.setattr(optitop.analyzers, "analyze", lambda window: broken(window, None))
    target = start_target("ready()\nimport time\ntime.sleep(60)\n")
    others = frozenset({"system", "gpu", "queue", "sockets", "logs", "pystacks"})
    doc = run_headless(target.pid, Options(interval_s=0.1, disabled=others), 0.5)
    assert doc["diagnosis"]["category"] == "unknown"
    assert doc["diagnosis"]["evidence"][0] == FAILED
