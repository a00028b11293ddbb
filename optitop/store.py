"""The store: bounded ring buffers of samples and verdicts, read as immutable windows.

Memory does not grow with session length: each series is a ``deque(maxlen=…)`` sized from the history
length and the collector's interval, so a week-long session holds what a minute-long one does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

from optitop.model import Diagnosis, Sample, SelfCost, SourceState, SourceStatus, TargetInfo, Window
from optitop.redact import redact_text

Listener = Callable[[str], None]
Clock = Callable[[], float]
S = TypeVar("S", bound=Sample)

#: Upper bound on samples kept per series, whatever the history and interval ask for.
MAX_SAMPLES_PER_SERIES = 20_000


class Store:
    """Thread-safe bounded storage; collectors write, analyzers and panes read windows."""

    def __init__(self, target: TargetInfo, history_s: float = 600.0, clock: Clock = time.monotonic) -> None:
        """Create an empty store for ``target`` that keeps ``history_s`` seconds of every series.

        ``clock`` is the clock the samples are stamped with (``mono_s``): windows are cut at its "now", and
        whatever records the store stamps its own events (status changes, target changes) with it too, so they
        sort among the samples. Live sessions use ``time.monotonic`` (CLOCK_MONOTONIC, which does not count a
        suspend, like the samples); a replay uses its position in recorded time; tests use a synthetic clock.
        """
        self._clock = clock
        self._lock = threading.Lock()
        self._history_s = history_s
        self._series: dict[str, deque[Sample]] = {}
        self._statuses: dict[str, SourceStatus] = {}
        self._diagnoses: deque[Diagnosis] = deque(maxlen=self._maxlen(1.0))
        self._target = target
        self._self_cost = SelfCost(None, None)
        self._listeners: list[Listener] = []
        self._intervals: dict[str, float] = {}

    # -- writing ---------------------------------------------------------------------------------------
    def _maxlen(self, interval_s: float) -> int:
        return max(8, min(MAX_SAMPLES_PER_SERIES, int(self._history_s / max(interval_s, 0.01)) + 2))

    def register(self, name: str, interval_s: float) -> None:
        """Size the ring buffer of one series and mark its source as starting."""
        with self._lock:
            self._intervals[name] = interval_s
            self._series.setdefault(name, deque(maxlen=self._maxlen(interval_s)))
            self._statuses.setdefault(name, SourceStatus(name, SourceState.STARTING))

    def add(self, name: str, sample: Sample) -> None:
        """Append one sample (the series is created on first use)."""
        with self._lock:
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = deque(maxlen=self._maxlen(self._intervals.get(name, 1.0)))
            series.append(sample)
            self._drop_older_than_history(series, sample.mono_s)
        self._notify(name)

    def _drop_older_than_history(self, series: deque[Sample], now_mono_s: float) -> None:
        """Drop samples older than the history (with a 10 % margin), keeping at least the last two.

        The count bound is sized from the interval a collector registered; a source that samples far less often
        (py-spy windows every few seconds, a backing-off source) would otherwise hold many times the history
        and memory would keep growing long after warm-up.
        """
        horizon = now_mono_s - 1.1 * self._history_s
        while len(series) > 2 and series[0].mono_s < horizon:
            series.popleft()

    def set_status(self, status: SourceStatus) -> None:
        """Record a collector's latest status (its reason redacted: an error may quote a URL or a secret argument).

        Every status passes here (live runners, collectors that could not be built, a replayed recording), so
        no screen, JSON, recording or exporter sees a reason that was not redacted.
        """
        if status.reason:
            status = replace(status, reason=redact_text(status.reason))
        with self._lock:
            changed = self._statuses.get(status.name) != status
            self._statuses[status.name] = status
        if changed:
            self._notify(status.name)

    def add_diagnosis(self, diagnosis: Diagnosis) -> None:
        """Append one verdict to the verdict history."""
        with self._lock:
            self._diagnoses.append(diagnosis)
        self._notify("diagnosis")

    def set_target(self, target: TargetInfo) -> None:
        """Replace the target description (e.g. when it exits)."""
        with self._lock:
            self._target = target
        self._notify("target")

    def rename_target(self, name: str, cmdline: str) -> bool:
        """Take the target's current name and (redacted) cmdline, e.g. after it exec-ed another program.

        Returns:
            True when either changed (listeners are told "target"), False when they were already so.
        """
        with self._lock:
            if (self._target.name, self._target.cmdline) == (name, cmdline):
                return False
            self._target = replace(self._target, name=name, cmdline=cmdline)
        self._notify("target")
        return True

    def mark_target_exited(self, reason: str = "", at_s: float | None = None) -> None:
        """Note once that the target has gone; the history stays."""
        with self._lock:
            if self._target.exited:
                return
            self._target = replace(
                self._target,
                exited=True,
                exited_at_s=at_s if at_s is not None else time.time(),
                exit_reason=reason,
            )
        self._notify("target")

    def set_self_cost(self, cost: SelfCost) -> None:
        """Record optitop's own cost."""
        with self._lock:
            self._self_cost = cost

    def clear(self, target: TargetInfo) -> None:
        """Empty the store for ``target``, keeping its history length, its listeners and its clock: a replay seeking
        backwards refills the same store the screen holds."""
        with self._lock:
            self._series = {}
            self._statuses = {}
            self._diagnoses = deque(maxlen=self._maxlen(1.0))
            self._target = target
            self._self_cost = SelfCost(None, None)
            self._intervals = {}

    def set_history(self, history_s: float) -> None:
        """Change how much history is kept (the +/- keys); shrinking drops the oldest samples."""
        with self._lock:
            self._history_s = history_s
            for name, series in list(self._series.items()):
                self._series[name] = deque(series, maxlen=self._maxlen(self._intervals.get(name, 1.0)))
            self._diagnoses = deque(self._diagnoses, maxlen=self._maxlen(1.0))
        self._notify("history")

    # -- reading ---------------------------------------------------------------------------------------
    @property
    def target(self) -> TargetInfo:
        """The watched process as last described."""
        with self._lock:
            return self._target

    @property
    def history_s(self) -> float:
        """Seconds of history kept per series."""
        return self._history_s

    def latest(self, name: str) -> Sample | None:
        """The newest sample of one series, without copying the series."""
        with self._lock:
            series = self._series.get(name)
            return series[-1] if series else None

    def since(self, name: str, after_mono_s: float | None, limit: int = 64) -> tuple[Sample, ...]:
        """The samples of one series newer than ``after_mono_s`` (at most ``limit``, oldest first).

        Walks the ring buffer from its newest end, so a per-tick check costs what arrived, not the history.
        """
        out: list[Sample] = []
        with self._lock:
            for sample in reversed(self._series.get(name, ())):
                if (after_mono_s is not None and sample.mono_s <= after_mono_s) or len(out) >= limit:
                    break
                out.append(sample)
        return tuple(reversed(out))

    def latest_of(self, name: str, kind: type[S]) -> S | None:
        """``latest`` typed (as ``Window.latest_of``): the newest sample of one series when it is a ``kind``."""
        last = self.latest(name)
        return last if isinstance(last, kind) else None

    def since_of(self, name: str, kind: type[S], after_mono_s: float | None, limit: int = 64) -> tuple[S, ...]:
        """``since`` typed: the ``kind`` samples of one series newer than ``after_mono_s`` (others are skipped)."""
        return tuple(s for s in self.since(name, after_mono_s, limit) if isinstance(s, kind))

    def statuses(self) -> dict[str, SourceStatus]:
        """A copy of every source's latest status."""
        with self._lock:
            return dict(self._statuses)

    def now_mono_s(self) -> float:
        """The store's clock: "now" on the clock its samples are stamped with."""
        return self._clock()

    def window(self, span_s: float | None = None, now_mono_s: float | None = None) -> Window:
        """An immutable snapshot of the last ``span_s`` seconds (all history when None), cut at the store's now."""
        now = self.now_mono_s() if now_mono_s is None else now_mono_s
        with self._lock:
            if span_s is None:
                samples = {k: tuple(v) for k, v in self._series.items()}
                diags = tuple(self._diagnoses)
                span = self._history_s
            else:
                start = now - span_s
                samples = {k: tuple(s for s in v if s.mono_s >= start) for k, v in self._series.items()}
                diags = tuple(d for d in self._diagnoses if d.mono_s >= start)
                span = span_s
            return Window(
                samples=samples,
                statuses=dict(self._statuses),
                target=self._target,
                now_mono_s=now,
                span_s=span,
                self_cost=self._self_cost,
                diagnoses=diags,
            )

    # -- change notification ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(series_name)`` after every change (from the writer's thread)."""
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, name: str) -> None:
        for listener in list(self._listeners):
            listener(name)
