"""Formatting helpers shared by the panes: units, bars, durations. Pure functions, no Textual."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from optitop.model import Sample
from optitop.safetext import printable

S = TypeVar("S", bound=Sample)

BLOCKS = " ▁▂▃▄▅▆▇█"


def fmt_bytes(n: float | None, per_s: bool = False, digits: int = 1) -> str:
    """1536 -> '1.5 KiB' (binary units; ``digits`` after the point above bytes); None -> '–'."""
    if n is None:
        return "–"
    suffix = "/s" if per_s else ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}{suffix}" if unit == "B" else f"{value:.{digits}f} {unit}{suffix}"
        value /= 1024
    return f"{value:.{digits}f} TiB{suffix}"  # pragma: no cover


def fmt_pct(p: float | None, width: int = 0) -> str:
    """45.2 -> ' 45%'; None -> '–'."""
    if p is None:
        return "–".rjust(width)
    return f"{p:.0f}%".rjust(width)


def fmt_si_rate(bytes_per_s: float | None) -> str:
    """Bandwidth in decimal units, as GPU and PCIe specs quote it: 16.6 GB/s, 3.35 TB/s; None -> '–'."""
    if bytes_per_s is None:
        return "–"
    value = float(bytes_per_s)
    for unit in ("B/s", "kB/s", "MB/s", "GB/s"):
        if abs(value) < 1000:
            return f"{value:.0f} {unit}" if unit == "B/s" else f"{value:.3g} {unit}"
        value /= 1000
    return f"{value:.3g} TB/s"


def fmt_rate(x: float | None, unit: str = "/s") -> str:
    """A count per second, compact (1.2k/s)."""
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.1f}M{unit}"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k{unit}"
    return f"{x:.0f}{unit}"


def fmt_duration(seconds: float | None) -> str:
    """3725 -> '1h02m'."""
    if seconds is None or seconds < 0:
        return "–"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fmt_uptime(seconds: float | None) -> str:
    """An uptime that moves once a minute after the first two: 45 -> '45s', 725 -> '12m', 3725 -> '1h02m'.

    Seconds matter only just after a restart; later a header ticking every second only costs bytes.
    """
    if seconds is not None and 120 <= seconds < 3600:
        return f"{int(seconds) // 60}m"
    return fmt_duration(seconds)


def fmt_clock(ts_s: float | None) -> str:
    """A wall-clock time as HH:MM:SS (local time)."""
    if ts_s is None:
        return "–"
    return time.strftime("%H:%M:%S", time.localtime(ts_s))


def bar(pct: float | None, width: int) -> str:
    """A horizontal bar of ``width`` cells for 0..100 %, with eighth-cell resolution."""
    if width <= 0:
        return ""
    if pct is None:
        return "·" * width
    frac = max(0.0, min(1.0, pct / 100.0))
    eighths = round(frac * width * 8)
    full, rem = divmod(eighths, 8)
    partial = "▏▎▍▌▋▊▉"[rem - 1] if rem else ""
    return ("█" * full + partial).ljust(width)


def spark(values: list[float | None], width: int, top: float = 100.0) -> str:
    """A one-line sparkline of the last ``width`` values scaled to ``top`` (None draws a gap)."""
    vals = values[-width:]
    out = []
    for v in vals:
        if v is None:
            out.append(" ")
            continue
        level = max(0, min(8, round(8 * v / top))) if top > 0 else 0
        out.append(BLOCKS[level])
    return "".join(out).rjust(width)


def clip(text: str, width: int) -> str:
    """Make ``text`` printable and cut it to ``width`` characters with an ellipsis."""
    if width <= 0:
        return ""
    text = printable(text)
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def with_gaps(samples: Sequence[S], pick: Callable[[S], float | None]) -> list[tuple[float, float | None]]:
    """(mono_s, pick(sample)) of each sample, with a None inserted where samples are missing (a restart, a stall).

    A gap is a pause longer than three times the median spacing, so charts and sparklines show it.
    """
    points: list[tuple[float, float | None]] = []
    monos = [s.mono_s for s in samples]
    steps = sorted(b - a for a, b in zip(monos, monos[1:], strict=False))
    typical = steps[len(steps) // 2] if steps else 0.0
    for i, sample in enumerate(samples):
        if i and typical > 0 and monos[i] - monos[i - 1] > 3 * typical:
            points.append(((monos[i] + monos[i - 1]) / 2, None))
        points.append((monos[i], pick(sample)))
    return points
