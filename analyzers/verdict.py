"""The verdict entry points. Until the bottleneck rules land, every window is judged ``unknown``."""

from __future__ import annotations

from optitop.types import Diagnosis, Window


def analyze(window: Window) -> Diagnosis:
    """Judge one window (pure)."""
    return Diagnosis(
        category="unknown",
        confidence=0.0,
        evidence=("no analyzer ran: the bottleneck rules are not built yet",),
        missing=("bottleneck analyzer",),
        mono_s=window.now_mono_s,
    )


def judge(window: Window, state: object) -> tuple[Diagnosis, object]:
    """Judge with hysteresis: the state goes in and comes out as a value."""
    return analyze(window), state
