"""FastAPI on uvicorn with an adaptive batcher, for the framework benchmark (issue 22's first miss, on a real stack).

Requests go into an asyncio queue; a batcher task runs a batch when it holds ``MAX_BATCH`` (64) requests or
when the oldest has waited ``MAX_WAIT_S`` (0.5 s), and runs the model (a small torch MLP with random weights) on
the whole batch. Under 4 clients the batch never fills: each request waits for the timer while the CPU idles.
/metrics (prometheus-client's ASGI app) exports only a requests-in-progress gauge and a request-duration
histogram, as many model servers do.

    .venv-frameworks/bin/uvicorn fastapi_app:app --app-dir benchmarks/frameworks --port 8000 --workers 1

Environment: ``MAX_BATCH`` and ``MAX_WAIT_S`` override the batcher.
"""

from __future__ import annotations

import asyncio
import os
import time
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI, Request
from prometheus_client import Gauge, Histogram, make_asgi_app

MAX_BATCH = int(os.environ.get("MAX_BATCH", "64"))
MAX_WAIT_S = float(os.environ.get("MAX_WAIT_S", "0.5"))
IN_PROGRESS = Gauge("inference_requests_in_progress", "Requests being handled")
DURATION = Histogram(
    "inference_request_duration_seconds",
    "Request duration",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.6, 0.7, 0.8, 1.0, 2.5, 5.0),
)
torch.set_num_threads(1)
torch.manual_seed(0)
MODEL = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.GELU(), torch.nn.Linear(256, 8)).eval()
QUEUE: asyncio.Queue[tuple[str, asyncio.Future[int]]] = asyncio.Queue()


async def batcher() -> None:
    """Collect up to MAX_BATCH requests or MAX_WAIT_S from the first, then run them together."""
    while True:
        batch = [await QUEUE.get()]
        deadline = time.monotonic() + MAX_WAIT_S
        while len(batch) < MAX_BATCH and (left := deadline - time.monotonic()) > 0:
            try:
                batch.append(await asyncio.wait_for(QUEUE.get(), left))
            except TimeoutError:
                break
        feats = torch.zeros(len(batch), 64)
        for i, (text, _) in enumerate(batch):
            for j, ch in enumerate(text[:64]):
                feats[i, j] = ord(ch) / 128.0
        with torch.no_grad():
            labels = MODEL(feats).argmax(dim=1).tolist()
        for (_, fut), label in zip(batch, labels, strict=True):
            if not fut.done():
                fut.set_result(int(label))


@asynccontextmanager
async def lifespan(_: FastAPI) -> Any:
    task = asyncio.create_task(batcher())
    yield
    task.cancel()


app = FastAPI(lifespan=lifespan)
app.mount("/metrics", make_asgi_app())


@app.post("/infer")
async def infer(request: Request) -> dict[str, int]:
    started = time.monotonic()
    IN_PROGRESS.inc()
    try:
        body = await request.json()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        await QUEUE.put((str(body.get("text", "")), fut))
        return {"label": await fut}
    finally:
        IN_PROGRESS.dec()
        DURATION.observe(time.monotonic() - started)
