"""The demo inference server: HTTP front end (POST /infer, GET /metrics, GET /health) over the batcher.

Run as ``python -m optitop.demo.server --scenario NAME``; it prints ``READY <port>`` once the model is built and
the socket listens, and serves until SIGTERM. Threads are named for the UI: ``http-acceptor`` accepts,
``http-conn-N`` handle one keep-alive connection each, ``batcher`` forms batches and ``model-worker`` runs them
(tokenising first, in the host_cpu scenario).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from optitop.demo import scenarios
from optitop.demo.batching import Batcher, Request
from optitop.demo.metrics import CONTENT_TYPE, DemoMetrics
from optitop.demo.procs import announce_ready, die_with_parent
from optitop.demo.scenarios import Scenario
from optitop.osthread import name_os_thread

REQUEST_TIMEOUT_S = 60.0


def quick_tokens(text: str) -> list[int]:
    """Cheap token ids (word lengths) for scenarios whose frontend is not the point."""
    return [len(word) for word in text.split()[:64]]


class InferenceHandler(BaseHTTPRequestHandler):
    """Routes one connection's requests; HTTP/1.1 keep-alive, so one thread serves one client."""

    protocol_version = "HTTP/1.1"
    server: InferenceServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """``/infer``: tokenise, queue, wait for the batch, answer with the result."""
        if self.path != "/infer":
            self._send(404, {"error": "not found"})
            return
        arrived = time.monotonic()
        try:
            length = int(self.headers.get("Content-Length", "0"))
            text = str(json.loads(self.rfile.read(length) or b"{}").get("text", ""))
        except (ValueError, AttributeError):
            self._send(400, {"error": "body must be JSON with a text field"})
            return
        self._send(*self.server.infer(text, arrived))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """``/metrics`` (Prometheus text) and ``/health``."""
        if self.path.split("?")[0] == "/metrics":
            self._send_bytes(200, self.server.metrics.exposition(), CONTENT_TYPE)
        elif self.path == "/health":
            self._send(200, {"scenario": self.server.scenario.name, "device": self.server.device})
        else:
            self._send(404, {"error": "not found"})

    def _send(self, status: int, doc: dict[str, Any]) -> None:
        self._send_bytes(status, json.dumps(doc).encode(), "application/json")

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature of the base class)
        """Stay quiet: one line per request would flood the terminal the TUI draws on."""


class InferenceServer(ThreadingHTTPServer):
    """The HTTP server, holding the scenario, the batcher and the metrics the handlers use."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, scenario: Scenario, batcher: Batcher, metrics: DemoMetrics, device: str) -> None:
        """Bind to loopback (port 0 picks a free one)."""
        super().__init__(("127.0.0.1", port), InferenceHandler)
        self.scenario = scenario
        self.batcher = batcher
        self.metrics = metrics
        self.device = device
        self._conn_ids = itertools.count(1)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection on a thread named ``http-conn-N`` (ThreadingMixIn leaves them anonymous)."""
        name = f"http-conn-{next(self._conn_ids)}"
        thread = threading.Thread(
            target=self._serve_connection, args=(name, request, client_address), name=name, daemon=True
        )
        thread.start()

    def _serve_connection(self, name: str, request: socket.socket, client_address: Any) -> None:
        name_os_thread(name)
        self.process_request_thread(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Drop clients that hung up (the load generator stops mid-request); report anything else."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def infer(self, text: str, arrived: float) -> tuple[int, dict[str, Any]]:
        """Queue the request and wait for the model's answer; record the latency histograms."""
        tokens = None if self.scenario.tokenise_passes else quick_tokens(text)
        request = Request(text=text, tokens=tokens, arrived_s=arrived)
        self.batcher.submit(request)
        if not request.done.wait(REQUEST_TIMEOUT_S):
            self.metrics.finished(ok=False)
            return 504, {"error": "timed out in the queue"}
        if request.result_s is not None:
            self.metrics.ttft.observe(request.result_s - arrived)
        self.metrics.e2e.observe(time.monotonic() - arrived)
        self.metrics.finished(ok=request.error is None)
        if request.error is not None:
            return 500, {"error": request.error}
        return 200, {"result": request.result, "tokens": len(request.tokens or ())}


def build_server(scenario: Scenario, device: str, port: int, upstream_url: str | None) -> InferenceServer:
    """The model, batcher and HTTP server for one scenario, ready to start."""
    from optitop.demo.models import build, configure_threads

    configure_threads(scenario.all_cores)
    policy = scenario.batching
    model = build(scenario.model, device, policy.max_batch)
    metrics = DemoMetrics(scenario.name, policy.max_batch)
    batcher = Batcher(model, policy, metrics, upstream_url, scenario.tokenise_passes)
    return InferenceServer(port, scenario, batcher, metrics, device)


def main(argv: list[str] | None = None) -> int:
    """Serve one scenario until SIGTERM/SIGINT (or until the parent dies)."""
    parser = argparse.ArgumentParser(prog="optitop.demo.server")
    parser.add_argument("--scenario", default="none", choices=sorted(scenarios.SCENARIOS))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream-url", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    from optitop.demo.models import pick_device

    scenario = scenarios.get(args.scenario)
    device = pick_device(args.device)
    server = build_server(scenario, device, args.port, args.upstream_url)
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.batcher.start()
    acceptor = threading.Thread(target=_accept, args=(server,), name="http-acceptor", daemon=True)
    acceptor.start()
    announce_ready(server.server_address[1])
    stopped.wait()
    server.shutdown()
    server.batcher.stop(timeout_s=30)
    server.server_close()
    return 0


def _accept(server: InferenceServer) -> None:
    name_os_thread("http-acceptor")
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter finalisation: a daemon thread caught inside a torch kernel then would be pthread_exit'ed
    # through C++ frames, which aborts with "terminate called without an active exception".
    os._exit(status)
