"""A slow upstream "feature service" on loopback: the network scenario's server waits on it for every batch.

It answers ``GET /features?n=N`` after a fixed delay with a small JSON body, the way a remote feature store or
embedding service would look from the model server: the caller's worker thread blocks in a socket read.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from urllib.parse import parse_qs, urlparse

from optitop.demo.procs import announce_ready, die_with_parent
from optitop.osthread import name_os_thread


class UpstreamHandler(BaseHTTPRequestHandler):
    """Sleeps ``server.delay_s`` then returns N features; keep-alive so the caller can pool connections."""

    protocol_version = "HTTP/1.1"
    server: UpstreamServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """Answer one feature request after the configured delay."""
        query = parse_qs(urlparse(self.path).query)
        count = int(query.get("n", ["1"])[0])
        time.sleep(self.server.delay_s)
        body = json.dumps({"features": [0.5] * count}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (signature of the base class)
        """Stay quiet: one line per request would flood the terminal the TUI draws on."""


class UpstreamServer(ThreadingHTTPServer):
    """A threading HTTP server that carries its delay."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, delay_s: float) -> None:
        """Bind to loopback (port 0 picks a free one)."""
        super().__init__(("127.0.0.1", port), UpstreamHandler)
        self.delay_s = delay_s


def main(argv: list[str] | None = None) -> int:
    """Run the upstream until SIGTERM (or until the parent dies)."""
    parser = argparse.ArgumentParser(prog="optitop.demo.upstream")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.25, help="seconds before each answer")
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    name_os_thread("upstream")
    server = UpstreamServer(args.port, args.delay)
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=server.serve_forever, name="upstream-acceptor", daemon=True)
    thread.start()
    announce_ready(server.server_address[1])
    stopped.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
