"""A short plain-text rendering of the headless report, for ``--once`` without ``--json``."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.1f}{unit}"
    return f"{value}{unit}"


def format_report(doc: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    t = doc["target"]
    lines = [
        f"optitop {doc['optitop_version']} — pid {t['pid']} ({t['name']}) on {t['host']}, {doc['duration_s']:.1f} s"
    ]
    if t["exited"]:
        lines.append(f"target exited: {t['exit_reason']}")
    d = doc["diagnosis"]
    lines.append(f"verdict: {d['category']} ({d['confidence']:.0%})")
    lines.extend(f"  · {e}" for e in d["evidence"])
    proc = doc["metrics"].get("process", {}).get("window", {})
    if proc:
        cpu = proc.get("cpu_pct", {})
        lines.append(f"CPU: mean {_fmt(cpu.get('mean'), ' %')}, max {_fmt(cpu.get('max'), ' %')} of one core")
    lines.append("sources:")
    for name, st in doc["sources"].items():
        lines.append(f"  {name:<10} {st['state']:<12} {st['reason']}")
    return "\n".join(lines)
