"""The session's policies over model types: the GPU-dip dump, the exec rename, the stack pacing; and the session
running whatever list of policies it is given."""

from __future__ import annotations

import time

import samplefactory
from conftest import wait_for

from optitop.config import Options
from optitop.model import Diagnosis, ProcInfo, Sample, TargetInfo
from optitop.policies import FollowExec, GpuDipDump, PaceStacks, default_policies
from optitop.session import Session
from optitop.store import Store

PID = samplefactory.PID


class Sampler:
    def __init__(self) -> None:
        self.triggers: list[str] = []
        self.paces: list[float] = []

    def set_pace(self, factor: float) -> None:
        self.paces.append(factor)

    def trigger(self, reason: str) -> bool:
        self.triggers.append(reason)
        return True

    def request_native(self) -> bool:
        return True


class Host:
    """What a policy sees of the session."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        self.store = Store(TargetInfo(PID, "python", "python serve.py", "me", 0.0, "box"), clock=lambda: 100.0)
        self.stacks_watched = False
        self.sampler = sampler
        self.woken: list[object] = []

    def stacks(self) -> Sampler | None:
        return self.sampler

    def wake(self, collector: object) -> None:
        self.woken.append(collector)


def add_gpu(store: Store, mono_s: float, sm_pct: float) -> None:
    device = samplefactory.gpu_device(sm_util_pct=sm_pct)
    store.add("gpu", samplefactory.gpu_sample(1e9 + mono_s, mono_s, devices=(device,)))


def test_a_gpu_dip_asks_the_sampler_for_a_dump_and_wakes_it():
    host = Host(Sampler())
    policy = GpuDipDump()
    for mono, pct in ((1.0, 90.0), (2.0, 88.0)):
        add_gpu(host.store, mono, pct)
    policy.react(host, None, 2.0)
    assert host.sampler.triggers == [] and host.woken == []
    add_gpu(host.store, 3.0, 5.0)
    add_gpu(host.store, 4.0, 6.0)  # two arrived since the last look: the pair (88, 5) is still seen
    policy.react(host, None, 4.0)
    assert host.sampler.triggers == ["GPU utilisation fell from 88% to 5%"]
    assert host.woken == [host.sampler]
    policy.react(host, None, 5.0)  # nothing new: nothing again
    assert len(host.sampler.triggers) == 1


def test_after_a_reattach_the_previous_processs_dip_is_not_the_new_ones():
    """--follow keeps the store: the GPU going idle as the old process died must not dump the new one's stacks."""
    host = Host(Sampler())
    add_gpu(host.store, 1.0, 90.0)
    add_gpu(host.store, 2.0, 3.0)  # the old process died: its GPU went idle
    policy = GpuDipDump(host.store)  # the new session's policy starts after what the store holds
    add_gpu(host.store, 3.0, 4.0)
    policy.react(host, None, 3.0)
    assert host.sampler.triggers == []
    add_gpu(host.store, 4.0, 80.0)
    add_gpu(host.store, 5.0, 10.0)  # the new process's own dip is seen
    policy.react(host, None, 5.0)
    assert host.sampler.triggers == ["GPU utilisation fell from 80% to 10%"]


def test_a_gpu_dip_without_a_sampler_or_on_foreign_samples_does_nothing():
    host = Host(None)
    add_gpu(host.store, 1.0, 90.0)
    add_gpu(host.store, 2.0, 5.0)
    GpuDipDump().react(host, None, 2.0)  # no sampler: no error
    other = Host(Sampler())
    other.store.add("gpu", Sample(1e9, 1.0, None))  # a test or a recording put something else there: skipped
    GpuDipDump().react(other, None, 1.0)
    assert other.sampler.triggers == []


def test_an_exec_renames_the_target_from_the_typed_process_sample():
    host = Host()
    proc = ProcInfo(PID, 1, "vllm", "vllm serve model", 10.0, 1, 3, "running", 0)
    host.store.add("process", samplefactory.process_sample(1e9, 1.0, procs=(proc,)))
    FollowExec().react(host, None, 1.0)
    assert (host.store.target.name, host.store.target.cmdline) == ("vllm", "vllm serve model")
    child = ProcInfo(PID + 1, PID, "worker", "", 10.0, 1, 3, "running", 1)
    host.store.add("process", samplefactory.process_sample(1e9 + 1, 2.0, procs=(child,)))
    FollowExec().react(host, None, 2.0)  # the first process is not the target: no rename
    assert host.store.target.name == "vllm"


def test_pacing_needs_a_verdict_and_holds_full_duty_while_the_stacks_are_watched(monkeypatch):
    monkeypatch.setattr(PaceStacks, "STEADY_AFTER_S", 10.0)
    host = Host(Sampler())
    policy = PaceStacks()
    policy.react(host, None, 0.0)
    assert host.sampler.paces == []  # no verdict this pass: nothing to judge steadiness by
    policy.react(host, Diagnosis("compute", 0.9), 0.0)
    policy.react(host, Diagnosis("compute", 0.9), 11.0)
    assert host.sampler.paces == [1.0, PaceStacks.STEADY_PACE]
    host.stacks_watched = True
    policy.react(host, Diagnosis("compute", 0.9), 12.0)
    assert host.sampler.paces[-1] == 1.0


def test_default_policies_are_fresh_each_time():
    first, second = default_policies(), default_policies()
    assert [type(p) for p in first] == [type(p) for p in second]
    assert all(a is not b for a, b in zip(first, second, strict=True))


class Counting:
    name = "counting"
    interval_s = 0.05

    def sample(self) -> Sample:
        return Sample(time.time(), time.monotonic(), None)

    def close(self) -> None:
        pass


def test_the_session_runs_its_policies_and_a_failing_one_stops_nothing():
    seen: list[str] = []

    class Broken:
        def react(self, host, verdict, now_mono_s):
            raise RuntimeError("policy bug")

    class Watching:
        def react(self, host, verdict, now_mono_s):
            if verdict is not None:
                seen.append(verdict.category)

    def analyzer(window, state):
        return Diagnosis("idle", 0.9), state

    store = Store(TargetInfo(1, "t", "t", "u", 0.0, "h"))
    session = Session(store, [Counting()], Options(interval_s=0.05), analyzer=analyzer, policies=[Broken(), Watching()])
    session.start()
    try:
        wait_for(lambda: len(seen) >= 3, what="the policy after the broken one ran")
        assert store.window().diagnoses
    finally:
        session.stop()
