"""The scenario table: which model, batching policy, load shape and upstream each bottleneck needs.

Scenarios are data so the server, the load generator and the benchmarks read one table, and so a reader can see
at a glance what induces each bottleneck. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Batching:
    """How the batcher groups queued requests.

    Attributes:
        max_batch: the most requests in one batch.
        max_wait_s: how long the batcher waits for more requests after the first (dynamic) or, when ``static``,
            how long it waits for a full batch before running a partial one.
        static: wait for a full batch (or the timeout) instead of running what is there.
        workers: model-worker threads, each running one batch at a time.
    """

    max_batch: int
    max_wait_s: float
    static: bool = False
    workers: int = 1


@dataclass(frozen=True, slots=True)
class Load:
    """The load generator's shape.

    Attributes:
        concurrency: client threads (each keeps one request in flight).
        rate_per_s: open-loop arrival rate over all clients; None sends back-to-back (closed loop).
        text_chars: characters of text in each request (what the frontend tokenises).
    """

    concurrency: int
    rate_per_s: float | None
    text_chars: int = 256


@dataclass(frozen=True, slots=True)
class Scenario:
    """One workload that induces one bottleneck class for real.

    Attributes:
        name: the scenario's name: the category the analyzer should name (``compute``, ``memory_io`` …), or a
            variant of one (``memory_io_stream``: ``expect`` says which).
        summary: one line for ``--help`` and the demo banner.
        model: the model kind in ``optitop.demo.models`` (``mlp``, ``stream``, ``tiny``).
        batching: the batcher's policy.
        load: the load shape; None sends no requests.
        upstream_delay_s: when set, each batch fetches features from a slow upstream on loopback.
        tokenise_passes: pure-Python tokeniser passes per request, run by the model worker before the model, as
            home-grown servers that pre-process inside the inference loop do (0: none).
        all_cores: let torch use every core (math- or memory-bound kernels); otherwise one thread.
        expect: the category of a variant whose name is not one ("" when ``name`` is the category).
    """

    name: str
    summary: str
    model: str
    batching: Batching
    load: Load | None
    upstream_delay_s: float | None = None
    tokenise_passes: int = 0
    all_cores: bool = False
    expect: str = ""

    @property
    def category(self) -> str:
        """The class the analyzer should name for this scenario."""
        return self.expect or self.name


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "compute",
            "a large MLP over whole batches keeps every core in matrix-multiply kernels",
            model="mlp",
            # 20 ms lets the whole closed-loop cohort join one batch instead of splitting into two that alternate
            # (one running, one queued), so the queue stays near empty and the cores do the math.
            batching=Batching(max_batch=8, max_wait_s=0.02),
            load=Load(concurrency=8, rate_per_s=None),
            all_cores=True,
        ),
        Scenario(
            "memory_io",
            "embedding gathers and elementwise passes stream large tensors through memory "
            "(on a GPU: pageable host-device copies per request)",
            model="stream",
            batching=Batching(max_batch=4, max_wait_s=0.05),
            load=Load(concurrency=4, rate_per_s=None),
            all_cores=True,
        ),
        Scenario(
            "memory_io_stream",
            "the same streaming into buffers allocated once (no fresh pages: the page-fault signal stays quiet, "
            "the op mix of the Python frames has to tell it from math)",
            model="stream_prealloc",
            batching=Batching(max_batch=4, max_wait_s=0.05),
            load=Load(concurrency=4, rate_per_s=None),
            all_cores=True,
            expect="memory_io",
        ),
        Scenario(
            "scheduling",
            "static batching with a long batch timeout: requests queue while the CPU is mostly free",
            model="tiny",
            batching=Batching(max_batch=32, max_wait_s=1.5, static=True),
            load=Load(concurrency=64, rate_per_s=10.0),
        ),
        Scenario(
            "network",
            "every batch waits on a slow upstream feature service over loopback",
            model="tiny",
            batching=Batching(max_batch=8, max_wait_s=0.005, workers=8),
            load=Load(concurrency=16, rate_per_s=20.0),
            upstream_delay_s=0.25,
        ),
        Scenario(
            "host_cpu",
            "pure-Python tokenisation in the model worker's loop holds the GIL and pegs one core; the model is tiny",
            model="tiny",
            # ~130 ms of tokenising per batch against a 20 ms gather: the worker thread is busy ~85 % of the time.
            batching=Batching(max_batch=8, max_wait_s=0.02),
            load=Load(concurrency=8, rate_per_s=None, text_chars=2048),
            tokenise_passes=12,
        ),
        Scenario(
            "idle",
            "the server is up and no requests arrive",
            model="tiny",
            batching=Batching(max_batch=8, max_wait_s=0.005),
            load=None,
        ),
        Scenario(
            "none",
            "light load on a small model: requests flow, nothing saturates, no queue",
            model="tiny",
            batching=Batching(max_batch=8, max_wait_s=0.005),
            load=Load(concurrency=4, rate_per_s=5.0),
        ),
    )
}


def get(name: str) -> Scenario:
    """Look a scenario up by name; the KeyError names the choices."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None
