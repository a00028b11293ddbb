"""The generic profile: a guess at an unrecognised server's metrics, from the words in their names.

An endpoint that matches no known server still often says what it counts (``*_queue_*``, ``*_latency_seconds``,
``http_requests_total``). This builds a profile for it at run time from name patterns, skipping the client
library's own process/runtime series; each field's provenance then names the raw series chosen, and a unit
guessed rather than read from the name says so.
"""

from __future__ import annotations

import re

from optitop.collectors.profiles import MS, US, Profile, Src, gauge_src, rate_src
from optitop.collectors.promtext import Exposition

_IGNORED_PREFIXES = ("process_", "python_", "go_", "promhttp_", "scrape_")
_TIME_WORDS = re.compile(r"(time|duration|latency|seconds|_ms$|_us$|bytes|size_bytes|capacity|max|limit|created)")
_WAITING = re.compile(r"(waiting|queue|queued|pending|backlog|deferred)")
_RUNNING = re.compile(r"(running|in_?flight|in_progress|inprogress|ongoing|processing|active)")
_BATCH = re.compile(r"batch")
_TTFT = re.compile(r"(ttft|first_token|first_response|time_to_first)")
_ITL = re.compile(r"(inter_token|itl|tpot|per_output_token|time_per_token|per_token)")
_QUEUE_T = re.compile(r"(queue|wait)")
_LAT = re.compile(r"(latency|duration|time|ttft)")


def _unit_scale(name: str) -> tuple[float, str]:
    """The factor to seconds from the unit in a metric name, and a note when the unit had to be guessed."""
    n = name.lower()
    for suffixes, scale in (
        (("_seconds", "_s", "_sec"), 1.0),
        (("_milliseconds", "_ms"), MS),
        (("_microseconds", "_us"), US),
        (("_nanoseconds", "_ns"), 1e-9),
    ):
        if n.endswith(suffixes):
            return scale, ""
    return 1.0, " (unit not in the name: read as seconds)"


def _plain_names(expo: Exposition) -> list[str]:
    """Names worth a guess: not the client library's own process/runtime series, not ``_created`` stamps."""
    return sorted(n for n in expo.names() if not n.startswith(_IGNORED_PREFIXES) and not n.endswith("_created"))


def _gauges(expo: Exposition) -> list[str]:
    out = []
    for name in _plain_names(expo):
        if expo.types.get(name) not in ("gauge", "untyped"):
            continue
        if name.endswith(("_total", "_count", "_sum", "_bucket")):
            continue
        if any("le" in dict(k) or "quantile" in dict(k) for k in expo.samples[name]):
            continue
        out.append(name)
    return out


def _histograms(expo: Exposition) -> list[str]:
    bases = []
    for name in _plain_names(expo):
        if any("le" in dict(k) for k in expo.samples[name]):
            bases.append(name.removesuffix("_bucket"))
    return sorted(set(bases))


def _counters(expo: Exposition) -> list[str]:
    return [n for n in _plain_names(expo) if expo.types.get(n) == "counter" or n.endswith("_total")]


def _pick(names: list[str], want: re.Pattern[str], avoid: re.Pattern[str] | None = None) -> str | None:
    hits = [n for n in names if want.search(n.lower()) and not (avoid and avoid.search(n.lower()))]
    return min(hits, key=lambda n: (0 if "request" in n.lower() else 1, len(n), n)) if hits else None


def generic_profile(expo: Exposition) -> Profile:
    """A profile for an unknown server, built from name patterns; provenance names the series chosen."""
    gauges, hists, counters = _gauges(expo), _histograms(expo), _counters(expo)
    chosen: list[tuple[str, tuple[Src, ...]]] = []

    def gauge(key: str, want: re.Pattern[str]) -> None:
        name = _pick(gauges, want, _TIME_WORDS)
        if name:
            chosen.append((key, (gauge_src(name),)))

    gauge("requests_waiting", _WAITING)
    gauge("requests_running", _RUNNING)
    gauge("batch_size", _BATCH)
    used: set[str] = set()
    for key, want, avoid in (
        ("ttft", _TTFT, None),
        ("itl", _ITL, None),
        ("queue_time", _QUEUE_T, _TTFT),
        ("e2e", _LAT, re.compile(r"(queue|wait|ttft|first_token|inter_token|per_output_token|per_token|tpot)")),
    ):
        timed = [h for h in hists if h not in used and (_LAT.search(h.lower()) or _TTFT.search(h.lower()))]
        name = _pick(timed, want, avoid)
        if name:
            used.add(name)
            scale, note = _unit_scale(name)
            chosen.append((key, (Src("hist", name, scale, note=note),)))
    request = "http_requests_total" if "http_requests_total" in counters else None
    request = request or _pick(counters, re.compile(r"request"), re.compile(r"(error|fail|size|bytes|token)"))
    if request:
        chosen.append(("request_rate_per_s", (rate_src(request),)))
    errors = _pick(counters, re.compile(r"(error|fail|exception)"))
    if errors:
        chosen.append(("error_rate_per_s", (rate_src(errors),)))
    elif request == "http_requests_total":
        # prometheus-fastapi-instrumentator labels "status" (2xx, 5xx); other HTTP middleware labels "code".
        labels = {k for series in expo.series(request) for k, _ in series}
        status = "status" if "status" in labels or "code" not in labels else "code"
        chosen.append(("error_rate_per_s", (Src("rate", request, labels=((status, "5.*"),)),)))
    if request is None and "e2e" in dict(chosen):
        base = dict(chosen)["e2e"][0].name
        chosen.append(("request_rate_per_s", (Src("count_rate", base),)))
    prompt = _pick(counters, re.compile(r"(prompt|input)_tokens"))
    if prompt:
        chosen.append(("prompt_tokens_per_s", (rate_src(prompt),)))
    gen = _pick(counters, re.compile(r"(generation|generated|output|completion)_tokens"))
    if gen:
        chosen.append(("generation_tokens_per_s", (rate_src(gen),)))
    return Profile("generic", "unrecognised server", (), tuple(chosen), rank=0)


__all__ = ["generic_profile"]
