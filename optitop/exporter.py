"""``optitop export``: every collected metric and the verdict in Prometheus exposition, for a fleet.

A prometheus_client custom collector reads the store's latest samples at each scrape (nothing is copied
between scrapes, so the exporter costs what the collectors cost). Names follow the samples' field names
with their units spelled the Prometheus way (``cpu_pct`` -> ``optitop_process_cpu_percent``,
``ttft_p50_s`` -> ``optitop_queue_ttft_p50_seconds``, ``sm_clock_mhz`` -> ``…_sm_clock_hertz``). Missing
values are left out, never exported as 0; samples older than a few intervals are left out too, so a dead
source goes stale in Prometheus instead of repeating its last value.

The verdict is ``optitop_bottleneck{category="…"}``: the confidence for the class currently named, 0 for
the others, so ``optitop_bottleneck{category="memory_io"} > 0`` lists the memory-bound hosts.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from optitop.httpserve import Handler, MetricsServer, PageCache, Request, response
from optitop.model import (
    CATEGORIES,
    GpuDevice,
    GpuSample,
    ListenQueue,
    ServingSample,
    SourceState,
    Window,
    gpu_busy_pct,
)
from optitop.redact import redact_text
from optitop.store import Store
from optitop.webconfig import BasicAuth, WebConfig

PREFIX = "optitop"
#: The classic text format (0.0.4): what every Prometheus version reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A latest sample older than this many intervals (and at least STALE_MIN_S) is not exported.
STALE_INTERVALS = 5.0
STALE_MIN_S = 15.0
#: Sample fields that are bookkeeping, not metrics.
SKIP_FIELDS = {"ts_s", "mono_s", "dt_s", "pid", "index"}

#: Unit words in field names -> (Prometheus word, factor to base units).
UNIT_WORDS: dict[str, tuple[str, float]] = {
    "pct": ("percent", 1.0),
    "mhz": ("hertz", 1e6),
}
#: Unit words that only count as units at the end of a name (``_s`` is "seconds" there, "per_s" is a rate).
LAST_UNIT_WORDS: dict[str, tuple[str, float]] = {
    "s": ("seconds", 1.0),
    "c": ("celsius", 1.0),
    "w": ("watts", 1.0),
}


def item_labels(item: object) -> tuple[str, dict[str, str]] | None:
    """(name infix, labels) for an item of a tuple exported one series per item (a GPU, a listening socket);
    None for any other item."""
    if isinstance(item, GpuDevice):
        return "", {"gpu": str(item.index), "uuid": item.uuid, "name": item.name}
    if isinstance(item, ListenQueue):
        return "listener_", {"port": str(item.port), "addr": item.addr}
    return None


#: Tuples of numbers exported one series per position: field -> (metric field, label).
INDEXED_NUMBERS: dict[str, tuple[str, str]] = {
    "per_core_busy_pct": ("core_busy_pct", "core"),
}

#: Help text for the metrics people query most; others get a generated line naming their source field.
HELP: dict[str, str] = {
    "process_cpu_pct": "CPU of the target's process tree, in % of one core (200 = two full cores)",
    "process_cpu_pct_of_allowed": "CPU of the target's process tree, in % of the cores it may run on",
    "process_rss_bytes": "Resident memory of the target's process tree",
    "process_num_threads": "Threads in the target's process tree",
    "system_cpu_busy_pct": "Host CPU busy, in % of all cores",
    "system_core_busy_pct": "Busy % of one host CPU core",
    "gpu_sm_util_pct": "Share of SMs busy (GPM SM_UTIL; absent without GPM: see optitop_gpu_busy_percent)",
    "gpu_tensor_util_pct": "Tensor core activity (GPM ANY_TENSOR_UTIL)",
    "gpu_dram_bw_util_pct": "GPU DRAM bandwidth in use, in % of peak (GPM DRAM_BW_UTIL)",
    "gpu_dram_bytes_per_s": "GPU DRAM traffic (DRAM_BW_UTIL x theoretical peak)",
    "gpu_pcie_rx_bytes_per_s": "Host-to-device PCIe traffic",
    "gpu_pcie_tx_bytes_per_s": "Device-to-host PCIe traffic",
    "gpu_mem_used_bytes": "GPU memory in use (all processes)",
    "gpu_target_mem_bytes": "GPU memory used by the target's processes",
    "queue_requests_waiting": "Requests waiting in the server's queue",
    "queue_requests_running": "Requests in flight (running) in the server",
    "queue_request_rate_per_s": "Requests finished per second",
    "queue_generation_tokens_per_s": "Generated tokens per second",
    "queue_ttft_p50_s": "Median time to first token over the last interval",
    "queue_ttft_p95_s": "95th percentile time to first token over the last interval",
    "queue_e2e_p95_s": "95th percentile end-to-end request latency over the last interval",
    "queue_kv_cache_usage_pct": "KV cache in use, in %",
}


def prom_name(field: str) -> tuple[str, float]:
    """A field name with its units spelled for Prometheus, and the factor to base units.

    ``cpu_pct_of_allowed`` -> ``cpu_percent_of_allowed``; ``read_bytes_per_s`` -> ``read_bytes_per_second``;
    ``ttft_p50_s`` -> ``ttft_p50_seconds``; ``sm_clock_mhz`` -> ``sm_clock_hertz`` (x 1e6).
    """
    words = field.split("_")
    factor = 1.0
    out = []
    for i, word in enumerate(words):
        last = i == len(words) - 1
        if word == "s" and i > 0 and words[i - 1] == "per":
            out.append("second")
        elif word in UNIT_WORDS:
            out.append(UNIT_WORDS[word][0])
            factor *= UNIT_WORDS[word][1]
        elif last and word in LAST_UNIT_WORDS and i > 0:
            out.append(LAST_UNIT_WORDS[word][0])
            factor *= LAST_UNIT_WORDS[word][1]
        else:
            out.append(word)
    return "_".join(out), factor


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


class _Families:
    """Gauge families by name; each family keeps one label set, as the exposition requires."""

    def __init__(self) -> None:
        self.by_name: dict[str, GaugeMetricFamily] = {}
        self.label_names: dict[str, list[str]] = {}

    def add(
        self, key: str, value: float, labels: dict[str, str] | None = None, help_text: str = "", field: str = ""
    ) -> None:
        labels = labels or {}
        name, factor = prom_name(key)
        full = f"{PREFIX}_{name}"
        family = self.by_name.get(full)
        if family is None:
            source = key.split("_", 1)[0]
            text = help_text or HELP.get(key) or f"The {source} collector's {field or key} (see optitop's sample types)"
            family = self.by_name[full] = GaugeMetricFamily(full, text, labels=sorted(labels))
            self.label_names[full] = sorted(labels)
        if sorted(labels) != self.label_names[full]:
            return  # an item of another shape under the same name: never mix label sets
        family.add_metric([labels[k] for k in sorted(labels)], value * factor)


class StoreCollector:
    """A prometheus_client collector over a store's latest samples, statuses and verdict."""

    def __init__(self, store: Store, interval_s: float = 1.0) -> None:
        """Export ``store``; samples older than a few ``interval_s`` are left out."""
        self.store = store
        self.stale_s = max(STALE_MIN_S, STALE_INTERVALS * interval_s)

    def describe(self) -> list[Metric]:
        """No fixed descriptions: the metric set follows the sources that work here."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Build every family from one window (called on the HTTP server's thread)."""
        window = self.store.window(self.stale_s)
        families = _Families()
        for series, samples in sorted(window.samples.items()):
            if samples:
                self._sample(families, series, samples[-1], {})
                families.add(
                    "sample_age_s",
                    max(0.0, window.now_mono_s - samples[-1].mono_s),
                    {"source": series},
                    "Seconds since the source's latest sample",
                )
        self._gpu_busy(families, window)
        self._sources(families, window)
        self._verdict(families, window)
        self._target(families, window)
        yield from families.by_name.values()

    # -- samples ---------------------------------------------------------------------------------------
    def _sample(self, families: _Families, prefix: str, obj: Any, labels: dict[str, str]) -> None:
        for f in dataclasses.fields(obj):
            if f.name in SKIP_FIELDS:
                continue
            value = getattr(obj, f.name)
            number = _number(value)
            if number is not None:
                families.add(f"{prefix}_{f.name}", number, labels, field=f.name)
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                self._sample(families, prefix, value, {**labels, **self._serving_labels(obj)})
            elif isinstance(value, tuple) and value:
                self._items(families, prefix, f.name, value, labels)

    @staticmethod
    def _serving_labels(obj: object) -> dict[str, str]:
        """The server profile a serving sample's statistics are labelled with (none for other samples)."""
        return {"profile": obj.profile} if isinstance(obj, ServingSample) and obj.profile else {}

    def _items(
        self, families: _Families, prefix: str, name: str, items: tuple[Any, ...], labels: dict[str, str]
    ) -> None:
        if item_labels(items[0]) is not None:
            for item in items:
                labelled = item_labels(item)
                if labelled is not None:
                    infix, own = labelled
                    self._sample(families, f"{prefix}_{infix}".rstrip("_"), item, {**labels, **own})
        elif name in INDEXED_NUMBERS and all(_number(v) is not None for v in items):
            metric, label = INDEXED_NUMBERS[name]
            for i, v in enumerate(items):
                families.add(f"{prefix}_{metric}", float(v), {**labels, label: str(i)}, field=name)

    @staticmethod
    def _gpu_busy(families: _Families, window: Window) -> None:
        """GPU busy % by the model's one policy (``gpu_busy_pct``: GPM's SM activity, the legacy utilisation only
        where there is no GPM), per GPU and for the target's GPUs: what the verdict, the GPU pane and compare read,
        so a dashboard never shows a Hopper GPU idle under load from the legacy counter."""
        sample = window.latest_of("gpu", GpuSample)
        if sample is None:
            return
        for device in sample.devices:
            busy = gpu_busy_pct(device)
            labelled = item_labels(device)
            if busy is not None and labelled is not None:
                families.add(
                    "gpu_busy_pct",
                    busy,
                    labelled[1],
                    "How busy the GPU is, in %: GPM SM activity, or NVML's legacy utilisation where GPM is absent",
                )
        target = sample.target_busy_pct()
        if target is not None:
            families.add(
                "gpu_target_busy_pct",
                target,
                help_text="The busiest of the target's GPUs (all GPUs when NVML cannot tell which), in %",
            )

    # -- sources, verdict, target ----------------------------------------------------------------------
    @staticmethod
    def _sources(families: _Families, window: Window) -> None:
        for name, status in sorted(window.statuses.items()):
            if status.state is SourceState.DISABLED:
                continue
            families.add(
                "source_up",
                1.0 if status.state is SourceState.OK else 0.0,
                {"source": name},
                "1 when the source's last sample worked (optitop doctor says why not)",
            )
        cost = window.self_cost
        if cost.cpu_pct is not None:
            families.add("self_cpu_pct", cost.cpu_pct, help_text="optitop's own CPU, in % of one core")
        if cost.rss_bytes is not None:
            families.add("self_rss_bytes", float(cost.rss_bytes), help_text="optitop's own resident memory")

    @staticmethod
    def _verdict(families: _Families, window: Window) -> None:
        if not window.diagnoses:
            return
        verdict = window.diagnoses[-1]
        secondary = dict(verdict.secondary)
        for category in CATEGORIES:
            families.add(
                "bottleneck",
                verdict.confidence if category == verdict.category else 0.0,
                {"category": category},
                "The analyzer's verdict: its confidence (0..1) for the class it names now, 0 for the others",
            )
            families.add(
                "bottleneck_secondary",
                float(secondary.get(category, 0.0)),
                {"category": category},
                "Confidence (0..1) of the runner-up classes of the current verdict",
            )

        lat = verdict.latency
        if lat is not None and not lat.absent:
            for name, value, help_text in (
                (
                    "latency_residence_s",
                    lat.residence_s,
                    "Seconds a request spends in the server ("
                    "its request-duration p50, or Little's law: in flight / completions per second)",
                ),
                ("latency_cpu_demand_s", lat.cpu_demand_s, "CPU-seconds the target tree spends per request"),
                ("latency_gpu_demand_s", lat.gpu_demand_s, "GPU busy-seconds per request"),
                ("latency_waiting_s", lat.waiting_s, "Residence minus service demand: what a request waits"),
            ):
                if value is not None:
                    families.add(name, float(value), help_text=help_text)

    @staticmethod
    def _target(families: _Families, window: Window) -> None:
        t = window.target
        families.add(
            "target_info",
            1.0,
            {"pid": str(t.pid), "name": redact_text(t.name), "host": t.host},  # a name can be an argv word
            "The watched process (constant 1; its labels say which)",
        )
        families.add("target_exited", 1.0 if t.exited else 0.0, help_text="1 once the watched process has exited")


