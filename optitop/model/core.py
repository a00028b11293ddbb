"""The contracts every stage shares: samples, source status, the collector protocol and the diagnosis.

Data flows one way (collectors -> store -> analyzers -> tui); these types are what crosses each arrow, so
they are plain, frozen and serialisable (see ``optitop.recording.codec``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Sample:
    """Base of every collector sample.

    Attributes:
        ts_s: wall-clock time of the sample (for display and records).
        mono_s: monotonic time of the sample (for windows and rates: immune to clock jumps).
        dt_s: the measured seconds since the previous sample of the same collector, or None for the first.
    """

    ts_s: float
    mono_s: float
    dt_s: float | None


class SourceState(str, enum.Enum):
    """Where a data source stands; ``unavailable`` always carries a reason a person can act on."""

    STARTING = "starting"
    OK = "ok"
    UNAVAILABLE = "unavailable"
    ERROR = "error"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A collector's health as the session saw it on its last run."""

    name: str
    state: SourceState
    reason: str = ""
    latency_s: float | None = None
    last_ok_mono_s: float | None = None
    failures: int = 0

    @property
    def live(self) -> bool:
        """True when the last sample succeeded."""
        return self.state is SourceState.OK


class SourceUnavailable(Exception):  # noqa: N818 - a state, not a programming error
    """Raised by a collector when its source cannot work here; the message says why and how to fix it."""


class TargetGone(Exception):  # noqa: N818 - a state, not a programming error
    """Raised by a collector when the target process has exited."""


@runtime_checkable
class Collector(Protocol):
    """What the session needs from a data source.

    ``sample()`` runs on the collector's own thread, never on the UI thread. It must not sleep: a source
    that needs two readings (rates, GPM) keeps the previous one and returns None (or a partial sample)
    on the first call.
    """

    name: ClassVar[str]
    interval_s: float

    def sample(self) -> Sample | None:
        """Take one reading; raise SourceUnavailable with an actionable reason when it cannot work."""
        ...

    def close(self) -> None:
        """Release what the collector holds (subprocesses, handles)."""
        ...


CATEGORIES: tuple[str, ...] = (
    "compute",
    "memory_io",
    "scheduling",
    "network",
    "host_cpu",
    "idle",
    "none",
    "unknown",
)


@dataclass(frozen=True, slots=True)
class Latency:
    """Where one request's time goes, measured from outside (Little's law and service demands).

    Residence is the time a request spends in the server; service demand is the CPU (GPU) time it costs, the
    tree's CPU-seconds (GPU busy-seconds) per completed request; what is left is waiting, attributed to where the
    threads wait. Every number says where it came from; when the decomposition cannot be made, ``absent`` says why
    and the numbers are None (a missing decomposition must never read as "no waiting").

    Attributes:
        residence_s: seconds a request spends in the server.
        residence_from: where residence_s came from (a histogram's p50, or Little's law in flight ÷ rate).
        completions_per_s: requests completed per second (the rate the demands are divided by).
        cpu_demand_s: CPU-seconds per request (the process tree's, all threads).
        gpu_demand_s: GPU busy-seconds per request; None without a GPU in use.
        waiting_s: residence minus the demands (0 or more).
        waiting_share: waiting_s / residence_s.
        waiting_where: where the threads wait, in words ("inside the server, no upstream", "on 3 upstream
            connections", "in the accept queue", "for a CPU core").
        absent: why there is no decomposition ("" when there is one).
    """

    residence_s: float | None = None
    residence_from: str = ""
    completions_per_s: float | None = None
    cpu_demand_s: float | None = None
    gpu_demand_s: float | None = None
    waiting_s: float | None = None
    waiting_share: float | None = None
    waiting_where: str = ""
    absent: str = ""

    def line(self) -> str:
        """One line for the verdict pane: ``630 ms per request: CPU 3 ms · GPU 0 · waiting 627 ms inside …``."""
        if self.residence_s is None or self.absent:
            return f"latency: {self.absent or 'no request data'}"
        parts = [f"CPU {_ms(self.cpu_demand_s)}"]
        parts.append("GPU " + ("–" if self.gpu_demand_s is None else _ms(self.gpu_demand_s)))
        if self.waiting_s is not None:
            parts.append(f"waiting {_ms(self.waiting_s)}" + (f" {self.waiting_where}" if self.waiting_where else ""))
        return f"{_ms(self.residence_s)} per request: " + " · ".join(parts)


