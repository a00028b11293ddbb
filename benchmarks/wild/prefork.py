"""A pre-fork sync server (issue 22, case c): a master that forks one worker, the way gunicorn runs.

The master binds the listening socket, forks ``--workers`` (1) children and then only watches them
(gunicorn's arbiter: ``select`` on a pipe with a timeout). Each worker accepts one connection at a time
and answers with ``Connection: close`` after ``--cpu-ms`` (50) of pure-Python work. Under 8 concurrent
clients the one worker pegs a core while the others' connections wait in the accept queue: more workers
would serve them on the idle core (scheduling), yet a user attaches to the master, which sleeps.

    python benchmarks/wild/prefork.py --port 8080 [--workers 1] [--cpu-ms 50]

Prints the master's pid, then ``ready``; SIGTERM stops the master and its workers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import sys
import time


def busy(ms: float) -> int:
    """Pure-Python work for about ``ms`` of CPU."""
    end = time.thread_time() + ms / 1000.0
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x = (x * 31 + i) % 1000003
    return x


def worker(listener: socket.socket, cpu_ms: float) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        conn, _ = listener.accept()
        with conn:
            data = b""
            try:
                conn.settimeout(10)
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                out = b'{"label": %d}' % (busy(cpu_ms) % 97)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                )
            except (OSError, ValueError):
                pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpu-ms", type=float, default=50.0)
    parser.add_argument("--backlog", type=int, default=64)
    args = parser.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(args.backlog)
    print(os.getpid(), flush=True)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            worker(listener, args.cpu_ms)
            os._exit(0)
        children.append(pid)
    wake_r, wake_w = os.pipe()

    def stop(*_: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        os.write(wake_w, b"x")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    while True:  # the arbiter: wake every second to check the workers
        select.select([wake_r], [], [], 1.0)
        for pid in list(children):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                children.remove(pid)


if __name__ == "__main__":
    sys.exit(main())
