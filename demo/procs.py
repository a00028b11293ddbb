"""Process plumbing for the demo: children that die with their parent, ready lines, named OS threads.

Every process the demo starts (server, upstream, load generator) is a direct child of the demo command, asks the
kernel to signal it when that parent dies (``PR_SET_PDEATHSIG``), and reports its port on one ``READY <port>`` line,
so nothing the demo starts can outlive it and the parent never guesses ports. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
READY = "READY"


def die_with_parent(parent_pid: int | None) -> None:
    """Ask Linux to SIGTERM this process when its parent exits; exit now if that parent is already gone.

    Why: a demo killed with SIGKILL cannot clean up, and its children must not keep serving or sending load.
    """
    if parent_pid is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        raise SystemExit(0)


def announce_ready(port: int) -> None:
    """Tell the parent the port this child listens on (the first line of its stdout)."""
    print(f"{READY} {port}", flush=True)


def spawn(module: str, args: Sequence[str]) -> subprocess.Popen[str]:
    """Start ``python -m optitop.demo.<module>`` as a child that dies with this process."""
    # -P (3.11+) keeps the working directory off sys.path: run from a checkout, its optitop/ folder would shadow
    # the installed package. Python 3.10 has no -P; -I does the same there but also ignores PYTHON* variables.
    isolate = "-P" if sys.version_info >= (3, 11) else "-I"
    argv = [sys.executable, isolate, "-m", f"optitop.demo.{module}", "--parent-pid", str(os.getpid()), *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=False)


def read_ready(proc: subprocess.Popen[str], timeout_s: float) -> int:
    """Wait for the child's ``READY <port>`` line and return the port.

    Raises:
        RuntimeError: the child exited, printed something else, or said nothing before the deadline.
    """
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{_label(proc)} was not ready within {timeout_s:.0f} s")
            if sel.select(left):
                line = proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{_label(proc)} exited with status {proc.wait()} before it was ready")
                word, _, port = line.strip().partition(" ")
                if word == READY and port.isdigit():
                    return int(port)
                raise RuntimeError(f"{_label(proc)} said {line.strip()!r} instead of {READY} <port>")


def stop(procs: Sequence[subprocess.Popen[str]], grace_s: float = 5.0) -> None:
    """SIGTERM every child still running, wait up to ``grace_s``, then SIGKILL the stragglers."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _label(proc: subprocess.Popen[str]) -> str:
    args = proc.args if isinstance(proc.args, list) else [str(proc.args)]
    module = next((str(a) for a in args if str(a).startswith("optitop.demo.")), str(args[0]))
    return f"{module} (pid {proc.pid})"
