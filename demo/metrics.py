"""The demo server's Prometheus metrics, named the way LLM servers name theirs.

The names follow vLLM's (``num_requests_waiting``, ``request_queue_time_seconds``, ``time_to_first_token_seconds``,
``e2e_request_latency_seconds``) and TGI's (``batch_current_size``) under an ``optitop_demo:`` prefix, so the queue
collector reads the demo through the same kind of profile it uses for real servers. The registry is private so
nothing else in the process leaks into the exposition.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "optitop_demo:"
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class DemoMetrics:
    """Gauges, counters and histograms of the request path, in a registry of their own."""

    def __init__(self, scenario: str, max_batch: int) -> None:
        """Create the metrics; ``scenario`` becomes a label so a scrape says what it is looking at."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._scenario = scenario
        labels = ("scenario",)
        self.waiting = Gauge(
            f"{PREFIX}num_requests_waiting",
            "Requests queued and not yet in a running batch.",
            labels,
            registry=self.registry,
        ).labels(scenario)
        self.running = Gauge(
            f"{PREFIX}num_requests_running",
            "Requests in batches the model is running now.",
            labels,
            registry=self.registry,
        ).labels(scenario)
        self.batch_size = Gauge(
            f"{PREFIX}batch_current_size",
            "Size of the batch started most recently (0 while no batch runs).",
            labels,
            registry=self.registry,
        ).labels(scenario)
        self.max_batch = Gauge(
            f"{PREFIX}batch_max_size",
            "The batcher's largest batch.",
            labels,
            registry=self.registry,
        ).labels(scenario)
        self.max_batch.set(max_batch)
        self.requests = Counter(
            f"{PREFIX}requests",
            "Requests finished, by outcome.",
            ("scenario", "outcome"),
            registry=self.registry,
        )
        self.queue_time = self._histogram("request_queue_time_seconds", "Time from arrival to the batch start.")
        self.ttft = self._histogram(
            "time_to_first_token_seconds", "Time from arrival to the request's first result from the model."
        )
        self.e2e = self._histogram("e2e_request_latency_seconds", "Time from arrival to the response.")

    def _histogram(self, name: str, doc: str) -> Histogram:
        return Histogram(
            f"{PREFIX}{name}", doc, ("scenario",), buckets=LATENCY_BUCKETS_S, registry=self.registry
        ).labels(self._scenario)

    def finished(self, ok: bool) -> None:
        """Count one finished request."""
        self.requests.labels(self._scenario, "ok" if ok else "error").inc()

    def exposition(self) -> bytes:
        """The text exposition of this registry."""
        return generate_latest(self.registry)
