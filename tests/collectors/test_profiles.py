"""Every captured exposition maps to the right server profile and canonical fields.

Rates and windowed quantiles need two scrapes. The "previous" scrape here is the fixture with every value
halved, taken 2 s earlier: counters then rise by half their value (rate = value / 4) and histogram bucket
deltas are half the cumulative buckets, which have the same quantiles, so expected values follow from the
fixture text by hand.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from optitop.collectors.genericprofile import generic_profile
from optitop.collectors.profileread import evaluate
from optitop.collectors.profiles import PROFILES, detect, metrics_paths
from optitop.collectors.promtext import Exposition, parse_exposition

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "metrics"
DT = 2.0


def halved(expo: Exposition) -> Exposition:
    samples = {name: {k: v / 2 for k, v in series.items()} for name, series in expo.samples.items()}
    return dataclasses.replace(expo, samples=samples)


def lin(lo: float, hi: float, rank: float, below: float, at: float) -> float:
    """Prometheus' interpolation inside one bucket."""
    return lo + (hi - lo) * (rank - below) / (at - below)


# fixture -> (profile, {field: value}, {field: provenance substring})
CASES: dict[str, tuple[str, dict[str, float | None], dict[str, str]]] = {
    "sglang-production-metrics-doc.prom": (
        "sglang",
        {
            "requests_waiting": 2826.0,
            "requests_running": 162.0,
            "batch_size": 162.0,
            "kv_cache_usage_pct": 28.0,
            "prefix_cache_hit_pct": 0.7507552643049313,
            "prompt_tokens_per_s": 8.128902e06 / 4,
            "generation_tokens_per_s": 7.557572e06 / 4,
            "request_rate_per_s": 11228.0 / 4,
            # 5504 of 11008 lie above the 30 s bound: the answer is the top finite bound.
            "ttft_p50_s": 30.0,
            "e2e_p50_s": 60.0,
            "itl_p50_s": lin(0.075, 0.1, 7.400757e06 * 0.5, 433413.0, 4.950195e06),
            "itl_p95_s": lin(0.1, 0.15, 7.400757e06 * 0.95, 4.950195e06, 7.039435e06),
        },
        {"requests_waiting": "sglang:num_queue_reqs", "itl_p50_s": "sglang:time_per_output_token_seconds"},
    ),
    "vllm-v0-aibrix-runtime-doc.prom": (
        "vllm",
        {
            "requests_waiting": 0.0,
            "requests_running": 0.0,
            "requests_swapped": 0.0,
            "kv_cache_usage_pct": 0.0,
            "preemptions_per_s": 0.0,
            "request_rate_per_s": 1.0,
            "prompt_tokens_per_s": 37.0,
            "generation_tokens_per_s": 955.0 / 4,
            "prefix_cache_hit_pct": None,  # -1.0 means prefix caching is off: unknown, not -100 %
        },
        {"kv_cache_usage_pct": "vllm:gpu_cache_usage_perc", "request_rate_per_s": "vllm:request_success_total"},
    ),
    "vllm-v1-design-doc-partial.prom": (
        "vllm",
        {
            "requests_running": 8.0,
            "generation_tokens_per_s": 27453.0 / 4,
            "request_rate_per_s": 132.0 / 4,
            "ttft_p50_s": lin(0.02, 0.04, 70, 13, 97),
            "ttft_p95_s": lin(0.06, 0.08, 133, 123, 138),
            "requests_waiting": None,
        },
        {"ttft_p50_s": "vllm:time_to_first_token_seconds histogram"},
    ),
    "vllm-v1-serving-metrics-doc-partial.prom": ("vllm", {"requests_running": None}, {}),
    "vllm-cache-config-info-design-doc.prom": ("vllm", {"kv_cache_usage_pct": None}, {}),
    "vllm-http-middleware-design-doc.prom": (
        "generic",
        {"request_rate_per_s": 201.0 / 4, "error_rate_per_s": 0.0},
        {"request_rate_per_s": "http_requests_total", "error_rate_per_s": 'status=~"5.*"'},
    ),
    "triton-vllm-backend-readme.prom": (
        "vllm",
        {
            "prompt_tokens_per_s": 2.5,
            "generation_tokens_per_s": 4.0,
            "request_rate_per_s": 0.25,
            "ttft_p50_s": 0.001,  # the doc elided the middle buckets: only 0.001 and +Inf remain
            "itl_p50_s": lin(0.0, 0.01, 7.5, 0, 14),
            "itl_p95_s": 0.01,
            "e2e_p50_s": 0.5,
        },
        {"itl_p50_s": "vllm:time_per_output_token_seconds"},
    ),
    "triton-core-inference-counters-trtllm-readme.prom": (
        "triton",
        {"requests_waiting": 0.0, "request_rate_per_s": 0.0, "error_rate_per_s": 0.0, "batch_size": None},
        {"requests_waiting": "nv_inference_pending_request_count"},
    ),
    "triton-doc-counters.prom": (
        "triton",
        {"request_rate_per_s": 161.0 / 4, "queue_time_p50_s": 11110.0 / 161.0 * 1e-6, "queue_time_p95_s": None},
        {"queue_time_p50_s": "mean Δnv_inference_queue_duration_us/Δnv_inference_request_success"},
    ),
    "triton-doc-first-response-histogram.prom": (
        "triton",
        {"ttft_p50_s": lin(100, 500, 18.5, 8, 30) / 1000, "ttft_p95_s": lin(500, 2000, 35.15, 30, 36) / 1000},
        {"ttft_p50_s": "nv_inference_first_response_histogram_ms"},
    ),
    "triton-doc-queue-summary.prom": (
        "triton",
        {"queue_time_p50_s": 55e-6, "queue_time_p95_s": 98e-6},
        {"queue_time_p95_s": "nv_inference_queue_summary_us summary"},
    ),
    "trtllm-backend-triton-inflight-batcher.prom": (
        "triton",
        {
            "requests_waiting": 1.0,
            "requests_running": 0.0,
            "batch_size": 1.0,
            "max_running": 512.0,
            "kv_cache_usage_pct": 48.75,
        },
        {"requests_waiting": 'request_type=~"waiting"', "kv_cache_usage_pct": "kv_cache_block_type"},
    ),
    "trtllm-backend-triton-v1-model.prom": ("triton", {"requests_running": None}, {}),
    "llamacpp-commit-a2df278-before.prom": (
        "llamacpp",
        {"requests_running": 0.0, "requests_waiting": 0.0},
        {"requests_waiting": "llamacpp:requests_deferred"},
    ),
    "llamacpp-commit-a2df278-after.prom": (
        "llamacpp",
        {"requests_running": 0.0, "requests_waiting": 0.0},
        {"requests_running": "llamacpp:requests_processing"},
    ),
    "torchserve-metrics-api-doc-full.prom": (
        "torchserve",
        {
            "request_rate_per_s": 0.75,
            "queue_time_p50_s": 365.21 / 3 * 1e-6,
            "e2e_p50_s": 290371.129 / 3 * 1e-6,
            "error_rate_per_s": None,  # Requests5XX is declared but has no sample yet
            # No queue gauge: queued microseconds per second of the latency counter (Little's law).
            "requests_waiting": 365.21 / 4 * 1e-6,
        },
        {"queue_time_p50_s": "ts_queue_latency_microseconds", "request_rate_per_s": "ts_inference_requests_total"},
    ),
    # Captured live: TorchServe 0.12.0, batchSize 8 with maxBatchDelay 1000 ms and 3 clients. The batch
    # delay is counted as queue time (~1 s per request), so ~3 requests wait on average.
    "torchserve-0.12.0-live-batch-delay.prom": (
        "torchserve",
        {
            "requests_waiting": 2.4223571901e7 / 4 * 1e-6,
            "request_rate_per_s": 25.0 / 4,
            "queue_time_p50_s": 2.4223571901e7 / 25 * 1e-6,
            "e2e_p50_s": 2.4437798802e7 / 25 * 1e-6,
            "requests_running": None,  # no in-flight gauge either
        },
        {"requests_waiting": "Little's law", "queue_time_p50_s": "ts_queue_latency_microseconds"},
    ),
    "torchserve-metrics-api-doc-name-filter.prom": ("torchserve", {"queue_time_p50_s": None}, {}),
    "ray-serve-monitoring-doc-processing-latency-partial.prom": (
        "ray_serve",
        {"e2e_p50_s": 48160.6719493866 / 48 / 1000, "e2e_p95_s": None},
        {"e2e_p50_s": "mean Δray_serve_deployment_processing_latency_ms_sum"},
    ),
    "ray-serve-monitoring-doc-custom-counter-partial.prom": ("generic", {"request_rate_per_s": None}, {}),
    # Captured live: Ray Serve 2.60.0, max_ongoing_requests=1 and a 250 ms @serve.batch timer, 6 clients.
    # Two handles report the router queue (the HTTP proxy's: 6, the driver's: 0); the replica runs one.
    "ray-serve-2.60.0-live-batch-queue.prom": (
        "ray_serve",
        {
            "requests_waiting": 6.0,
            "requests_running": 1.0,
            "request_rate_per_s": (13.0 + 1.0) / 4,
            "e2e_p50_s": lin(2, 5, 13 * 0.5, 4.5, 13),
            "e2e_p95_s": lin(2, 5, 13 * 0.95, 4.5, 13),
            "error_rate_per_s": None,  # no error series until the first error
        },
        {
            "requests_waiting": "ray_serve_deployment_queued_queries",
            "requests_running": "ray_serve_replica_processing_queries",
            "e2e_p50_s": "ray_serve_http_request_latency_ms",
        },
    ),
    "bentoml-custom-metrics-doc.prom": (
        "generic",
        {"request_rate_per_s": 3.0, "e2e_p50_s": lin(2, 5, 6, 0, 12), "e2e_p95_s": lin(2, 5, 11.4, 0, 12)},
        {"request_rate_per_s": "summary_requests_total", "e2e_p50_s": "inference_time_seconds"},
    ),
}


