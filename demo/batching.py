"""The request queue, the batcher thread and the model-worker threads of the demo server.

Requests wait in one queue; the ``batcher`` thread waits for a free worker, then gathers a batch by the scenario's
policy (up to ``max_batch`` requests, waiting at most ``max_wait_s`` after the first) and hands it to a
``model-worker`` thread, which (in the network scenario) first fetches features from the upstream, then runs the
model. The waiting/running/batch gauges move exactly when requests change state, so what /metrics says is what
the threads are doing.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from optitop.demo.metrics import DemoMetrics
from optitop.demo.models import Model
from optitop.demo.scenarios import Batching
from optitop.demo.tokenizer import tokenise
from optitop.osthread import name_os_thread


@dataclass(eq=False, slots=True)
class Request:
    """One request on its way through the server (times are ``time.monotonic()``)."""

    text: str
    tokens: list[int] | None
    arrived_s: float
    queued_s: float = 0.0
    started_s: float | None = None
    result_s: float | None = None
    result: float | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Upstream:
    """A keep-alive connection to the feature service, one per worker thread (http.client is not thread-safe)."""

    def __init__(self, url: str) -> None:
        """Remember where the upstream is; connect on first use."""
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 80
        self.conn: http.client.HTTPConnection | None = None

    def features(self, count: int) -> list[float]:
        """Fetch ``count`` features; the worker thread blocks in the socket read meanwhile (the point)."""
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request("GET", f"/features?n={count}")
                body = self.conn.getresponse().read()
                return [float(v) for v in json.loads(body)["features"]]
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        return []


class Batcher:
    """Owns the request queue, the batcher thread and the model workers."""

    def __init__(
        self, model: Model, policy: Batching, metrics: DemoMetrics, upstream_url: str | None, tokenise_passes: int
    ) -> None:
        """Set up queues; call ``start()`` to run the threads."""
        self.model = model
        self.tokenise_passes = tokenise_passes
        self.policy = policy
        self.metrics = metrics
        self.upstream_url = upstream_url
        self.requests: queue.Queue[Request | None] = queue.Queue()
        self.batches: queue.Queue[list[Request] | None] = queue.Queue()
        self.free_workers = threading.Semaphore(policy.workers)
        self.lock = threading.Lock()
        self.waiting = 0
        self.running = 0
        self.batches_running = 0
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the batcher and the model workers (daemon threads named for the UI)."""
        self.threads.append(threading.Thread(target=self._batch_loop, name="batcher", daemon=True))
        for i in range(self.policy.workers):
            name = "model-worker" if self.policy.workers == 1 else f"model-worker-{i}"
            self.threads.append(threading.Thread(target=self._work_loop, args=(name,), name=name, daemon=True))
        for thread in self.threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask every thread to finish its current batch and exit."""
        self.requests.put(None)
        for _ in range(self.policy.workers):
            self.batches.put(None)
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def submit(self, request: Request) -> None:
        """Queue a request (called from an HTTP handler thread)."""
        request.queued_s = time.monotonic()
        with self.lock:
            self.waiting += 1
            self.metrics.waiting.set(self.waiting)
        self.requests.put(request)

    def _batch_loop(self) -> None:
        name_os_thread("batcher")
        while True:
            self.free_workers.acquire()
            batch = self._gather()
            if batch is None:
                return
            self.batches.put(batch)

    def _gather(self) -> list[Request] | None:
        """Block for the first request, then take more until the batch is full or ``max_wait_s`` has passed."""
        first = self.requests.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.policy.max_wait_s
        while len(batch) < self.policy.max_batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self.requests.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                self.requests.put(None)
                break
            batch.append(item)
        return batch

    def _work_loop(self, name: str) -> None:
        name_os_thread(name)
        upstream = Upstream(self.upstream_url) if self.upstream_url else None
        while True:
            batch = self.batches.get()
            if batch is None:
                return
            try:
                self._run(batch, upstream)
            finally:
                self.free_workers.release()

    def _run(self, batch: list[Request], upstream: Upstream | None) -> None:
        """Run one batch: state changes on the gauges, upstream fetch, model, per-request results."""
        now = time.monotonic()
        self._started(batch, now)
        try:
            if upstream is not None:
                upstream.features(len(batch))
            results = self.model.run([self._tokens(r) for r in batch])
            error = None
        except Exception as exc:  # a failed batch answers 500 instead of killing the worker
            results = [0.0] * len(batch)
            error = f"{type(exc).__name__}: {exc}"
        done = time.monotonic()
        self._finished(batch)
        for request, value in zip(batch, results, strict=True):
            request.result, request.result_s, request.error = value, done, error
            request.done.set()

    def _tokens(self, request: Request) -> list[int]:
        """The request's token ids, tokenising here (holding the GIL) when the handler did not."""
        if request.tokens is None:
            request.tokens = tokenise(request.text, self.tokenise_passes)
        return request.tokens

    def _started(self, batch: list[Request], now: float) -> None:
        with self.lock:
            self.waiting -= len(batch)
            self.running += len(batch)
            self.batches_running += 1
            self.metrics.waiting.set(self.waiting)
            self.metrics.running.set(self.running)
            self.metrics.batch_size.set(len(batch))
        for request in batch:
            request.started_s = now
            self.metrics.queue_time.observe(now - request.queued_s)

    def _finished(self, batch: list[Request]) -> None:
        with self.lock:
            self.running -= len(batch)
            self.batches_running -= 1
            self.metrics.running.set(self.running)
            if self.batches_running == 0:
                self.metrics.batch_size.set(0)
