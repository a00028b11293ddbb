"""One Prometheus endpoint: a scrape of it on the fetch pool, and the state its rates need between scrapes.

A scrape (fetch, then parse) runs on a pool thread and reports what it cost, so the collector can space the
next ones by their CPU cost; it stamps the time the response arrived, because rates divide by the time
between two servers' answers, not between two parses. ``unrefreshed`` tells a cached page served again (Ray
Serve refreshes every 10 s) from a second with no traffic; the collector decides what to do about it.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass

from optitop.collectors.profileread import Reading
from optitop.collectors.promfetch import MAX_LINES, FetchResult, fetch
from optitop.collectors.promtext import Exposition, NotExposition, parse_exposition
from optitop.redact import redact_text


@dataclass(slots=True)
class Scrape:
    """A fetch that finished: the parsed text or the reason it is not usable, and when it arrived."""

    url: str
    expo: Exposition | None
    reason: str
    mono_s: float
    #: Which cap cut the page ("page cut at 4 MiB"), or "" when it was read whole.
    cut: str = ""
    full: bool = True
    #: CPU seconds the fetch and parse took on the pool thread.
    cpu_s: float = 0.0


@dataclass(slots=True)
class Endpoint:
    """One scraped URL and the state its rates need.

    Attributes:
        url: what is fetched (with its credentials, if the user gave any).
        shown: the URL as every sample, line and file shows it (password and secret parameters hidden).
        explicit: given with ``--metrics-url`` (kept when failing; preferred when several answer).
        prev: the previous good scrape, for counter and bucket deltas; prev_mono_s: when it arrived.
        pending: the fetch in flight (never two at once for one endpoint); submitted_mono_s: when it started.
        slow: the last fetch outlasted a tick's wait, so ticks no longer wait for this endpoint.
        failures: consecutive failed scrapes; reason: why the last one failed.
        reading: the latest canonical reading; notes: what the last full parse had to drop or repair.
        keep: the metric names the profile reads (later scrapes parse only those lines).
        full_parse_mono_s: when the last full parse happened (one every REPARSE_S).
        cut: the last answer was cut at a cap ("page cut at 4 MiB"): shown with the source, since the
            series past the cut are missing from the reading.
        held: the last answer was identical to ``prev`` and its reading was held (a cache not yet refreshed).
        rated: ``reading`` was computed against a baseline (it has rates); only such a reading is held, so a
            server idle from the start reads 0/s at once, not unknown for HOLD_MAX_S.
    """

    url: str
    explicit: bool
    shown: str = ""
    prev: Exposition | None = None
    prev_mono_s: float | None = None
    pending: Future[Scrape] | None = None
    submitted_mono_s: float = 0.0
    slow: bool = False
    failures: int = 0
    reason: str = ""
    reading: Reading | None = None
    notes: tuple[str, ...] = ()
    keep: frozenset[str] | None = None
    full_parse_mono_s: float = 0.0
    held: bool = False
    rated: bool = False
    cut: str = ""

    def __post_init__(self) -> None:
        self.shown = self.shown or redact_text(self.url)


def unrefreshed(cur: Exposition, prev: Exposition) -> bool:
    """True when ``cur`` repeats ``prev`` in every series they share (the endpoint served the same cache).

    Only the shared names are compared: one of the two may be a filtered parse of the profile's names.
    """
    shared = cur.samples.keys() & prev.samples.keys()
    return bool(shared) and all(cur.samples[name] == prev.samples[name] for name in shared)


def scrape(
    url: str, timeout_s: float, max_bytes: int, keep: frozenset[str] | None = None, max_lines: int = MAX_LINES
) -> Scrape:
    """Fetch and parse one URL (runs on the pool); ``keep`` limits parsing to the names a profile reads."""
    cpu0 = time.thread_time()
    got = _judge_fetch(fetch(url, timeout_s, max_bytes, max_lines), keep)
    got.cpu_s = time.thread_time() - cpu0
    return got


def _judge_fetch(got: FetchResult, keep: frozenset[str] | None) -> Scrape:
    # The response time, not the parse's end: rates divide by the time between two servers' answers.
    arrived = time.monotonic()
    if not got.ok or got.body is None:
        return Scrape(got.url, None, got.reason or "no body", arrived)
    try:
        expo = parse_exposition(got.body, got.content_type, keep)
    except NotExposition as exc:
        reason = f"{exc} ({got.cut})" if got.cut else str(exc)
        return Scrape(got.url, None, reason, arrived, got.cut, keep is None)
    return Scrape(got.url, expo, "", arrived, got.cut, keep is None)
