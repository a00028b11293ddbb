"""The session's runner: status, back-off, stalls and exits — with collectors that really fail."""

from __future__ import annotations

import threading
import time

import samplefactory
from conftest import wait_for

from optitop.analyzers import judge
from optitop.config import Options
from optitop.model import Diagnosis, Sample, SourceState, SourceUnavailable, TargetGone, TargetInfo
from optitop.policies import PaceStacks, StackSampler
from optitop.session import Session
from optitop.store import Store


class Counting:
    name = "counting"

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self.calls = 0
        self.closed = threading.Event()

    def sample(self) -> Sample:
        self.calls += 1
        return Sample(ts_s=time.time(), mono_s=time.monotonic(), dt_s=None)

    def close(self) -> None:
        self.closed.set()


class Broken(Counting):
    name = "broken"

    def sample(self) -> Sample:
        self.calls += 1
        raise RuntimeError("driver said no")


class Missing(Counting):
    name = "missing"

    def sample(self) -> Sample:
        raise SourceUnavailable("no such thing here: install it")


class Exiting(Counting):
    name = "exiting"

    def sample(self) -> Sample:
        raise TargetGone("pid 1 exited")


class Stalling(Counting):
    name = "stalling"

    def __init__(self) -> None:
        super().__init__(0.01)
        self.release = threading.Event()

    def sample(self) -> Sample:
        self.release.wait(30)
        return super().sample()


def make(collectors, **opts) -> Session:
    store = Store(TargetInfo(1, "t", "t", "u", 0.0, "h"))
    return Session(store, collectors, Options(interval_s=0.05, **opts), analyzer=judge)


def test_ok_and_failing_sources_are_reported_and_the_failure_backs_off():
    ok, broken, missing = Counting(), Broken(), Missing()
    session = make([ok, broken, missing])
    session.start()
    try:
        wait_for(lambda: ok.calls >= 10)
        statuses = session.store.statuses()
        assert statuses["counting"].state is SourceState.OK and statuses["counting"].latency_s is not None
        assert statuses["broken"].state is SourceState.ERROR and "driver said no" in statuses["broken"].reason
        assert statuses["missing"].state is SourceState.UNAVAILABLE
        assert statuses["missing"].reason == "no such thing here: install it"
        assert broken.calls < ok.calls / 2  # backing off, not retrying every tick
        assert len(session.store.window().series("counting")) >= 10
    finally:
        session.stop()
    assert ok.closed.is_set() and broken.closed.is_set()


def test_target_exit_marks_the_store_and_keeps_others_running():
    ok, exiting = Counting(), Exiting()
    session = make([ok, exiting])
    session.start()
    try:
        wait_for(lambda: session.store.target.exited)
        calls = ok.calls
        wait_for(lambda: ok.calls > calls + 3)
        assert "exited" in session.store.target.exit_reason
    finally:
        session.stop()


def test_a_stalled_source_is_reported_without_blocking_others(monkeypatch):
    import optitop.session as session_mod

    monkeypatch.setattr(session_mod, "STALL_MIN_S", 0.2)
    ok, stalled = Counting(), Stalling()
    session = make([ok, stalled])
    session.start()
    try:
        wait_for(lambda: session.store.statuses()["stalling"].state is SourceState.ERROR, timeout_s=10)
        assert "stalled" in session.store.statuses()["stalling"].reason
        calls = ok.calls
        wait_for(lambda: ok.calls > calls + 3)
    finally:
        stalled.release.set()
        session.stop()


def test_analyzer_runs_and_self_cost_is_measured():
    ok = Counting()
    session = make([ok])
    session.start()
    try:
        wait_for(lambda: session.store.window().diagnoses and session.store.window().self_cost.rss_bytes, timeout_s=10)
    finally:
        session.stop()


class FakeGpu(Counting):
    """Emits GPU samples whose SM utilisation drops from 90 % to 5 % after a few ticks."""

    name = "gpu"

    def sample(self):
        self.calls += 1
        util = 90.0 if self.calls < 4 else 5.0
        device = samplefactory.gpu_device(sm_util_pct=util)
        return samplefactory.gpu_sample(time.time(), time.monotonic(), None, devices=(device,))


class FakeStacks(Counting):
    """A stack sampler by what it can do (``StackSampler``); its name is not the py-spy collector's."""

    name = "some-stacks"

    def __init__(self) -> None:
        super().__init__(60.0)
        self.triggers: list[str] = []
        self.natives = 0

    def trigger(self, reason: str) -> bool:
        self.triggers.append(reason)
        return True

    def set_pace(self, factor: float) -> None:
        pass

    def request_native(self) -> bool:
        self.natives += 1
        return True


def test_the_stack_sampler_is_found_by_what_it_does_not_by_its_name():
    from optitop.collectors.pystacks import PyStacksCollector

    assert issubclass(PyStacksCollector, StackSampler)  # the real one satisfies the protocol structurally
    stacks = FakeStacks()
    session = make([Counting(), stacks])
    assert session.stacks() is stacks
    assert make([Counting()]).stacks() is None


def test_a_gpu_dip_triggers_a_stack_sample():
    gpu, stacks = FakeGpu(0.05), FakeStacks()
    session = make([gpu, stacks])
    session.start()
    try:
        wait_for(lambda: stacks.triggers, timeout_s=10)
        assert "fell from 90% to 5%" in stacks.triggers[0]
        wait_for(lambda: stacks.calls >= 2)  # poked: sampled again now, not in 60 s
    finally:
        session.stop()


def test_until_the_first_verdict_the_analyzer_runs_often_but_the_strip_gets_one_cell_a_period():
    """Eager analysis: 'not judged yet' is judged every 0.25 s, stored once per period; then the normal pace."""
    calls: list[float] = []
    judged_after = 6  # the analyzer 'knows' from its 6th call on

    def analyzer(window, state):
        calls.append(time.monotonic())
        if len(calls) < judged_after:
            return Diagnosis("unknown", 0.0), state
        return Diagnosis("idle", 0.9), state

    store = Store(TargetInfo(1, "t", "t", "u", 0.0, "h"))
    session = Session(store, [Counting(0.5)], Options(interval_s=1.0), analyzer=analyzer)
    session.start()
    try:
        wait_for(lambda: any(d.category == "idle" for d in store.window().diagnoses), timeout_s=15)
        first_verdict = len(calls)
        wait_for(lambda: len(calls) >= first_verdict + 2, timeout_s=15)
    finally:
        session.stop()
    eager = calls[:judged_after]
    assert max(b - a for a, b in zip(eager, eager[1:], strict=False)) < 0.9  # much faster than the 1 s period
    normal = calls[first_verdict:]
    assert min(b - a for a, b in zip(normal, normal[1:], strict=False)) > 0.5  # back to the 1 s period
    unknown = [d for d in store.window().diagnoses if d.category == "unknown"]
    assert 1 <= len(unknown) <= 3, len(unknown)  # ~1.25 s of eager judging: one stored cell per 1 s period


class PacedStacks(FakeStacks):
    def __init__(self) -> None:
        super().__init__()
        self.paces: list[float] = []

    def set_pace(self, factor: float) -> None:
        self.paces.append(factor)


def test_stack_sampling_slows_while_the_verdict_holds_and_recovers_when_it_moves(monkeypatch):
    monkeypatch.setattr(PaceStacks, "STEADY_AFTER_S", 0.6)
    verdict = ["idle"]

    def analyzer(window, state):
        return Diagnosis(verdict[0], 0.9), state

    stacks = PacedStacks()
    store = Store(TargetInfo(1, "t", "t", "u", 0.0, "h"))
    session = Session(store, [stacks], Options(interval_s=0.1), analyzer=analyzer)
    session.start()
    try:
        wait_for(lambda: stacks.paces and stacks.paces[-1] == PaceStacks.STEADY_PACE, timeout_s=10, what="slowed")
        assert stacks.paces[0] == 1.0  # a new verdict is not steady yet: full duty first
        verdict[0] = "compute"
        wait_for(lambda: stacks.paces[-1] == 1.0, timeout_s=10, what="full duty again after the class moved")
        wait_for(lambda: stacks.paces[-1] == PaceStacks.STEADY_PACE, timeout_s=10, what="slowed again")
        session.stacks_watched = True  # the Python pane zoomed: the user wants fresh stacks
        wait_for(lambda: stacks.paces[-1] == 1.0, timeout_s=10, what="full duty while the stacks are watched")
        session.stacks_watched = False
        wait_for(lambda: stacks.paces[-1] == PaceStacks.STEADY_PACE, timeout_s=10, what="slowed after the zoom")
    finally:
        session.stop()


def test_a_failing_analyzer_is_a_visible_status_and_clears_when_it_recovers():
    failing = threading.Event()
    failing.set()

    def analyzer(window, state):
        if failing.is_set():
            raise ZeroDivisionError("division by zero")
        return judge(window, state)

    store = Store(TargetInfo(1, "t", "t", "u", 0.0, "h"))
    session = Session(store, [Counting()], Options(interval_s=0.05), analyzer=analyzer)
    session.start()
    try:
        status = wait_for(lambda: store.statuses().get("analyzer"), what="the analyzer's status")
        assert status.state is SourceState.ERROR
        assert "ZeroDivisionError: division by zero" in status.reason and "from before" in status.reason
        failing.clear()
        wait_for(lambda: store.statuses()["analyzer"].state is SourceState.OK, what="ok again")
    finally:
        session.stop()
