"""Small, exact readers for the /proc fields psutil does not expose (thread names and states, page faults).

Reading ``/proc/PID/task/TID/stat`` gives a thread's name, state and CPU ticks in one read, where psutil
would need several calls and still lack the name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class StatFields:
    """The fields of a /proc stat line that optitop uses."""

    comm: str
    state: str
    minor_faults: int
    major_faults: int
    cpu_s: float
    num_threads: int
    start_ticks: int


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
        minor_faults=int(rest[7]),
        major_faults=int(rest[9]),
        cpu_s=(int(rest[11]) + int(rest[12])) / CLOCK_TICKS_PER_S,
        num_threads=int(rest[17]),
        start_ticks=int(rest[19]),
    )


def read_stat(path: str) -> StatFields | None:
    """Read and parse one stat file; None when it vanished (the thread or process exited)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return parse_stat(fh.read())
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        return None


def list_tids(pid: int) -> list[int]:
    """The thread ids of one process (empty when it is gone)."""
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (FileNotFoundError, ProcessLookupError):
        return []


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
