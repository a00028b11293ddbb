"""Analyzers: pure functions from a window of samples to a Diagnosis. No I/O, no clocks, no threads."""

from __future__ import annotations

from optitop.analyzers.verdict import analyze, analyzer_failed, judge

__all__ = ["analyze", "analyzer_failed", "judge"]
