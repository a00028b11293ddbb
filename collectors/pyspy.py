"""Finding and running py-spy, and saying in one line why it failed.

One copy of ``find_pyspy``: the stacks collector and the bundle's stack dump (optitop/bundle.py) use the same
py-spy, so what the person installed to make one work makes the other work too.

Every py-spy child gets an argument list (no shell), PR_SET_PDEATHSIG (it dies with optitop's collector
thread, even on SIGKILL), an atexit and ``close()`` kill, and a deadline: a hung py-spy is killed, and the
target gets a SIGCONT in case a blocking sampler died while it had the target stopped (py-spy#390). The
collector (collectors/pystacks.py) waits with exponential back-off before the next window.

py-spy's error text is not for people: ``explain_failure`` turns it into what to do (install, upgrade, grant
ptrace), and ``ptrace_advice`` says which of those applies to how optitop runs (root or not, capabilities,
Yama).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Environment for py-spy: no Rust backtraces in its error messages.
PYSPY_ENV_OVERRIDES = {"RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}


# -- finding and running py-spy --------------------------------------------------------------------------------
def find_pyspy() -> str | None:
    """py-spy next to the running Python (the venv optitop lives in) first, then on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the thread that started it dies (even if optitop is killed).

    The prctl function is resolved in the parent at import time, so the child only makes one call.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


#: Every py-spy child still running -> the pid it may hold stopped (None for non-blocking ones).
_LIVE: dict[subprocess.Popen[bytes], int | None] = {}
_LIVE_LOCK = threading.Lock()


def _kill_live_children() -> None:
    """atexit: no py-spy started here outlives optitop, and no target is left stopped (py-spy#390)."""
    with _LIVE_LOCK:
        children = list(_LIVE.items())
    for child, held_pid in children:
        with contextlib.suppress(OSError):
            child.kill()
        if held_pid is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                child.wait(1.0)
                os.kill(held_pid, signal.SIGCONT)


atexit.register(_kill_live_children)


@dataclass(slots=True)
class RunResult:
    """How one py-spy child ended."""

    rc: int | None
    output: str
    messages: str
    elapsed_s: float
    timed_out: bool = False


class PySpyRunner:
    """Starts py-spy children with a deadline and kills them on request; one per collector."""

    def __init__(self, binary: str, target_pid: int) -> None:
        """Run ``binary`` against ``target_pid``."""
        self.binary = binary
        self.target_pid = target_pid
        self._children: dict[subprocess.Popen[bytes], bool] = {}  # child -> whether it stops the target
        self._lock = threading.Lock()
        self._closed = False

    def start(self, args: Sequence[str], blocking: bool = False) -> subprocess.Popen[bytes]:
        """Start ``py-spy ARGS``; ``blocking`` when it stops the target (native), so that killing it is
        followed by a SIGCONT."""
        with self._lock:
            if self._closed:
                raise RuntimeError("runner closed")
        argv = [self.binary, *args]
        env = {**os.environ, **PYSPY_ENV_OVERRIDES}
        proc = subprocess.Popen(  # noqa: S603 - an argument list, never a shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only a prctl call, resolved before fork
            close_fds=True,
        )
        with self._lock:
            self._children[proc] = blocking
        with _LIVE_LOCK:
            _LIVE[proc] = self.target_pid if blocking else None
        return proc

    def finish(self, proc: subprocess.Popen[bytes], deadline: float, blocking: bool) -> RunResult:
        """Wait for ``proc`` until ``deadline`` (monotonic); kill it past that."""
        start = time.monotonic()
        timed_out = False
        try:
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self._kill(proc, blocking)
            out, err = proc.communicate()
        finally:
            with self._lock:
                self._children.pop(proc, None)
            with _LIVE_LOCK:
                _LIVE.pop(proc, None)
        stdout = out.decode("utf-8", errors="replace")
        return RunResult(
            rc=proc.returncode,
            output=stdout,
            messages=stdout + err.decode("utf-8", errors="replace"),
            elapsed_s=time.monotonic() - start,
            timed_out=timed_out,
        )

    def run(self, args: Sequence[str], timeout_s: float, blocking: bool) -> RunResult:
        """Start, wait with a deadline, collect."""
        proc = self.start(args, blocking)
        return self.finish(proc, time.monotonic() + timeout_s, blocking)

    def _kill(self, proc: subprocess.Popen[bytes], blocking: bool) -> None:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2.0)
        if blocking:
            # A blocking sampler killed mid-sample can leave the target stopped (py-spy#390).
            with contextlib.suppress(OSError):
                os.kill(self.target_pid, signal.SIGCONT)

    def live_pids(self) -> list[int]:
        """The pids of children still running (for tests and ``close``)."""
        with self._lock:
            return [p.pid for p in self._children if p.poll() is None]

    def close(self) -> None:
        """Kill every child still running."""
        with self._lock:
            self._closed = True
            children = list(self._children.items())
        for proc, blocking in children:
            self._kill(proc, blocking)


