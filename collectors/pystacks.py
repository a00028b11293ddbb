"""The Python stacks collector: what every thread of the target is doing, sampled with py-spy.

Why record windows and not repeated dumps. Measured with py-spy 0.4.3 on a shared 2-core VM (load 3-6 from
other work), target: one Python thread spinning plus four idle ones; "stopped" is the share of wall time
the spinning thread spent in ptrace stop (state ``t`` in /proc, polled at ~15 kHz: a measure other load
cannot blur); py-spy CPU is optitop's cost, % of one core:

    sampler                                           target stopped       py-spy CPU
    none                                              0                    0
    dump --nonblocking, 1 / 5 / 20 per s              0                    1.8 / 3.4-7.4 / 26 %
    record --nonblocking --idle, 20 / 100 Hz          0                    1.3-1.9 / 5.7 %
    3 x record --nonblocking, 20 Hz (until 2026-11)   0                    4.6 %
    record (blocking), 20 / 100 Hz                    2.2-2.4 / 4.7-5.9 %  1.7 / 5.6 %
    record --native, 20 / 100 Hz                      5.5-7.2 / 13-14 %    3.4 / 10-12 %

The loop's iterations/s (on/off pairs of 2 s, 8-10 pairs each) could not resolve the non-blocking cost:
pairs swung 30-300 % with the machine's other load, medians 83-118 %; dumps at 20/s (a quarter of a core on
a 2-core box) halved it (median 49 %).

A dump costs a process start plus attaching (reading the target's maps and symbols): ~14 ms of CPU and
70-90 ms of wall each, so dumps at the 20 Hz default would cost a quarter of a core. A record window pays
that once per window and then ~0.7-1 ms of CPU per sample. Dumps give more per sample: every thread's
``active`` (on CPU) and ``owns_gil`` flags, while ``record --format raw`` has neither (``--idle`` and
``--gil`` are *filters*; with ``--threads`` the lines are ``thread (TID): NAME;root;...;leaf COUNT``). So
each window runs two cheap non-blocking records side by side over the same seconds at the same rate: all
stacks (``--idle``) and GIL-holding stacks (``--gil``); per thread, GIL % is the ratio of their counts. The
on-CPU share is not sampled: it is the thread's CPU time over the window (/proc/PID/task/TID/stat, exact),
spread over its stacks that can use CPU (see ``active_from_cpu``). A third record filtered to active stacks
did that before and cost as much as the all-stacks one (8-thread demo server, 20 Hz, 2 s windows: all 55 ms,
active 55 ms, GIL 15 ms of py-spy CPU, ~10 ms of each start-up; py-spy's children fell from 1.65 % to 1.05 % of
a core at the default 1/3 duty when it went); what it gave beyond the CPU time was which
busy-looking stack of a thread was on CPU at each instant. A single non-blocking ``dump`` is used where one
exact instant is wanted: ``trigger()`` ("the GPU just went idle: what is the host doing?").

Native stacks (``--native``) stop the target for every sample (py-spy cannot unwind native stacks of a
running thread). A 1 s native burst at 20 Hz stopped the plain Python target for 0.08-0.10 s in all, but a
torch process (GEMM loop) for ~2.1 s, the same at 20 and at 100 Hz, so a fixed cost rather than a
per-sample one (py-spy reads libtorch's symbols and unwind tables, apparently with the target held); such a
burst takes 3.5-5 s of wall and ~0.8 s of py-spy CPU. Many-thread torch servers are
worse (py-spy#872: 5-15x slowdowns). So native runs only in short bursts, on ``request_native()`` (a key
press) or every ``Options.native_every_s`` (0 = never), and the periodic bursts keep their duty cycle at
or below 1/NATIVE_DUTY_FACTOR of wall time whatever that option says.

Every py-spy child gets an argument list (no shell), PR_SET_PDEATHSIG (it dies with optitop's collector
thread, even on SIGKILL), an atexit and ``close()`` kill, and a deadline: a hung py-spy is killed, the
target gets a SIGCONT in case a blocking sampler died while it had the target stopped (py-spy#390), and the
next window waits with exponential back-off.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from array import array
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

from optitop.collectors.procfs import read_stat, thread_stats
from optitop.collectors.stackclass import (
    ACTIVE_WAITS,
    BREAKDOWN_CLASSES,
    OP_CLASSES,
    PY_OP_CLASSES,
    Frame,
    breakdown_class,
    classify_op,
    classify_py_op,
    classify_wait,
    is_native_file,
    leaf_native,
    leaf_python,
)
from optitop.collectors.tree import TargetTree
from optitop.config import CollectorContext
from optitop.model import HotFunction, PyStacksSample, PyThread, SourceUnavailable, TargetGone

#: Seconds a py-spy child may run past its window before it is treated as hung.
GRACE_S = 5.0
#: Seconds a native burst may take past its window: attaching loads the native symbols of every library
#: (libtorch_cpu is hundreds of MB), measured at ~3 s on a loaded 2-core machine.
NATIVE_GRACE_S = 20.0
#: Periodic native bursts are spaced at least this many times their own measured duration apart.
NATIVE_DUTY_FACTOR = 20.0
#: Longest pause between retries after py-spy failed.
MAX_BACKOFF_S = 60.0
#: Hot functions kept per sample.
TOP_HOT = 12
#: Stacks whose wait class is remembered across windows (see ``StackClasses``).
MAX_STACK_CLASSES = 20_000
#: Native hot functions kept per native burst.
TOP_NATIVE_HOT = 6
#: Environment for py-spy: no Rust backtraces in its error messages.
PYSPY_ENV_OVERRIDES = {"RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}

StackKey = tuple[int, str, tuple[Frame, ...]]


# -- the sample ----------------------------------------------------------------------------------------------
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
NOT_PYTHON = "no Python stacks: not a Python process"
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


def python_in_process(pid: int) -> tuple[bool | None, str]:
    """Whether ``pid`` runs a Python interpreter (a libpython mapping or a python executable).

    Returns (None, reason) when /proc cannot tell (then py-spy decides).
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError as exc:
        raise TargetGone(f"pid {pid} exited") from exc
    except OSError:
        exe = ""
    if re.search(r"python|pypy", os.path.basename(exe), re.IGNORECASE):
        return True, exe
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "libpython" in line:
                    return True, exe
    except FileNotFoundError as exc:
        raise TargetGone(f"pid {pid} exited") from exc
    except OSError:
        return None, exe
    return False, exe


