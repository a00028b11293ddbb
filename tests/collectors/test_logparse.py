"""The log line parsers: every captured fixture line, the documented format generations, junk and fuzz."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optitop.collectors.logparse import LogEvent, parse_line

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "logs"

V0_IDLE = {
    "prompt_tokens_per_s": 0.0,
    "generation_tokens_per_s": 1.9,
    "requests_running": 0.0,
    "requests_swapped": 0.0,
    "requests_waiting": 0.0,
    "kv_cache_usage_pct": 0.0,
}
SGLANG_DECODE = {
    "requests_running": 233.0,
    "batch_size": 233.0,
    "requests_waiting": 317.0,
    "kv_cache_usage_pct": 82.0,
    "generation_tokens_per_s": 4594.01,
}


def v1(prompt: float, gen: float) -> dict[str, float]:
    return {
        "prompt_tokens_per_s": prompt,
        "generation_tokens_per_s": gen,
        "requests_running": 0.0,
        "requests_waiting": 0.0,
        "kv_cache_usage_pct": 0.0,
        "prefix_cache_hit_pct": 0.0,
    }


# Per fixture file: the recognised lines in order as (server, kind, generation, values, preemptions, cumulative);
# every other line of the file must parse to None.
EXPECTED: dict[str, list[tuple[str, str, str, dict[str, float], int | None, int | None]]] = {
    "vllm-v0-metrics-py-ascend-multinode.log": [("vllm", "stats", "v0", V0_IDLE, None, None)],
    "vllm-v0-truncated-production-stack-tf-comment.log": [
        ("vllm", "stats", "v0", {"prompt_tokens_per_s": 7.2, "generation_tokens_per_s": 91.8}, None, None)
    ],
    "vllm-v0-preemption-warning-optimization-doc.log": [("vllm", "preemption", "v0", {}, None, 1)],
    "vllm-v1-engine000-ascend-qwen3vl8b.log": [
        ("vllm", "stats", "v1", v1(10.7, 1.6), None, None),
        ("vllm", "stats", "v1", v1(0.0, 0.0), None, None),
    ],
    "vllm-v1-engine000-ascend-qwen25vl32b.log": [
        ("vllm", "stats", "v1", v1(7.3, 1.6), None, None),
        ("vllm", "stats", "v1", v1(0.0, 0.0), None, None),
    ],
    "vllm-v1-mmcache-ascend-qwen3vl30b-image.log": [("vllm", "stats", "v1", v1(10.7, 1.5), None, None)],
    "vllm-v1-mmcache-ascend-qwen3vl30b-video.log": [("vllm", "stats", "v1", v1(19.6, 7.0), None, None)],
    "sglang-decode-batch-cudagraph-hyperparam-doc.log": [("sglang", "stats", "", SGLANG_DECODE, None, None)],
    "sglang-decode-batch-legacy-hyperparam-doc.log": [("sglang", "stats", "", SGLANG_DECODE, None, None)],
    "sglang-decode-oom-retract-fragment-legacy-doc.log": [("sglang", "preemption", "", {}, 1, None)],
    "sglang-retract-warning-fragment-hyperparam-doc.log": [("sglang", "preemption", "", {}, 1, None)],
    "sglang-startup-max-total-num-tokens-hyperparam-doc.log": [
        ("sglang", "capacity", "", {"max_running": 4096.0}, None, None)
    ],
}


def test_every_fixture_file_is_covered():
    assert sorted(EXPECTED) == sorted(p.name for p in FIXTURES.glob("*.log"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_lines_parse_to_the_right_numbers(name):
    lines = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    events = [e for e in (parse_line(line) for line in lines) if e is not None]
    got = [(e.server, e.kind, e.generation, e.values, e.preemptions, e.cumulative_preemptions) for e in events]
    assert got == EXPECTED[name]
    for event in events:
        _check_stats_match_values(event)


def _check_stats_match_values(event: LogEvent) -> None:
    """The ServingStats carry exactly the values, each with a provenance naming the server's log field."""
    provenance = dict(event.stats.provenance)
    assert set(provenance) == set(event.values)
    for name, value in event.values.items():
        assert getattr(event.stats, name) == pytest.approx(value)
        assert provenance[name].startswith(f"{event.server} log: ")


