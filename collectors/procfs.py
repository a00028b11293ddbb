"""Small, exact readers for the /proc fields psutil does not expose (thread names and states, page faults).

Reading ``/proc/PID/task/TID/stat`` gives a thread's name, state and CPU ticks in one read, where psutil
would need several calls and still lack the name.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Whether this kernel has /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN, on in the common distributions).
HAS_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


@dataclass(frozen=True, slots=True)
class StatFields:
    """The fields of a /proc stat line that optitop uses."""

    comm: str
    state: str
    ppid: int
    minor_faults: int
    major_faults: int
    cpu_s: float
    num_threads: int
    start_ticks: int


#: The state letters of a stat line, in psutil's words (so a state reads the same whichever way it was read).
STATE_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "T": "stopped",
    "t": "tracing-stop",
    "Z": "zombie",
    "X": "dead",
    "x": "dead",
    "K": "wake-kill",
    "W": "waking",
    "I": "idle",
    "P": "parked",
}


def parse_stat(text: str) -> StatFields:
    """Parse one ``/proc/.../stat`` line; comm may contain spaces and parentheses."""
    open_paren = text.index("(")
    close_paren = text.rindex(")")
    comm = text[open_paren + 1 : close_paren]
    rest = text[close_paren + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return StatFields(
        comm=comm,
        state=rest[0],
        ppid=int(rest[1]),
        minor_faults=int(rest[7]),
        major_faults=int(rest[9]),
        cpu_s=(int(rest[11]) + int(rest[12])) / CLOCK_TICKS_PER_S,
        num_threads=int(rest[17]),
        start_ticks=int(rest[19]),
    )


def boot_clock_s() -> float:
    """Seconds since boot on the clock that stat's ``start_ticks`` counts (CLOCK_BOOTTIME: it includes suspend).

    Comparing a thread's start with this tells whether it was born since an earlier reading.
    """
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def read_proc_text(path: str, limit_bytes: int = 1 << 20) -> str | None:
    """A small /proc file's text, or None when it is missing or unreadable.

    Plain ``os.open``/``os.read``: a text-mode ``open()`` costs about five times as much per file (≈ 50 µs against
    ≈ 10 µs here), and the process collector reads one file per thread every tick.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks = []
        size = 0
        while size < limit_bytes:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def read_stat(path: str) -> StatFields | None:
    """Read and parse one stat file; None when it vanished (the thread or process exited)."""
    text = read_proc_text(path)
    if text is None:
        return None
    try:
        return parse_stat(text)
    except (ValueError, IndexError):
        return None


def child_pids(pid: int) -> list[int] | None:
    """The direct children of ``pid`` from each thread's ``children`` file; None when the kernel lacks them.

    Asking the kernel for one process's children costs one small read per thread, where psutil's
    ``children()`` reads the stat file of every process on the host (most of a tick on a busy node).
    """
    if not HAS_CHILDREN_FILES:
        return None
    kids: list[int] = []
    for tid in list_tids(pid):
        text = read_proc_text(f"/proc/{pid}/task/{tid}/children")
        if text:
            kids.extend(int(word) for word in text.split())
    return kids


def list_tids(pid: int) -> list[int]:
    """The thread ids of one process (empty when it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        return []


def thread_stats(pid: int) -> dict[int, StatFields]:
    """Each live thread's stat fields by thread id (a thread that ends while being read is left out)."""
    out: dict[int, StatFields] = {}
    for tid in list_tids(pid):
        stat = read_stat(f"/proc/{pid}/task/{tid}/stat")
        if stat is not None:
            out[tid] = stat
    return out


def read_status_field(pid: int, key: str) -> str | None:
    """One ``Key:`` line's value from /proc/PID/status (e.g. NSpid), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return line.split(":", 1)[1].strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None