def _running(pid: int) -> bool:
    """Not exited, not a zombie, and not in the middle of exiting (its executable is already unlinked)."""
    stat = read_stat(f"/proc/{pid}/stat")
    if stat is None or stat.state in ("Z", "X", "x"):
        return False
    try:
        os.readlink(f"/proc/{pid}/exe")
    except FileNotFoundError:
        return False
    except OSError:
        return True  # another user's process: cannot tell, assume it runs
    return True


def busiest_python_child(pid: int) -> int | None:
    """The descendant of ``pid`` running Python that has used the most CPU, or None.

    A frontend in Java or C++ (TorchServe, Triton) runs its Python in worker processes: their stacks are the
    Python the user wants to see.
    """
    try:
        found = TargetTree(pid).descendant_pids()
    except (SourceUnavailable, TargetGone):
        return None
    best: tuple[float, int] | None = None
    for child, _parent in found:
        try:
            is_python, _exe = python_in_process(child)
        except TargetGone:
            continue
        stat = read_stat(f"/proc/{child}/stat")
        if is_python and stat is not None and _running(child) and (best is None or stat.cpu_s > best[0]):
            best = (stat.cpu_s, child)
    return None if best is None else best[1]


#: A Python process of the tree is followed instead of the one read now when it used at least this share of a core
#: since the last check, and the one read now at most FOLLOW_RATIO of it (a pre-fork master sleeps while its
#: worker pegs a core: its stacks say nothing about the work).
FOLLOW_MIN_CORE = 0.3
FOLLOW_RATIO = 0.25


def busiest_recent(cpu_now: Mapping[int, float], cpu_before: Mapping[int, float], dt_s: float) -> dict[int, float]:
    """Share of a core each pid used between two readings of cumulative CPU-seconds (pids in both only)."""
    if dt_s <= 0:
        return {}
    return {pid: max(0.0, cpu - cpu_before[pid]) / dt_s for pid, cpu in cpu_now.items() if pid in cpu_before}


def follow_choice(current: int, shares: Mapping[int, float]) -> int | None:
    """The pid to read instead of ``current`` (the busiest by recent CPU), or None to stay.

    Moves only when the busiest uses FOLLOW_MIN_CORE of a core and ``current`` at most FOLLOW_RATIO of that, so two
    workers taking turns do not make it flip every window.
    """
    if not shares:
        return None
    best = max(shares, key=lambda pid: shares[pid])
    if best == current or shares[best] < FOLLOW_MIN_CORE:
        return None
    return best if shares.get(current, 0.0) <= FOLLOW_RATIO * shares[best] else None


# -- parsing py-spy output ------------------------------------------------------------------------------------
_FRAME_RE = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*)\)$")
_THREAD_RE = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)(?:: (?P<name>.*))?$")


def parse_frame(label: str) -> Frame:
    """``func (file:line)`` or ``func (lib.so)`` as printed by py-spy."""
    m = _FRAME_RE.match(label)
    if m is None:
        return Frame(name=label, native=True)
    name, where = m.group("name"), m.group("where")
    file, line = where, None
    head, sep, tail = where.rpartition(":")
    if sep and tail.isdigit():
        file, line = head, int(tail)
    return Frame(name=name, file=file, line=line, native=is_native_file(file))


def parse_raw(text: str) -> Counter[StackKey]:
    """``py-spy record --format raw --threads`` output -> counts per (tid, thread name, frames leaf first)."""
    counts: Counter[StackKey] = Counter()
    for raw in text.splitlines():
        stack, _, count = raw.rstrip().rpartition(" ")
        if not stack or not count.isdigit() or int(count) == 0 or stack.startswith("py-spy> "):
            continue
        tid, name, parts = split_stack(stack)
        frames = tuple(parse_frame(p) for p in reversed(parts))
        counts[(tid, name, frames)] += int(count)
    return counts


#: A ``;`` that starts a new frame: frames end in ``(file:line)``, so only a ``;`` right after ``)`` separates
#: two. Function, file and thread names may hold ``;`` themselves (a plain split made ``hot;func
#: (/a;b.py:3)`` into the frames ``hot``, ``func (/a`` and ``b.py:3)``: a bogus hot function).
_FRAME_SEP_RE = re.compile(r"(?<=\));")
#: The thread's name and its first (root) frame, when no ``)`` ends the name: the frame is the part after the
#: last ``;`` that is followed by ``name (where)`` with no ``;`` in the name.
_NAME_AND_ROOT_RE = re.compile(r"^(?P<name>.*);(?P<frame>[^;]* \([^()]*\))$")


def split_stack(stack: str) -> tuple[int, str, list[str]]:
    """One raw line's stack -> (tid, thread name, frame labels root first); tid 0 and "" without a header."""
    parts = _FRAME_SEP_RE.split(stack)
    m = _THREAD_RE.match(parts[0])
    if m is None:
        return 0, "", parts
    tid, name = int(m.group("tid"), 0), m.group("name") or ""
    # Thread names like "Thread-1 (worker)" end in ")": the separator split already cut them off their root
    # frame. Otherwise the root frame is still on the name.
    both = _NAME_AND_ROOT_RE.match(name)
    if both is None:
        return tid, name, parts[1:]
    return tid, both.group("name"), [both.group("frame"), *parts[1:]]


@dataclass(frozen=True, slots=True)
class DumpThread:
    """One thread of a ``py-spy dump --json``."""

    tid: int
    name: str
    frames: tuple[Frame, ...]
    active: bool
    gil: bool