def test_provenance_names_the_raw_field():
    v0 = parse_line((FIXTURES / "vllm-v0-metrics-py-ascend-multinode.log").read_text().splitlines()[1])
    assert v0 is not None
    assert dict(v0.stats.provenance)["requests_waiting"] == "vllm log: Pending"
    v1_line = (FIXTURES / "vllm-v1-engine000-ascend-qwen3vl8b.log").read_text().splitlines()[4]
    v1_event = parse_line(v1_line)
    assert v1_event is not None and v1_event.engine == "000"
    assert dict(v1_event.stats.provenance)["requests_waiting"] == "vllm log: Waiting"


# Lines built from the templates in tests/fixtures/logs/SOURCES.md (format generations with no captured copy).
TEMPLATES = [
    (
        "INFO 03-01 10:00:00 [loggers.py:123] Engine 001: Avg prompt throughput: 120.5 tokens/s, Avg generation "
        "throughput: 950.0 tokens/s, Running: 64 reqs, Waiting: 12 reqs, Deferred: 2 reqs, Preemptions: 3, "
        "GPU KV cache usage: 91.2%, Prefix cache hit rate: 40.5%, Corrupted: 0 reqs, "
        "External prefix cache hit rate: 77.0%, MM cache hit rate: 10.0%",
        {
            "prompt_tokens_per_s": 120.5,
            "generation_tokens_per_s": 950.0,
            "requests_running": 64.0,
            "requests_waiting": 12.0,
            "kv_cache_usage_pct": 91.2,
            "prefix_cache_hit_pct": 40.5,
        },
        ("vllm", "stats", "v1", "001", 3),
    ),
    (
        "INFO 03-01 10:00:00 [loggers.py:123] 2 Engines Aggregated: Avg prompt throughput: 1.0 tokens/s, "
        "Avg generation throughput: 2.0 tokens/s, Running: 5 reqs, Waiting: 0 reqs, GPU KV cache usage: 3.5%, "
        "Prefix cache hit rate: 0.0%",
        {
            "prompt_tokens_per_s": 1.0,
            "generation_tokens_per_s": 2.0,
            "requests_running": 5.0,
            "requests_waiting": 0.0,
            "kv_cache_usage_pct": 3.5,
            "prefix_cache_hit_pct": 0.0,
        },
        ("vllm", "stats", "v1", "aggregated", None),
    ),
    (
        "INFO 01-20 10:00:00 loggers.py:80] Avg prompt throughput: 3.0 tokens/s, Avg generation throughput: "
        "4.0 tokens/s, Running: 2 reqs, Waiting: 7 reqs ",
        {"prompt_tokens_per_s": 3.0, "generation_tokens_per_s": 4.0, "requests_running": 2.0, "requests_waiting": 7.0},
        ("vllm", "stats", "v1", "", None),
    ),
    (
        "INFO 02-19 17:37:35 metrics.py:467] Prefix cache hit rate: GPU: 55.25%, CPU: 0.00%",
        {"prefix_cache_hit_pct": 55.25},
        ("vllm", "prefix_cache", "v0", "", None),
    ),
    (
        "[2025-09-01 12:00:00 DP1 TP0] Decode batch [1234], #running-req: 10, #full token: 500, "
        "full token usage: 0.25, #swa token: 100, swa token usage: 0.10, cpu graph: False, "
        "gen throughput (token/s): 321.50, #queue-req: 4, ",
        {
            "requests_running": 10.0,
            "batch_size": 10.0,
            "requests_waiting": 4.0,
            "kv_cache_usage_pct": 25.0,
            "generation_tokens_per_s": 321.5,
        },
        ("sglang", "stats", "", "DP1", None),
    ),
    (
        "[2025-09-01 12:00:00 TP0] Prefill batch, #new-seq: 2, #new-token: 300, #cached-token: 100, "
        "token usage: 0.05, #running-req: 6, #queue-req: 1, input throughput (token/s): 2048.00, cuda graph: False",
        {
            "requests_running": 6.0,
            "requests_waiting": 1.0,
            "kv_cache_usage_pct": 5.0,
            "prompt_tokens_per_s": 2048.0,
            "prefix_cache_hit_pct": 25.0,
        },
        ("sglang", "prefill", "", "", None),
    ),
]