def test_every_fixture_has_a_case():
    assert sorted(p.name for p in FIXTURES.glob("*.prom")) == sorted(CASES)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_fixture_maps_to_profile_and_fields(fixture):
    profile, want, origins = CASES[fixture]
    cur = parse_exposition((FIXTURES / fixture).read_text())
    reading = evaluate(cur, halved(cur), DT)
    assert reading.profile == profile
    stats = reading.stats
    for name, value in want.items():
        got = getattr(stats, name)
        if value is None:
            assert got is None, (name, got)
        else:
            assert got == pytest.approx(value, rel=1e-9), name
    provenance = dict(stats.provenance)
    for name, origin in origins.items():
        assert origin in provenance[name], (name, provenance.get(name))
    # Provenance and values agree: a field has an origin exactly when it has a value.
    filled = {
        f.name for f in dataclasses.fields(stats) if f.name != "provenance" and getattr(stats, f.name) is not None
    }
    assert filled == set(provenance)


@pytest.mark.parametrize("fixture", sorted(CASES))
def test_first_scrape_has_gauges_but_no_rates_or_quantiles(fixture):
    cur = parse_exposition((FIXTURES / fixture).read_text())
    stats = evaluate(cur, None, None).stats
    for key, origin in stats.provenance:
        # A summary is the server's own quantile; everything else windowed needs a previous scrape.
        assert not origin.startswith(("rate of", "mean", "Δ")) and "histogram" not in origin, (key, origin)


