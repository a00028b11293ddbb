"""Soak: optitop attached for minutes at a fast interval; its RSS and open fds must be flat after warm-up.

    python benchmarks/soak.py [--minutes 3] [--interval 0.05] [--history 5] [--every 15]

A real target is started (a small Python server: a duty-cycled busy thread, a Prometheus ``/metrics``
endpoint on loopback, a log file it appends to, and a short-lived child process every second), then every
collector runs in this process (``optitop.runtime.make_session``) at ``--interval`` with a short ``--history``,
so each ring buffer wraps many times over. Every ``--every`` seconds the script prints this process's RSS and
open fds, the samples held, and each source's state. At the end it compares the warm-up figures (after the
first sixth of the run, at least 20 s) with the end: flat means the RSS grew less than ``--rss-slack-mib``
and the floor of open fds (the fewest open between scrapes and
py-spy runs) did not rise. Exit status 0 = flat, 1 = growth, 2 = the target or a source broke.

Why in-process: leaks live in the collectors, the store and the analyzer; measuring the TUI would add Textual's
own caches and a terminal to the figure without saying anything more about them.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass

import psutil

from optitop.config import Options
from optitop.model import SourceState
from optitop.runtime import make_session
from optitop.session import Session

#: The target: it prints its metrics port, then serves until killed.
TARGET = textwrap.dedent(
    """
    import http.server, os, subprocess, sys, threading, time
    log_path = sys.argv[1]
    requests = 0
    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = (
                "# TYPE soak_requests_total counter\\n"
                f"soak_requests_total {requests}\\n"
                "# TYPE soak_queue_depth gauge\\n"
                f"soak_queue_depth {requests % 7}\\n"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    def busy():
        global requests
        while True:
            end = time.monotonic() + 0.02
            while time.monotonic() < end:
                pass
            requests += 1
            time.sleep(0.08)
    def logger():
        with open(log_path, "a", buffering=1) as fh:
            while True:
                fh.write(f"INFO request done status=200 latency_ms={requests % 50} n={requests}\\n")
                time.sleep(0.1)
    def spawner():
        while True:
            subprocess.run([sys.executable, "-c", "pass"], check=False)
            time.sleep(1.0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    for fn in (busy, logger, spawner, server.serve_forever):
        threading.Thread(target=fn, daemon=True).start()
    print(server.server_address[1], flush=True)
    while True:
        time.sleep(1)
    """
)


@dataclass(frozen=True, slots=True)
class Reading:
    """optitop's own footprint at one moment of the soak."""

    elapsed_s: float
    rss_bytes: int
    num_fds: int
    num_threads: int
    samples_held: int


def start_target(log_path: str) -> tuple[subprocess.Popen[str], int]:
    """The target process and its metrics port."""
    proc = subprocess.Popen([sys.executable, "-c", TARGET, log_path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        raise SystemExit(f"soak: the target did not start ({line!r})")
    return proc, int(line)


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Until the metrics port accepts connections (so discovery finds it on its first round)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"soak: port {port} never opened")


def reading(me: psutil.Process, session: Session, start: float) -> Reading:
    """This process's RSS, fds and threads, and how many samples the store holds (bounded by --history)."""
    gc.collect()
    window = session.store.window()
    held = sum(len(v) for v in window.samples.values()) + len(window.diagnoses)
    return Reading(time.monotonic() - start, me.memory_info().rss, me.num_fds(), me.num_threads(), held)


def show(r: Reading, session: Session, total_samples: int) -> None:
    """One progress line."""
    states = ",".join(
        f"{name}={st.state.value if hasattr(st.state, 'value') else st.state}"
        for name, st in sorted(session.store.statuses().items())
    )
    print(
        f"t={r.elapsed_s:6.0f}s rss={r.rss_bytes / 2**20:7.1f} MiB fds={r.num_fds:3d} threads={r.num_threads:3d} "
        f"held={r.samples_held:5d} added={total_samples:7d} [{states}]",
        flush=True,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="how long to soak (default 3)")
    p.add_argument("--interval", type=float, default=0.05, help="sampling interval in seconds (default 0.05)")
    p.add_argument("--history", type=float, default=5.0, help="seconds of history kept (default 5: many wraps)")
    p.add_argument("--every", type=float, default=15.0, help="seconds between progress lines (default 15)")
    p.add_argument("--rss-slack-mib", type=float, default=8.0, help="RSS growth still called flat (default 8)")
    p.add_argument("--no-pyspy", action="store_true", help="leave py-spy out (e.g. without ptrace rights)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the soak and print the verdict; see the module docstring for the exit status."""
    args = parse_args(argv)
    duration = args.minutes * 60.0
    me = psutil.Process(os.getpid())
    with tempfile.TemporaryDirectory(prefix="optitop-soak-") as tmp:
        log_path = os.path.join(tmp, "server.log")
        target, port = start_target(log_path)
        try:
            wait_for_port(port)
            options = Options(
                interval_s=args.interval,
                history_s=args.history,
                analysis_window_s=min(10.0, args.history),
                log_paths=(log_path,),
                disabled=frozenset({"pystacks"}) if args.no_pyspy else frozenset(),
            )
            session = make_session(target.pid, options)
            added = [0]
            session.store.subscribe(lambda name: added.__setitem__(0, added[0] + 1))
            session.start()
            return soak(args, duration, me, session, added)
        finally:
            target.kill()
            target.wait(10)


def soak(args: argparse.Namespace, duration: float, me: psutil.Process, session: Session, added: list[int]) -> int:
    """Sample until ``duration``, print progress, and judge warm-up against the end."""
    start = time.monotonic()
    warm_at = max(20.0, duration / 6)
    warm: Reading | None = None
    readings: list[Reading] = []
    fds: list[tuple[float, int]] = []  # (elapsed, open fds) every loop: transient sockets and pipes come and go
    next_print = start
    try:
        while time.monotonic() - start < duration:
            fds.append((time.monotonic() - start, me.num_fds()))
            if session.store.target.exited:
                print("soak: the target exited", flush=True)
                return 2
            now = time.monotonic()
            if warm is None and now - start >= warm_at:
                warm = reading(me, session, start)
                readings.append(warm)
                print(f"-- warm-up reading at {warm.elapsed_s:.0f} s --", flush=True)
                show(warm, session, added[0])
                next_print = now + args.every
            elif now >= next_print:
                r = reading(me, session, start)
                readings.append(r)
                show(r, session, added[0])
                next_print += args.every
            time.sleep(0.2)
        end = reading(me, session, start)
        broken = [n for n, s in session.store.statuses().items() if s.state == SourceState.ERROR]
    finally:
        session.stop()
    show(end, session, added[0])
    return verdict(args, warm or readings[0], end, readings, fd_floors(fds, warm_at, duration), broken)


def fd_floors(fds: list[tuple[float, int]], warm_at: float, duration: float) -> tuple[int, int]:
    """The fewest open fds just after warm-up and in the last quarter of the run.

    Scrapes and py-spy runs open sockets and pipes for a moment, so single readings jump by a few; a leak
    raises the floor, the count that is open even between those moments.
    """
    mid = warm_at + (duration - warm_at) / 2
    early = [n for t, n in fds if warm_at <= t < mid] or [n for _, n in fds]
    late = [n for t, n in fds if t >= duration * 0.75] or [fds[-1][1]]
    return min(early), min(late)


def verdict(
    args: argparse.Namespace,
    warm: Reading,
    end: Reading,
    readings: list[Reading],
    floors: tuple[int, int],
    broken: list[str],
) -> int:
    """Print warm-up vs end and say whether it is flat."""
    rss_growth = (end.rss_bytes - warm.rss_bytes) / 2**20
    fd_growth = floors[1] - floors[0]
    after = [r for r in readings if r.elapsed_s >= warm.elapsed_s] + [end]
    print()
    print(f"warm-up ({warm.elapsed_s:.0f} s): rss {warm.rss_bytes / 2**20:.1f} MiB, fds {warm.num_fds}")
    print(f"end     ({end.elapsed_s:.0f} s): rss {end.rss_bytes / 2**20:.1f} MiB, fds {end.num_fds}")
    print(
        f"after warm-up: rss min {min(r.rss_bytes for r in after) / 2**20:.1f} / max "
        f"{max(r.rss_bytes for r in after) / 2**20:.1f} MiB; fds min {min(r.num_fds for r in after)} / max "
        f"{max(r.num_fds for r in after)}; samples held min {min(r.samples_held for r in after)} / max "
        f"{max(r.samples_held for r in after)} (history {args.history:g} s at {args.interval:g} s)"
    )
    print(f"open-fd floor: {floors[0]} after warm-up, {floors[1]} in the last quarter")
    print(f"growth: rss {rss_growth:+.1f} MiB (flat within {args.rss_slack_mib:g}), fd floor {fd_growth:+d}")
    if broken:
        print(f"sources in error at the end: {', '.join(sorted(broken))}")
        return 2
    flat = rss_growth <= args.rss_slack_mib and fd_growth <= 0
    print("FLAT: pass" if flat else "GROWING: fail")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
