"""The target process and its descendants, with the one check every collector needs: is it still ours?

A pid can exit and be reused by another process; comparing the create time catches that, so no collector
attaches to a stranger silently.
"""

from __future__ import annotations

import psutil

from optitop.types import SourceUnavailable, TargetGone


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

    def check(self) -> None:
        """TargetGone when the target exited, became a zombie or its pid now names another process."""
        try:
            # A fresh read: psutil caches create_time() per Process object, so asking self.proc would never see
            # that the pid was reused.
            if psutil.Process(self.pid).create_time() != self.create_time:
                raise TargetGone(f"pid {self.pid} now belongs to another process")
            if self.proc.status() == psutil.STATUS_ZOMBIE:
                raise TargetGone(f"pid {self.pid} exited (zombie)")
        except psutil.NoSuchProcess as exc:
            raise TargetGone(f"pid {self.pid} exited") from exc

    def descendants(self) -> list[psutil.Process]:
        """The target's children, recursively, after check(); empty when we may not list them."""
        self.check()
        try:
            return self.proc.children(recursive=True)
        except psutil.NoSuchProcess as exc:
            raise TargetGone(f"pid {self.pid} exited") from exc
        except psutil.AccessDenied:
            return []

    def processes(self) -> list[psutil.Process]:
        """The target followed by its descendants."""
        return [self.proc, *self.descendants()]
