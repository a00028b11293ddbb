"""Windowed arithmetic on exposition data: counter deltas across resets, histogram quantiles from bucket deltas.

It lives apart from any server profile because it is about exposition data, not about a server: every
profile reads rates and quantiles over the interval between two scrapes (never since the server started)
through these functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from optitop.collectors.promtext import Exposition, Labels


def label_match(labels: Labels, want: Mapping[str, str]) -> bool:
    """True when every wanted label's value fully matches its regular expression."""
    got = dict(labels)
    return all(k in got and re.fullmatch(pattern, got[k]) is not None for k, pattern in want.items())


def counter_delta(
    cur: Mapping[Labels, float], prev: Mapping[Labels, float], want: Mapping[str, str] | None = None
) -> float:
    """The increase of a counter summed over its label sets, across resets.

    A series that went down was restarted (the server restarted or the child was recreated), so its
    increase since then is its current value, as Prometheus' ``rate()`` assumes. A label set that appeared
    since the previous scrape was created from zero in between, so all of its value is new.
    """
    total = 0.0
    for labels, now in cur.items():
        if want and not label_match(labels, want):
            continue
        before = prev.get(labels)
        if before is None or now < before:
            total += now
        else:
            total += now - before
    return total


def le_value(raw: str) -> float | None:
    """A bucket bound as a float (``+Inf`` is infinity), or None when it does not parse."""
    try:
        return float(raw)
    except ValueError:
        return None


Buckets = dict[float, float]


def histogram_buckets(expo: Exposition, base: str) -> dict[Labels, Buckets]:
    """Cumulative bucket counts of one histogram, per label set without ``le``.

    Accepts ``base_bucket{le=…}`` (the format) and also ``base{le=…}`` (seen in Triton's docs).
    """
    out: dict[Labels, Buckets] = {}
    for name in (base + "_bucket", base):
        for labels, value in expo.samples.get(name, {}).items():
            le_raw = dict(labels).get("le")
            if le_raw is None:
                continue
            le = le_value(le_raw)
            if le is None:
                continue
            rest = tuple((k, v) for k, v in labels if k != "le")
            out.setdefault(rest, {})[le] = value
        if out:
            return out
    return out


def buckets_delta(cur: Mapping[Labels, Buckets], prev: Mapping[Labels, Buckets]) -> Buckets:
    """Bucket counts observed between two scrapes, summed over label sets; a reset series counts whole."""
    total: Buckets = {}
    for labels, now in cur.items():
        before = prev.get(labels)
        reset = before is None or _bucket_total(now) < _bucket_total(before)
        for le, count in now.items():
            inc = count if reset or before is None else count - before.get(le, 0.0)
            total[le] = total.get(le, 0.0) + max(0.0, inc)
    return total


def _bucket_total(buckets: Buckets) -> float:
    return buckets[max(buckets)] if buckets else 0.0


def quantile(buckets: Buckets, q: float) -> float | None:
    """The q-quantile of cumulative buckets, interpolated linearly inside a bucket as Prometheus does.

    None when no observation fell in the buckets. When the quantile lies in the +Inf bucket the answer is the
    largest finite bound (the true value is somewhere above it).
    """
    if not buckets:
        return None
    bounds = sorted(buckets)
    cum: list[float] = []
    running = 0.0
    for le in bounds:
        running = max(running, buckets[le])  # a non-monotonic exposition: as Prometheus, never go down
        cum.append(running)
    total = cum[-1]
    if total <= 0:
        return None
    rank = q * total
    idx = next(i for i, c in enumerate(cum) if c >= rank)
    upper = bounds[idx]
    if math.isinf(upper):
        finite = [b for b in bounds if not math.isinf(b)]
        return finite[-1] if finite else None
    if idx == 0 and upper <= 0:
        return upper
    lower = bounds[idx - 1] if idx > 0 else 0.0
    below = cum[idx - 1] if idx > 0 else 0.0
    in_bucket = cum[idx] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket
