"""Exposition parsing and windowed arithmetic: tolerant where docs are sloppy, strict where bodies are foreign."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from optitop.collectors import promtext
from optitop.collectors.promtext import NotExposition, parse_exposition
from optitop.collectors.promwindow import buckets_delta, counter_delta, histogram_buckets, quantile

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "metrics"


def read(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_clean_text_parses_without_notes():
    expo = parse_exposition(read("sglang-production-metrics-doc.prom"))
    assert expo.series("sglang:num_queue_reqs") == {(("model_name", "meta-llama/Llama-3.1-8B-Instruct"),): 2826.0}
    assert expo.types["sglang:time_to_first_token_seconds_bucket"] == "histogram"
    assert expo.notes() == ()


def test_markdown_escaped_comments_are_read_as_comments():
    expo = parse_exposition(read("llamacpp-commit-a2df278-after.prom"))
    assert expo.series("llamacpp:requests_processing") == {(): 0.0}
    assert expo.types["llamacpp:requests_deferred"] == "gauge"  # the TYPE line was understood
    assert expo.dropped_lines == 0


def test_elided_lines_are_dropped_and_counted():
    expo = parse_exposition(read("vllm-v1-design-doc-partial.prom"))
    assert expo.dropped_lines == 3
    assert expo.first_dropped == "..."
    assert "3 line(s) rejected by the parser and skipped" in expo.notes()
    # Everything around the elisions survives, with its type.
    assert sum(expo.series("vllm:request_success_total").values()) == 132.0
    assert expo.types["vllm:time_to_first_token_seconds_bucket"] == "histogram"


def test_elided_label_sets_are_repaired_not_lost():
    expo = parse_exposition(read("ray-serve-monitoring-doc-processing-latency-partial.prom"))
    assert expo.repaired_lines == 2 and expo.dropped_lines == 0
    assert expo.series("ray_serve_deployment_processing_latency_ms_count") == {(("replica", "sleeper#jtzqhX"),): 48.0}


def test_counter_names_resolve_with_or_without_total():
    expo = parse_exposition(read("triton-doc-counters.prom"))  # no TYPE lines: names as exposed
    assert expo.series("nv_inference_request_success") == {(("model", "my_model"), ("version", "1")): 161.0}
    assert expo.series("nv_inference_request_success_total") == expo.series("nv_inference_request_success")
    typed = parse_exposition(read("triton-core-inference-counters-trtllm-readme.prom"))
    # prometheus_client renames a typed counter's samples to *_total; lookups still find it by either name.
    assert typed.series("nv_inference_request_success") == typed.series("nv_inference_request_success_total")
    assert typed.series("nv_inference_request_success")


@pytest.mark.parametrize(
    ("body", "ctype", "reason"),
    [
        ("<!DOCTYPE html>\n<html><body>login</body></html>\n", "text/html; charset=utf-8", "HTML page"),
        ("<html><body>hi</body></html>", "", "HTML page"),
        ('{"status": "ok"}', "application/json", "JSON"),
        ("hello world\nthis is not metrics\nat all\n", "text/plain", "not Prometheus text: all 3 line(s) rejected"),
        ("", "text/plain", "empty body"),
        ("\x00\x01binary", "application/octet-stream", "binary"),
    ],
)
def test_foreign_bodies_are_rejected_with_a_reason(body, ctype, reason):
    with pytest.raises(NotExposition, match=re.escape(reason)):
        parse_exposition(body, ctype)


def test_mostly_garbage_is_rejected_even_with_one_valid_line():
    body = "ok 1\n" + "".join(f"garbage line number {i}\n" for i in range(10))
    with pytest.raises(NotExposition, match="mostly not Prometheus text: 10 line"):
        parse_exposition(body)


def test_metadata_only_exposition_is_valid():
    expo = parse_exposition("# HELP x_total things\n# TYPE x_total counter\n")
    assert expo.has_metadata and not expo.samples


def test_nan_and_inf_values_are_unknown_not_numbers():
    body = 'waiting NaN\nrunning +Inf\nbatch -Inf\nkv 0.5\nlat_bucket{le="+Inf"} 3\n'
    expo = parse_exposition(body)
    assert expo.nonfinite == 3
    assert expo.series("waiting") == {} and expo.series("running") == {}
    assert expo.series("kv") == {(): 0.5}
    assert histogram_buckets(expo, "lat") == {(): {math.inf: 3.0}}  # +Inf as a bound is fine
    assert "3 NaN/Inf value(s) treated as unknown" in expo.notes()


def test_duplicate_series_keep_the_first_and_are_counted():
    body = 'q{m="a"} 3\nq{m="a"} 7\nq{m="b"} 1\n'
    expo = parse_exposition(body)
    assert expo.duplicates == 1
    assert expo.series("q") == {(("m", "a"),): 3.0, (("m", "b"),): 1.0}
    assert "1 duplicate series ignored" in expo.notes()


def test_counter_delta_handles_resets_and_new_series():
    prev = {(("r", "a"),): 100.0, (("r", "b"),): 50.0}
    cur = {(("r", "a"),): 130.0, (("r", "b"),): 5.0, (("r", "c"),): 2.0}
    # a grew by 30; b restarted and counted 5 since; c appeared and counted 2 since it was created.
    assert counter_delta(cur, prev) == 37.0
    assert counter_delta(cur, prev, {"r": "a|c"}) == 32.0


def test_quantiles_interpolate_like_prometheus():
    buckets = {0.1: 10.0, 0.5: 60.0, 1.0: 100.0, math.inf: 100.0}
    assert quantile(buckets, 0.5) == pytest.approx(0.1 + 0.4 * (50 - 10) / 50)
    assert quantile(buckets, 0.95) == pytest.approx(0.5 + 0.5 * (95 - 60) / 40)
    assert quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None  # nothing observed: unknown
    assert quantile({0.1: 1.0, 1.0: 1.0, math.inf: 10.0}, 0.95) == 1.0  # in the +Inf bucket: the top bound


def test_bucket_deltas_give_the_window_not_since_start():
    prev = parse_exposition('h_bucket{le="0.1"} 100\nh_bucket{le="1"} 100\nh_bucket{le="+Inf"} 100\n')
    cur = parse_exposition('h_bucket{le="0.1"} 100\nh_bucket{le="1"} 200\nh_bucket{le="+Inf"} 200\n')
    since_start = histogram_buckets(cur, "h")[()]
    window = buckets_delta(histogram_buckets(cur, "h"), histogram_buckets(prev, "h"))
    assert quantile(since_start, 0.5) == pytest.approx(0.1)
    assert quantile(window, 0.5) == pytest.approx(0.55)  # all 100 new observations lie in (0.1, 1]


def test_bucket_deltas_after_a_reset_count_the_new_life_whole():
    prev = {(): {1.0: 500.0, math.inf: 500.0}}
    cur = {(): {1.0: 4.0, math.inf: 8.0}}
    assert buckets_delta(cur, prev) == {1.0: 4.0, math.inf: 8.0}


def test_malformed_triton_doc_histogram_is_still_read():
    # The doc's buckets lack the _bucket suffix and have a space before le=; the bounds are still found.
    expo = parse_exposition(read("triton-doc-first-response-histogram.prom"))
    got = histogram_buckets(expo, "nv_inference_first_response_histogram_ms")
    assert got == {
        (("model", "my_model"), ("version", "1")): {100.0: 8, 500.0: 30, 2000.0: 36, 5000.0: 37, math.inf: 37}
    }


def test_keep_parses_only_the_named_series():
    text = read("vllm-v0-aibrix-runtime-doc.prom")
    keep = frozenset({"vllm:num_requests_waiting", "vllm:prompt_tokens_total", "vllm:prompt_tokens"})
    expo = parse_exposition(text, keep=keep)
    assert set(expo.samples) == {"vllm:num_requests_waiting", "vllm:prompt_tokens_total"}
    assert expo.types["vllm:prompt_tokens_total"] == "counter"  # its TYPE line was kept with it
    assert expo.series("vllm:prompt_tokens_total") == parse_exposition(text).series("vllm:prompt_tokens_total")


def test_one_bad_family_does_not_cost_the_others():
    good = 'sglang:token_usage{model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.28'
    text = read("sglang-production-metrics-doc.prom").replace(good, "sglang:token_usage{broken} 0.28")
    expo = parse_exposition(text)
    assert expo.dropped_lines == 1 and expo.first_dropped == "sglang:token_usage{broken} 0.28"
    assert expo.series("sglang:num_queue_reqs") and expo.series("sglang:time_to_first_token_seconds_bucket")
    assert expo.types["sglang:time_to_first_token_seconds_bucket"] == "histogram"


def test_a_block_seen_before_is_reused_and_a_changed_one_is_parsed_again(monkeypatch):
    monkeypatch.setattr(promtext, "_FAMILY_CACHE", {})
    page = "# TYPE up gauge\nup 1\n# TYPE reqs counter\nreqs_total {n}\n"
    first = parse_exposition(page.format(n=10))
    assert first.series("reqs_total") == {(): 10.0}
    parsed: list[list[str]] = []
    real = promtext._parse_lines
    monkeypatch.setattr(promtext, "_parse_lines", lambda lines: parsed.append(lines) or real(lines))
    later = parse_exposition(page.format(n=25))
    assert later.series("reqs_total") == {(): 25.0} and later.series("up") == {(): 1.0}
    assert parsed == []  # "up" is unchanged, and "reqs" changed only its value: the parser's shape is reused
    reshaped = parse_exposition(page.format(n='{code="500"} 3'))
    assert reshaped.series("reqs_total") == {(("code", "500"),): 3.0}
    assert parsed == [["# TYPE reqs counter", 'reqs_total {code="500"} 3']]  # a new label set is parsed


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.prom")))
def test_a_page_whose_values_moved_reads_as_a_fresh_parse_of_it(monkeypatch, name):
    # Every number on the page changes (counters grow, NaN and Inf stay); read once to fill the cache, then
    # the moved page must give exactly what a parse with an empty cache gives.
    text = read(name)

    def moved(k: int) -> str:
        return re.sub(r"(?m)(^[^#].*?[\s}])(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)(\s+\d+)?$",
                      lambda m: f"{m.group(1)}{float(m.group(2)) * k + k}{m.group(3) or ''}", text)  # fmt: skip

    monkeypatch.setattr(promtext, "_FAMILY_CACHE", {})
    parse_exposition(moved(1))
    warm = parse_exposition(moved(3))
    monkeypatch.setattr(promtext, "_FAMILY_CACHE", {})
    cold = parse_exposition(moved(3))
    assert warm == cold
    assert moved(3) != moved(1)


@pytest.mark.parametrize(
    ("line", "value"),
    [("reqs_total 1_000", None), ("reqs_total 12 1700000000000", 12.0), ("reqs_total NaN", None),
     ("reqs_total +Inf", None), ("reqs_total 0x10", None), ("reqs_total 7", 7.0)],
)  # fmt: skip
def test_a_value_the_parser_would_judge_is_not_taken_on_the_shape_alone(monkeypatch, line, value):
    monkeypatch.setattr(promtext, "_FAMILY_CACHE", {})
    parse_exposition("# TYPE reqs counter\nreqs_total 5\n# TYPE up gauge\nup 1\n")
    expo = parse_exposition(f"# TYPE reqs counter\n{line}\n# TYPE up gauge\nup 1\n")
    monkeypatch.setattr(promtext, "_FAMILY_CACHE", {})
    fresh = parse_exposition(f"# TYPE reqs counter\n{line}\n# TYPE up gauge\nup 1\n")
    assert expo == fresh
    assert expo.series("reqs_total").get(()) == value


def test_the_block_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(promtext, "_FAMILY_CACHE", {})
    monkeypatch.setattr(promtext, "FAMILY_CACHE_MAX", 3)
    for n in range(10):
        assert parse_exposition(f"# TYPE g{n} gauge\ng{n} {n}\n").series(f"g{n}") == {(): float(n)}
    assert len(promtext._FAMILY_CACHE) <= 3
