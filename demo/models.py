"""The torch models behind each scenario; each is sized so its bottleneck is real on this kind of machine.

Each model takes one batch (a list of token-id lists, one per request) and returns one float per request,
synchronising with the device (``.tolist()``), as a server must before it can answer.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Protocol

with warnings.catch_warnings():
    # The CPU wheels warn when NumPy is absent; the demo never uses NumPy.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    import torch

#: Set to 1, the memory_io scenario's host buffer is pinned (benchmarks/device_check.py compares both kinds).
PINNED_ENV = "OPTITOP_DEMO_PINNED"


class Model(Protocol):
    """What the model workers call."""

    def run(self, batch: list[list[int]]) -> list[float]:
        """One float per request in ``batch``."""
        ...


def pick_device(requested: str) -> str:
    """``cuda`` when torch sees a GPU (or when asked for), else ``cpu``."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    return requested


def configure_threads(all_cores: bool) -> int:
    """Use every core for kernels that scale (compute, memory streaming), one thread otherwise."""
    threads = len(os.sched_getaffinity(0)) if all_cores else 1
    torch.set_num_threads(threads)
    return threads


class MlpModel:
    """A wide two-block MLP over many rows per request: matrix-multiply (math) bound.

    On CPU each request is 64 rows through 1024→4096→1024 twice (~2 GFLOP). On a GPU each request is 4096 rows in
    bf16 through 4096→16384→4096 eight times (~9 TFLOP, ~15 ms on an H100), so the tensor cores stay busy and
    the Python around each request is noise.
    """

    def __init__(self, device: str, max_batch: int) -> None:
        """Build the weights and a reusable input buffer for the largest batch."""
        gpu = device != "cpu"
        self.rows = 4096 if gpu else 64
        self.depth = 4 if gpu else 1  # passes through the two blocks
        dim, hidden = (4096, 16384) if gpu else (1024, 4096)
        dtype = torch.bfloat16 if gpu else torch.float32
        self.device = device
        self.net = torch.nn.Sequential(
            torch.nn.Linear(dim, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, dim),
            torch.nn.Linear(dim, hidden),
            torch.nn.GELU(),
            torch.nn.Linear(hidden, dim),
        ).to(device=device, dtype=dtype)
        self.inputs = torch.randn(max_batch * self.rows, dim, device=device, dtype=dtype)

    @torch.inference_mode()
    def run(self, batch: list[list[int]]) -> list[float]:
        """Push ``rows`` rows per request through the MLP and reduce each request to its mean."""
        n = len(batch)
        out = self.inputs[: n * self.rows]
        for _ in range(self.depth):
            out = self.net(out)
        per_request = out.float().reshape(n, -1).mean(dim=1)
        return [float(v) for v in per_request.tolist()]


class StreamModel:
    """Gathers from a large embedding table and runs elementwise passes over the result: memory bound.

    On CPU every request gathers 32 Ki random rows of a ~200 MB table (a 16 MB tensor, twice the L3 here) and
    streams it through three elementwise passes. On a GPU every request copies a 64 MB pageable host buffer to
    the device and back, with a trivial kernel in between, so the time goes to host↔device transfers.
    """

    def __init__(self, device: str, max_batch: int) -> None:
        """Allocate the table (CPU) or the pageable host buffer (GPU)."""
        self.device = device
        if device == "cpu":
            self.table = torch.randn(400_000, 128)
            self.scale = torch.randn(128)
        else:
            self.host = torch.randn(16 * 1024 * 1024)  # 64 MB, pageable on purpose (not pin_memory())
            if os.environ.get(PINNED_ENV) == "1":  # the device check's pinned variant of the same scenario
                self.host = self.host.pin_memory()

    @torch.inference_mode()
    def run(self, batch: list[list[int]]) -> list[float]:
        """One memory-heavy pass per request."""
        return [self._one() for _ in batch]

    def _one(self) -> float:
        if self.device == "cpu":
            idx = torch.randint(0, self.table.shape[0], (32_768,))
            rows = self.table.index_select(0, idx)
            rows = torch.relu(rows * self.scale + 1.0)
            return float((rows + rows.flip(0)).sum())
        on_device = self.host.to(self.device)
        back = (on_device * 2.0).cpu()
        return float(back[0])


class PreallocStreamModel(StreamModel):
    """The CPU stream of :class:`StreamModel` into buffers allocated once: memory bound without page churn.

    Every request gathers the same number of random rows into a preallocated tensor and runs the elementwise
    passes in place, so no fresh pages are faulted in per request (servers with caching allocators and
    preallocated KV or activation buffers look like this): only the ops themselves say it streams memory.
    On a GPU it is the stream model's host↔device copies.
    """

    ROWS = 32_768

    def __init__(self, device: str, max_batch: int) -> None:
        """The table and every per-request buffer, allocated and touched once."""
        super().__init__(device, max_batch)
        if device == "cpu":
            self.idx = torch.empty(self.ROWS, dtype=torch.long)
            self.reverse = torch.arange(self.ROWS - 1, -1, -1)
            self.rows = torch.empty(self.ROWS, self.table.shape[1])
            self.flipped = torch.empty_like(self.rows)
            self.rows.zero_()
            self.flipped.zero_()

    def _one(self) -> float:
        if self.device != "cpu":
            return super()._one()
        self.idx.random_(0, self.table.shape[0])
        torch.index_select(self.table, 0, self.idx, out=self.rows)
        self.rows.mul_(self.scale).add_(1.0).relu_()
        torch.index_select(self.rows, 0, self.reverse, out=self.flipped)  # rows.flip(0), into a kept buffer
        self.rows.add_(self.flipped)
        return float(self.rows.sum())


class TinyModel:
    """An embedding bag and a few small layers: negligible math, so something else must be the bottleneck.

    It runs a short decode-style loop with one ``.item()`` per step, which on a GPU is launch-bound by design.
    """

    def __init__(self, device: str, max_batch: int) -> None:
        """Small weights on the chosen device."""
        self.device = device
        self.embed = torch.nn.EmbeddingBag(1000, 32, mode="mean").to(device)
        self.step = torch.nn.Linear(32, 32).to(device)
        self.head = torch.nn.Linear(32, 1).to(device)

    @torch.inference_mode()
    def run(self, batch: list[list[int]]) -> list[float]:
        """Embed each request's tokens, take four small steps, and read one number per request."""
        flat = [t % 1000 for ids in batch for t in (ids or [0])]
        offsets: list[int] = []
        total = 0
        for ids in batch:
            offsets.append(total)
            total += len(ids) or 1
        h = self.embed(
            torch.tensor(flat, device=self.device),
            torch.tensor(offsets, device=self.device),
        )
        for _ in range(4):
            h = torch.tanh(self.step(h))
            if float(h.abs().max().item()) > 1e6:  # a sync per step, as decode loops do
                break
        return [float(v) for v in self.head(h).squeeze(1).tolist()]


KINDS: dict[str, Callable[[str, int], Model]] = {
    "mlp": MlpModel,
    "stream": StreamModel,
    "stream_prealloc": PreallocStreamModel,
    "tiny": TinyModel,
}


def build(kind: str, device: str, max_batch: int) -> Model:
    """Build a model by kind and run it once so the first request does not pay for warm-up."""
    model: Model = KINDS[kind](device, max_batch)
    model.run([[1, 2, 3]])
    return model
