"""Ray Serve app for the framework benchmark: one deployment, configured into a bottleneck class.

Runs from the framework virtualenv (``.venv-frameworks/bin/python ray_app.py --case compute``). It starts a
local Ray instance with its Prometheus export on ``--metrics-port``, deploys one replica behind Serve's HTTP
proxy on ``--http-port`` (route ``/infer``, JSON ``{"text": ...}``), prints one JSON line
``{"replica_pid": N, "url": ..., "metrics_url": ...}`` and serves until SIGTERM/SIGINT, then shuts Serve
and Ray down.

Cases (each set by Serve's own options and the work per request; no sleeps, no faked numbers):

- ``compute``: a 1024x4096 MLP over 256 rows per request, replica with 2 CPUs (torch uses both cores).
- ``scheduling``: ``max_ongoing_requests=1`` on one replica and ``@serve.batch`` with a 250 ms
  ``batch_wait_timeout_s``: each request waits for the batch timer alone while the CPU is free, and the rest
  queue in front of the replica.
- ``host_cpu``: a pure-Python tokenizer (holds the GIL) in front of a tiny model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import threading
from typing import Any

import ray
import torch
from ray import serve
from starlette.requests import Request

WORD = re.compile(r"\w+|[^\w\s]")


class MLP(torch.nn.Module):
    """Two linear layers with random (seeded) weights."""

    def __init__(self, width: int, hidden: int) -> None:
        """Random weights: the benchmark measures serving, not accuracy."""
        super().__init__()
        self.up = torch.nn.Linear(width, hidden)
        self.down = torch.nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass."""
        return self.down(torch.relu(self.up(x)))


def tokenize(text: str, rounds: int) -> list[int]:
    """A deliberately interpreted byte-pair-style tokenizer: ``rounds`` merge passes in pure Python."""
    ids = [ord(c) % 256 for c in text]
    for _ in range(rounds):
        merged: list[int] = []
        i = 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i] + ids[i + 1]) % 7 == 0:
                merged.append((ids[i] * 31 + ids[i + 1]) % 50_000)
                i += 2
            else:
                merged.append(ids[i])
                i += 1
        ids = merged + [len(WORD.findall(text[: 64 + len(merged) % 64]))]
    return ids


class Replica:
    """What every case's deployment answers besides requests."""

    def pid(self) -> int:
        """The replica's pid, for the benchmark to attach to."""
        return os.getpid()


def tiny_model() -> MLP:
    """A small model on one thread: for the cases where the CPU is not what limits the replica."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return MLP(64, 256).train(False)  # inference mode (nn.Module.eval)


# Serve runs a sync __call__ on worker threads; with libgomp a thread's OpenMP team size comes from
# OMP_NUM_THREADS (torch.set_num_threads in __init__ only sets it for the actor's main thread), so give it
# through Ray's own runtime_env: otherwise each request computes on one core.
@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=4,
    ray_actor_options={"num_cpus": 2, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2"}}},
)
class Compute(Replica):
    """Big MLP per request: the replica's cores sit in GEMM kernels."""

    def __init__(self) -> None:
        """Both cores for torch (Ray sets OMP_NUM_THREADS from num_cpus; be explicit)."""
        torch.set_num_threads(2)
        torch.manual_seed(0)
        self.model = MLP(1024, 4096).train(False)  # inference mode (nn.Module.eval)

    def __call__(self, request: Request) -> dict[str, float]:
        """256 rows of 1024 features through the MLP (big enough that the proxy's per-request CPU is small)."""
        x = torch.randn(256, 1024)
        with torch.inference_mode():
            return {"score": float(self.model(x).mean())}


@serve.deployment(num_replicas=1, max_ongoing_requests=1, ray_actor_options={"num_cpus": 1})
class Scheduling(Replica):
    """Admission of one request at a time into a batcher that waits 250 ms for company that never comes."""

    def __init__(self) -> None:
        """A tiny model: the CPU is not what limits this replica."""
        self.model = tiny_model()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.25)
    async def infer(self, texts: list[str]) -> list[dict[str, float]]:
        """One batched forward pass for whatever arrived before the timer fired."""
        x = torch.randn(len(texts), 64)
        with torch.inference_mode():
            y = self.model(x).mean(dim=1)
        return [{"score": float(v)} for v in y]

    async def __call__(self, request: Request) -> dict[str, float]:
        """Hand the request text to the batcher."""
        body: dict[str, Any] = await request.json()
        return await self.infer(str(body.get("text", "")))


@serve.deployment(num_replicas=1, max_ongoing_requests=8, ray_actor_options={"num_cpus": 1})
class HostCpu(Replica):
    """Pure-Python tokenisation (the GIL) in front of a tiny model."""

    def __init__(self) -> None:
        """A tiny model: the interpreter, not the math, is the work."""
        self.model = tiny_model()

    async def __call__(self, request: Request) -> dict[str, float]:
        """Tokenise in Python on the replica's event loop (as a naive handler does), then a small forward pass."""
        body: dict[str, Any] = await request.json()
        ids = tokenize(str(body.get("text", "")) * 4, rounds=6)
        x = torch.tensor((ids + [0] * 64)[:64], dtype=torch.float32).view(1, 64)
        with torch.inference_mode():
            return {"score": float(self.model(x).mean()), "tokens": float(len(ids))}


APPS = {"compute": Compute, "scheduling": Scheduling, "host_cpu": HostCpu}


def main() -> int:
    """Start Ray and Serve, deploy the case, print where it is, serve until told to stop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=sorted(APPS), required=True)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--metrics-port", type=int, default=8090)
    parser.add_argument("--temp-dir", default=None, help="Ray's session folder (logs, sockets); default /tmp/ray")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _metrics_export_port=args.metrics_port,
        log_to_driver=False,
        configure_logging=False,
        _temp_dir=args.temp_dir,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.http_port})
        handle = serve.run(APPS[args.case].bind(), name=args.case, route_prefix="/infer")
        pid = handle.pid.remote().result(timeout_s=120)
        print(
            json.dumps(
                {
                    "replica_pid": pid,
                    "url": f"http://127.0.0.1:{args.http_port}/infer",
                    "metrics_url": f"http://127.0.0.1:{args.metrics_port}/metrics",
                }
            ),
            flush=True,
        )
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
