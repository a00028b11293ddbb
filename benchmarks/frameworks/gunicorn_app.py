"""A WSGI app for gunicorn's pre-fork sync workers, for the framework benchmark (issue 22's third miss).

Each request costs ~``CPU_MS`` (50) of pure-Python CPU. Run with one sync worker under 8 clients, the worker
pegs a core while the other connections wait in the accept queue the master's listening socket holds; optitop
is attached to the gunicorn master (the arbiter), which sleeps.

    .venv-frameworks/bin/gunicorn --chdir benchmarks/frameworks -w 1 -k sync -b 127.0.0.1:8000 gunicorn_app:app
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

CPU_MS = float(os.environ.get("CPU_MS", "50"))


def _busy(ms: float) -> int:
    end = time.thread_time() + ms / 1000.0
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x = (x * 31 + i) % 1000003
    return x


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    size = int(environ.get("CONTENT_LENGTH") or 0)
    environ["wsgi.input"].read(size)
    body = json.dumps({"label": _busy(CPU_MS) % 97}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
