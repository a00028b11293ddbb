"""The session: runs every collector on its own thread, feeds the store, runs the analyzer and the policies.

One runner wraps every ``sample()``: it times the call, records ok / unavailable / error with the reason,
backs off on failure, and keeps a drift-free schedule. A slow source only delays itself. What the session does
about what it saw (pace the stacks, dump them on a GPU dip, follow an exec) is in ``optitop.policies``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import psutil

from optitop.config import Options
from optitop.model import (
    Collector,
    Diagnosis,
    SelfCost,
    SourceState,
    SourceStatus,
    SourceUnavailable,
    TargetGone,
    Window,
)
from optitop.osthread import name_os_thread
from optitop.policies import Policy, StackSampler, default_policies
from optitop.store import Store

log = logging.getLogger(__name__)

#: Longest pause between retries of a failing source.
MAX_BACKOFF_S = 30.0
#: A sample() running longer than this many intervals (and at least STALL_MIN_S) is reported as stalled.
STALL_INTERVALS = 5.0
STALL_MIN_S = 5.0

Analyzer = Callable[[Window, object], tuple[Diagnosis, object]]


@runtime_checkable
class ReportsProblem(Protocol):
    """A collector that can answer while its source fails (every endpoint errs, the log file is gone) says why in
    ``problem`` ("" when all is well): its sample is kept, its status is not live."""

    problem: str


class CollectorRunner:
    """Runs one collector on a daemon thread until stopped."""

    def __init__(self, collector: Collector, store: Store, stop: threading.Event) -> None:
        """Wrap ``collector``; samples go to ``store``; ``stop`` ends the loop."""
        self.collector = collector
        self.name = collector.name
        self._store = store
        self._stop = stop
        self._wake = threading.Event()
        self.in_call_since: float | None = None
        self.last_latency_s: float | None = None
        self.finished = threading.Event()
        self._status = SourceStatus(self.name, SourceState.STARTING)
        self._thread = threading.Thread(target=self._run, name=f"optitop-{self.name}", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._store.register(self.name, self.collector.interval_s)
        self._thread.start()

    def poke(self) -> None:
        """Run the next sample now (e.g. on a key press)."""
        self._wake.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    @property
    def status(self) -> SourceStatus:
        """The latest status."""
        return self._status

    def _set_status(self, status: SourceStatus) -> None:
        self._status = status
        self._store.set_status(status)

    def _run(self) -> None:
        name_os_thread(self._thread.name)
        failures = 0
        next_due = time.monotonic()
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                self.in_call_since = start
                try:
                    sample = self.collector.sample()
                except TargetGone as exc:
                    self.in_call_since = None
                    self._store.mark_target_exited(str(exc))
                    self._set_status(SourceStatus(self.name, SourceState.UNAVAILABLE, f"target exited: {exc}"))
                    return
                except SourceUnavailable as exc:
                    failures += 1
                    self._set_status(SourceStatus(self.name, SourceState.UNAVAILABLE, str(exc), failures=failures))
                except Exception as exc:  # a collector bug must never take the app down
                    failures += 1
                    log.debug("collector %s failed", self.name, exc_info=True)
                    reason = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
                    self._set_status(SourceStatus(self.name, SourceState.ERROR, reason, failures=failures))
                else:
                    end = time.monotonic()
                    self.last_latency_s = end - start
                    failures = 0
                    if sample is not None:
                        self._store.add(self.name, sample)
                    # A collector that answered but whose source fails (every endpoint errs) says so in
                    # ``problem``: the sample is kept (it says what was tried), the status is not live.
                    problem = self.collector.problem if isinstance(self.collector, ReportsProblem) else ""
                    if problem:
                        self._set_status(SourceStatus(self.name, SourceState.ERROR, problem, self.last_latency_s))
                    else:
                        status = SourceStatus(self.name, SourceState.OK, "", self.last_latency_s, end, failures=0)
                        self._set_status(status)
                finally:
                    self.in_call_since = None
                interval = self.collector.interval_s
                if failures:
                    delay = min(MAX_BACKOFF_S, interval * (2 ** min(failures, 6)))
                    next_due = time.monotonic() + delay
                else:
                    next_due += interval
                    now = time.monotonic()
                    if next_due < now:  # fell behind (slow call, suspended laptop): skip, don't burst
                        next_due = now + interval - ((now - next_due) % interval)
                self._wake.wait(max(0.0, next_due - time.monotonic()))
                if self._wake.is_set():
                    self._wake.clear()
                    next_due = time.monotonic()
        finally:
            try:
                self.collector.close()
            except Exception:  # closing must not mask the reason we stopped
                log.debug("closing %s failed", self.name, exc_info=True)
            self.finished.set()


class Session:
    """Owns the store, the collector runners and the housekeeping thread (analyzer, self cost, stalls)."""

    def __init__(
        self,
        store: Store,
        collectors: Sequence[Collector],
        options: Options,
        analyzer: Analyzer | None = None,
        unavailable: Sequence[SourceStatus] = (),
        policies: Sequence[Policy] | None = None,
    ) -> None:
        """Prepare runners for ``collectors``; ``unavailable`` lists sources that could not even be built.

        ``policies`` are the reactions run after each judgement (``optitop.policies.default_policies`` when None).
        """
        self.store = store
        self.options = options
        self._stop = threading.Event()
        self.runners = [CollectorRunner(c, store, self._stop) for c in collectors]
        self._analyzer = analyzer
        self._analyzer_state: object = None
        self._analyzer_failures = 0
        self._housekeeper = threading.Thread(target=self._housekeep, name="optitop-housekeeping", daemon=True)
        self._me = psutil.Process(os.getpid())
        self._self_cpu: deque[tuple[float, float]] = deque()
        self.policies: list[Policy] = list(default_policies(store) if policies is None else policies)
        for status in unavailable:
            store.set_status(status)

    def start(self) -> None:
        """Start every runner and the housekeeping thread."""
        for runner in self.runners:
            runner.start()
        self._housekeeper.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop all threads and close the collectors (bounded wait: a stalled driver call cannot hang exit)."""
        self._stop.set()
        for runner in self.runners:
            runner.poke()
        deadline = time.monotonic() + timeout_s
        for runner in self.runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        self._housekeeper.join(max(0.0, deadline - time.monotonic()))

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    def runner(self, name: str) -> CollectorRunner | None:
        """The runner of one collector, if it runs."""
        return next((r for r in self.runners if r.name == name), None)

    def analyze_now(self) -> Diagnosis | None:
        """Run the analyzer once over the analysis window and store the verdict (None, with the ``analyzer`` status
        saying why, when it failed)."""
        try:
            diagnosis = self._judge()
        except Exception as exc:  # as on the housekeeping thread: a status, not a traceback
            self._analyzer_status(exc)
            return None
        self._analyzer_status(None)
        if diagnosis is not None:
            self.store.add_diagnosis(diagnosis)
        return diagnosis

    def _judge(self) -> Diagnosis | None:
        if self._analyzer is None:
            return None
        window = self.store.window(self.options.analysis_window_s)
        diagnosis, self._analyzer_state = self._analyzer(window, self._analyzer_state)
        return diagnosis

    #: Until the first verdict, the analyzer runs this often (for at most FIRST_VERDICT_S): the verdict is
    #: what the user opened optitop for, so it appears as soon as the data allow, not up to a tick later.
    FIRST_VERDICT_PERIOD_S = 0.25
    FIRST_VERDICT_S = 10.0

    def _housekeep(self) -> None:
        name_os_thread("optitop-housekeeping")
        period = max(self.options.interval_s, 0.25)
        started = time.monotonic()
        stored_at = float("-inf")
        eager = True
        while not self._stop.wait(min(period, self.FIRST_VERDICT_PERIOD_S) if eager else period):
            self._check_stalls()
            self._update_self_cost()
            diagnosis = None
            try:
                diagnosis = self._judge()
            except Exception as exc:  # an analyzer bug must not stop collection, nor leave a stale verdict unsaid
                log.debug("analyzer failed", exc_info=True)
                self._analyzer_status(exc)
            else:
                self._analyzer_status(None)
            now = time.monotonic()
            if diagnosis is not None:
                unjudged = diagnosis.category == "unknown"
                # while eager, "not judged yet" is stored once a period: the verdict strip keeps one cell a period
                if not (eager and unjudged and now - stored_at < period):
                    self.store.add_diagnosis(diagnosis)
                    stored_at = now
                if eager:
                    eager = unjudged and now - started < self.FIRST_VERDICT_S
            self._react(diagnosis, now)

    def _react(self, diagnosis: Diagnosis | None, now_mono_s: float) -> None:
        """Run every policy once (a failing one is logged and skipped: it must not stop the analyzer)."""
        for policy in self.policies:
            try:
                policy.react(self, diagnosis, now_mono_s)
            except Exception:
                log.debug("policy %s failed", type(policy).__name__, exc_info=True)

    #: True while the user looks at the stacks (the Python pane zoomed): full duty then, steady or not.
    stacks_watched = False

    def stacks(self) -> StackSampler | None:
        """The running collector that samples stacks (found by what it can do, not by its name), if any."""
        return next((r.collector for r in self.runners if isinstance(r.collector, StackSampler)), None)

    def wake(self, collector: object) -> None:
        """Run ``collector``'s next sample now (e.g. a stack dump the GPU dip asked for)."""
        for runner in self.runners:
            if runner.collector is collector:
                runner.poke()

    #: The source name under which the analyzer's failures are shown (the header, doctor-like status lines).
    ANALYZER_SOURCE = "analyzer"

    def _analyzer_status(self, exc: Exception | None) -> None:
        """A failing analyzer becomes a visible status (the verdict on screen is then from before it failed);
        the status turns ok again when a judgement succeeds. Nothing is stored while it never failed."""
        if exc is None:
            if self._analyzer_failures:
                self._analyzer_failures = 0
                self.store.set_status(SourceStatus(self.ANALYZER_SOURCE, SourceState.OK))
            return
        self._analyzer_failures += 1
        reason = f"the analyzer failed ({type(exc).__name__}: {exc}); the verdict shown is from before"
        status = SourceStatus(self.ANALYZER_SOURCE, SourceState.ERROR, reason, failures=self._analyzer_failures)
        self.store.set_status(status)

    def _check_stalls(self) -> None:
        now = time.monotonic()
        for runner in self.runners:
            since = runner.in_call_since
            limit = max(STALL_MIN_S, STALL_INTERVALS * runner.collector.interval_s)
            if since is not None and now - since > limit:
                self.store.set_status(
                    SourceStatus(
                        runner.name,
                        SourceState.ERROR,
                        f"stalled: a sample has been running for {now - since:.0f} s",
                        failures=runner.status.failures + 1,
                    )
                )

    #: optitop's own CPU is shown as a mean over this many seconds: steadier to read, and a header that
    #: changes every second costs bytes over SSH.
    SELF_COST_SPAN_S = 10.0

    def _update_self_cost(self) -> None:
        try:
            times = self._me.cpu_times()
            rss = self._me.memory_info().rss
        except psutil.Error:
            return
        now = time.monotonic()
        self._self_cpu.append((now, times.user + times.system))
        while len(self._self_cpu) > 2 and now - self._self_cpu[1][0] >= self.SELF_COST_SPAN_S:
            self._self_cpu.popleft()
        (first_mono, first_cpu), (last_mono, last_cpu) = self._self_cpu[0], self._self_cpu[-1]
        cpu = 100.0 * (last_cpu - first_cpu) / (last_mono - first_mono) if last_mono > first_mono else None
        slowest = max(
            (r for r in self.runners if r.last_latency_s is not None),
            key=lambda r: r.last_latency_s or 0.0,
            default=None,
        )
        self.store.set_self_cost(
            SelfCost(
                cpu_pct=cpu,
                rss_bytes=rss,
                slowest_source=slowest.name if slowest else "",
                slowest_latency_s=slowest.last_latency_s if slowest else None,
            )
        )


class LiveSession(Protocol):
    """What the live screen's handle needs of a session; ``Session`` and ``FollowingSession`` both are one."""

    #: True while the user looks at the stacks (the Python pane zoomed): they are then sampled at full duty.
    stacks_watched: bool

    @property
    def store(self) -> Store:
        """The store the session feeds (kept across a follow's re-attaches)."""
        ...

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        ...

    def start(self) -> None:
        """Start collecting."""
        ...

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop collecting (bounded wait)."""
        ...

    def runner(self, name: str) -> CollectorRunner | None:
        """The runner of one collector, if it runs."""
        ...

    def stacks(self) -> StackSampler | None:
        """The running stack sampler, if any."""
        ...
