"""An immutable view of the store over a time span, with typed access to each collector's series.

Readers ask for a series with the sample type they expect (``window.of("gpu", GpuSample)``) and get that type
back, so a field is read as an attribute mypy checks, never by string. A series can hold something else only
when a recording or a test put it there; those samples are skipped, not misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from optitop.model.core import Diagnosis, Sample, SelfCost, SourceStatus, TargetInfo

S = TypeVar("S", bound=Sample)


@dataclass(frozen=True, slots=True)
class Window:
    """An immutable view of the store over a time span: what analyzers and panes receive.

    Attributes:
        samples: per collector name, its samples in time order (oldest first).
        statuses: per collector name, its latest status.
        target: the watched process.
        now_mono_s: the monotonic time the window was cut at.
        span_s: the length of the window in seconds.
        self_cost: optitop's own cost.
        diagnoses: the recent verdicts, oldest first.
    """

    samples: dict[str, tuple[Sample, ...]]
    statuses: dict[str, SourceStatus]
    target: TargetInfo
    now_mono_s: float
    span_s: float
    self_cost: SelfCost = field(default_factory=lambda: SelfCost(None, None))
    diagnoses: tuple[Diagnosis, ...] = ()

    def series(self, name: str) -> tuple[Sample, ...]:
        """The samples of one collector (empty when it produced none)."""
        return self.samples.get(name, ())

    def latest(self, name: str) -> Sample | None:
        """The newest sample of one collector, or None."""
        got = self.samples.get(name)
        return got[-1] if got else None

    def recent(self, name: str, seconds: float) -> tuple[Sample, ...]:
        """The samples of one collector from the last ``seconds`` of the window."""
        start = self.now_mono_s - seconds
        return tuple(s for s in self.samples.get(name, ()) if s.mono_s >= start)

    def of(self, name: str, kind: type[S]) -> tuple[S, ...]:
        """The samples of one collector that are a ``kind`` (all of them, in a live session)."""
        return tuple(s for s in self.samples.get(name, ()) if isinstance(s, kind))

    def latest_of(self, name: str, kind: type[S]) -> S | None:
        """The newest sample of one collector when it is a ``kind``, else None."""
        got = self.samples.get(name)
        last = got[-1] if got else None
        return last if isinstance(last, kind) else None

    def recent_of(self, name: str, kind: type[S], seconds: float) -> tuple[S, ...]:
        """``recent`` typed: the ``kind`` samples of one collector from the last ``seconds`` of the window."""
        start = self.now_mono_s - seconds
        return tuple(s for s in self.samples.get(name, ()) if s.mono_s >= start and isinstance(s, kind))