def make_registry(store: Store, interval_s: float = 1.0) -> CollectorRegistry:
    """A registry holding only optitop's metrics (not the exporter process's own)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store, interval_s))
    return registry


def metrics_handler(cache: PageCache, auth: BasicAuth | None = None) -> Handler:
    """Answers GET/HEAD of any path but /favicon.ico with the cached page, behind basic auth when asked."""

    def handle(request: Request) -> tuple[bytes, bytes]:
        if request.method not in ("GET", "HEAD"):
            return response(405, b"GET or HEAD\n", extra="Allow: GET, HEAD\r\n"), b"GET or HEAD\n"
        if auth is not None and not auth.allows(request.headers.get("authorization")):
            extra = 'WWW-Authenticate: Basic realm="optitop", charset="UTF-8"\r\n'
            return response(401, b"unauthorized\n", extra=extra), b"unauthorized\n"
        if request.target.split("?", 1)[0] == "/favicon.ico":
            return response(404, b"not found\n"), b"not found\n"
        page = cache.get()
        head = response(200, page, CONTENT_TYPE)
        return head, (page if request.method == "GET" else b"")

    return handle


def serve(
    store: Store, host: str, port: int, interval_s: float = 1.0, web: WebConfig | None = None
) -> tuple[MetricsServer, threading.Thread]:
    """Serve ``store`` on http(s)://host:port/metrics from a daemon thread; returns (server, thread).

    The page is rendered at most once per ``interval_s`` (the store changes no faster) and every scrape in
    between is answered from that render; ``web`` adds TLS and basic auth (see optitop.webconfig).
    """
    from prometheus_client.exposition import generate_latest

    registry = make_registry(store, interval_s)
    cache = PageCache(lambda: generate_latest(registry), max_age_s=interval_s)
    web = web or WebConfig()
    auth = BasicAuth(web.users) if web.users else None
    slow = (lambda request: auth.costly(request.headers.get("authorization"))) if auth is not None else None
    server = MetricsServer(host, port, metrics_handler(cache, auth), web.ssl_context, slow)
    return server, server.start()


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:9400``, ``[::1]:9400`` or ``:9400`` (all interfaces) -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"--listen wants HOST:PORT, got {text!r}")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - only when the user asked for ":PORT"
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--listen: not a port: {port_text!r}") from None
    if not 0 <= port < 65536:
        raise ValueError(f"--listen: not a port: {port_text!r}")
    return host, port
