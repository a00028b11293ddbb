"""The session's reactions to what it collected: small policies over model types, run on the housekeeping thread.

Each policy looks at the store (typed reads) and the latest verdict, and acts through a protocol a collector
satisfies structurally (``StackSampler``), never by a collector's name: the session needs no knowledge of which
collector paces or dumps stacks, and adding a reaction is one entry in ``default_policies``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from optitop.model import Diagnosis, GpuSample, ProcessSample

if TYPE_CHECKING:
    from optitop.store import Store


@runtime_checkable
class StackSampler(Protocol):
    """A collector that samples the target's stacks and can be steered: the py-spy collector is one.

    The session finds it with ``isinstance(collector, StackSampler)``, so any collector with these methods is
    paced, triggered and asked for native samples the same way.
    """

    def set_pace(self, factor: float) -> None:
        """Sample ``factor`` times the configured duty from now on."""
        ...

    def trigger(self, reason: str) -> bool:
        """Take one stack dump now, labelled ``reason``; False when one is already running."""
        ...

    def request_native(self) -> bool:
        """Run a short native burst now; False when one is already running."""
        ...


class PolicyHost(Protocol):
    """What a policy may use of the session that runs it."""

    @property
    def store(self) -> Store:
        """The store the session feeds."""
        ...

    @property
    def stacks_watched(self) -> bool:
        """True while the user looks at the stacks (the Python pane zoomed)."""
        ...

    def stacks(self) -> StackSampler | None:
        """The running stack sampler, if any."""
        ...

    def wake(self, collector: object) -> None:
        """Run ``collector``'s next sample now instead of at its next tick."""
        ...


class Policy(Protocol):
    """One reaction of the session, called once per housekeeping pass."""

    def react(self, host: PolicyHost, verdict: Diagnosis | None, now_mono_s: float) -> None:
        """Look at the store and ``verdict`` (None when the analyzer gave none this pass) and act."""
        ...


class PaceStacks:
    """Slow the stack sampler while the verdict holds its class; restore full duty when the class moves.

    py-spy's children cost ~1 % of a core at the default duty on the demo server (two records per window),
    against ~1.7-1.9 % for everything else at 80x24 and 1 Hz; stacks that keep saying the same thing are worth
    fewer samples.
    """

    #: A verdict that keeps its class this long is steady: the sampler then runs at STEADY_PACE times its duty.
    STEADY_AFTER_S = 30.0
    STEADY_PACE = 0.5

    def __init__(self) -> None:
        """Nothing steady yet."""
        self._category = ""
        self._since_mono_s = 0.0

    def react(self, host: PolicyHost, verdict: Diagnosis | None, now_mono_s: float) -> None:
        """Pace the sampler by how long ``verdict``'s class has held (full duty while the stacks are watched)."""
        if verdict is None:
            return
        category = verdict.category
        if category != self._category:
            self._category, self._since_mono_s = category, now_mono_s
        steady = (
            not host.stacks_watched and category != "unknown" and now_mono_s - self._since_mono_s >= self.STEADY_AFTER_S
        )
        sampler = host.stacks()
        if sampler is not None:
            sampler.set_pace(self.STEADY_PACE if steady else 1.0)


class GpuDipDump:
    """When the target GPU's utilisation drops sharply, ask the stack sampler for a dump right now.

    The Python pane then shows what the threads were doing at the moment the GPU went idle.
    """

    #: A fall of the target GPU's busy % (``GpuSample.target_busy_pct``) by this many points between two
    #: samples triggers a stack dump.
    DIP_POINTS = 30.0

    def __init__(self, store: Store | None = None) -> None:
        """Start after what ``store`` already holds: after a ``--follow`` re-attach it keeps the previous process's
        samples, and the GPU going idle as that process died is not a dip of the new one."""
        self._last: GpuSample | None = store.latest_of("gpu", GpuSample) if store is not None else None

    def react(self, host: PolicyHost, verdict: Diagnosis | None, now_mono_s: float) -> None:
        """Look at every consecutive pair of GPU samples once, however many arrived since the last pass."""
        last = self._last
        fresh = host.store.since_of("gpu", GpuSample, last.mono_s if last is not None else None)
        if not fresh:
            return
        self._last = fresh[-1]
        dip = None
        for prev, cur in zip([last, *fresh[:-1]], fresh, strict=True):
            before = prev.target_busy_pct() if prev is not None else None
            after = cur.target_busy_pct()
            if before is not None and after is not None and before - after >= self.DIP_POINTS:
                dip = (before, after)
        if dip is None:
            return
        sampler = host.stacks()
        if sampler is not None:
            sampler.trigger(f"GPU utilisation fell from {dip[0]:.0f}% to {dip[1]:.0f}%")
            host.wake(sampler)


class FollowExec:
    """Follow an exec: same pid and create time, another program, so the header must show the new name.

    The process collector reads the target's name and cmdline every tick (its first ProcInfo, when that is the
    target); the store's description is updated when they differ from what the session started with.
    """

    def react(self, host: PolicyHost, verdict: Diagnosis | None, now_mono_s: float) -> None:
        """Rename the store's target after the newest process sample's first process, when that is the target."""
        store = host.store
        sample = store.latest_of("process", ProcessSample)
        target = store.target
        if sample is None or not sample.procs or target.exited or sample.procs[0].pid != target.pid:
            return
        first = sample.procs[0]
        store.rename_target(first.name, first.cmdline or first.name)


def default_policies(store: Store | None = None) -> list[Policy]:
    """A fresh set of the session's policies for a session feeding ``store`` (they keep state: one set per
    session), in the order they run."""
    return [GpuDipDump(store), FollowExec(), PaceStacks()]
