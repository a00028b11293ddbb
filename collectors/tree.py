"""The target process and its descendants, with the one check every collector needs: is it still ours?

A pid can exit and be reused by another process; comparing the create time catches that, so no collector
attaches to a stranger silently. Both run every tick, so both read /proc directly: one stat file for the check,
and the kernel's per-thread ``children`` lists for the tree, instead of psutil's scan of every process on the host.
"""

from __future__ import annotations

import psutil

from optitop.collectors.procfs import CLOCK_TICKS_PER_S, child_pids, read_stat
from optitop.model import SourceUnavailable, TargetGone

#: Create times are counted in clock ticks: two readings of one process agree to well within half a tick.
_SAME_START_S = 0.5 / CLOCK_TICKS_PER_S


class TargetTree:
    """The target as psutil sees it, remembered with its create time."""

    def __init__(self, pid: int) -> None:
        """Attach to ``pid``; SourceUnavailable when it does not exist."""
        self.pid = pid
        try:
            self.proc = psutil.Process(pid)
            self.create_time = self.proc.create_time()
        except psutil.NoSuchProcess as exc:
            raise SourceUnavailable(f"no process with pid {pid}") from exc
        stat = read_stat(f"/proc/{pid}/stat")
        # The boot time as psutil used it, so later stat reads convert to the same create-time scale.
        self._boot_s = self.create_time - (stat.start_ticks / CLOCK_TICKS_PER_S if stat else 0.0)

    def check(self) -> None:
        """TargetGone when the target exited, became a zombie or its pid now names another process."""
        # A fresh read: psutil caches create_time() per Process object, so asking self.proc would never see
        # that the pid was reused.
        stat = read_stat(f"/proc/{self.pid}/stat")
        if stat is None:
            raise TargetGone(f"pid {self.pid} exited")
        if abs(self._boot_s + stat.start_ticks / CLOCK_TICKS_PER_S - self.create_time) > _SAME_START_S:
            raise TargetGone(f"pid {self.pid} now belongs to another process")
        if stat.state == "Z":
            raise TargetGone(f"pid {self.pid} exited (zombie)")

    def descendant_pids(self) -> list[tuple[int, int]]:
        """(pid, parent pid) of every descendant, parents before their children, after check()."""
        self.check()
        out: list[tuple[int, int]] = []
        queue = [self.pid]
        seen = {self.pid}
        while queue:
            parent = queue.pop(0)
            kids = child_pids(parent)
            if kids is None:
                return self._scanned_descendants()
            for kid in kids:
                if kid not in seen:
                    seen.add(kid)
                    out.append((kid, parent))
                    queue.append(kid)
        return out

    def _scanned_descendants(self) -> list[tuple[int, int]]:
        """The slow way, for kernels without ``children`` files: psutil reads every process's parent."""
        try:
            found = self.proc.children(recursive=True)
        except psutil.NoSuchProcess as exc:
            raise TargetGone(f"pid {self.pid} exited") from exc
        except psutil.AccessDenied:
            return []
        out = []
        for child in found:
            try:
                out.append((child.pid, child.ppid()))
            except psutil.Error:
                continue
        return out

    def pids(self) -> list[int]:
        """The target's pid followed by its descendants'."""
        return [self.pid, *(pid for pid, _ in self.descendant_pids())]

    def descendants(self) -> list[psutil.Process]:
        """The target's children, recursively, after check(); empty when we may not list them."""
        out = []
        for pid, _ in self.descendant_pids():
            try:
                out.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        return out

    def processes(self) -> list[psutil.Process]:
        """The target followed by its descendants."""
        return [self.proc, *self.descendants()]
