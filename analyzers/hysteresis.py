"""Hysteresis: the shown verdict changes only when a new class leads for several evaluations.

One odd window (a GC pause, a burst of requests) must not flip the pane, and two classes alternating must
not make it flicker. The state is an immutable value that goes in and comes out of ``step``, so the
analyzer stays a pure function and tests can replay any sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: How many recent evaluations are remembered, how many of them a new class must lead, and how many of
#: those must be the latest in a row (so two classes alternating never flip the verdict back and forth).
HISTORY = 5
NEEDED = 3
CONSECUTIVE = 2
#: Classes that are not verdicts: the first real class replaces them at once.
PROVISIONAL: frozenset[str] = frozenset({"unknown"})


@dataclass(frozen=True, slots=True)
class HysteresisState:
    """The recent raw leaders (oldest first) and the class currently shown."""

    recent: tuple[str, ...] = ()
    shown: str | None = None

    def leads(self, category: str) -> int:
        """How many of the remembered evaluations ``category`` led."""
        return self.recent.count(category)


def step(
    state: HysteresisState | None,
    leader: str,
    history: int = HISTORY,
    needed: int = NEEDED,
    consecutive: int = CONSECUTIVE,
) -> HysteresisState:
    """Add this evaluation's raw leader and decide what is shown.

    The shown class switches to ``leader`` when nothing real is shown yet, or when ``leader`` led at
    least ``needed`` of the last ``history`` evaluations, the last ``consecutive`` of them in a row.
    """
    state = state or HysteresisState()
    recent = (*state.recent, leader)[-history:]
    shown = state.shown
    first_real = shown is None or (shown in PROVISIONAL and leader not in PROVISIONAL)
    in_a_row = len(recent) >= consecutive and all(r == leader for r in recent[-consecutive:])
    if first_real or (leader != shown and in_a_row and recent.count(leader) >= needed):
        shown = leader
    return replace(state, recent=recent, shown=shown)


def pending(state: HysteresisState) -> str | None:
    """The class that leads now but is not shown yet (for an evidence line), or None."""
    if not state.recent or state.recent[-1] == state.shown:
        return None
    return state.recent[-1]
