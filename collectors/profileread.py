"""Reading a scrape through a profile: the canonical ServingStats of one endpoint, and where each came from.

The most specific profile that matches fills its fields first; others that also match fill its gaps (Triton
hosting vLLM), and an endpoint no profile matches is read through the generic one. Counters become rates over
the measured interval, histograms become p50/p95 of the observations between the previous scrape and this
one (never since the server started), and every value says where it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from optitop.collectors.genericprofile import generic_profile
from optitop.collectors.profiles import LATENCIES, Profile, Src, detect
from optitop.collectors.promtext import Exposition, Labels
from optitop.collectors.promwindow import buckets_delta, counter_delta, histogram_buckets, label_match, quantile
from optitop.model import ServingStats


@dataclass(frozen=True, slots=True)
class Reading:
    """A profile applied to one scrape (and the one before it).

    Attributes:
        profile: the primary profile's name.
        stats: the canonical fields with provenance.
        also: other profiles whose series filled fields the primary left empty (Triton hosting vLLM).
    """

    profile: str
    stats: ServingStats
    also: tuple[str, ...] = ()


@dataclass(slots=True)
class _Acc:
    values: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)

    def put(self, key: str, value: float | None, origin: str) -> bool:
        if value is None or key in self.values:
            return False
        self.values[key] = value
        self.provenance[key] = origin
        return True


def _select(series: Mapping[Labels, float], src: Src) -> list[float]:
    want = dict(src.labels)
    return [v for k, v in series.items() if not want or label_match(k, want)]


def _label_note(src: Src) -> str:
    return "{" + ",".join(f'{k}=~"{v}"' for k, v in src.labels) + "}" if src.labels else ""


def _gauge(cur: Exposition, src: Src) -> float | None:
    values = _select(cur.series(src.name), src)
    if not values:
        return None
    value = {"sum": sum(values), "max": max(values), "mean": sum(values) / len(values)}[src.agg]
    return None if value < 0 else value * src.scale  # e.g. -1 = "prefix caching off": unknown, not a number


def _rate(cur: Exposition, prev: Exposition | None, dt: float | None, src: Src) -> float | None:
    now = cur.series(src.name)
    if prev is None or not dt or dt <= 0 or not now:
        return None
    return counter_delta(now, prev.series(src.name), dict(src.labels)) / dt * src.scale


def _delta(cur: Exposition, prev: Exposition, name: str) -> float | None:
    now = cur.series(name)
    return counter_delta(now, prev.series(name)) if now else None


def _ratio(cur: Exposition, prev: Exposition | None, num: str, den: str, scale: float) -> float | None:
    if prev is None:
        return None
    top, bottom = _delta(cur, prev, num), _delta(cur, prev, den)
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom * scale


def _quantiles(cur: Exposition, prev: Exposition | None, src: Src) -> tuple[float | None, float | None]:
    now = histogram_buckets(cur, src.name)
    if not now or prev is None:
        return None, None
    window = buckets_delta(now, histogram_buckets(prev, src.name))
    p50, p95 = quantile(window, 0.5), quantile(window, 0.95)
    return (None if p50 is None else p50 * src.scale), (None if p95 is None else p95 * src.scale)


def _summary(cur: Exposition, src: Src) -> tuple[float | None, float | None]:
    got: dict[str, list[float]] = {}
    for labels, value in cur.series(src.name).items():
        q = dict(labels).get("quantile")
        if q is not None:
            got.setdefault(q, []).append(value)

    def pick(q: str) -> float | None:
        vals = next((v for k, v in got.items() if _same_q(k, q)), None)
        return max(vals) * src.scale if vals else None  # several models: the worst one

    return pick("0.5"), pick("0.95")


def _same_q(raw: str, q: str) -> bool:
    try:
        return abs(float(raw) - float(q)) < 1e-9
    except ValueError:
        return False


def _latency(src: Src, cur: Exposition, prev: Exposition | None) -> tuple[float | None, float | None, str]:
    """(p50, p95, origin) of a latency source; a mean fills p50 only and says so."""
    if src.kind == "hist":
        p50, p95 = _quantiles(cur, prev, src)
        return p50, p95, f"{src.name} histogram, Δ since last scrape"
    if src.kind == "summary":
        p50, p95 = _summary(cur, src)
        return p50, p95, f"{src.name} summary quantiles"
    if src.kind == "mean":
        p50 = _ratio(cur, prev, src.name + "_sum", src.name + "_count", src.scale)
        return p50, None, f"mean Δ{src.name}_sum/Δ{src.name}_count (no buckets)"
    if src.kind == "ratio":
        return _ratio(cur, prev, src.name, src.den, src.scale), None, f"mean Δ{src.name}/Δ{src.den} (no histogram)"
    return None, None, ""


def _scalar(src: Src, cur: Exposition, prev: Exposition | None, dt: float | None) -> tuple[float | None, str]:
    """(value, origin) of a scalar source."""
    name = src.name + _label_note(src)
    if src.kind == "gauge":
        return _gauge(cur, src), name
    if src.kind == "rate":
        return _rate(cur, prev, dt, src), f"rate of {name}"
    if src.kind == "ratio":
        return _ratio(cur, prev, src.name, src.den, src.scale), f"Δ{src.name}/Δ{src.den}"
    if src.kind == "mean":
        return _ratio(cur, prev, src.name + "_sum", src.name + "_count", src.scale), f"mean of {src.name}"
    if src.kind in ("sum_rate", "count_rate"):
        suffix = "_sum" if src.kind == "sum_rate" else "_count"
        return _rate(cur, prev, dt, replace(src, name=src.name + suffix)), f"rate of {src.name}{suffix}"
    return None, ""


def _apply(acc: _Acc, key: str, src: Src, cur: Exposition, prev: Exposition | None, dt: float | None) -> bool:
    """Read one source into one canonical key (a latency key fills its p50 and p95); True when a value came."""
    if key in LATENCIES:
        p50, p95, origin = _latency(src, cur, prev)
        got = acc.put(f"{key}_p50_s", p50, origin + src.note)
        return acc.put(f"{key}_p95_s", p95, origin + src.note) or got
    value, origin = _scalar(src, cur, prev, dt)
    return acc.put(key, value, origin + src.note)


def _present(cur: Exposition, src: Src) -> bool:
    """Whether the series a source reads exist (then it owns its field, even while its value is unknown)."""
    if src.kind == "hist":
        return bool(histogram_buckets(cur, src.name))
    if src.kind == "summary":
        return any("quantile" in dict(labels) for labels in cur.series(src.name))
    if src.kind in ("mean", "count_rate"):
        return bool(cur.series(src.name + "_count"))
    if src.kind == "sum_rate":
        return bool(cur.series(src.name + "_sum"))
    if src.kind == "ratio":
        return bool(cur.series(src.name)) and bool(cur.series(src.den))
    if src.kind == "gauge":
        return bool(_select(cur.series(src.name), src))
    return bool(cur.series(src.name))  # a rate whose label filter matches nothing is a true zero


def _fill(acc: _Acc, profile: Profile, cur: Exposition, prev: Exposition | None, dt: float | None) -> bool:
    """Apply every field of a profile; True when it produced any value.

    The first source whose series exist owns the field, even while its value is unknown (no observation in
    the window, first scrape): falling back to another metric then would switch a field's meaning between
    ticks.
    """
    filled = False
    for key, sources in profile.fields:
        if key in acc.claimed:
            continue
        for src in sources:
            if _present(cur, src):
                acc.claimed.add(key)
                filled = _apply(acc, key, src, cur, prev, dt) or filled
                break
    return filled


def evaluate(cur: Exposition, prev: Exposition | None, dt_s: float | None) -> Reading:
    """Turn one scrape into canonical stats: the most specific profile first, others fill its gaps.

    Args:
        cur: this scrape.
        prev: the previous scrape of the same endpoint (None on the first: rates and quantiles stay None).
        dt_s: the measured seconds between the two scrapes.
    """
    matched = detect(cur)
    profiles = matched or [generic_profile(cur)]
    acc = _Acc()
    also = []
    for i, profile in enumerate(profiles):
        if _fill(acc, profile, cur, prev, dt_s) and i > 0:
            also.append(profile.name)
    kwargs: dict[str, float] = dict(acc.values)
    order = [f.name for f in fields(ServingStats)]
    provenance = tuple(sorted(acc.provenance.items(), key=lambda kv: order.index(kv[0])))
    stats = ServingStats(**kwargs, provenance=provenance)
    return Reading(profiles[0].name, stats, tuple(also))


def wanted_names(expo: Exposition) -> frozenset[str]:
    """Every exposed-name variant the profiles matching ``expo`` read (to parse only those lines next time)."""
    names: set[str] = set()
    for profile in detect(expo) or [generic_profile(expo)]:
        for _, sources in profile.fields:
            for src in sources:
                for name in (src.name, src.den):
                    if name:
                        base = name.removesuffix("_total")
                        names.update((name, base, base + "_total", name + "_bucket", name + "_sum", name + "_count"))
    return frozenset(names)


__all__ = ["Reading", "evaluate", "wanted_names"]
