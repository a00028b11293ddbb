"""Server profiles as data: which raw Prometheus series become which canonical ServingStats field.

A profile is recognised from the metric names an endpoint exposes (``vllm:``, ``tgi_``, ``nv_inference_`` …).
Each canonical field lists its sources in order of preference, so both generations of a server's names
(``vllm:gpu_cache_usage_perc`` then ``vllm:kv_cache_usage_perc``) fit in one table. Anything unrecognised
falls to a generic profile built from name patterns (genericprofile.py); reading a scrape through a profile
is profileread.py's job. Keeping the tables apart keeps a new server (or a renamed metric) a change to data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from optitop.collectors.promtext import Exposition

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


def gauge_src(name: str, scale: float = 1.0, agg: Agg = "sum", **labels: str) -> Src:
    return Src("gauge", name, scale, tuple(labels.items()), agg=agg)


def rate_src(name: str, scale: float = 1.0, **labels: str) -> Src:
    return Src("rate", name, scale, tuple(labels.items()))


def _h(name: str, scale: float = 1.0) -> Src:
    return Src("hist", name, scale)


HTTP_5XX = rate_src("http_requests_total", status="5.*")
#: Provenance note of a waiting count derived from a queue-time counter.
LITTLE = " (queued seconds per second = mean requests waiting, Little's law)"

VLLM = Profile(
    "vllm",
    "vLLM",
    ("vllm:",),
    (
        ("requests_waiting", (gauge_src("vllm:num_requests_waiting"),)),
        ("requests_running", (gauge_src("vllm:num_requests_running"),)),
        ("requests_swapped", (gauge_src("vllm:num_requests_swapped"),)),
        # Continuous batching: the running set is the batch stepped together.
        ("batch_size", (gauge_src("vllm:num_requests_running"),)),
        (
            "kv_cache_usage_pct",
            (gauge_src("vllm:kv_cache_usage_perc", PCT, "max"), gauge_src("vllm:gpu_cache_usage_perc", PCT, "max")),
        ),
        ("preemptions_per_s", (rate_src("vllm:num_preemptions_total"),)),
        (
            "request_rate_per_s",
            (rate_src("vllm:request_success_total"), Src("count_rate", "vllm:e2e_request_latency_seconds")),
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
        ("prompt_tokens_per_s", (rate_src("vllm:prompt_tokens_total"),)),
        ("generation_tokens_per_s", (rate_src("vllm:generation_tokens_total"),)),
        (
            "prefix_cache_hit_pct",
            (
                Src("ratio", "vllm:prefix_cache_hits_total", PCT, den="vllm:prefix_cache_queries_total"),
                Src("ratio", "vllm:gpu_prefix_cache_hits_total", PCT, den="vllm:gpu_prefix_cache_queries_total"),
                gauge_src("vllm:gpu_prefix_cache_hit_rate", PCT, "mean"),
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
        ("requests_waiting", (gauge_src("tgi_queue_size"),)),
        ("requests_running", (gauge_src("tgi_batch_current_size"),)),
        ("batch_size", (gauge_src("tgi_batch_current_size"),)),
        ("request_rate_per_s", (rate_src("tgi_request_success"), Src("count_rate", "tgi_request_duration"))),
        ("error_rate_per_s", (rate_src("tgi_request_failure"),)),
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
            (
                gauge_src("nv_trt_llm_request_metrics", request_type="waiting"),
                gauge_src("nv_inference_pending_request_count"),
            ),
        ),
        ("requests_running", (gauge_src("nv_trt_llm_request_metrics", request_type="active"),)),
        ("max_running", (gauge_src("nv_trt_llm_request_metrics", request_type="max"),)),
        (
            "batch_size",
            (
                gauge_src("nv_trt_llm_request_metrics", request_type="scheduled"),
                Src("ratio", "nv_inference_count", den="nv_inference_exec_count"),
            ),
        ),
        (
            "kv_cache_usage_pct",
            (gauge_src("nv_trt_llm_kv_cache_block_metrics", PCT, "max", kv_cache_block_type="fraction"),),
        ),
        ("request_rate_per_s", (rate_src("nv_inference_request_success"),)),
        ("error_rate_per_s", (rate_src("nv_inference_request_failure"),)),
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
        ("requests_waiting", (gauge_src("sglang:num_queue_reqs"),)),
        ("requests_running", (gauge_src("sglang:num_running_reqs"),)),
        ("batch_size", (gauge_src("sglang:num_running_reqs"),)),
        ("kv_cache_usage_pct", (gauge_src("sglang:token_usage", PCT, "max"),)),
        (
            "request_rate_per_s",
            (rate_src("sglang:num_requests_total"), Src("count_rate", "sglang:e2e_request_latency_seconds")),
        ),
        ("queue_time", (_h("sglang:queue_time_seconds"),)),
        ("ttft", (_h("sglang:time_to_first_token_seconds"),)),
        ("itl", (_h("sglang:inter_token_latency_seconds"), _h("sglang:time_per_output_token_seconds"))),
        ("e2e", (_h("sglang:e2e_request_latency_seconds"),)),
        ("prompt_tokens_per_s", (rate_src("sglang:prompt_tokens_total"),)),
        ("generation_tokens_per_s", (rate_src("sglang:generation_tokens_total"), gauge_src("sglang:gen_throughput"))),
        ("prefix_cache_hit_pct", (gauge_src("sglang:cache_hit_rate", PCT, "mean"),)),
    ),
    rank=3,
)

LLAMACPP = Profile(
    "llamacpp",
    "llama.cpp server",
    ("llamacpp:",),
    (
        ("requests_waiting", (gauge_src("llamacpp:requests_deferred"),)),
        ("requests_running", (gauge_src("llamacpp:requests_processing"),)),
        ("batch_size", (gauge_src("llamacpp:n_busy_slots_per_decode"),)),
        ("kv_cache_usage_pct", (gauge_src("llamacpp:kv_cache_usage_ratio", PCT, "max"),)),
        ("prompt_tokens_per_s", (rate_src("llamacpp:prompt_tokens_total"),)),
        ("generation_tokens_per_s", (rate_src("llamacpp:tokens_predicted_total"),)),
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
        ("request_rate_per_s", (rate_src("ts_inference_requests_total"), rate_src("Requests2XX"))),
        ("error_rate_per_s", (rate_src("Requests5XX"),)),
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
        (
            "requests_waiting",
            (gauge_src("ray_serve_deployment_queued_queries"), gauge_src("ray_serve_replica_pending_queries")),
        ),
        ("requests_running", (gauge_src("ray_serve_replica_processing_queries"),)),
        (
            "request_rate_per_s",
            (rate_src("ray_serve_deployment_request_counter_total"), rate_src("ray_serve_num_http_requests_total")),
        ),
        (
            "error_rate_per_s",
            (rate_src("ray_serve_deployment_error_counter_total"), rate_src("ray_serve_num_http_error_requests_total")),
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
            (gauge_src("bentoml_service_request_in_progress"), gauge_src("bentoml_api_server_request_in_progress")),
        ),
        ("batch_size", (Src("mean", "bentoml_service_adaptive_batch_size"),)),
        (
            "request_rate_per_s",
            (rate_src("bentoml_service_request_total"), rate_src("bentoml_api_server_request_total")),
        ),
        (
            "error_rate_per_s",
            (
                rate_src("bentoml_service_request_total", http_response_code="5.*"),
                rate_src("bentoml_api_server_request_total", http_response_code="5.*"),
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


def detect(expo: Exposition) -> list[Profile]:
    """The profiles whose names this endpoint exposes, most specific first (empty: only generic fits)."""
    names = expo.names()
    scored = [(p.rank, p.score(names), p) for p in PROFILES]
    return [p for rank, score, p in sorted(scored, key=lambda t: (-t[0], -t[1])) if score > 0]


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
    "Src",
    "detect",
    "metrics_paths",
    "profile_by_name",
]