def _int_or_none(value: object) -> int | None:
    """A positive JSON integer, else None (py-spy never writes anything else there)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_dump(text: str) -> list[DumpThread]:
    """``py-spy dump --json`` output (frames are leaf first there).

    Raises:
        ValueError: when the text is not JSON or not shaped like py-spy's (the dump trigger skips it).
    """
    doc = json.loads(text)
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise ValueError("not py-spy dump --json output (a list of thread objects)")
    out = []
    for thread in doc:
        raw_frames = thread.get("frames") or []
        if not isinstance(raw_frames, list) or not all(isinstance(f, dict) for f in raw_frames):
            raise ValueError("not py-spy dump --json output (frames must be a list of objects)")
        frames = tuple(
            Frame(
                name=str(f.get("name", "?")),
                file=str(f.get("filename", "")),
                line=_int_or_none(f.get("line")),
                native=is_native_file(str(f.get("filename", ""))),
            )
            for f in raw_frames
        )
        tid = thread.get("os_thread_id") or thread.get("thread_id") or 0
        out.append(
            DumpThread(
                tid=_int_or_none(tid) or 0,
                name=str(thread.get("thread_name") or ""),
                frames=frames,
                active=bool(thread.get("active")),
                gil=bool(thread.get("owns_gil")),
            )
        )
    return out


# -- source lines (the leaf line says which C call blocks) ----------------------------------------------------
#: Bytes all cached source text may take together (least recently used files are dropped first).
SOURCE_CACHE_BYTES = 8 * 1024 * 1024
#: A file larger than this is never held whole: only the lines asked for are kept (a generated module).
SOURCE_FILE_MAX_BYTES = 2 * 1024 * 1024
#: Characters kept of one line of such a file (the pane shows far fewer).
SOURCE_LINE_MAX_CHARS = 400
#: What one cache entry costs besides its text: the key, the objects around it (a rough, fixed charge).
SOURCE_ENTRY_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class _SourceText:
    """A file's bytes and where each line starts: a fraction of the memory of a list of str per line.

    ``whole`` is False for a file too large to hold: then ``data`` is empty and only single lines of it
    are cached, each as its own entry.
    """

    data: bytes
    starts: array[int]
    whole: bool = True

    @property
    def cost(self) -> int:
        """Bytes this entry holds, counted against SOURCE_CACHE_BYTES."""
        return len(self.data) + self.starts.itemsize * len(self.starts) + SOURCE_ENTRY_OVERHEAD

    def line(self, lineno: int) -> str:
        """Line ``lineno`` (1-based) stripped, or "" past the end."""
        if lineno > len(self.starts):
            return ""
        start = self.starts[lineno - 1]
        end = self.starts[lineno] if lineno < len(self.starts) else len(self.data)
        return self.data[start:end].decode("utf-8", errors="replace").strip()


def _line_starts(data: bytes) -> array[int]:
    """Byte offsets where each line begins (``\\n`` ends a line, as for Python's own line numbers)."""
    starts = array("I", [0] if data else [])
    pos = data.find(b"\n")
    while pos != -1 and pos + 1 < len(data):
        starts.append(pos + 1)
        pos = data.find(b"\n", pos + 1)
    return starts


_NO_TEXT = _SourceText(b"", array("I"))
_TOO_BIG = _SourceText(b"", array("I"), whole=False)


class SourceLines:
    """Reads source lines of the target's files (through /proc/PID/root, so containers work), cached.

    The cache is bounded by bytes, not files: a torch server's stacks run through hundreds of large
    modules, and 256 whole files held as lists of str were tens of MB. A file above
    ``max_file_bytes`` is never read whole into the cache; the lines asked for are kept one by one.
    """

    max_bytes = SOURCE_CACHE_BYTES
    max_file_bytes = SOURCE_FILE_MAX_BYTES

    def __init__(self, pid: int) -> None:
        """Lines of files as ``pid`` sees them."""
        self.pid = pid
        #: (file, 0) -> the whole file (or a marker); (file, lineno) -> one line of a file too big to hold.
        self._cache: OrderedDict[tuple[str, int], _SourceText] = OrderedDict()
        self.cached_bytes = 0

    def line(self, file: str, lineno: int | None) -> str:
        """The stripped text of one line, or "" when unknown."""
        if lineno is None or lineno <= 0 or not file.endswith((".py", ".pyw")):
            return ""
        text = self._get((file, 0)) or self._put((file, 0), self._read(file))
        if text.whole:
            return text.line(lineno)
        one = self._get((file, lineno)) or self._put((file, lineno), self._read_line(file, lineno))
        return one.line(1)

    def _get(self, key: tuple[str, int]) -> _SourceText | None:
        text = self._cache.get(key)
        if text is not None:
            self._cache.move_to_end(key)
        return text

    def _put(self, key: tuple[str, int], text: _SourceText) -> _SourceText:
        self._cache[key] = text
        self.cached_bytes += text.cost
        while self.cached_bytes > self.max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self.cached_bytes -= old.cost
        return text

    def _paths(self, file: str) -> list[str]:
        return [f"/proc/{self.pid}/root{file}", file] if file.startswith("/") else []

    def _read(self, file: str) -> _SourceText:
        """The whole file, _TOO_BIG past ``max_file_bytes`` (reading stops there), _NO_TEXT when unreadable."""
        for path in self._paths(file):
            try:
                with open(path, "rb") as fh:
                    data = fh.read(self.max_file_bytes + 1)
            except OSError:
                continue
            if len(data) > self.max_file_bytes:
                return _TOO_BIG
            return _SourceText(data, _line_starts(data))
        return _NO_TEXT

    def _read_line(self, file: str, lineno: int) -> _SourceText:
        """One line of a file too big to hold, read by streaming up to it."""
        for path in self._paths(file):
            try:
                with open(path, "rb") as fh:
                    raw = next(itertools.islice(fh, lineno - 1, None), b"")
            except OSError:
                continue
            data = raw[: SOURCE_LINE_MAX_CHARS * 4]
            return _SourceText(data, array("I", [0] if data else []))
        return _NO_TEXT


def with_code(frames: tuple[Frame, ...], source: SourceLines) -> tuple[Frame, ...]:
    """The frames with the leaf Python frame's source text filled in."""
    for i, frame in enumerate(frames):
        if not frame.native:
            code = source.line(frame.file, frame.line)
            if not code:
                return frames
            return (*frames[:i], replace(frame, code=code), *frames[i + 1 :])
    return frames


def short_path(file: str) -> str:
    """The package part of a path (``torch/cuda/__init__.py``), or the file name, like py-spy's short names."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    m = re.search(r"/lib/python3\.\d+/(.*)$", file)
    if m:
        return m.group(1)
    return os.path.basename(file) if "/" in file else file


def frame_label(frame: Frame) -> str:
    """``func (short_file:line)``."""
    file = short_path(frame.file)
    if not file:
        return frame.name
    return f"{frame.name} ({file}:{frame.line})" if frame.line is not None else f"{frame.name} ({file})"


# -- aggregation ----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Window:
    """Raw counts of one or more sampling windows, per stack: all stacks, active stacks, GIL stacks."""

    mode: str
    window_s: float
    instants: int
    all: Counter[StackKey] = field(default_factory=Counter)
    active: Counter[StackKey] = field(default_factory=Counter)
    gil: Counter[StackKey] = field(default_factory=Counter)
    gil_known: bool = True
    trigger: str = ""
    #: The process these stacks came from (the target or its Python child); None when unknown.
    pid: int | None = None
    #: Record windows: ``active`` is not sampled; each thread's on-CPU share comes from its CPU time instead.
    active_from_cpu: bool = False
    #: CPU seconds per thread id over the window(s), from /proc (threads that ended mid-window are missing).
    cpu_s: dict[int, float] = field(default_factory=dict)
    #: Seconds over which each thread's ``cpu_s`` was measured (less than the window for a thread born in it).
    cpu_wall_s: dict[int, float] = field(default_factory=dict)

    def merge(self, other: Window) -> None:
        """Add another window's counts (sample() aggregates what arrived since the last call)."""
        self.window_s += other.window_s
        self.instants += other.instants
        self.all.update(other.all)
        self.active.update(other.active)
        self.gil.update(other.gil)
        self.gil_known = self.gil_known and other.gil_known
        self.active_from_cpu = self.active_from_cpu or other.active_from_cpu
        for tid, cpu in other.cpu_s.items():
            self.cpu_s[tid] = self.cpu_s.get(tid, 0.0) + cpu
            self.cpu_wall_s[tid] = self.cpu_wall_s.get(tid, 0.0) + other.cpu_wall_s.get(tid, 0.0)


def window_from_dump(threads: Iterable[DumpThread], trigger: str) -> Window:
    """A one-instant window from a dump (exact active and GIL flags)."""
    win = Window(mode="dump", window_s=0.0, instants=1, trigger=trigger)
    for t in threads:
        key = (t.tid, t.name, t.frames)
        win.all[key] += 1
        if t.active:
            win.active[key] += 1
        if t.gil:
            win.gil[key] += 1
    return win


def _coarse(frames: tuple[Frame, ...]) -> tuple[tuple[str, str], ...]:
    """A stack without line numbers: the active and all streams sample different instants, so a hot loop
    lands on different lines in each; comparing per function keeps their difference meaningful."""
    return tuple((f.name, f.file) for f in frames)


def _idle_weights(all_keys: dict[StackKey, int], active_keys: dict[StackKey, float]) -> dict[StackKey, float]:
    """Per stack of one thread, how many of its samples were idle: all minus active, per line-free stack."""
    all_by: dict[tuple[tuple[str, str], ...], int] = Counter()
    act_by: defaultdict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for key, n in all_keys.items():
        all_by[_coarse(key[2])] += n
    for key, on_cpu in active_keys.items():
        act_by[_coarse(key[2])] += on_cpu
    out: dict[StackKey, float] = {}
    for key, n in all_keys.items():
        coarse = _coarse(key[2])
        idle = max(0.0, all_by[coarse] - act_by[coarse])
        out[key] = idle * n / all_by[coarse] if all_by[coarse] else 0.0
    return out


class StackClasses:
    """Each stack's wait class, kept across windows: a server's threads show the same few hundred stacks
    window after window, and classifying them (rules over every frame, plus the leaf's source line) was
    most of the stacks thread's own CPU. Cleared when it grows past MAX_STACK_CLASSES."""

    def __init__(self, source: SourceLines) -> None:
        """Classify against ``source`` (the process's files, for the leaf line's text)."""
        self.source = source
        self._waits: dict[StackKey, str] = {}
        self._ops: dict[StackKey, str] = {}

    def wait_of(self, key: StackKey) -> str:
        """The wait class of one stack ("" when nothing marks it as a wait)."""
        wait = self._waits.get(key)
        if wait is None:
            if len(self._waits) >= MAX_STACK_CLASSES:
                self._waits.clear()
            wait = self._waits[key] = classify_wait(with_code(key[2], self.source))
        return wait

    def op_of(self, key: StackKey) -> str:
        """The op class of one on-CPU stack from its Python frames (math, memory or interpreter)."""
        op = self._ops.get(key)
        if op is None:
            if len(self._ops) >= MAX_STACK_CLASSES:
                self._ops.clear()
            op = self._ops[key] = classify_py_op(with_code(key[2], self.source))
        return op


def py_op_mix(
    on_cpu: Mapping[StackKey, float], op_of: Callable[[StackKey], str]
) -> tuple[tuple[str, float], ...] | None:
    """Fractions of the on-CPU samples per op class (PY_OP_CLASSES order); None when nothing was on CPU."""
    weights: defaultdict[str, float] = defaultdict(float)
    for key, n in on_cpu.items():
        op = op_of(key) if n > 0 else ""
        if op:  # "" : no Python frame to read
            weights[op] += n
    total = sum(weights.values())
    if total <= 0:
        return None
    return tuple((cls, round(weights.get(cls, 0.0) / total, 4)) for cls in PY_OP_CLASSES)


@dataclass(slots=True)
class _ThreadAcc:
    name: str = ""
    all: dict[StackKey, int] = field(default_factory=dict)
    active: dict[StackKey, float] = field(default_factory=dict)
    gil: int = 0


def _per_thread(win: Window) -> dict[int, _ThreadAcc]:
    threads: dict[int, _ThreadAcc] = {}
    for key, n in win.all.items():
        acc = threads.setdefault(key[0], _ThreadAcc(name=key[1]))
        acc.all[key] = n
        acc.name = acc.name or key[1]
    for key, n in win.active.items():
        acc = threads.setdefault(key[0], _ThreadAcc(name=key[1]))
        acc.active[key] = float(n)
    for key, n in win.gil.items():
        threads.setdefault(key[0], _ThreadAcc(name=key[1])).gil += n
    return threads


def active_from_cpu(
    stacks: dict[StackKey, int], cpu_frac: float | None, wait_of: Callable[[StackKey], str]
) -> dict[StackKey, float]:
    """One thread's on-CPU samples, estimated from its CPU share over the window (``cpu_frac``, 0-1).

    py-spy's raw records carry no on-CPU flag, and a third record just for it cost as much as the stacks
    themselves. The thread's CPU time is exact; it is spread over the stacks that can burn CPU (no wait
    class, or a spinning one: GIL, GPU sync) in proportion to their samples, and what they cannot hold
    over the rest. Unknown CPU (the thread ended mid-window) counts those stacks as on CPU.
    """
    busy = {key: n for key, n in stacks.items() if wait_of(key) in ("", *ACTIVE_WAITS)}
    if cpu_frac is None:
        return {key: float(n) for key, n in busy.items()}
    want = min(1.0, max(0.0, cpu_frac)) * sum(stacks.values())
    busy_n = sum(busy.values())
    take = min(want, busy_n)
    out = {key: take * n / busy_n for key, n in busy.items()} if busy_n else {}
    rest = {key: n for key, n in stacks.items() if key not in busy}
    rest_n = sum(rest.values())
    if want > take and rest_n:
        out.update({key: (want - take) * n / rest_n for key, n in rest.items()})
    return {key: n for key, n in out.items() if n > 0}


def thread_breakdown(acc: _ThreadAcc, classes: StackClasses) -> PyThread:
    """One thread's active/GIL shares and wait classes from its stack counts."""
    n_all = sum(acc.all.values())
    n_act = sum(acc.active.values())
    total = max(n_all, n_act, 1)
    act_frac = min(1.0, n_act / total)
    weights: defaultdict[str, float] = defaultdict(float)
    if n_act:
        for key, n in acc.active.items():
            weights[breakdown_class(classes.wait_of(key), True)] += act_frac * n / n_act
    idle = _idle_weights(acc.all, acc.active)
    idle_sum = sum(idle.values())
    if act_frac < 1.0:
        if idle_sum > 0:
            for key, w in idle.items():
                if w > 0:
                    weights[breakdown_class(classes.wait_of(key), False)] += (1.0 - act_frac) * w / idle_sum
        else:
            weights["other"] += 1.0 - act_frac
    waits = tuple((cls, round(weights.get(cls, 0.0), 4)) for cls in BREAKDOWN_CLASSES)
    idle_classes = [(w, c) for c, w in weights.items() if c != "active" and w > 0]
    wait = max(idle_classes)[1] if weights.get("active", 0.0) < 0.5 and idle_classes else ""
    top = Counter(acc.all) or Counter(acc.active)
    top_key = top.most_common(1)[0][0] if top else None
    top_frame = ""
    if top_key is not None and top_key[2]:
        leaf = leaf_python(top_key[2]) or top_key[2][0]
        top_frame = frame_label(leaf)
    return PyThread(
        tid=0,
        name=acc.name,
        samples=round(total),
        active_pct=100.0 * act_frac,
        gil_pct=min(100.0, 100.0 * acc.gil / total),
        top_frame=top_frame,
        wait=wait,
        waits=waits,
    )


def hot_functions(stacks: Mapping[StackKey, float], limit: int, native_only: bool = False) -> tuple[HotFunction, ...]:
    """Self and total shares per function over ``stacks`` (the active ones: where the CPU goes)."""
    total = sum(stacks.values())
    if not total:
        return ()
    self_n: defaultdict[tuple[str, str], float] = defaultdict(float)
    total_n: defaultdict[tuple[str, str], float] = defaultdict(float)
    lines: dict[tuple[str, str], defaultdict[int | None, float]] = {}
    native: dict[tuple[str, str], bool] = {}
    for (_, _, frames), n in stacks.items():
        # Unresolved native frames (bare addresses) say nothing: their callers get the self share.
        chosen = [f for f in frames if f.native and not f.name.startswith("0x")] if native_only else list(frames)
        if not chosen:
            continue
        seen: set[tuple[str, str]] = set()
        for i, frame in enumerate(chosen):
            fkey = (frame.name, short_path(frame.file))
            if i == 0:
                self_n[fkey] += n
            if fkey not in seen:
                seen.add(fkey)
                total_n[fkey] += n
            lines.setdefault(fkey, defaultdict(float))[frame.line] += n
            native[fkey] = frame.native
    ranked = sorted(total_n, key=lambda k: (self_n[k], total_n[k]), reverse=True)[:limit]
    out = []
    for fkey in ranked:
        by_line = lines[fkey]
        line = max(by_line, key=by_line.__getitem__)
        location = fkey[1] if line is None else f"{fkey[1]}:{line}"
        out.append(
            HotFunction(
                name=fkey[0],
                location=location,
                self_pct=100.0 * self_n[fkey] / total,
                total_pct=100.0 * total_n[fkey] / total,
                native=native[fkey],
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NativeResult:
    """A native burst: op mix and native hot functions."""

    mix: tuple[tuple[str, float], ...]
    hot: tuple[HotFunction, ...]
    end_mono_s: float
    samples: int


def native_result(stacks: Counter[StackKey], end_mono_s: float) -> NativeResult | None:
    """The op mix of a native burst over the samples that were not waiting; None when there were none."""
    busy: Counter[StackKey] = Counter()
    mix: Counter[str] = Counter()
    for key, n in stacks.items():
        frames = key[2]
        if classify_wait(frames):
            continue
        busy[key] += n
        op = classify_op(frames)
        # No native frame below the leaf: the interpreter is running bytecode.
        mix["interpreter" if op is None else op] += n
    total = sum(mix.values())
    if not total:
        return None
    return NativeResult(
        mix=tuple((cls, mix.get(cls, 0) / total) for cls in OP_CLASSES),
        hot=hot_functions(Counter({k: n for k, n in busy.items() if leaf_native(k[2])}), TOP_NATIVE_HOT, True),
        end_mono_s=end_mono_s,
        samples=round(total),
    )


def build_sample(
    win: Window,
    source: SourceLines,
    native: NativeResult | None,
    native_new: bool,
    dt_s: float | None,
    stacks_pid: int | None = None,
    classes: StackClasses | None = None,
) -> PyStacksSample:
    """The public sample from merged window counts (``classes``: the collector's cache, kept across windows)."""
    classes = classes if classes is not None else StackClasses(source)
    threads = []
    on_cpu: defaultdict[StackKey, float] = defaultdict(float, win.active)
    for tid, acc in _per_thread(win).items():
        if win.active_from_cpu:
            wall = win.cpu_wall_s.get(tid, 0.0)
            frac = win.cpu_s[tid] / wall if tid in win.cpu_s and wall > 0 else None
            acc.active = active_from_cpu(acc.all, frac, classes.wait_of)
            for key, n in acc.active.items():
                on_cpu[key] += n
        threads.append(replace(thread_breakdown(acc, classes), tid=tid))
    threads.sort(key=lambda t: (t.active_pct, t.samples), reverse=True)
    wall = sum(t.samples for t in threads)
    waits: defaultdict[str, float] = defaultdict(float)
    for t in threads:
        for cls, frac in t.waits:
            waits[cls] += frac * t.samples
    active = [t.active_pct for t in threads if t.active_pct > 0]
    instants = win.instants or max((t.samples for t in threads), default=0)
    gil_pct = None
    if win.gil_known and instants:
        gil_pct = min(100.0, 100.0 * sum(win.gil.values()) / instants)
    hot = hot_functions(on_cpu, TOP_HOT)
    if native is not None and native_new:
        hot = hot + native.hot
    now = time.monotonic()
    return PyStacksSample(
        ts_s=time.time(),
        mono_s=now,
        dt_s=dt_s,
        mode=win.mode,
        window_s=win.window_s,
        samples=instants,
        threads=tuple(threads),
        gil_pct=gil_pct,
        active_pct=sum(active) / len(active) if active else 0.0,
        waits=tuple((cls, (waits.get(cls, 0.0) / wall) if wall else 0.0) for cls in BREAKDOWN_CLASSES),
        hot=hot,
        native_mix=native.mix if native is not None else None,
        native_age_s=(now - native.end_mono_s) if native is not None else None,
        trigger=win.trigger,
        stacks_pid=stacks_pid,
        py_op_mix=py_op_mix(on_cpu, classes.op_of),
    )


# -- the collector --------------------------------------------------------------------------------------------
class PyStacksCollector:
    """Samples the target's Python stacks with py-spy on a background thread; sample() never waits on it."""

    name: ClassVar[str] = "pystacks"

    def __init__(self, ctx: CollectorContext, pyspy: str | None = None) -> None:
        """Watch ``ctx.pid``; ``pyspy`` overrides where the py-spy binary is (tests, odd installs)."""
        opts = ctx.options
        self.pid = ctx.pid
        #: The process py-spy reads: the target, or its busiest Python child when the target is not Python.
        self.stacks_pid = ctx.pid
        self.interval_s = opts.interval_s
        self.rate_hz = max(1.0, float(opts.pyspy_rate_hz))
        #: Seconds per record window (py-spy takes whole seconds).
        self.window_s = max(1, round(max(2.0, opts.interval_s)))
        #: Share of wall time spent sampling: a window, then a pause, so the target pays a fraction of the cost.
        self.duty = min(1.0, max(0.05, float(opts.pyspy_duty)))
        self.gap_s = self.window_s * (1.0 / self.duty - 1.0)
        #: The duty in force: ``duty`` times the pace the session sets (``set_pace``).
        self.paced_duty = self.duty
        self._repace = threading.Event()
        #: Seconds a child may overrun its window before it is killed as hung.
        self.grace_s = GRACE_S
        self.native_every_s = max(0.0, float(opts.native_every_s))
        #: Seconds of one native burst, and how long it may overrun (symbol loading) before it is killed.
        self.native_window_s = 1
        self.native_grace_s = NATIVE_GRACE_S
        #: Why the last native burst failed ("" when it worked), and how long it took end to end.
        self.native_error = ""
        self.native_cost_s: float | None = None
        self.pyspy = pyspy if pyspy is not None else find_pyspy()
        self._source = SourceLines(ctx.pid)
        self._classes = StackClasses(self._source)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: list[Window] = []
        self._triggers: list[Window] = []
        self._error: str | None = None
        self._failures = 0
        self._native: NativeResult | None = None
        self._native_new = False
        self._native_busy = threading.Lock()
        self._trigger_busy = threading.Lock()
        self._next_native = time.monotonic() + self.native_every_s if self.native_every_s else None
        self._runner: PySpyRunner | None = None
        self._thread: threading.Thread | None = None
        self._checked_python = False
        self._prev_mono: float | None = None
        #: Cumulative CPU-seconds of the tree's Python processes at the last check, and when (for following the
        #: busiest one: a pre-fork master sleeps while its workers work).
        self._tree_cpu: dict[int, float] = {}
        self._tree_cpu_mono: float | None = None
        self._python_pids: dict[int, bool] = {}

    # -- public API -----------------------------------------------------------------------------------------
    def describe(self) -> str:
        """The doctor line."""
        return (
            f"py-spy {self.pyspy} at {self.rate_hz:g} Hz in {self.window_s} s non-blocking windows,"
            f" {self.duty:.0%} of the time (less while the verdict holds steady)"
        )

    def sample(self) -> PyStacksSample | None:
        """What arrived since the last call (a trigger dump first); None while the first window runs."""
        self._preflight()
        self._ensure_started()
        with self._lock:
            native = self._native
            if self._triggers:
                return self._finish(self._triggers.pop(0), native, False)
            pending, self._pending = self._pending, []
            error = self._error
            native_new = self._native_new and bool(pending)
            if pending:
                self._native_new = False
        if not pending:
            if error:
                raise SourceUnavailable(error)
            return None
        merged = pending[0]
        for other in pending[1:]:
            merged.merge(other)
        return self._finish(merged, native, native_new)

    def request_native(self) -> bool:
        """Run a short native burst now (the TUI's n key); False when one is already running."""
        return self._start_job(self._native_burst, self._native_busy, "native")

    def trigger(self, reason: str) -> bool:
        """Take one stack dump now (e.g. "GPU util dipped"); the next sample() returns it with ``reason``."""
        return self._start_job(lambda: self._trigger_dump(reason), self._trigger_busy, "trigger")

    def set_pace(self, factor: float) -> None:
        """Sample ``factor`` times the configured duty from now on (the gap in progress is re-timed at once).

        The session slows sampling while its verdict holds steady and restores it when the verdict moves: py-spy
        is most of optitop's CPU, and stacks that keep saying the same thing are worth fewer samples.
        """
        duty = min(1.0, max(0.05, self.duty * factor))
        if duty == self.paced_duty:
            return
        self.paced_duty = duty
        self.gap_s = self.window_s * (1.0 / duty - 1.0)
        self._repace.set()

    def live_children(self) -> list[int]:
        """Pids of py-spy children running right now."""
        return self._runner.live_pids() if self._runner else []

    def close(self) -> None:
        """Stop the sampling thread and kill every py-spy child."""
        self._stop.set()
        self._repace.set()
        if self._runner is not None:
            self._runner.close()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- checks ---------------------------------------------------------------------------------------------
    def _preflight(self) -> None:
        if not os.path.exists(f"/proc/{self.pid}"):
            raise TargetGone(f"pid {self.pid} exited")
        if not self.pyspy or not os.access(self.pyspy, os.X_OK):
            where = self.pyspy or "next to optitop's Python or on PATH"
            raise SourceUnavailable(f"py-spy not found ({where}): install it with `pip install py-spy`")
        if not self._checked_python:
            is_python, exe = python_in_process(self.pid)
            if is_python is False:
                child = busiest_python_child(self.pid)
                if child is None:
                    raise SourceUnavailable(f"{NOT_PYTHON} ({exe or 'unknown executable'}) and has no Python child")
                self._follow_child(child)
            self._checked_python = True

    def _child_replaced(self) -> bool:
        """The Python child we read has exited: move to the busiest one left (True), or leave it (False).

        Only the sampling thread calls this (after a failed window), so the switch never races a window.
        """
        if self.stacks_pid == self.pid:
            return False
        deadline = time.monotonic() + 1.0  # a killed worker takes a moment to finish exiting
        while _running(self.stacks_pid):
            if time.monotonic() > deadline or self._stop.wait(0.05):
                return False
        child = busiest_python_child(self.pid)
        if child is None or child == self.stacks_pid:
            if self._python_pids.get(self.pid):  # a Python master whose worker exited: read the master again
                self._follow_child(self.pid)
                return True
            return False
        self._follow_child(child)
        return True

    def _python_tree_cpu(self) -> dict[int, float]:
        """Cumulative CPU-seconds of the target and its Python descendants (python-ness cached per pid)."""
        try:
            pids = [self.pid, *(child for child, _parent in TargetTree(self.pid).descendant_pids())]
        except (SourceUnavailable, TargetGone):
            return {}
        out: dict[int, float] = {}
        for pid in pids:
            if pid not in self._python_pids:
                try:
                    self._python_pids[pid] = python_in_process(pid)[0] is not False
                except TargetGone:
                    continue
            stat = read_stat(f"/proc/{pid}/stat")
            if self._python_pids[pid] and stat is not None:
                out[pid] = stat.cpu_s
        return out

    def _follow_busiest(self) -> None:
        """Between windows: read the tree's busiest Python process when the one read now sits idle.

        Only the sampling thread calls this (between windows), so the switch never races a window.
        """
        now = time.monotonic()
        cpu = self._python_tree_cpu()
        before, before_mono = self._tree_cpu, self._tree_cpu_mono
        self._tree_cpu, self._tree_cpu_mono = cpu, now
        if before_mono is None or len(cpu) < 2:
            return
        choice = follow_choice(self.stacks_pid, busiest_recent(cpu, before, now - before_mono))
        if choice is not None:
            self._follow_child(choice)

    def _follow_child(self, child: int) -> None:
        """Read ``child``'s stacks from now on (the target itself is not Python, or it idles while ``child`` works;
        ``child`` may also be the target itself again)."""
        self.stacks_pid = child
        self._source = SourceLines(child)
        self._classes = StackClasses(self._source)
        if self._runner is not None:
            self._runner.target_pid = child

    def _ensure_started(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        assert self.pyspy is not None
        self._runner = PySpyRunner(self.pyspy, self.stacks_pid)
        self._thread = threading.Thread(target=self._loop, name="optitop-pystacks", daemon=True)
        self._thread.start()

    def _finish(self, win: Window, native: NativeResult | None, native_new: bool) -> PyStacksSample:
        now = time.monotonic()
        dt = None if self._prev_mono is None else now - self._prev_mono
        self._prev_mono = now
        return build_sample(win, self._source, native, native_new, dt, win.pid or self.stacks_pid, self._classes)

    # -- the background loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            win, error = self._record_window()
            if win is None and self._child_replaced():
                with self._lock:
                    self._error, self._failures = None, 0
                continue
            with self._lock:
                if win is not None:
                    self._pending.append(win)
                    del self._pending[:-30]  # nobody is reading: keep a bounded backlog
                    self._error = None
                    self._failures = 0
                else:
                    self._failures += 1
                    self._error = error
            if win is None:
                delay = min(MAX_BACKOFF_S, 2.0 ** min(self._failures, 6))
                with self._lock:
                    self._error = f"{error}; retrying in {delay:.0f} s"
                self._stop.wait(delay)
                continue
            self._follow_busiest()
            self._pause()
            due = self._next_native
            if due is not None and time.monotonic() >= due:
                self._next_native = time.monotonic() + self._native_period()
                self.request_native()

    def _pause(self) -> None:
        """Wait out the gap between windows, re-timed when ``set_pace`` changes it meanwhile."""
        start = time.monotonic()
        while not self._stop.is_set():
            left = start + self.gap_s - time.monotonic()
            if left <= 0:
                return
            self._repace.wait(left)
            self._repace.clear()

    def _native_period(self) -> float:
        """Seconds to the next periodic native burst: the option, stretched so bursts stay a small share."""
        cost = self.native_cost_s or 0.0
        return max(self.native_every_s, NATIVE_DUTY_FACTOR * cost)

    def _record_args(self, extra: Sequence[str], duration: int, rate: float) -> list[str]:
        return [
            "record",
            "--pid",
            str(self.stacks_pid),
            "--format",
            "raw",
            "--threads",
            "--full-filenames",
            "--rate",
            str(max(1, round(rate))),
            "--duration",
            str(duration),
            # A pipe, not a file: nothing is left on disk if optitop is killed. py-spy's own "py-spy>" lines
            # share the pipe; the parser skips them (data lines start with "thread (").
            "-o",
            "/dev/stdout",
            *extra,
        ]

    def _record_window(self) -> tuple[Window | None, str]:
        """Two non-blocking records over the same seconds (all stacks, GIL stacks) and each thread's CPU time."""
        runner = self._runner
        assert runner is not None
        streams = {"all": ["--nonblocking", "--idle"], "gil": ["--nonblocking", "--gil"]}
        pid = self.stacks_pid
        cpu_before = {tid: st.cpu_s for tid, st in thread_stats(pid).items()}
        start = time.monotonic()
        deadline = start + self.window_s + self.grace_s
        started: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for kind, flags in streams.items():
                started[kind] = runner.start(self._record_args(flags, self.window_s, self.rate_hz))
        except (OSError, RuntimeError) as exc:
            for proc in started.values():  # do not leave the streams that did start running
                runner.finish(proc, 0.0, blocking=False)
            return None, f"cannot start py-spy: {exc}"
        results = {k: runner.finish(p, deadline, blocking=False) for k, p in started.items()}
        cpu_after = {tid: st.cpu_s for tid, st in thread_stats(pid).items()}
        elapsed = time.monotonic() - start
        if self._stop.is_set():
            return None, "stopped"
        if any(r.timed_out for r in results.values()):
            return (
                None,
                f"py-spy did not finish a {self.window_s} s window in {self.window_s + self.grace_s:.0f} s: killed",
            )
        failed = next((r for r in results.values() if r.rc != 0), None)
        if failed is not None:
            if not os.path.exists(f"/proc/{self.pid}"):
                return None, f"target pid {self.pid} exited"
            if not os.path.exists(f"/proc/{self.stacks_pid}"):
                return None, f"Python child {self.stacks_pid} exited"
            return None, explain_failure(failed.messages, failed.rc)
        win = Window(mode="record", window_s=elapsed, instants=0, pid=pid, active_from_cpu=True)
        win.all = parse_raw(results["all"].output)
        win.gil = parse_raw(results["gil"].output)
        per_tid: Counter[int] = Counter()
        for key, n in win.all.items():
            per_tid[key[0]] += n
        win.instants = max(per_tid.values(), default=0)
        for tid, n in per_tid.items():
            if tid not in cpu_after:
                continue  # ended mid-window: its CPU is gone with it
            win.cpu_s[tid] = cpu_after[tid] - cpu_before.get(tid, 0.0)
            # A thread born in the window used its CPU over the part of it it was sampled in.
            win.cpu_wall_s[tid] = elapsed if tid in cpu_before else elapsed * n / max(1, win.instants)
        return win, ""

    # -- on-demand jobs -------------------------------------------------------------------------------------
    def _start_job(self, job: object, busy: threading.Lock, name: str) -> bool:
        if self._stop.is_set() or not busy.acquire(blocking=False):
            return False
        try:
            self._preflight()
            self._ensure_started()
        except (SourceUnavailable, TargetGone):
            busy.release()
            return False

        def run() -> None:
            try:
                job()  # type: ignore[operator]
            finally:
                busy.release()

        threading.Thread(target=run, name=f"optitop-pystacks-{name}", daemon=True).start()
        return True

    def _native_burst(self) -> None:
        runner = self._runner
        if runner is None:
            return
        args = self._record_args(["--native", "--idle"], self.native_window_s, self.rate_hz)
        try:
            result = runner.run(args, self.native_window_s + self.native_grace_s, blocking=True)
        except (OSError, RuntimeError) as exc:
            self.native_error = f"cannot start py-spy: {exc}"
            return
        if result.timed_out:
            self.native_error = f"native burst did not finish in {self.native_window_s + self.native_grace_s:.0f} s"
            return
        if result.rc != 0:
            self.native_error = explain_failure(result.messages, result.rc)
            return
        self.native_error = ""
        self.native_cost_s = result.elapsed_s
        got = native_result(parse_raw(result.output), time.monotonic())
        if got is not None:
            with self._lock:
                self._native = got
                self._native_new = True

    def _trigger_dump(self, reason: str) -> None:
        runner = self._runner
        if runner is None:
            return
        args = ["dump", "--pid", str(self.stacks_pid), "--json", "--nonblocking", "--full-filenames"]
        try:
            result = runner.run(args, self.grace_s, blocking=False)
        except (OSError, RuntimeError):
            return
        if result.rc != 0 or result.timed_out:
            return
        try:
            threads = parse_dump(result.output)
        except (ValueError, TypeError):
            return
        with self._lock:
            self._triggers.append(window_from_dump(threads, reason))
            del self._triggers[:-5]
