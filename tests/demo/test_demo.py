"""The demo for real: `optitop demo --serve-only` processes, their /metrics, their load, and their clean-up."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

from optitop.demo.scenarios import SCENARIOS

START_S = 120.0  # torch import + model build on a busy 2-core machine
PREFIX = "optitop_demo:"
# The installed command, as a user runs it (``python -m`` from the checkout would import its optitop/ folder).
OPTITOP = os.path.join(os.path.dirname(sys.executable), "optitop")


@dataclass
class Running:
    """One `optitop demo --serve-only` process and what it printed."""

    demo: subprocess.Popen[str]
    pid: int
    metrics_url: str

    @property
    def base_url(self) -> str:
        return self.metrics_url.rsplit("/", 1)[0]


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The child's stdout lines, read on a thread so each wait can have a deadline."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _readline(lines: queue.Queue[str], timeout_s: float) -> str:
    """One line, or fail at the deadline (the demo must say its pid once the server is ready)."""
    try:
        return lines.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout_s} s") from None


@pytest.fixture
def serve() -> Iterator[Callable[..., Running]]:
    """Start `optitop demo --scenario X --serve-only`; killed with every descendant at teardown."""
    started: list[subprocess.Popen[str]] = []
    descendants: list[psutil.Process] = []

    def start(scenario: str, *extra: str) -> Running:
        argv = [OPTITOP, "demo", "--scenario", scenario, "--serve-only", *extra]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        lines = _lines(proc)
        first = _readline(lines, START_S)
        assert first.strip().isdigit(), f"first line must be the pid alone, got {first!r}"
        # Everything is started before the pid is printed: remember it all, so teardown can kill orphans too.
        descendants.extend(psutil.Process(proc.pid).children(recursive=True))
        url = _readline(lines, 10).strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics"), url
        return Running(proc, int(first), url)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    for child in descendants:
        try:
            child.kill()
        except psutil.Error:
            continue


def scrape(url: str) -> dict[str, float]:
    """Parse the exposition with prometheus_client's own parser: sample name (+ /outcome) -> value."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(fetch(url)):
        for sample in family.samples:
            key = sample.name + (f"/{sample.labels['outcome']}" if "outcome" in sample.labels else "")
            values[key] = sample.value
    return values


def metric_types(url: str) -> dict[str, str]:
    """Family name -> Prometheus type (gauge, counter, histogram)."""
    return {family.name: family.type for family in text_string_to_metric_families(fetch(url))}


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def thread_names(pid: int) -> set[str]:
    """The OS names of a process's threads (what monitors read)."""
    names = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm") as fh:
                names.add(fh.read().strip())
        except OSError:
            continue
    return names


def assert_all_gone(procs: list[psutil.Process], timeout_s: float = 20.0) -> None:
    """Every process in ``procs`` exits (a zombie awaiting its dead parent's reaper counts as gone)."""

    def alive() -> list[psutil.Process]:
        out = []
        for p in procs:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                continue
        return out

    wait_for(lambda: not alive(), timeout_s)


def test_every_scenario_names_a_known_model_and_category() -> None:
    from optitop.demo.models import KINDS
    from optitop.model import CATEGORIES

    assert {s.category for s in SCENARIOS.values()} == set(CATEGORIES) - {"unknown"}  # every class has one
    assert "memory_io_stream" in SCENARIOS  # memory-bound without fresh pages (issue 22)
    for scenario in SCENARIOS.values():
        assert scenario.model in KINDS
        assert scenario.category in CATEGORIES
        assert (scenario.load is None) == (scenario.name == "idle")


def test_scheduling_queues_while_cpu_is_free_and_sigterm_stops_everything(serve) -> None:
    run = serve("scheduling", "--duration", "120")
    server = psutil.Process(run.pid)
    demo = psutil.Process(run.demo.pid)
    assert server.ppid() == run.demo.pid
    children = demo.children(recursive=True)
    assert {c.pid for c in children} >= {run.pid} and len(children) == 2, "server + load generator"
    assert {"http-acceptor", "batcher", "model-worker"} <= thread_names(run.pid)

    types = metric_types(run.metrics_url)
    for name in ("num_requests_waiting", "num_requests_running", "batch_current_size", "batch_max_size"):
        assert types.get(f"{PREFIX}{name}") == "gauge", name
    for name in ("request_queue_time_seconds", "time_to_first_token_seconds", "e2e_request_latency_seconds"):
        assert types.get(f"{PREFIX}{name}") == "histogram", name
    assert types.get(f"{PREFIX}requests") == "counter"

    # Static batching with a 1.5 s timeout at 10 req/s: requests wait while the CPU idles.
    cpu_before, t_before = sum(server.cpu_times()[:2]), time.monotonic()
    wait_for(lambda: scrape(run.metrics_url)[f"{PREFIX}num_requests_waiting"] >= 2, 30)
    wait_for(lambda: scrape(run.metrics_url).get(f"{PREFIX}requests_total/ok", 0) >= 10, 30)
    wait_for(lambda: time.monotonic() - t_before >= 2.0, 5)
    cpu_pct = (sum(server.cpu_times()[:2]) - cpu_before) / (time.monotonic() - t_before) * 100
    assert cpu_pct < 50, f"the scheduling server should leave the CPU mostly free, used {cpu_pct:.0f} % of a core"
    after = scrape(run.metrics_url)
    assert after[f"{PREFIX}request_queue_time_seconds_count"] >= 10
    mean_queue_s = after[f"{PREFIX}request_queue_time_seconds_sum"] / after[f"{PREFIX}request_queue_time_seconds_count"]
    assert mean_queue_s > 0.2, "requests really waited for the static batch"

    run.demo.send_signal(signal.SIGTERM)
    assert run.demo.wait(30) == 0
    assert_all_gone(children)