@pytest.mark.parametrize(("line", "values", "meta"), TEMPLATES)
def test_documented_generations(line, values, meta):
    event = parse_line(line)
    assert event is not None
    assert (event.server, event.kind, event.generation, event.engine, event.preemptions) == meta
    assert event.values == pytest.approx(values)
    _check_stats_match_values(event)


@pytest.mark.parametrize(
    "line",
    [
        "",
        'INFO:     127.0.0.1:59384 - "POST /v1/completions HTTP/1.1" 200 OK',
        "INFO 12-05 08:51:00 [acl_graph.py:187] Replaying aclgraph",
        "Avg prompt throughput:",  # the anchor alone, no numbers
        "Decode batch. nothing here",
        "batch of junk \x00\xff with #running-req: and no number",
        "Avg prompt throughput: nan tokens/s, Avg generation throughput: inf tokens/s",
        "\ufffd" * 50,
    ],
)
def test_junk_lines_give_none(line):
    assert parse_line(line) is None


def test_non_finite_numbers_are_dropped_not_kept():
    event = parse_line("Avg prompt throughput: nan tokens/s, Avg generation throughput: 5.0 tokens/s, Running: 1 reqs")
    assert event is not None
    assert event.stats.prompt_tokens_per_s is None
    assert event.stats.generation_tokens_per_s == 5.0


def test_absurdly_long_numbers_do_not_raise():
    digits = "9" * 5000  # beyond Python's int() digit limit
    assert (
        parse_line(
            f"Engine 000: Avg prompt throughput: 1.0 tokens/s, Running: 1 reqs, Preemptions: {digits}"
        ).preemptions
        is None
    )
    event = parse_line(f"Prefill batch. #new-token: {digits}, #cached-token: 1, #running-req: 2")
    assert event is not None and event.stats.prefix_cache_hit_pct is None
    assert parse_line(f"Retract requests. #retracted_reqs: {digits}").preemptions == 1
    assert parse_line(f"is preempted by X. total_cumulative_preemption_cnt={digits}").cumulative_preemptions is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_parser_never_raises_on_arbitrary_text(text):
    event = parse_line(text)
    assert event is None or isinstance(event, LogEvent)


_PIECES = st.sampled_from(
    [
        "Avg prompt throughput: ",
        "Avg generation throughput: ",
        " tokens/s, ",
        "Running: ",
        "Waiting: ",
        " reqs",
        "GPU KV cache usage: ",
        "%",
        "Prefix cache hit rate: GPU: ",
        "Engine 000: ",
        "Decode batch. ",
        "Prefill batch, ",
        "#running-req: ",
        "#queue-req: ",
        "token usage: ",
        "#new-token: ",
        "#cached-token: ",
        "#retracted_reqs: ",
        "Retract requests",
        "is preempted by",
        "total_cumulative_preemption_cnt=",
        "max_running_requests=",
        "max_total_num_tokens=",
        "1e999",
        "-0",
        "nan",
        "0",
        "99999999999999999999999",
        ".",
        ", ",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_parser_never_raises_on_near_miss_text(text):
    """Shuffled real field names and odd numbers reach the number handling, not just the dispatcher."""
    event = parse_line(text)
    if event is not None:
        for value in event.values.values():
            assert value == value and abs(value) != float("inf")
