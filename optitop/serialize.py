"""The headless ``--once --json`` document: latest values and window aggregates, sources, verdict and cost.

Values are encoded by ``optitop.recording.codec.to_jsonable``, and the document carries the record files'
``schema_version``: a key means the same in both.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from optitop import __version__
from optitop.model import Diagnosis, Sample, SourceStatus, TargetInfo, Window
from optitop.recording.codec import SCHEMA_VERSION, to_jsonable


def _numeric_fields(obj: Any, prefix: str = "") -> dict[str, float]:
    """Top-level numbers, plus numbers of per-device records (a tuple of dataclasses with an ``index``)."""
    out: dict[str, float] = {}
    for f in dataclasses.fields(obj):
        if f.name in ("ts_s", "mono_s", "dt_s"):
            continue
        value = getattr(obj, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[prefix + f.name] = float(value)
        elif isinstance(value, tuple) and value and not prefix:
            for item in value:
                index = getattr(item, "index", None)
                if dataclasses.is_dataclass(item) and isinstance(index, int):
                    out.update(_numeric_fields(item, f"{f.name}[{index}]."))
        elif dataclasses.is_dataclass(value) and not isinstance(value, type) and not prefix:
            out.update(_numeric_fields(value, f"{f.name}."))
    return out


def aggregate(samples: tuple[Sample, ...]) -> dict[str, dict[str, float]]:
    """Mean, min and max of every top-level numeric field over the samples (fields that were None are skipped)."""
    acc: dict[str, list[float]] = {}
    for sample in samples:
        for key, value in _numeric_fields(sample).items():
            acc.setdefault(key, []).append(value)
    return {
        key: {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals), "n": float(len(vals))}
        for key, vals in acc.items()
    }


def status_json(status: SourceStatus) -> dict[str, Any]:
    """A source's status as JSON."""
    return {
        "state": status.state.value,
        "reason": status.reason,
        "latency_s": status.latency_s,
        "failures": status.failures,
    }


def target_json(target: TargetInfo) -> dict[str, Any]:
    """The target as JSON (its cmdline is already redacted)."""
    return {
        "pid": target.pid,
        "name": target.name,
        "cmdline": target.cmdline,
        "user": target.username,
        "host": target.host,
        "create_time": target.create_time_s,
        "exited": target.exited,
        "exited_at": target.exited_at_s,
        "exit_reason": target.exit_reason,
    }


def diagnosis_json(diagnosis: Diagnosis) -> dict[str, Any]:
    """A verdict as JSON."""
    out: dict[str, Any] = to_jsonable(diagnosis)
    out["secondary"] = [{"category": c, "confidence": p} for c, p in diagnosis.secondary]
    out.pop("mono_s", None)
    return out


def report(window: Window, diagnosis: Diagnosis, duration_s: float) -> dict[str, Any]:
    """The headless document: latest values and window aggregates of every collector, sources, verdict."""
    metrics: dict[str, Any] = {}
    for name, samples in sorted(window.samples.items()):
        if not samples:
            continue
        metrics[name] = {
            "latest": to_jsonable(samples[-1]),
            "window": aggregate(samples),
            "samples": len(samples),
        }
    cost = window.self_cost
    return {
        "schema_version": SCHEMA_VERSION,
        "optitop_version": __version__,
        "generated_at": time.time(),
        "duration_s": duration_s,
        "target": target_json(window.target),
        "metrics": metrics,
        "sources": {name: status_json(st) for name, st in sorted(window.statuses.items())},
        "diagnosis": diagnosis_json(diagnosis),
        "self": {
            "cpu_pct": cost.cpu_pct,
            "rss_bytes": cost.rss_bytes,
            "slowest_source": cost.slowest_source,
            "slowest_latency_s": cost.slowest_latency_s,
        },
    }
