"""End to end on a real target: the asyncio adaptive batcher of issue 22 (benchmarks/wild/batcher_server.py), loaded
by optitop's own generator, judged by ``optitop --once --json`` as a user would run it.

Before issue 22 this read "none" (its event loop's selector wait counted as network and vetoed the scheduling
rules); now it must read scheduling, with the latency decomposition in the JSON saying where the time goes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"
pytest.importorskip("prometheus_client", reason="the batcher exports its metrics with prometheus-client")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def batcher() -> Iterator[tuple[int, str, str]]:
    port, mport = _port(), _port()
    script = ROOT / "benchmarks" / "wild" / "batcher_server.py"
    cmd = [sys.executable, str(script), "--port", str(port), "--metrics-port", str(mport)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    try:
        pid = int(proc.stdout.readline())
        metrics = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "ready"
        yield pid, f"http://127.0.0.1:{port}/infer", metrics
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def test_an_adaptive_batcher_under_light_load_is_scheduling_with_its_latency_decomposed(batcher):
    pid, url, metrics = batcher
    load = subprocess.Popen(
        [sys.executable, "-m", "optitop.demo.load", "--url", url, "--duration", "30", "--concurrency", "4",
         "--parent-pid", str(os.getpid())],
        stdout=subprocess.DEVNULL, start_new_session=True, cwd="/",
    )  # fmt: skip
    try:
        done = subprocess.run(
            [OPTITOP, "--pid", str(pid), "--once", "--json", "--duration", "8", "--metrics-url", metrics],
            capture_output=True, text=True, timeout=60, cwd="/",
        )  # fmt: skip
    finally:
        os.killpg(load.pid, signal.SIGKILL)
        load.wait(10)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)["diagnosis"]
    assert verdict["category"] == "scheduling", verdict["evidence"]
    lat = verdict["latency"]
    assert lat["absent"] == "" and lat["residence_s"] > 0.3  # the 0.5 s batch timer
    assert lat["waiting_share"] > 0.9 and "inside the server" in lat["waiting_where"]
    assert "p50 of the server's request-duration histogram" in lat["residence_from"]