VLLM_V1_NEW_NAMES = """
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.1
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3
vllm:num_requests_waiting{engine="1",model_name="m"} 4
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} {queries}
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} {hits}
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="m"} {itl_fast}
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.1",model_name="m"} 100
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 100
# TYPE vllm:time_per_output_token_seconds histogram
vllm:time_per_output_token_seconds_bucket{engine="0",le="1",model_name="m"} 100
vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 100
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="1",model_name="m"} 10
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="m"} 10
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="m"} {preempt}
"""


def vllm_text(queries: int, hits: int, itl_fast: int, preempt: int) -> str:
    return (
        VLLM_V1_NEW_NAMES.replace("{queries}", str(queries))
        .replace("{hits}", str(hits))
        .replace("{itl_fast}", str(itl_fast))
        .replace("{preempt}", str(preempt))
    )


def test_vllm_newer_names_win_over_older_ones():
    prev = parse_exposition(vllm_text(1000, 100, 50, 2))
    cur = parse_exposition(vllm_text(1400, 400, 50, 8))
    reading = evaluate(cur, prev, 2.0)
    stats, origin = reading.stats, dict(reading.stats.provenance)
    assert reading.profile == "vllm"
    assert stats.kv_cache_usage_pct == 75.0 and "vllm:kv_cache_usage_perc" in origin["kv_cache_usage_pct"]
    assert stats.requests_waiting == 7.0  # two engines' queues add up
    assert stats.prefix_cache_hit_pct == pytest.approx(300 / 400 * 100)
    assert stats.preemptions_per_s == pytest.approx(3.0)
    # No new inter-token observations in the window: unknown, even though the old histogram had some.
    assert stats.itl_p50_s is None and stats.queue_time_p50_s is None


