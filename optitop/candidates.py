"""Finding the processes most likely to be inference servers, for the picker shown when no pid is given.

Signals, strongest first: a known server in the cmdline (vLLM, TGI, SGLang, Triton, llama.cpp …), libtorch
mapped into the process (Python with torch loaded), a listening TCP port, Python at all; then CPU activity.
"""

from __future__ import annotations

import os
import re
import time

import psutil

from optitop.model import Candidate
from optitop.redact import redact_cmdline

KNOWN_SERVERS = re.compile(
    r"vllm|text-generation|text_generation|sglang|tritonserver|llama-server|llama\.cpp|llama_cpp|torchserve|"
    r"ray::|serve|uvicorn|gunicorn|litserve|bentoml|mlserver|ollama",
    re.IGNORECASE,
)


def _has_torch(pid: int) -> bool:
    """Whether libtorch is mapped into the process (reading maps is cheap next to a process scan)."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
            return any("libtorch" in line for line in fh)
    except OSError:
        return False


def _listening_ports() -> dict[int, set[int]]:
    ports: dict[int, set[int]] = {}
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.pid and conn.laddr:
                ports.setdefault(conn.pid, set()).add(conn.laddr.port)
    except psutil.AccessDenied:
        pass
    return ports


def find_candidates(sample_s: float = 0.3, limit: int = 200) -> list[Candidate]:
    """Processes ranked by how likely they are inference servers, then by CPU."""
    me = os.getpid()
    procs = []
    for proc in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]):
        if proc.info["pid"] in (me, os.getppid()) or not proc.info["cmdline"]:
            continue
        try:
            proc.cpu_percent(None)
        except psutil.Error:
            continue
        procs.append(proc)
    time.sleep(sample_s)
    ports = _listening_ports()
    out = []
    for proc in procs:
        try:
            cpu = proc.cpu_percent(None)
        except psutil.Error:
            continue
        pid = proc.info["pid"]
        argv = proc.info["cmdline"] or []
        joined = " ".join(argv)
        known_match = KNOWN_SERVERS.search(joined)
        is_python = "python" in (proc.info["name"] or "").lower() or (bool(argv) and "python" in argv[0])
        torch = is_python and _has_torch(pid)
        pid_ports = tuple(sorted(ports.get(pid, ())))
        score = (
            (4.0 if known_match else 0.0)
            + (3.0 if torch else 0.0)
            + (1.5 if pid_ports else 0.0)
            + (1.0 if is_python else 0.0)
            + min(cpu, 400.0) / 100.0
        )
        mem = proc.info["memory_info"]
        out.append(
            Candidate(
                pid=pid,
                name=proc.info["name"] or "?",
                cmdline=redact_cmdline(argv),
                cpu_pct=cpu,
                rss_bytes=mem.rss if mem else 0,
                ports=pid_ports,
                torch=torch,
                known=known_match.group(0) if known_match else "",
                score=score,
            )
        )
    out.sort(key=lambda c: (c.score, c.cpu_pct), reverse=True)
    return out[:limit]
