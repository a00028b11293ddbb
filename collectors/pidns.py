"""PID namespaces and the target's process tree, as NVML needs them.

NVML reports host pids (it lives in the initial PID namespace). Matching them to the target needs the target's
whole tree (an engine's GPU work runs in a worker, not in the process the person named) and knowing whether
optitop itself runs in the host's PID namespace: inside a container, host pids cannot be matched at all, and
matching anyway would pair unrelated processes that happen to share a number.

NVML's per-process utilisation buffer holds several samples per pid; only the newest of each counts.
"""

from __future__ import annotations

import os
from typing import Any

#: The inode of the initial PID namespace (PROC_PID_INIT_INO in the kernel): NVML's pids live there.
INIT_PID_NS = "pid:[4026531836]"


def newest_per_pid(samples: list[Any]) -> dict[int, Any]:
    """NVML's process-utilisation buffer holds several samples per pid: keep the newest of each."""
    out: dict[int, Any] = {}
    for s in samples:
        prev = out.get(int(s.pid))
        if prev is None or int(s.timeStamp) > int(prev.timeStamp):
            out[int(s.pid)] = s
    return out


def in_initial_pid_namespace() -> bool | None:
    """Whether optitop shares the host's PID namespace (where NVML's pids live); None when unknown."""
    try:
        return os.readlink("/proc/self/ns/pid") == INIT_PID_NS
    except OSError:
        return None


def tree_pids(pid: int) -> list[int]:
    """The target and its descendants, from one pass over /proc (no psutil: the GPU check runs without it)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return [pid]
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2 :].split()
        if len(rest) > 1:
            children.setdefault(int(rest[1]), []).append(int(entry))
    if not os.path.exists(f"/proc/{pid}"):
        return []
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out
