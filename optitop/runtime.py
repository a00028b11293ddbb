"""The composition root: the one place live stores and sessions are built (live screen, follow, and the helpers the
headless, record, export and bundle commands call), and the live screen's handle (``LiveRuntime``). A replay's
store is the replayer's own (``optitop.recording.replayer``): nothing is collected into it.

A target is described once (``describe(pid)``): the store is made from that description, and the session for it is
built into that store. The screen receives a ``LiveRuntime`` (an ``optitop.live.LiveHandle``) and never a session,
a store, a recorder or a bundle writer.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from optitop.analyzers import judge
from optitop.collectors import REGISTRY, available_specs
from optitop.config import CollectorContext, Options
from optitop.follow import FollowingSession
from optitop.live import Notice, StoreView
from optitop.model import Collector, SourceState, SourceStatus, SourceUnavailable
from optitop.session import LiveSession, Session
from optitop.store import Store
from optitop.target import describe

if TYPE_CHECKING:
    from optitop.recording.writer import Recorder


def build_collectors(ctx: CollectorContext) -> tuple[list[Collector], list[SourceStatus]]:
    """Every enabled collector, plus a status for each one that is off or could not be built."""
    built: list[Collector] = []
    statuses: list[SourceStatus] = []
    present = {s.name for s in available_specs()}
    for spec in REGISTRY:
        if spec.name not in present:
            continue
        off = spec.off_reason(ctx.options)
        if off:
            statuses.append(SourceStatus(spec.name, SourceState.DISABLED, off))
            continue
        try:
            built.append(spec.build(ctx))
        except SourceUnavailable as exc:
            statuses.append(SourceStatus(spec.name, SourceState.UNAVAILABLE, str(exc)))
        except Exception as exc:  # a broken collector must not stop the others
            statuses.append(SourceStatus(spec.name, SourceState.ERROR, f"{type(exc).__name__}: {exc}"))
    return built, statuses


def make_store(pid: int, options: Options) -> Store:
    """An empty store for ``pid``, described now (a missing pid raises ``TargetError`` here)."""
    return Store(describe(pid), history_s=options.history_s)


def make_session(pid: int, options: Options, store: Store | None = None) -> Session:
    """A ready-to-start session watching ``pid`` (into ``store`` when given: history carries over).

    ``pid`` is described only when there is no store yet: a given store already holds its description.
    """
    if store is None:
        store = make_store(pid, options)
    collectors, unavailable = build_collectors(CollectorContext(pid=pid, options=options))
    return Session(store, collectors, options, analyzer=judge, unavailable=unavailable)


def follow_session(
    pid: int, options: Options, port: int | None, name: str | None, poll_s: float = 1.0, store: Store | None = None
) -> FollowingSession:
    """A session watching ``pid`` that re-attaches to the process found by ``port`` or ``name`` after it exits."""
    FollowingSession.check(port, name)
    if store is None:
        store = make_store(pid, options)

    def attach(new_pid: int, into: Store) -> LiveSession:
        return make_session(new_pid, options, into)

    return FollowingSession(store, options, port, name, attach, poll_s=poll_s)


class LiveRuntime(StoreView):
    """The live screen's handle on a target: its store, its session (built and started by ``start``), the
    recording the ``r`` key toggles, the bundle ``b`` writes and the native sample ``n`` asks for."""

    def __init__(self, store: Store, options: Options, build: Callable[[], LiveSession] | None = None) -> None:
        """Show ``store``; ``build`` makes the session that feeds it (called by ``start``, on the screen's start-up
        thread: importing and starting the collectors takes a third of a second the user would otherwise wait for at
        a blank terminal). Without ``build`` nothing is collected, but recording and bundles still work."""
        super().__init__(store)
        self.options = options
        self._build = build
        self._session: LiveSession | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._stacks_watched = False
        self._recorder: Recorder | None = None

    #: What ``n`` says when no stack sampler runs (py-spy turned off or unavailable).
    NO_SAMPLER = "native stacks: no stack sampler is running (optitop doctor says why)"

    @property
    def live(self) -> bool:
        """A live target is behind this screen."""
        return True

    @property
    def session(self) -> LiveSession | None:
        """The running session (None before ``start`` finished, and for good when stopped before that)."""
        return self._session

    def start(self) -> None:
        """Build the session and start it, unless ``stop`` came first (then nothing is started)."""
        if self._build is None:
            return
        session = self._build()
        with self._lock:
            if self._closing:
                return  # the user quit while we were building: nothing was started
            session.stacks_watched = self._stacks_watched
            session.start()
            self._session = session

    def stop(self, timeout_s: float = 3.0) -> None:
        """Close the recording (it gets its end line), then stop collecting (bounded wait); idempotent."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None:
            recorder.stop()
        with self._lock:
            self._closing = True
            session = self._session
        if session is not None:
            session.stop(timeout_s)

    def set_stacks_watched(self, watched: bool) -> None:
        """Stacks the user is looking at are sampled at full duty (kept for a session not started yet)."""
        self._stacks_watched = watched
        if self._session is not None:
            self._session.stacks_watched = watched

    def request_native(self) -> Notice:
        """Ask the stack sampler for a 1 s native burst (it pauses the target; ~2 s for torch)."""
        sampler = self._session.stacks() if self._session is not None else None
        if sampler is None:
            return Notice(self.NO_SAMPLER, "warning")
        started = sampler.request_native()  # returns at once; the burst runs on its own thread
        if started:
            return Notice("native stack sample started (pauses the target briefly)")
        return Notice("a native sample is already running")

    @property
    def recording(self) -> str:
        """The name of the file being recorded ("" when none)."""
        return os.path.basename(self._recorder.path) if self._recorder is not None else ""

    def toggle_record(self) -> tuple[Notice, ...]:
        """Start or stop recording everything the store receives to a timestamped file (0600) in the cwd.

        The file is written as ``NAME.part`` and renamed to NAME on stop (optitop.safefile). The name is
        predictable, so when it is taken (or a link was planted there) the next numbered name is used: a key
        press never writes through a link or over a file.
        """
        from optitop.recording.writer import Recorder, default_record_path
        from optitop.safefile import RefusedPathError, numbered_names

        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.stop()
            if recorder.error:
                text = (
                    f"the recording stopped early ({recorder.error}); {recorder.events} events kept in "
                    f"{recorder.saved_path}"
                )
                return (Notice(text, "error"),)
            return (Notice(f"recorded {recorder.events} events to {recorder.path}"),)
        first = default_record_path(self.store.target.pid)
        skipped: list[RefusedPathError] = []
        for path in numbered_names(first, ".jsonl.gz"):
            recorder = Recorder(self.store, path, options=self.options)
            try:
                recorder.start()
                break
            except RefusedPathError as exc:
                skipped.append(exc)
            except OSError as exc:
                return (Notice(f"cannot record to {path}: {exc.strerror or exc}", "error"),)
        else:
            return (Notice(f"cannot record: {first} and the numbered names after it are taken", "error"),)
        self._recorder = recorder
        if skipped:
            return (Notice(f"{skipped[0].filename} {skipped[0].strerror}: recording to {path} instead", "warning"),)
        return ()

    def write_bundle(self) -> Notice:
        """Create the archive's file first (a free name, never through a link), then gather and write it."""
        from optitop.bundle import gather, queue_endpoints, write_archive
        from optitop.safefile import create_numbered

        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = f"optitop-incident-{self.store.target.pid}-{stamp}.tar.gz"
        try:
            out, skipped = create_numbered(path, ".tar.gz")
        except OSError as exc:
            return Notice(f"cannot write {path}: {exc.strerror or exc}", "error")
        try:
            write_archive(out, gather(self.store, self.options, 10, queue_endpoints(self._session)))
        except OSError as exc:  # write_archive removed the temporary file: no half archive is left
            return Notice(f"cannot write {out.path}: {exc.strerror or exc}", "error")
        finally:
            out.discard()  # a no-op once committed; removes the file when gather failed
        note = f" ({skipped[0].filename} {skipped[0].strerror})" if skipped else ""
        return Notice(f"wrote {out.path}{note}")


def live_runtime(pid: int, options: Options, follow: tuple[int | None, str | None] | None = None) -> LiveRuntime:
    """The handle for the live screen on ``pid``; ``follow`` = (port, name) re-attaches on restart.

    The target is described here, once (a missing pid fails now, before the screen); its session is built when the
    screen starts the handle.
    """
    if follow is None:
        store = make_store(pid, options)
        return LiveRuntime(store, options, build=lambda: make_session(pid, options, store))
    port, name = follow
    FollowingSession.check(port, name)
    store = make_store(pid, options)
    return LiveRuntime(store, options, build=lambda: follow_session(pid, options, port, name, store=store))
