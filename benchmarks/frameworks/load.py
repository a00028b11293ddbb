"""Load for the framework servers: demo/load.py's bounded plan, POSTed to any path (TorchServe, Ray Serve).

The demo's generator always posts ``/infer``; TorchServe answers on ``/predictions/<model>``. This keeps the
demo's Plan (rate or closed loop, deadline, request cap, counts) and client loop, and only takes the path
from the URL. Runs from optitop's virtualenv, in its own process so its CPU is not the server's.

    python benchmarks/frameworks/load.py --url http://127.0.0.1:8080/predictions/mlp --concurrency 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import threading
import time
from types import FrameType
from urllib.parse import urlparse

from optitop.demo.load import Plan, make_texts
from optitop.demo.procs import die_with_parent, name_os_thread


def client(plan: Plan, path: str, name: str) -> None:
    """Send requests on one keep-alive connection until the plan says stop (demo/load.py's loop, any path)."""
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
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
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


def main(argv: list[str] | None = None) -> int:
    """Send the configured load, then print a JSON summary line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="full URL including the path")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0, help="requests per second over all clients; 0: closed")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
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
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        plan.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [
        threading.Thread(target=client, args=(plan, url.path or "/", f"client-{i}"), daemon=True)
        for i in range(args.concurrency)
    ]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) and not plan.stopped.wait(0.2):
        pass
    elapsed = time.monotonic() - plan.started_s
    summary = {"sent": plan.issued, "ok": plan.ok, "errors": plan.errors, "elapsed_s": round(elapsed, 3),
               "ok_per_s": round(plan.ok / elapsed, 2) if elapsed > 0 else 0.0}  # fmt: skip
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