def _ms(seconds: float | None) -> str:
    """Seconds as ``627 ms`` / ``1.2 s`` / ``0.4 ms`` (``?`` when unknown)."""
    if seconds is None:
        return "?"
    if seconds >= 10:
        return f"{seconds:.0f} s"
    if seconds >= 1:
        return f"{seconds:.1f} s"
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 1 or ms == 0 else f"{ms:.1f} ms"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The analyzer's verdict over one window.

    Attributes:
        category: one of CATEGORIES; ``unknown`` while too little is known to judge.
        confidence: 0..1.
        evidence: short lines with the numbers that decided it.
        fixes: what to try first, most specific first.
        secondary: other classes with their confidence.
        missing: sources that would have sharpened the verdict.
        counter: what would change the verdict.
        rules: every rule that fired, for and against each class in the running, with its number (the zoomed
            verdict pane and the JSON show them: how the verdict was reached, not only what it is).
        latency: where a request's time goes (None in recordings made before it existed).
        leading: when hysteresis holds ``category`` on screen, the class this window's evidence leads with ("" when
            they agree): the pane says the verdict is held, and never shows a runner-up above the winner unexplained.
        leading_confidence: that class's confidence on this window.
    """

    category: str
    confidence: float
    evidence: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    secondary: tuple[tuple[str, float], ...] = ()
    missing: tuple[str, ...] = ()
    counter: tuple[str, ...] = ()
    ts_s: float = 0.0
    mono_s: float = 0.0
    rules: tuple[str, ...] = ()
    latency: Latency | None = None
    leading: str = ""
    leading_confidence: float = 0.0


#: The words a confidence is read with, from the highest band down: (least confidence, word).
CONFIDENCE_WORDS: tuple[tuple[float, str], ...] = ((0.7, "confident"), (0.5, "likely"), (0.3, "leaning"))


def confidence_word(confidence: float) -> str:
    """The word for a confidence (0..1): "confident" only from 0.7; a 34 % verdict is "leaning", not confident."""
    for least, word in CONFIDENCE_WORDS:
        if confidence >= least:
            return word
    return "tentative"


@dataclass(frozen=True, slots=True)
class TargetInfo:
    """Who we are watching; cmdline is already redacted."""

    pid: int
    name: str
    cmdline: str
    username: str
    create_time_s: float
    host: str
    exited: bool = False
    exited_at_s: float | None = None
    exit_reason: str = ""
    #: pids this session watched before a restart (``--follow``), oldest first
    previous_pids: tuple[int, ...] = ()
    reattached_at_s: float | None = None


@dataclass(frozen=True, slots=True)
class SelfCost:
    """optitop's own cost, shown in the header so the user can see the monitor is not the problem."""

    cpu_pct: float | None
    rss_bytes: int | None
    slowest_source: str = ""
    slowest_latency_s: float | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A process worth offering in the picker (found by ``optitop.candidates``, shown by ``tui/picker.py``)."""

    pid: int
    name: str
    cmdline: str
    cpu_pct: float
    rss_bytes: int
    ports: tuple[int, ...]
    torch: bool
    known: str
    score: float


def sum_known(values: Iterable[float | None]) -> float | None:
    """The sum of the values that are known; None only when none is (an unknown part never reads as 0, and a
    missing whole never reads as 0 either). Derived values that add parts (waiting + running, rx + tx) use it."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None
