"""TorchServe handler for the framework benchmark: a small MLP with random weights, on CPU.

It runs inside TorchServe's Python worker (the framework virtualenv, not optitop's). The work per request
comes from the archive's model-config.yaml (``handler:`` section), so one handler serves every case and each
case differs only by TorchServe's own configuration (batchSize, maxBatchDelay, workers) and the load:

    handler:
      rows: 64        # input rows per request: the matmul size, i.e. CPU math per request
      hidden: 4096    # MLP width
      threads: 2      # torch intra-op threads

No weights are loaded from anywhere: the model is defined here and seeded, so nothing needs the network.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch


class MLP(torch.nn.Module):
    """Two linear layers: enough GEMM work to keep CPU cores in math kernels."""

    def __init__(self, width: int, hidden: int) -> None:
        """Random weights (seeded): the benchmark measures serving, not accuracy."""
        super().__init__()
        self.up = torch.nn.Linear(width, hidden)
        self.down = torch.nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One forward pass."""
        return self.down(torch.relu(self.up(x)))


class Handler:
    """TorchServe custom-handler entry point (``initialize`` once per worker, then ``handle`` per batch)."""

    def __init__(self) -> None:
        """Nothing until TorchServe hands over the context."""
        self.model: MLP | None = None
        self.rows = 1
        self.width = 1024

    def initialize(self, context: Any) -> None:
        """Build the model from the archive's model-config.yaml ``handler`` section."""
        cfg = dict((getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {})
        self.rows = int(cfg.get("rows", 1))
        self.width = int(cfg.get("width", 1024))
        torch.set_num_threads(int(cfg.get("threads", os.cpu_count() or 1)))
        torch.manual_seed(0)
        self.model = MLP(self.width, int(cfg.get("hidden", 4096))).train(False)  # inference mode (nn.Module.eval)

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        """One answer per request of the batch TorchServe assembled."""
        assert self.model is not None
        x = torch.randn(len(data) * self.rows, self.width)
        with torch.inference_mode():
            y = self.model(x)
        per = y.view(len(data), self.rows, self.width).mean(dim=(1, 2))
        return [json.dumps({"score": float(v)}) for v in per]


_service = Handler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[str] | None:
    """Module-level entry point TorchServe calls (``--handler ts_handler:handle``)."""
    if _service.model is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
