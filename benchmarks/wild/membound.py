"""A CPU torch step dominated by memory streaming (issue 22, case b): no fresh pages, no GEMM.

Every buffer is allocated once up front (so the page-fault signal that catches the demo's memory_io
scenario stays quiet); each step streams three ~192 MB tensors through ``copy_``/``mul_``/``add_`` and
gathers rows from a large embedding-like table with ``index_select(out=...)``, on two intra-op threads.
Far beyond any cache: the cores wait on DRAM, not on arithmetic.

    python benchmarks/wild/membound.py [--tensor-mb 192] [--table-mb 768] [--threads 2]

Prints its pid, then ``ready`` once the buffers are touched; runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tensor-mb", type=int, default=192)
    parser.add_argument("--table-mb", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    torch.set_num_threads(args.threads)
    print(os.getpid(), flush=True)
    n = args.tensor_mb * (1 << 20) // 4
    a, b, c = torch.rand(n), torch.rand(n), torch.empty(n)
    dim = 256
    table = torch.rand(args.table_mb * (1 << 20) // (4 * dim), dim)
    gen = torch.Generator().manual_seed(0)
    rows = (64 << 20) // (4 * dim)  # 64 MB gathered per step
    idx = torch.randint(0, table.shape[0], (rows,), generator=gen)
    gathered = torch.empty(rows, dim)
    c.copy_(a)
    torch.index_select(table, 0, idx, out=gathered)
    print("ready", flush=True)
    with torch.no_grad():
        while True:
            c.copy_(a)
            c.mul_(1.0001)
            c.add_(b)
            torch.index_select(table, 0, idx, out=gathered)
            a.copy_(c)


if __name__ == "__main__":
    sys.exit(main())
