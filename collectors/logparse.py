"""Pure parsers for the periodic stats lines inference servers write to their logs (vLLM, SGLang).

A server without a metrics endpoint still says how busy it is in its log. Each recognised line becomes a
``LogEvent`` holding the canonical ``ServingStats`` fields it carries, with the raw log field each came from.
The formats and their generations are in tests/fixtures/logs/SOURCES.md; in short:

* vLLM V0 ``metrics.py``: ``Avg prompt throughput … Running … Swapped … Pending … GPU KV cache usage …``,
  an optional ``Prefix cache hit rate: GPU: x%, CPU: y%`` line, and a preemption WARNING that carries the
  cumulative count (vLLM logs it once every 50 preemptions, so the count, not the line, is what matters).
* vLLM V1 ``loggers.py``: ``Engine 000: …`` (or ``N Engines Aggregated: …``) with Running/Waiting, KV cache
  usage, prefix cache hit rate, and from v0.11 optional ``Deferred``/``Preemptions``/``MM cache`` parts.
  ``Waiting`` already includes the deferred requests, so ``Deferred`` is not added again.
* SGLang: ``Decode batch.``/``Decode batch,`` and ``Prefill batch`` lines, the retraction warnings (SGLang's
  preemption) and the startup capacity line.

Fields are found one by one (a table of patterns, not one brittle regex per version), so reordered, extra
or truncated parts still give what they contain. Every pattern is linear (no nested quantifiers) and lines
are capped by the caller, so a hostile log cannot make parsing slow. Non-finite numbers give None.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from optitop.model import ServingStats

_NUM = r"([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One canonical field found in a log line: where it is, what it is called there, how it scales."""

    canonical: str
    pattern: re.Pattern[str]
    label: str
    scale: float = 1.0


def _rule(canonical: str, pattern: str, label: str, scale: float = 1.0) -> FieldRule:
    return FieldRule(canonical, re.compile(pattern.replace("NUM", _NUM)), label, scale)


VLLM_STATS_RULES: tuple[FieldRule, ...] = (
    _rule("prompt_tokens_per_s", r"Avg prompt throughput: NUM tokens/s", "Avg prompt throughput"),
    _rule("generation_tokens_per_s", r"Avg generation throughput: NUM tokens/s", "Avg generation throughput"),
    _rule("requests_running", r"Running: NUM reqs", "Running"),
    _rule("requests_swapped", r"Swapped: NUM reqs", "Swapped"),
    _rule("requests_waiting", r"Pending: NUM reqs", "Pending"),
    _rule("requests_waiting", r"Waiting: NUM reqs", "Waiting"),
    _rule("kv_cache_usage_pct", r"(?<!CPU )KV cache usage: NUM%", "GPU KV cache usage"),
    _rule("prefix_cache_hit_pct", r"(?<![A-Za-z] )Prefix cache hit rate: NUM%", "Prefix cache hit rate"),
)
VLLM_PREFIX_RULES: tuple[FieldRule, ...] = (
    _rule("prefix_cache_hit_pct", r"Prefix cache hit rate: GPU: NUM%", "Prefix cache hit rate GPU"),
)
SGLANG_DECODE_RULES: tuple[FieldRule, ...] = (
    _rule("requests_running", r"#running-req: NUM", "#running-req"),
    _rule("batch_size", r"#running-req: NUM", "#running-req"),
    _rule("requests_waiting", r"#queue-req: NUM", "#queue-req"),
    _rule("kv_cache_usage_pct", r"(?:^|[,.] )(?:full )?token usage: NUM", "token usage x100", 100.0),
    _rule("generation_tokens_per_s", r"gen throughput \(token/s\): NUM", "gen throughput (token/s)"),
)
SGLANG_PREFILL_RULES: tuple[FieldRule, ...] = (
    _rule("requests_running", r"#running-req: NUM", "#running-req"),
    _rule("requests_waiting", r"#queue-req: NUM", "#queue-req"),
    _rule("kv_cache_usage_pct", r"(?:^|[,.] )(?:full )?token usage: NUM", "token usage x100", 100.0),
    _rule("prompt_tokens_per_s", r"input throughput \(token/s\): NUM", "input throughput (token/s)"),
)
SGLANG_CAPACITY_RULES: tuple[FieldRule, ...] = (
    _rule("max_running", r"max_running_requests=NUM", "max_running_requests"),
)

_V1_ENGINE = re.compile(r"Engine (\d+):")
_V1_AGGREGATED = re.compile(r"(\d+) Engines Aggregated:")
_V1_PREEMPTIONS = re.compile(r"Preemptions: (\d+)")
_V0_PREEMPTED = re.compile(r"total_(?:num_)?cumulative_preemption(?:_cnt)?=(\d+)")
_SG_RETRACTED = re.compile(r"#retracted_reqs: (\d+)")
_SG_RANK = re.compile(r"[\[ ](DP\d+)[ \]]")
_SG_NEW_TOKEN = re.compile(r"#new-token: (\d+)")
_SG_CACHED_TOKEN = re.compile(r"#cached-token: (\d+)")


