"""``--follow``: when the target dies, wait for a process matching the same port or cmdline and re-attach.

On-call restarts the server while watching it. The store (and so the history) is kept; the new process's
samples continue the same series, and the gap between the two shows as a gap in every sparkline.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from optitop.config import Options
from optitop.policies import StackSampler
from optitop.session import CollectorRunner, LiveSession
from optitop.store import Store
from optitop.target import TargetError, describe, resolve

#: Builds the session for one process into the (kept) store; ``optitop.runtime`` supplies it, so sessions are
#: built in one place.
Attach = Callable[[int, Store], LiveSession]


class FollowingSession:
    """A ``LiveSession`` that re-attaches to a new process found by ``port`` or ``name`` after the target exits."""

    def __init__(
        self,
        store: Store,
        options: Options,
        port: int | None,
        name: str | None,
        attach: Attach,
        poll_s: float = 1.0,
    ) -> None:
        """Watch ``store``'s target now; after it exits, look for the next match every ``poll_s`` seconds."""
        self.check(port, name)
        self.options = options
        self._port = port
        self._name = name
        self._poll_s = poll_s
        self._attach = attach
        self.store = store
        self.current: LiveSession = attach(store.target.pid, store)
        self._stacks_watched = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="optitop-follow", daemon=True)

    @staticmethod
    def check(port: int | None, name: str | None) -> None:
        """Raise ValueError unless there is a way to find the restarted process."""
        if port is None and name is None:
            raise ValueError("--follow needs --port or --name to find the restarted process")

    def start(self) -> None:
        """Start collecting and watching for restarts."""
        self.current.start()
        self._thread.start()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop watching and collecting."""
        self._stop.set()
        with self._lock:
            self.current.stop(timeout_s)
        self._thread.join(timeout_s)

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    def runner(self, name: str) -> CollectorRunner | None:
        """The current session's runner of one collector."""
        return self.current.runner(name)

    def stacks(self) -> StackSampler | None:
        """The current session's stack sampler, if any."""
        return self.current.stacks()

    @property
    def stacks_watched(self) -> bool:
        """True while the user looks at the stacks (see ``Session.stacks_watched``); kept across re-attaches."""
        return self._stacks_watched

    @stacks_watched.setter
    def stacks_watched(self, watched: bool) -> None:
        self._stacks_watched = watched
        self.current.stacks_watched = watched

    def _find_successor(self, old_pid: int) -> int | None:
        try:
            pid = resolve(None, self._port, self._name)
        except TargetError:  # none yet, or several: keep waiting rather than guess
            return None
        return pid if pid != old_pid else None

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            old = self.store.target
            if not old.exited:
                continue
            pid = self._find_successor(old.pid)
            if pid is None:
                continue
            try:
                fresh = describe(pid)
            except TargetError:
                continue
            with self._lock:
                if self._stop.is_set():
                    return
                self.current.stop()
                self.store.set_target(
                    dataclasses.replace(fresh, previous_pids=(*old.previous_pids, old.pid), reattached_at_s=time.time())
                )
                self.current = self._attach(pid, self.store)
                self.current.stacks_watched = self.stacks_watched
                self.current.start()
