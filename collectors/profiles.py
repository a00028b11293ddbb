"""Server profiles as data: which raw Prometheus series become which canonical ServingStats field.

A profile is recognised from the metric names an endpoint exposes (``vllm:``, ``tgi_``, ``nv_inference_`` …).
Each canonical field lists its sources in order of preference, so both generations of a server's names
(``vllm:gpu_cache_usage_perc`` then ``vllm:kv_cache_usage_perc``) fit in one table. Anything unrecognised
falls to a generic profile built from name patterns, which reports the raw series it chose in provenance.

Counters become rates over the measured interval, histograms become p50/p95 of the observations between
the previous scrape and this one (never since the server started), and every value says where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from optitop.collectors.promtext import Exposition, Labels
from optitop.collectors.promwindow import buckets_delta, counter_delta, histogram_buckets, label_match, quantile
from optitop.model import ServingStats

#: Latency families: each fills ``<key>_p50_s`` and ``<key>_p95_s``.
LATENCIES = ("queue_time", "ttft", "itl", "e2e")

Kind = Literal["gauge", "rate", "hist", "summary", "mean", "ratio", "sum_rate", "count_rate"]
Agg = Literal["sum", "max", "mean"]

US = 1e-6
MS = 1e-3
PCT = 100.0


@dataclass(frozen=True, slots=True)
class Src:
    """One way to read a canonical value from raw series.

    Attributes:
        kind: ``gauge`` (current value), ``rate`` (counter increase / interval), ``hist`` (p50/p95 of bucket
            deltas), ``summary`` (the server's own 0.5/0.95 quantiles), ``mean`` (Δ_sum / Δ_count of a histogram
            or summary), ``ratio`` (Δname / Δden of two counters), ``sum_rate`` (Δ_sum / interval of a
            histogram whose observations are counts, e.g. tokens per request), ``count_rate`` (Δ_count /
            interval of a histogram: one observation per request).
        name: the raw metric name (``_total`` optional for counters).
        scale: multiplies the value into the canonical unit (µs → s, ratio → %).
        labels: label name → regular expression the value must fully match (series not matching are left out).
        den: the denominator counter of ``ratio``.
        agg: how label sets of a gauge combine: ``sum`` (queues of several models), ``max`` or ``mean``
            (a usage ratio reported per engine).
        note: added to the provenance (e.g. that the generic profile guessed the unit).
    """

    kind: Kind
    name: str
    scale: float = 1.0
    labels: tuple[tuple[str, str], ...] = ()
    den: str = ""
    agg: Agg = "sum"
    note: str = ""


@dataclass(frozen=True, slots=True)
class Profile:
    """How one server family's metrics map to canonical fields.

    Attributes:
        name: short name shown in the source line (``vllm``, ``tgi`` …).
        title: the server's name for people.
        prefixes: metric-name prefixes that identify the server.
        markers: whole metric names that identify it too (for servers with unprefixed names).
        rank: specificity; an LLM engine (3) beats a general model server (2), which beats generic (0).
        fields: canonical key (a ServingStats field, or a LATENCIES key) → sources, most preferred first.
        paths: HTTP paths where the server serves its metrics.
    """

    name: str
    title: str
    prefixes: tuple[str, ...]
    fields: tuple[tuple[str, tuple[Src, ...]], ...]
    markers: frozenset[str] = frozenset()
    rank: int = 2
    paths: tuple[str, ...] = ("/metrics",)

    def score(self, names: frozenset[str]) -> int:
        """How many exposed names belong to this server (0: not this server)."""
        return sum(1 for n in names if n.startswith(self.prefixes) or n in self.markers)


def _g(name: str, scale: float = 1.0, agg: Agg = "sum", **labels: str) -> Src:
    return Src("gauge", name, scale, tuple(labels.items()), agg=agg)


def _r(name: str, scale: float = 1.0, **labels: str) -> Src:
    return Src("rate", name, scale, tuple(labels.items()))


def _h(name: str, scale: float = 1.0) -> Src:
    return Src("hist", name, scale)


HTTP_5XX = _r("http_requests_total", status="5.*")
#: Provenance note of a waiting count derived from a queue-time counter.
LITTLE = " (queued seconds per second = mean requests waiting, Little's law)"

VLLM = Profile(
    "vllm",
    "vLLM",
    ("vllm:",),
    (
        ("requests_waiting", (_g("vllm:num_requests_waiting"),)),
        ("requests_running", (_g("vllm:num_requests_running"),)),
        ("requests_swapped", (_g("vllm:num_requests_swapped"),)),
        # Continuous batching: the running set is the batch stepped together.
        ("batch_size", (_g("vllm:num_requests_running"),)),
        (
            "kv_cache_usage_pct",
            (_g("vllm:kv_cache_usage_perc", PCT, "max"), _g("vllm:gpu_cache_usage_perc", PCT, "max")),
        ),
        ("preemptions_per_s", (_r("vllm:num_preemptions_total"),)),
        (
            "request_rate_per_s",
            (_r("vllm:request_success_total"), Src("count_rate", "vllm:e2e_request_latency_seconds")),
        ),
        ("error_rate_per_s", (HTTP_5XX,)),
        ("queue_time", (_h("vllm:request_queue_time_seconds"),)),
        ("ttft", (_h("vllm:time_to_first_token_seconds"),)),
        (
            "itl",
            (
                _h("vllm:inter_token_latency_seconds"),
                _h("vllm:time_per_output_token_seconds"),
                _h("vllm:request_time_per_output_token_seconds"),
            ),
        ),
        ("e2e", (_h("vllm:e2e_request_latency_seconds"),)),
        ("prompt_tokens_per_s", (_r("vllm:prompt_tokens_total"),)),
        ("generation_tokens_per_s", (_r("vllm:generation_tokens_total"),)),
        (
            "prefix_cache_hit_pct",
            (
                Src("ratio", "vllm:prefix_cache_hits_total", PCT, den="vllm:prefix_cache_queries_total"),
                Src("ratio", "vllm:gpu_prefix_cache_hits_total", PCT, den="vllm:gpu_prefix_cache_queries_total"),
                _g("vllm:gpu_prefix_cache_hit_rate", PCT, "mean"),
            ),
        ),
    ),
    rank=3,
)

TGI = Profile(
    "tgi",
    "Hugging Face TGI",
    ("tgi_",),
    (
        ("requests_waiting", (_g("tgi_queue_size"),)),
        ("requests_running", (_g("tgi_batch_current_size"),)),
        ("batch_size", (_g("tgi_batch_current_size"),)),
        ("request_rate_per_s", (_r("tgi_request_success"), Src("count_rate", "tgi_request_duration"))),
        ("error_rate_per_s", (_r("tgi_request_failure"),)),
        ("queue_time", (_h("tgi_request_queue_duration"),)),
        ("itl", (_h("tgi_request_mean_time_per_token_duration"),)),
        ("e2e", (_h("tgi_request_duration"),)),
        ("prompt_tokens_per_s", (Src("sum_rate", "tgi_request_input_length"),)),
        ("generation_tokens_per_s", (Src("sum_rate", "tgi_request_generated_tokens"),)),
    ),
    rank=3,
)

TRITON = Profile(
    "triton",
    "NVIDIA Triton",
    ("nv_inference_", "nv_trt_llm_", "nv_gpu_", "nv_cache_", "nv_cpu_", "nv_pinned_", "nv_energy_"),
    (
        (
            "requests_waiting",
            (_g("nv_trt_llm_request_metrics", request_type="waiting"), _g("nv_inference_pending_request_count")),
        ),
        ("requests_running", (_g("nv_trt_llm_request_metrics", request_type="active"),)),
        ("max_running", (_g("nv_trt_llm_request_metrics", request_type="max"),)),
        (
            "batch_size",
            (
                _g("nv_trt_llm_request_metrics", request_type="scheduled"),
                Src("ratio", "nv_inference_count", den="nv_inference_exec_count"),
            ),
        ),
        ("kv_cache_usage_pct", (_g("nv_trt_llm_kv_cache_block_metrics", PCT, "max", kv_cache_block_type="fraction"),)),
        ("request_rate_per_s", (_r("nv_inference_request_success"),)),
        ("error_rate_per_s", (_r("nv_inference_request_failure"),)),
        (
            "queue_time",
            (
                Src("summary", "nv_inference_queue_summary_us", US),
                Src("ratio", "nv_inference_queue_duration_us", US, den="nv_inference_request_success"),
            ),
        ),
        ("ttft", (_h("nv_inference_first_response_histogram_ms", MS),)),
        (
            "e2e",
            (
                Src("summary", "nv_inference_request_summary_us", US),
                Src("ratio", "nv_inference_request_duration_us", US, den="nv_inference_request_success"),
            ),
        ),
    ),
)

SGLANG = Profile(
    "sglang",
    "SGLang",
    ("sglang:",),
    (
        ("requests_waiting", (_g("sglang:num_queue_reqs"),)),
        ("requests_running", (_g("sglang:num_running_reqs"),)),
        ("batch_size", (_g("sglang:num_running_reqs"),)),
        ("kv_cache_usage_pct", (_g("sglang:token_usage", PCT, "max"),)),
        (
            "request_rate_per_s",
            (_r("sglang:num_requests_total"), Src("count_rate", "sglang:e2e_request_latency_seconds")),
        ),
        ("queue_time", (_h("sglang:queue_time_seconds"),)),
        ("ttft", (_h("sglang:time_to_first_token_seconds"),)),
        ("itl", (_h("sglang:inter_token_latency_seconds"), _h("sglang:time_per_output_token_seconds"))),
        ("e2e", (_h("sglang:e2e_request_latency_seconds"),)),
        ("prompt_tokens_per_s", (_r("sglang:prompt_tokens_total"),)),
        ("generation_tokens_per_s", (_r("sglang:generation_tokens_total"), _g("sglang:gen_throughput"))),
        ("prefix_cache_hit_pct", (_g("sglang:cache_hit_rate", PCT, "mean"),)),
    ),
    rank=3,
)

LLAMACPP = Profile(
    "llamacpp",
    "llama.cpp server",
    ("llamacpp:",),
    (
        ("requests_waiting", (_g("llamacpp:requests_deferred"),)),
        ("requests_running", (_g("llamacpp:requests_processing"),)),
        ("batch_size", (_g("llamacpp:n_busy_slots_per_decode"),)),
        ("kv_cache_usage_pct", (_g("llamacpp:kv_cache_usage_ratio", PCT, "max"),)),
        ("prompt_tokens_per_s", (_r("llamacpp:prompt_tokens_total"),)),
        ("generation_tokens_per_s", (_r("llamacpp:tokens_predicted_total"),)),
    ),
    rank=3,
)

TORCHSERVE = Profile(
    "torchserve",
    "TorchServe",
    ("ts_",),
    (
        # TorchServe has no queue-length gauge. Its queue-latency counter grows by every queued request's wait,
        # so its rate (queued seconds per second) is the mean number of requests waiting over the interval
        # (Little's law). With batchSize > 1 the wait for maxBatchDelay counts as queue time (measured live).
        ("requests_waiting", (Src("rate", "ts_queue_latency_microseconds", US, note=LITTLE),)),
        ("request_rate_per_s", (_r("ts_inference_requests_total"), _r("Requests2XX"))),
        ("error_rate_per_s", (_r("Requests5XX"),)),
        (
            "queue_time",
            (Src("ratio", "ts_queue_latency_microseconds", US, den="ts_inference_requests_total"),),
        ),
        (
            "e2e",
            (Src("ratio", "ts_inference_latency_microseconds", US, den="ts_inference_requests_total"),),
        ),
    ),
    markers=frozenset(
        {"Requests2XX", "Requests4XX", "Requests5XX", "QueueTime", "PredictionTime", "HandlerTime", "WorkerThreadTime"}
    ),
)

RAY_SERVE = Profile(
    "ray_serve",
    "Ray Serve",
    ("ray_serve_",),
    (
        ("requests_waiting", (_g("ray_serve_deployment_queued_queries"), _g("ray_serve_replica_pending_queries"))),
        ("requests_running", (_g("ray_serve_replica_processing_queries"),)),
        (
            "request_rate_per_s",
            (_r("ray_serve_deployment_request_counter_total"), _r("ray_serve_num_http_requests_total")),
        ),
        (
            "error_rate_per_s",
            (_r("ray_serve_deployment_error_counter_total"), _r("ray_serve_num_http_error_requests_total")),
        ),
        (
            "e2e",
            (
                _h("ray_serve_http_request_latency_ms", MS),
                _h("ray_serve_deployment_processing_latency_ms", MS),
                Src("mean", "ray_serve_deployment_processing_latency_ms", MS),
            ),
        ),
    ),
)

BENTOML = Profile(
    "bentoml",
    "BentoML",
    ("bentoml_",),
    (
        (
            "requests_running",
            (_g("bentoml_service_request_in_progress"), _g("bentoml_api_server_request_in_progress")),
        ),
        ("batch_size", (Src("mean", "bentoml_service_adaptive_batch_size"),)),
        (
            "request_rate_per_s",
            (_r("bentoml_service_request_total"), _r("bentoml_api_server_request_total")),
        ),
        (
            "error_rate_per_s",
            (
                _r("bentoml_service_request_total", http_response_code="5.*"),
                _r("bentoml_api_server_request_total", http_response_code="5.*"),
            ),
        ),
        (
            "e2e",
            (_h("bentoml_service_request_duration_seconds"), _h("bentoml_api_server_request_duration_seconds")),
        ),
    ),
)

PROFILES: tuple[Profile, ...] = (VLLM, SGLANG, TGI, LLAMACPP, TRITON, TORCHSERVE, RAY_SERVE, BENTOML)


def metrics_paths() -> tuple[str, ...]:
    """Every HTTP path a profile names, ``/metrics`` first (what discovery tries on each port)."""
    out = ["/metrics"]
    for profile in PROFILES:
        out.extend(p for p in profile.paths if p not in out)
    return tuple(out)


# -- detection --------------------------------------------------------------------------------------------
def detect(expo: Exposition) -> list[Profile]:
    """The profiles whose names this endpoint exposes, most specific first (empty: only generic fits)."""
    names = expo.names()
    scored = [(p.rank, p.score(names), p) for p in PROFILES]
    return [p for rank, score, p in sorted(scored, key=lambda t: (-t[0], -t[1])) if score > 0]


# -- the generic profile ----------------------------------------------------------------------------------
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
            chosen.append((key, (_g(name),)))

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
        chosen.append(("request_rate_per_s", (_r(request),)))
    errors = _pick(counters, re.compile(r"(error|fail|exception)"))
    if errors:
        chosen.append(("error_rate_per_s", (_r(errors),)))
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
        chosen.append(("prompt_tokens_per_s", (_r(prompt),)))
    gen = _pick(counters, re.compile(r"(generation|generated|output|completion)_tokens"))
    if gen:
        chosen.append(("generation_tokens_per_s", (_r(gen),)))
    return Profile("generic", "unrecognised server", (), tuple(chosen), rank=0)


# -- evaluation -------------------------------------------------------------------------------------------
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


def profile_by_name(name: str) -> Profile:
    """A built-in profile by name (KeyError when unknown)."""
    for profile in PROFILES:
        if profile.name == name:
            return profile
    raise KeyError(name)


__all__ = [
    "LATENCIES",
    "PROFILES",
    "Profile",
    "Reading",
    "Src",
    "detect",
    "evaluate",
    "generic_profile",
    "metrics_paths",
    "profile_by_name",
    "wanted_names",
]
