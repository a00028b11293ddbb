"""``optitop demo``: start a bundled workload and attach the live screen to it (placeholder until the server lands)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence

WORKLOAD = """
import threading, time, torch
torch.set_num_threads(1)
def model():
    a = torch.randn(256, 256)
    while True:
        (a @ a).sum().item()
threading.Thread(target=model, name="model-worker", daemon=True).start()
while True:
    time.sleep(1)
"""


def main(argv: Sequence[str]) -> int:
    """Start the workload, attach, and stop the workload when the screen closes."""
    parser = argparse.ArgumentParser(prog="optitop demo")
    parser.add_argument("--serve-only", action="store_true", help="print the workload's pid and wait")
    args = parser.parse_args(list(argv))
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD])
    try:
        if args.serve_only:
            print(proc.pid, flush=True)
            proc.wait()
            return 0
        from optitop.cli import main as optitop_main

        return optitop_main(["--pid", str(proc.pid)])
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
