"""Canonical serving statistics: what every server's metrics or logs are turned into.

The Prometheus profiles (collectors/profiles.py, read through profileread.py) and the log parsers (logparse.py)
both produce ``ServingStats``, so the analyzer and the queue pane read one shape whatever the server. Every field
is None when unknown (never 0), and ``provenance`` names the raw metric or log field each value came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model.core import Sample, sum_known


@dataclass(frozen=True, slots=True)
class ServingStats:
    """One reading of a server's request path; latencies are seconds over the last window, rates per second."""

    requests_waiting: float | None = None
    requests_running: float | None = None
    requests_swapped: float | None = None
    batch_size: float | None = None
    max_running: float | None = None
    kv_cache_usage_pct: float | None = None
    preemptions_per_s: float | None = None
    request_rate_per_s: float | None = None
    error_rate_per_s: float | None = None
    queue_time_p50_s: float | None = None
    queue_time_p95_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    itl_p50_s: float | None = None
    itl_p95_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p95_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    prefix_cache_hit_pct: float | None = None
    #: (canonical field, raw metric or log field it came from)
    provenance: tuple[tuple[str, str], ...] = ()

    @property
    def requests_in_system(self) -> float | None:
        """Requests the server holds, waiting or running (see ``requests_in_system``)."""
        return requests_in_system(self.requests_waiting, self.requests_running)


@dataclass(frozen=True, slots=True)
class ServingSample(Sample):
    """A collector's serving statistics with where they came from.

    Attributes:
        source: e.g. ``"vllm @ http://127.0.0.1:8000/metrics"`` or ``"vllm log /var/log/vllm.log"``.
        profile: the server profile that interpreted it (``vllm``, ``tgi``, ``triton``, ``sglang``,
            ``llamacpp``, ``torchserve``, ``generic`` …).
        stats: the canonical fields.
        tried: what discovery tried when nothing was found (for the pane's "nothing found" line).
    """

    source: str
    profile: str
    stats: ServingStats
    tried: tuple[str, ...] = ()


def requests_in_system(waiting: float | None, running: float | None) -> float | None:
    """Requests in the server, waiting plus running: Little's law's N, the number the idle rule and the latency
    decomposition read. One count known stands for both (a server that exports only its running requests has no
    queue to report); None only when neither is known, never 0 for "unknown"."""
    return sum_known((waiting, running))