def test_vllm_inter_token_latency_preferred_to_time_per_output_token():
    prev = parse_exposition(vllm_text(1, 1, 0, 0).replace(" 100\n", " 0\n").replace(" 10\n", " 0\n"))
    cur = parse_exposition(vllm_text(1, 1, 80, 0))
    origin = dict(evaluate(cur, prev, 1.0).stats.provenance)
    assert origin["itl_p50_s"].startswith("vllm:inter_token_latency_seconds")


# Written from TGI's documented metric names (no real TGI output is public; see SOURCES.md).
TGI_TEXT = """
tgi_queue_size 5
tgi_batch_current_size 12
tgi_request_success {ok}
tgi_request_failure{{err="validation"}} 1
tgi_request_queue_duration_bucket{{le="0.5"}} 10
tgi_request_queue_duration_bucket{{le="2"}} {ok}
tgi_request_queue_duration_bucket{{le="+Inf"}} {ok}
tgi_request_generated_tokens_sum {gen}
tgi_request_generated_tokens_count {ok}
"""


def test_tgi_profile_maps_queue_batch_and_tokens():
    prev = parse_exposition(TGI_TEXT.format(ok=10, gen=1000))
    cur = parse_exposition(TGI_TEXT.format(ok=20, gen=3000))
    reading = evaluate(cur, prev, 4.0)
    s = reading.stats
    assert reading.profile == "tgi"
    assert (s.requests_waiting, s.batch_size, s.requests_running) == (5.0, 12.0, 12.0)
    assert s.request_rate_per_s == pytest.approx(2.5) and s.error_rate_per_s == 0.0
    assert s.generation_tokens_per_s == pytest.approx(500.0)
    assert s.queue_time_p50_s == pytest.approx(0.5 + 1.5 * 0.5)  # all 10 new requests waited 0.5-2 s
    assert s.queue_time_p95_s == pytest.approx(0.5 + 1.5 * 0.95)


def test_vllm_inside_triton_is_vllm_with_triton_filling_gaps():
    text = (FIXTURES / "triton-vllm-backend-readme.prom").read_text() + (
        FIXTURES / "triton-core-inference-counters-trtllm-readme.prom"
    ).read_text()
    expo = parse_exposition(text)
    assert [p.name for p in detect(expo)][:2] == ["vllm", "triton"]
    reading = evaluate(expo, None, None)
    assert reading.profile == "vllm" and reading.also == ("triton",)
    assert dict(reading.stats.provenance)["requests_waiting"] == "nv_inference_pending_request_count"


HOME_GROWN = """
# TYPE myapp_queue_depth gauge
myapp_queue_depth 9
# TYPE myapp_inflight_requests gauge
myapp_inflight_requests 3
# TYPE myapp_request_latency_ms histogram
myapp_request_latency_ms_bucket{{le="10"}} {fast}
myapp_request_latency_ms_bucket{{le="100"}} {n}
myapp_request_latency_ms_bucket{{le="+Inf"}} {n}
myapp_request_latency_ms_count {n}
# TYPE myapp_requests_total counter
myapp_requests_total {n}
# TYPE process_open_fds gauge
process_open_fds 30
"""


def test_generic_profile_guesses_and_says_what_it_chose():
    prev = parse_exposition(HOME_GROWN.format(fast=0, n=0))
    cur = parse_exposition(HOME_GROWN.format(fast=20, n=40))
    profile = generic_profile(cur)
    assert profile.name == "generic"
    reading = evaluate(cur, prev, 2.0)
    s, origin = reading.stats, dict(reading.stats.provenance)
    assert reading.profile == "generic"
    assert s.requests_waiting == 9.0 and origin["requests_waiting"] == "myapp_queue_depth"
    assert s.requests_running == 3.0 and origin["requests_running"] == "myapp_inflight_requests"
    assert s.request_rate_per_s == pytest.approx(20.0)
    # ms in the name is converted: 20 of 40 within 10 ms, the median is the 10 ms bound.
    assert s.e2e_p50_s == pytest.approx(0.010) and "myapp_request_latency_ms" in origin["e2e_p50_s"]
    assert s.e2e_p95_s == pytest.approx((10 + 90 * (38 - 20) / 20) / 1000)


def test_profiles_name_their_paths_and_are_distinct():
    assert metrics_paths()[0] == "/metrics"
    names = [p.name for p in PROFILES]
    assert len(set(names)) == len(names)
    assert {"vllm", "tgi", "triton", "sglang", "llamacpp", "torchserve", "ray_serve", "bentoml"} <= set(names)