# -- explaining failures --------------------------------------------------------------------------------------
PTRACE_FIX = (
    "py-spy needs ptrace: run optitop as root or with CAP_SYS_PTRACE (in containers: --cap-add SYS_PTRACE),"
    " or set kernel.yama.ptrace_scope=0"
)

#: py-spy found no interpreter it can read. The pre-flight check already said the process looks like Python (or
#: could not tell), so "not a Python process" would often be wrong: a static, stripped or too-new build also ends here.
NO_INTERPRETER = (
    "no Python stacks: py-spy found no Python interpreter it can read in this process"
    " (not Python, or a static, stripped or newer build: try `pip install -U py-spy`)"
)
NO_NATIVE = "py-spy cannot read native stacks here"

#: py-spy error text -> what to tell the person (first match wins).
FAILURES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Failed to find python version|Failed to find a python interpreter"), NO_INTERPRETER),
    # "Collecting stack traces from native extensions (`--native`) is not supported on your platform."
    (re.compile(r"(?i)native.*not supported"), NO_NATIVE),
    (re.compile(r"(?i)unsupported version|not supported|unknown version"), "py-spy does not support this Python"),
    (re.compile(r"(?i)permission denied|operation not permitted|os error 1\b"), PTRACE_FIX),
)


#: CAP_SYS_PTRACE's bit in /proc/self/status's CapEff (include/uapi/linux/capability.h).
CAP_SYS_PTRACE_BIT = 19


def effective_caps() -> int | None:
    """This process's effective capability bits (None where /proc/self/status cannot tell)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return None


def yama_scope() -> int | None:
    """kernel.yama.ptrace_scope (None without Yama)."""
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def ptrace_advice(euid: int, caps: int | None, yama_scope: int | None) -> str:
    """What to do about a refused ptrace, from who optitop runs as and what it may do.

    "Run as root" is the fix only for someone who is not root: root is refused when a capability was dropped
    (a container without SYS_PTRACE), Yama forbids ptrace for everyone (scope 3), or something outside the
    credentials says no (an LSM, a user namespace).
    """
    if euid != 0:
        return PTRACE_FIX
    if caps is not None and not caps >> CAP_SYS_PTRACE_BIT & 1:
        return (
            "py-spy needs ptrace: optitop runs as root but without CAP_SYS_PTRACE (a container: --cap-add"
            " SYS_PTRACE; or a capability dropped by the service manager or setpriv)"
        )
    if yama_scope == 3:
        return "py-spy needs ptrace: kernel.yama.ptrace_scope=3 forbids it to everyone, root too, until a reboot"
    return (
        "py-spy was refused ptrace though optitop runs as root with CAP_SYS_PTRACE: a security module"
        " (AppArmor, SELinux) or the target's user namespace forbids it; see the kernel log"
    )


def ptrace_fix() -> str:
    """``ptrace_advice`` for this process as it runs now."""
    return ptrace_advice(os.geteuid(), effective_caps(), yama_scope())


def explain_failure(messages: str, rc: int | None) -> str:
    """A one-line, actionable reason from py-spy's output."""
    for pattern, reason in FAILURES:
        if pattern.search(messages):
            if reason == PTRACE_FIX:
                return ptrace_fix()
            if reason == NO_NATIVE:
                return f"{reason} ({_first_error_line(messages)})"
            if reason.startswith("py-spy does not support"):
                detail = _first_error_line(messages)
                return f"{reason} ({detail}): upgrade it with `pip install -U py-spy`"
            return reason
    return f"py-spy failed (exit {rc}): {_first_error_line(messages) or 'no message'}"


def _first_error_line(messages: str) -> str:
    for line in messages.splitlines():
        line = line.strip()
        if line.startswith("Error:"):
            return line[len("Error:") :].strip()
    lines = [ln.strip() for ln in messages.splitlines() if ln.strip() and not ln.startswith("py-spy>")]
    return lines[0][:160] if lines else ""
