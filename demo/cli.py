"""``optitop demo``: start the bundled inference server and its load, then attach the live screen to it.

Processes, all direct children of this one: the slow upstream (network scenario only), the server (whose pid
is the one to watch) and the load generator. They die with this process (``PR_SET_PDEATHSIG``) and are stopped
when the screen closes, on SIGTERM/SIGINT, or after ``--duration``.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType

from optitop.commands.waiting import StopReason, wait_for_stop
from optitop.demo import procs
from optitop.demo.scenarios import SCENARIOS, Scenario

SERVER_START_S = 180.0  # importing torch and building the model on a loaded 2-core machine
HELPER_START_S = 30.0
LOAD_BOUND_S = 3600.0  # without --duration the load still stops by itself
LOAD_MAX_REQUESTS = 1_000_000
SERVE_POLL_S = 0.25  # how often --serve-only looks whether the server is still there


@dataclass
class Demo:
    """The processes one demo started, in start order."""

    scenario: Scenario
    server: subprocess.Popen[str] | None = None
    url: str = ""
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    @property
    def metrics_url(self) -> str:
        """Where the server's Prometheus metrics are."""
        return f"{self.url}/metrics"

    def stop(self) -> None:
        """Stop everything, load first so the server is not answering errors while it shuts down."""
        procs.stop(list(reversed(self.started)))


def parser() -> argparse.ArgumentParser:
    """The ``optitop demo`` arguments."""
    from optitop.args import DURATION_S, Parser, bounded

    def port(text: str) -> int:
        value = int(bounded(0, 65535)(text))
        if str(value) != text.strip():
            raise argparse.ArgumentTypeError(f"not a port: {text!r}")
        return value

    p = Parser(
        prog="optitop demo",
        description="Start a bundled PyTorch inference server under a scenario's load and watch it live.",
        epilog="Scenarios: " + "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values()),
    )
    p.add_argument("--scenario", default="compute", choices=list(SCENARIOS), help="the bottleneck to induce")
    p.add_argument(
        "--serve-only", action="store_true", help="print the server's pid (then its metrics URL) and keep serving"
    )
    p.add_argument(
        "--duration",
        type=bounded(*DURATION_S, " s"),
        default=None,
        metavar="S",
        help=f"stop everything after S seconds (up to {DURATION_S[1]:g})",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the model runs")
    p.add_argument("--port", type=port, default=0, help="the server's port, 0-65535 (default 0: a free one)")
    return p


def start(scenario: Scenario, device: str, port: int, duration_s: float | None) -> Demo:
    """Start upstream (if any), server and load, each once the one before it is ready."""
    demo = Demo(scenario)
    try:
        server_args = ["--scenario", scenario.name, "--device", device, "--port", str(port)]
        if scenario.upstream_delay_s is not None:
            upstream = procs.spawn("upstream", ["--delay", str(scenario.upstream_delay_s)])
            demo.started.append(upstream)
            upstream_port = procs.read_ready(upstream, HELPER_START_S)
            server_args += ["--upstream-url", f"http://127.0.0.1:{upstream_port}"]
        demo.server = procs.spawn("server", server_args)
        demo.started.append(demo.server)
        demo.url = f"http://127.0.0.1:{procs.read_ready(demo.server, SERVER_START_S)}"
        if scenario.load is not None:
            load = scenario.load
            load_args = [
                "--url", demo.url,
                "--concurrency", str(load.concurrency),
                "--rate", str(load.rate_per_s or 0),
                "--duration", str(duration_s or LOAD_BOUND_S),
                "--max-requests", str(LOAD_MAX_REQUESTS),
                "--text-chars", str(load.text_chars),
            ]  # fmt: skip
            demo.started.append(procs.spawn("load", load_args))
    except BaseException:
        demo.stop()
        raise
    return demo


def serve(demo: Demo, duration_s: float | None, stopped: threading.Event) -> int:
    """Print the pid and the metrics URL, then wait for a signal, the duration, or the server's exit."""
    assert demo.server is not None
    server = demo.server
    print(server.pid, flush=True)
    print(demo.metrics_url, flush=True)
    why = wait_for_stop(stopped, lambda: server.poll() is not None, duration_s=duration_s, poll_s=SERVE_POLL_S)
    if why is StopReason.TARGET_EXITED:
        print(f"optitop demo: the server exited with status {server.returncode}", file=sys.stderr, flush=True)
        return 1
    return 0


def attach(demo: Demo, duration_s: float | None) -> int:
    """Run the live screen on the server's pid; with a duration, stop the demo (and so the screen) in time."""
    assert demo.server is not None
    from optitop.commands.top import top_main

    if duration_s is not None:
        timer = threading.Timer(duration_s, signal.raise_signal, args=(signal.SIGTERM,))
        timer.daemon = True
        timer.start()
    return top_main(["--pid", str(demo.server.pid), "--metrics-url", demo.metrics_url])


def main(argv: Sequence[str]) -> int:
    """Start the demo, serve or attach, and always stop what was started."""
    args = parser().parse_args(list(argv))
    scenario = SCENARIOS[args.scenario]
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()
        if not args.serve_only:
            raise KeyboardInterrupt  # unwinds the screen; the finally below stops the children

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    demo: Demo | None = None
    try:
        demo = start(scenario, args.device, args.port, args.duration)
        if args.serve_only:
            return serve(demo, args.duration, stopped)
        return attach(demo, args.duration)
    except KeyboardInterrupt:
        return 0 if stopped.is_set() else 130
    except RuntimeError as exc:
        print(f"optitop demo: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if demo is not None:
            demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