TRITON_TEXT = """
nv_inference_request_success{{model="m",version="1"}} {ok}
nv_inference_request_failure{{model="m",version="1"}} {bad}
nv_inference_count{{model="m",version="1"}} {inferences}
nv_inference_exec_count{{model="m",version="1"}} {execs}
nv_inference_queue_duration_us{{model="m",version="1"}} {queue_us}
nv_inference_request_duration_us{{model="m",version="1"}} {req_us}
nv_inference_pending_request_count{{model="m",version="1"}} 6
"""


def test_triton_batch_size_and_mean_queue_time_come_from_counter_deltas():
    prev = parse_exposition(TRITON_TEXT.format(ok=100, bad=1, inferences=800, execs=100, queue_us=1e6, req_us=5e6))
    cur = parse_exposition(TRITON_TEXT.format(ok=150, bad=3, inferences=1200, execs=150, queue_us=3e6, req_us=10e6))
    reading = evaluate(cur, prev, 5.0)
    s, origin = reading.stats, dict(reading.stats.provenance)
    assert reading.profile == "triton"
    assert s.requests_waiting == 6.0
    assert (
        s.batch_size == pytest.approx(400 / 50)
        and origin["batch_size"] == "Δnv_inference_count/Δnv_inference_exec_count"
    )
    assert s.request_rate_per_s == pytest.approx(10.0) and s.error_rate_per_s == pytest.approx(0.4)
    assert s.queue_time_p50_s == pytest.approx(2e6 / 50 * 1e-6)  # 40 ms mean wait in the window
    assert s.e2e_p50_s == pytest.approx(5e6 / 50 * 1e-6)
    assert s.queue_time_p95_s is None  # a mean says nothing about the tail


LLAMACPP_TEXT = """
llamacpp:prompt_tokens_total {p}
llamacpp:tokens_predicted_total {g}
llamacpp:kv_cache_usage_ratio 0.25
llamacpp:n_busy_slots_per_decode 3.5
llamacpp:requests_processing 4
llamacpp:requests_deferred 2
"""


def test_llamacpp_tokens_kv_and_slots():
    prev = parse_exposition(LLAMACPP_TEXT.format(p=1000, g=500))
    cur = parse_exposition(LLAMACPP_TEXT.format(p=1600, g=800))
    s = evaluate(cur, prev, 3.0).stats
    assert (s.prompt_tokens_per_s, s.generation_tokens_per_s) == (pytest.approx(200.0), pytest.approx(100.0))
    assert s.kv_cache_usage_pct == 25.0 and s.batch_size == 3.5
    assert (s.requests_running, s.requests_waiting) == (4.0, 2.0)


def test_a_field_keeps_its_source_while_the_value_is_unknown():
    text = (FIXTURES / "sglang-production-metrics-doc.prom").read_text()
    first = evaluate(parse_exposition(text), None, None).stats
    # The token counter exists, so its rate owns the field: unknown on a first scrape, not the gauge instead.
    assert first.generation_tokens_per_s is None
    without_counter = text.replace("sglang:generation_tokens_total{", "sglang:generation_tokens_other{")
    fallback = evaluate(parse_exposition(without_counter), None, None).stats
    assert fallback.generation_tokens_per_s == pytest.approx(86.50814177726902)
    assert dict(fallback.provenance)["generation_tokens_per_s"] == "sglang:gen_throughput"


def test_generic_says_when_it_guessed_a_unit_and_reads_http_codes():
    text = """
http_requests_total{{code="200",handler="/predict"}} {ok}
http_requests_total{{code="503",handler="/predict"}} {bad}
predict_duration_bucket{{le="0.5"}} {ok}
predict_duration_bucket{{le="+Inf"}} {ok}
"""
    prev = parse_exposition(text.format(ok=10, bad=1))
    cur = parse_exposition(text.format(ok=30, bad=5))
    reading = evaluate(cur, prev, 2.0)
    s, origin = reading.stats, dict(reading.stats.provenance)
    assert reading.profile == "generic"
    assert s.request_rate_per_s == pytest.approx(12.0) and s.error_rate_per_s == pytest.approx(2.0)
    assert origin["error_rate_per_s"] == 'rate of http_requests_total{code=~"5.*"}'
    assert s.e2e_p50_s == pytest.approx(0.25)
    assert origin["e2e_p50_s"].endswith("(unit not in the name: read as seconds)")