@dataclass(frozen=True, slots=True)
class LogEvent:
    """What one recognised log line says.

    Attributes:
        server: ``vllm`` or ``sglang``.
        kind: ``stats`` (the periodic line), ``prefix_cache`` (vLLM V0's second line), ``prefill``
            (SGLang), ``preemption`` (a warning) or ``capacity`` (SGLang's startup limits).
        stats: the canonical fields this line gives (others None), with provenance.
        generation: ``v0``/``v1`` for vLLM stats lines, ``""`` otherwise.
        engine: which engine or rank the line is about (vLLM V1 ``000``, ``aggregated``; SGLang ``DP1``);
            ``""`` when the line names none.
        preemptions: preemptions this line reports (V1 inline count, SGLang retracted requests); None when
            the line carries no count.
        cumulative_preemptions: vLLM V0's running total from its preemption warning.
        values: the same canonical values as ``stats`` as a dict (what the collector overlays field by field).
    """

    server: str
    kind: str
    stats: ServingStats
    generation: str = ""
    engine: str = ""
    preemptions: int | None = None
    cumulative_preemptions: int | None = None
    values: dict[str, float] = field(default_factory=dict)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(match: re.Match[str] | None) -> int | None:
    """The first group as an int; None when absent or too long to convert (Python caps int() digits)."""
    if match is None:
        return None
    try:
        return int(match.group(1))
    except ValueError:
        return None


def extract(line: str, rules: tuple[FieldRule, ...], server: str) -> tuple[dict[str, float], dict[str, str]]:
    """Apply a rule table to a line: the canonical values found and, per field, the raw field it came from."""
    values: dict[str, float] = {}
    labels: dict[str, str] = {}
    for rule in rules:
        if rule.canonical in values:
            continue
        match = rule.pattern.search(line)
        if match is None:
            continue
        value = _number(match.group(1))
        if value is None:
            continue
        values[rule.canonical] = value * rule.scale
        labels[rule.canonical] = f"{server} log: {rule.label}"
    return values, labels


def make_stats(values: dict[str, float], labels: dict[str, str]) -> ServingStats:
    """Build ServingStats from canonical values and their provenance labels."""
    kwargs: dict[str, Any] = dict(values)
    kwargs["provenance"] = tuple(sorted(labels.items()))
    return ServingStats(**kwargs)


def _event(
    server: str,
    kind: str,
    line: str,
    rules: tuple[FieldRule, ...],
    *,
    generation: str = "",
    engine: str = "",
    preemptions: int | None = None,
    cumulative_preemptions: int | None = None,
) -> LogEvent | None:
    """An event from the fields a rule table finds; None when a stats line yields no number at all."""
    values, labels = extract(line, rules, server)
    if not values and kind != "preemption":
        return None
    return LogEvent(
        server,
        kind,
        make_stats(values, labels),
        generation=generation,
        engine=engine,
        preemptions=preemptions,
        cumulative_preemptions=cumulative_preemptions,
        values=values,
    )


def _parse_vllm_stats(line: str) -> LogEvent | None:
    engine_match = _V1_ENGINE.search(line)
    aggregated = _V1_AGGREGATED.search(line)
    is_v1 = bool(engine_match or aggregated) or ("Waiting:" in line and "Pending:" not in line)
    engine = "aggregated" if aggregated else (engine_match.group(1) if engine_match else "")
    preempted = _V1_PREEMPTIONS.search(line) if is_v1 else None
    return _event(
        "vllm",
        "stats",
        line,
        VLLM_STATS_RULES,
        generation="v1" if is_v1 else "v0",
        engine=engine,
        preemptions=_int(preempted),
    )


def _parse_sglang(line: str) -> LogEvent | None:
    rank = _SG_RANK.search(line[:200])
    engine = rank.group(1) if rank else ""
    if "Decode batch" in line and "#running-req:" in line:
        return _event("sglang", "stats", line, SGLANG_DECODE_RULES, engine=engine)
    if "Prefill batch" in line:
        event = _event("sglang", "prefill", line, SGLANG_PREFILL_RULES, engine=engine)
        return _with_prefill_hit_rate(event, line)
    if "#retracted_reqs:" in line and ("Retract requests" in line or "decode out of memory" in line):
        count = _int(_SG_RETRACTED.search(line))
        return _event("sglang", "preemption", line, (), engine=engine, preemptions=1 if count is None else count)
    if "max_running_requests=" in line and "max_total_num_tokens=" in line:
        return _event("sglang", "capacity", line, SGLANG_CAPACITY_RULES, engine=engine)
    return None


def _with_prefill_hit_rate(event: LogEvent | None, line: str) -> LogEvent | None:
    """Add the prefill batch's prefix-cache hit rate: cached / (cached + new) tokens of that batch."""
    new = _int(_SG_NEW_TOKEN.search(line))
    cached = _int(_SG_CACHED_TOKEN.search(line))
    if event is None or new is None or cached is None or new + cached == 0:
        return event
    values = dict(event.values)
    labels = dict(event.stats.provenance)
    values["prefix_cache_hit_pct"] = 100.0 * cached / (new + cached)
    labels["prefix_cache_hit_pct"] = "sglang log: #cached-token / (#cached-token + #new-token) of the last prefill"
    return LogEvent(event.server, event.kind, make_stats(values, labels), engine=event.engine, values=values)


def parse_line(line: str) -> LogEvent | None:
    """Parse one log line; None for anything that is not a recognised stats, preemption or capacity line."""
    if "Avg prompt throughput:" in line or "Avg generation throughput:" in line:
        return _parse_vllm_stats(line)
    if "Prefix cache hit rate: GPU:" in line:
        return _event("vllm", "prefix_cache", line, VLLM_PREFIX_RULES, generation="v0")
    if "is preempted by" in line:
        return _event(
            "vllm",
            "preemption",
            line,
            (),
            generation="v0",
            cumulative_preemptions=_int(_V0_PREEMPTED.search(line)),
        )
    if "batch" in line or "retracted_reqs" in line or "max_running_requests=" in line:
        return _parse_sglang(line)
    return None
