"""Which process of the target's tree holds the Python whose stacks are read.

The target is not always the Python process: a frontend in Java or C++ (TorchServe, Triton) runs its Python in
worker processes, and a pre-fork master sleeps while its workers do the work. These functions tell a Python
process from another one by /proc alone (before py-spy is asked), find the busiest Python descendant, and
decide when to move to another one without flipping between workers that take turns.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from optitop.collectors.procfs import read_stat
from optitop.collectors.tree import TargetTree
from optitop.model import SourceUnavailable, TargetGone


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


def is_running(pid: int) -> bool:
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
        if is_python and stat is not None and is_running(child) and (best is None or stat.cpu_s > best[0]):
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