def test_network_worker_waits_on_upstream_and_children_die_with_a_killed_demo(serve) -> None:
    run = serve("network", "--duration", "120")
    demo = psutil.Process(run.demo.pid)
    children = wait_for(lambda: (c := demo.children()) and len(c) == 3 and c, 20)
    upstream = next(c for c in children if "optitop.demo.upstream" in c.cmdline())
    upstream_ports = {c.laddr.port for c in upstream.net_connections("tcp") if c.status == psutil.CONN_LISTEN}

    def upstream_connected() -> bool:
        conns = psutil.Process(run.pid).net_connections("tcp")
        return any(c.raddr and c.raddr.port in upstream_ports and c.status == psutil.CONN_ESTABLISHED for c in conns)

    wait_for(upstream_connected, 30)
    metrics = wait_for(
        lambda: (m := scrape(run.metrics_url)).get(f"{PREFIX}e2e_request_latency_seconds_count", 0) >= 10 and m, 30
    )
    count = metrics[f"{PREFIX}e2e_request_latency_seconds_count"]
    in_service_s = (
        metrics[f"{PREFIX}e2e_request_latency_seconds_sum"] - metrics[f"{PREFIX}request_queue_time_seconds_sum"]
    ) / count
    delay_s = SCENARIOS["network"].upstream_delay_s
    assert delay_s is not None and in_service_s >= delay_s * 0.9, "each request waited on the upstream"

    py_spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if os.path.exists(py_spy):

        def worker_in_upstream_read() -> bool:
            out = subprocess.run([py_spy, "dump", "--pid", str(run.pid), "--json"], capture_output=True, text=True)
            if out.returncode != 0:
                pytest.skip(f"py-spy cannot read the server here: {out.stderr.strip()[:200]}")
            for thread in json.loads(out.stdout):
                names = [frame["name"] for frame in thread["frames"]]
                if (
                    thread["thread_name"].startswith("model-worker")
                    and any(name.endswith("features") for name in names)
                    and names[0].endswith(("readinto", "recv_into"))
                ):
                    return True
            return False

        wait_for(worker_in_upstream_read, 20, every_s=0.2)

    # SIGKILL leaves no chance to clean up: PR_SET_PDEATHSIG must take the children down.
    run.demo.kill()
    run.demo.wait(10)
    assert_all_gone(children)


def test_idle_serves_metrics_with_no_load_and_the_bounded_load_generator_stops_itself(serve) -> None:
    run = serve("idle", "--duration", "60")
    demo = psutil.Process(run.demo.pid)
    assert [c.pid for c in demo.children()] == [run.pid], "idle starts no load generator"
    idle = scrape(run.metrics_url)
    assert idle[f"{PREFIX}num_requests_waiting"] == 0
    assert idle[f"{PREFIX}num_requests_running"] == 0
    assert idle.get(f"{PREFIX}requests_total/ok", 0) == 0

    load = subprocess.run(
        [sys.executable, "-P", "-m", "optitop.demo.load", "--url", run.base_url, "--concurrency", "2"]
        + ["--max-requests", "7", "--duration", "30"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert load.returncode == 0, load.stderr
    summary = json.loads(load.stdout.strip().splitlines()[-1])
    assert summary["sent"] == 7 and summary["ok"] == 7, summary
    assert scrape(run.metrics_url)[f"{PREFIX}requests_total/ok"] == 7

    server = psutil.Process(run.pid)
    run.demo.send_signal(signal.SIGINT)
    assert run.demo.wait(30) == 0
    assert_all_gone([server])


def test_duration_ends_the_demo_by_itself(serve) -> None:
    run = serve("none", "--duration", "4")
    children = psutil.Process(run.demo.pid).children()
    assert len(children) == 2
    assert run.demo.wait(30) == 0
    assert_all_gone(children)


def test_open_loop_arrivals_are_poisson_at_the_asked_rate_and_repeat_with_the_seed() -> None:
    # Evenly spaced arrivals phase-lock with periodic scrapes; exponential gaps (coefficient of variation 1)
    # are what real clients and serving benchmarks send.
    from optitop.demo.load import Plan

    def arrivals(seed: int) -> list[float]:
        plan = Plan("127.0.0.1", 1, 5.0, 2000, time.monotonic() + 3600, ["x"], seed=seed)
        return [slot[1] - plan.started_s for slot in iter(plan.next_slot, None)]

    at = arrivals(0)
    gaps = [b - a for a, b in zip([0.0, *at], at, strict=False)]
    mean_s = sum(gaps) / len(gaps)
    sd_s = (sum((g - mean_s) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert len(at) == 2000
    assert 0.18 < mean_s < 0.22  # 5 per second
    assert 0.8 < sd_s / mean_s < 1.2  # exponential, not evenly spaced (that reads 0)
    assert [round(a - b, 9) for a, b in zip(arrivals(0), at, strict=True)] == [0.0] * 2000
    assert arrivals(1) != at
