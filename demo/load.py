"""A bounded load generator: client threads POSTing /infer over loopback, at a rate or back to back.

At a rate, arrivals are a Poisson process (exponential gaps, seeded so runs repeat), as real clients are and
as serving benchmarks send (vLLM's ``benchmark_serving --request-rate``). Evenly spaced arrivals phase-lock
with anything else periodic: a gauge scraped every 2 s from a server fed every 200 ms read "1 waiting" at
the same phase for ten seconds at a time, and the demo's ``none`` scenario flipped to a scheduling verdict.

It runs in its own process so its CPU is not counted as the server's, stops by itself after ``--duration``
seconds or ``--max-requests`` requests (whichever comes first), and prints one JSON summary line at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import signal
import string
import threading
import time
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import urlparse

from optitop.demo.procs import die_with_parent
from optitop.osthread import name_os_thread


@dataclass
class Plan:
    """What to send and when to stop; shared by the client threads (guarded by ``lock``)."""

    host: str
    port: int
    rate_per_s: float | None
    max_requests: int
    deadline_s: float
    texts: list[str]
    path: str = "/infer"
    started_s: float = field(default_factory=time.monotonic)
    seed: int = 0
    issued: int = 0
    ok: int = 0
    errors: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next_at_s: float = field(init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """The arrival clock starts at ``started_s``; its gaps come from a generator seeded with ``seed``."""
        self._next_at_s = self.started_s
        self._rng = random.Random(self.seed)

    def next_slot(self) -> tuple[int, float] | None:
        """Claim the next request: its index and when to send it (open loop), or None when the plan is done."""
        with self.lock:
            if self.issued >= self.max_requests or self.stopped.is_set():
                return None
            index = self.issued
            self.issued += 1
            if self.rate_per_s:
                self._next_at_s += self._rng.expovariate(self.rate_per_s)
                at = self._next_at_s
            else:
                at = time.monotonic()
        return (index, at) if at < self.deadline_s else None

    def record(self, ok: bool) -> None:
        """Count one answer."""
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.errors += 1


def make_texts(chars: int, count: int = 16) -> list[str]:
    """A few random texts of words, so every request carries ``chars`` characters without per-request cost."""
    rng = random.Random(0)
    texts = []
    for _ in range(count):
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < chars:
            words.append("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))))
        texts.append(" ".join(words)[:chars])
    return texts


def client(plan: Plan, name: str) -> None:
    """Send requests on one keep-alive connection until the plan says stop."""
    name_os_thread(name)
    conn: http.client.HTTPConnection | None = None
    while (slot := plan.next_slot()) is not None:
        index, at = slot
        if plan.stopped.wait(max(0.0, at - time.monotonic())):
            break
        body = json.dumps({"text": plan.texts[index % len(plan.texts)]})
        try:
            if conn is None:
                conn = http.client.HTTPConnection(plan.host, plan.port, timeout=60)
            conn.request("POST", plan.path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            plan.record(response.status == 200)
        except (OSError, http.client.HTTPException):
            plan.record(False)
            if conn is not None:
                conn.close()
            conn = None
            plan.stopped.wait(0.1)  # the server is restarting or gone: do not spin
    if conn is not None:
        conn.close()


def run(plan: Plan, concurrency: int) -> dict[str, float]:
    """Run the clients to completion and return the summary."""
    threads = [
        threading.Thread(target=client, args=(plan, f"client-{i}"), name=f"client-{i}", daemon=True)
        for i in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    # Wait for the clients, but on SIGTERM leave at once: requests still in flight die with the daemon threads.
    while any(t.is_alive() for t in threads) and not plan.stopped.wait(0.2):
        pass
    elapsed = time.monotonic() - plan.started_s
    return {"sent": plan.issued, "ok": plan.ok, "errors": plan.errors, "elapsed_s": round(elapsed, 3),
            "ok_per_s": round(plan.ok / elapsed, 2) if elapsed > 0 else 0.0}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Send the configured load, then print a JSON summary line."""
    parser = argparse.ArgumentParser(prog="optitop.demo.load")
    parser.add_argument(
        "--url", required=True, help="the server's URL: http://127.0.0.1:8000 posts /infer; a path is posted to instead"
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second over all clients; 0: closed")
    parser.add_argument("--duration", type=float, default=60.0, help="stop after this many seconds")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests")
    parser.add_argument("--text-chars", type=int, default=256)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    die_with_parent(args.parent_pid)
    url = urlparse(args.url)
    plan = Plan(
        host=url.hostname or "127.0.0.1",
        port=url.port or 80,
        rate_per_s=args.rate or None,
        max_requests=args.max_requests,
        deadline_s=time.monotonic() + args.duration,
        texts=make_texts(args.text_chars),
        path=url.path if url.path not in ("", "/") else "/infer",
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        plan.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(json.dumps(run(plan, args.concurrency)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
