"""An asyncio HTTP model server with an adaptive batcher (issue 22, case a): no GPU, no upstreams.

Requests are queued and run together when the batch is full (``--max-batch``, 64) or when the oldest has
waited ``--max-wait-s`` (0.5 s), whichever comes first, the way BentoML/Ray Serve/Triton batchers work.
Under 4 concurrent clients the batch never fills, so every request waits for the timer while the process
uses ~1 % of a core: the textbook scheduling case. Its /metrics (prometheus-client) carries only a
request-in-progress gauge and a request-duration histogram, as many model servers do: no waiting gauge, no
queue-time histogram.

    python benchmarks/wild/batcher_server.py --port 8080 --metrics-port 9090

Prints its pid, then the metrics URL, then ``ready``; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

from prometheus_client import Gauge, Histogram, start_http_server

IN_PROGRESS = Gauge("model_requests_in_progress", "Requests being handled")
DURATION = Histogram(
    "model_request_duration_seconds",
    "Request duration",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 1.0, 2.5, 5.0),
)


class Batcher:
    """Collects requests; runs a batch when it is full or its oldest request has waited max_wait_s."""

    def __init__(self, max_batch: int, max_wait_s: float) -> None:
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.queue: asyncio.Queue[tuple[str, asyncio.Future[int]]] = asyncio.Queue()

    async def submit(self, text: str) -> int:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await self.queue.put((text, fut))
        return await fut

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except TimeoutError:
                    break
            # the "model": a little arithmetic per item (~0.1 ms)
            for text, fut in batch:
                if not fut.done():
                    fut.set_result(sum(ord(c) for c in text[:256]) % 97)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, batcher: Batcher) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            started = time.monotonic()
            IN_PROGRESS.inc()
            try:
                try:
                    text = str(json.loads(body or b"{}").get("text", ""))
                except (ValueError, AttributeError):
                    text = ""
                label = await batcher.submit(text)
            finally:
                IN_PROGRESS.dec()
                DURATION.observe(time.monotonic() - started)
            out = json.dumps({"label": label}).encode()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(out)
            writer.write(head + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def main_async(args: argparse.Namespace) -> None:
    batcher = Batcher(args.max_batch, args.max_wait_s)
    loop = asyncio.get_running_loop()
    # a benchmark target: stop at once on SIGTERM (cancelling in-flight handlers would only print tracebacks)
    loop.add_signal_handler(signal.SIGTERM, os._exit, 0)
    worker = asyncio.create_task(batcher.run())
    server = await asyncio.start_server(lambda r, w: handle(r, w, batcher), "127.0.0.1", args.port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()
    worker.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-s", type=float, default=0.5)
    args = parser.parse_args()
    start_http_server(args.metrics_port, addr="127.0.0.1")
    print(os.getpid(), flush=True)
    print(f"http://127.0.0.1:{args.metrics_port}/metrics", flush=True)
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
