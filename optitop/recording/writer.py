"""Recording a session to a JSON Lines file that ``optitop replay`` and ``optitop compare`` read back.

What each line holds is ``codec``'s (see its docstring). The lines go to ``PATH.part`` and the file is renamed
onto ``PATH`` when the recording ends (see ``optitop.safefile``: a new 0600 file, never written through a link,
an existing ``PATH`` replaced only with ``--force`` and only by the rename). Every line is flushed as it is
written (``.gz`` files get a zlib sync flush per line), so a killed optitop, or one whose disk filled up, leaves
``PATH.part``, which replays up to its last complete line; ``optitop record`` names that file when it starts.
Files are 0600: they hold cmdlines and server metrics of someone else's process.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import socket
import threading
import time
import zlib
from collections.abc import Sequence
from typing import IO, Any

from optitop import __version__
from optitop.config import Options
from optitop.model import Diagnosis, SelfCost, SourceStatus, TargetInfo
from optitop.recording.codec import (
    HEADER_OPTIONS,
    HEADER_TYPE,
    SCHEMA_VERSION,
    diagnosis_line,
    encode_line,
    end_line,
    sample_line,
    self_line,
    status_line,
    target_line,
    to_jsonable,
)
from optitop.safefile import SafeFile
from optitop.store import Store

#: Seconds between the writer's sweeps when nothing wakes it (it is woken by every store change).
SWEEP_S = 0.5
#: Options written into the header (what a replay or a comparison needs to interpret the data).


class LineWriter:
    """Writes one JSON object per line to ``PATH.part`` and makes each line durable against a kill of optitop.

    The file is created by :class:`~optitop.safefile.SafeFile` (new, 0600, never through a link) and renamed
    onto ``path`` by ``close()``. A killed optitop, or a disk that filled up, leaves ``PATH.part``: it replays
    up to its last complete line, and an existing ``path`` is left as it was.
    """

    def __init__(self, path: str, *, force: bool = False) -> None:
        """Create ``path``'s temporary file (``RefusedPathError`` when ``path`` exists and not ``force``, or is a link
        or a special file; ``OSError`` when it cannot be created)."""
        self.path = path
        self._out = SafeFile(path, force=force)
        gz = path.endswith(".gz")
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._out.file, mtime=0) if gz else None
        self._fh: IO[bytes] | gzip.GzipFile = self._gzip if self._gzip is not None else self._out.file
        self.lines = 0

    @property
    def part_path(self) -> str:
        """Where the lines are until ``close()`` renames them onto ``path``."""
        return self._out.part_path

    def write(self, obj: dict[str, Any]) -> None:
        """Append one line and flush it to the OS (a sync flush for gzip, so the line can be decompressed)."""
        self._fh.write(encode_line(obj))
        if self._gzip is not None:
            self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self._out.file.flush()
        self.lines += 1

    def close(self) -> None:
        """Finish the file (the gzip trailer is written here) and rename it onto ``path``.

        On ``OSError`` the temporary file is kept (what it holds replays) and the error raised.
        """
        try:
            if self._gzip is not None:
                self._gzip.close()  # writes the trailer; leaves the file under it open
            self._out.commit()
        except OSError:
            self._out.keep()
            raise

    def discard(self) -> None:
        """Stop writing and remove the temporary file (nothing in it is worth keeping)."""
        self.abandon()
        self._out.discard()

    def abandon(self) -> str:
        """Stop writing without renaming (after a write failed); returns the kept temporary file's name."""
        if self._gzip is not None:
            with contextlib.suppress(OSError, ValueError):
                self._gzip.close()
        return self._out.keep()


def header(store: Store, options: Options | None, collectors: Sequence[str] = ()) -> dict[str, Any]:
    """The first line: what was watched, where, with which sources and options."""
    statuses = store.statuses()
    target = store.target
    opts = {name: getattr(options, name) for name in HEADER_OPTIONS} if options is not None else {}
    return {
        "type": HEADER_TYPE,
        "schema_version": SCHEMA_VERSION,
        "optitop_version": __version__,
        "created_at": time.time(),
        "created_mono_s": store.now_mono_s(),
        "host": target.host or socket.gethostname(),
        "target": to_jsonable(target),
        "collectors": sorted(set(collectors) | set(statuses)),
        "sources": {name: to_jsonable(st) for name, st in sorted(statuses.items())},
        "options": opts,
    }


class _Marks:
    """What the writer has already written, so every sweep writes only what is new."""

    def __init__(self) -> None:
        self.sample_mono: dict[str, float] = {}
        self.diag_mono = float("-inf")
        self.diag_last: Diagnosis | None = None
        self.status: dict[str, tuple[str, str]] = {}
        self.target: TargetInfo | None = None
        self.self_cost: SelfCost | None = None
        self.self_mono = float("-inf")


class Recorder:
    """Writes everything the store receives to a record file, from a thread of its own.

    The store's listener only wakes the writer thread, so a slow disk never holds back a collector; the
    writer then cuts one window and writes what is newer than what it wrote before.
    """

    def __init__(
        self,
        store: Store,
        path: str,
        *,
        options: Options | None = None,
        collectors: Sequence[str] = (),
        backlog_s: float = 0.0,
        force: bool = False,
    ) -> None:
        """Prepare to record ``store`` into ``path``.

        Args:
            store: the store to follow.
            path: the file to create (0600, written as ``path.part`` until stop); ``.gz`` compresses.
            options: written into the header (interval, history, analysis window).
            collectors: collector names for the header (statuses already in the store are added).
            backlog_s: also write what the store holds from the last ``backlog_s`` seconds before start
                (the incident bundle uses this; a recording started with ``r`` starts now).
            force: replace an existing regular file at ``path`` (by a rename at stop; never written through).
        """
        self.store = store
        self.path = path
        self._options = options
        self._collectors = tuple(collectors)
        self._backlog_s = backlog_s
        self._force = force
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._marks = _Marks()
        self._writer: LineWriter | None = None
        self._thread: threading.Thread | None = None
        self.events = 0
        self.error: str = ""
        #: Where the data is after stop(): ``path``, or the kept ``path.part`` when the file could not be finished.
        self.saved_path = ""

    @property
    def part_path(self) -> str:
        """The file being written while recording (``path.part``); empty before ``open()``."""
        return self._writer.part_path if self._writer is not None else ""

    # -- lifecycle -------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the file (``RefusedPathError`` or another ``OSError`` when it cannot); start() does it if not done."""
        if self._writer is None:
            self._writer = LineWriter(self.path, force=self._force)

    def start(self) -> None:
        """Create the file, write the header and start following the store (OSError when it cannot)."""
        self.open()
        assert self._writer is not None
        try:
            self._writer.write(header(self.store, self._options, self._collectors))
        except OSError:
            self._writer.discard()  # not even the header: nothing worth keeping
            self._writer = None
            raise
        now = self.store.now_mono_s()
        start = now - self._backlog_s
        window = self.store.window()
        for name, samples in window.samples.items():
            self._marks.sample_mono[name] = start if self._backlog_s > 0 else (samples[-1].mono_s if samples else start)
        if self._backlog_s > 0:
            self._marks.diag_mono = start
        elif window.diagnoses:
            self._marks.diag_last = window.diagnoses[-1]
            self._marks.diag_mono = window.diagnoses[-1].mono_s
        self._marks.status = {n: (s.state.value, s.reason) for n, s in window.statuses.items()}
        self._marks.target = window.target
        self.store.subscribe(self._on_change)
        self._thread = threading.Thread(target=self._run, name="optitop-recorder", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout_s: float = 3.0) -> None:
        """Write what is still pending, an ``end`` line, and close the file."""
        self.store.unsubscribe(self._on_change)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._lock:
            writer = self._writer
            if writer is None:
                return
            try:
                if not self.error:
                    try:
                        self._sweep()
                        writer.write(end_line(self.store.now_mono_s(), time.time(), self.events))
                        writer.close()
                        self.saved_path = self.path
                        return
                    except OSError as exc:
                        self.error = error_sentence(exc)
                self.saved_path = writer.abandon()  # what was written replays up to its last complete line
            finally:
                self._writer = None

    @property
    def recording(self) -> bool:
        """True between start() and stop()."""
        return self._writer is not None

    # -- the writer thread -----------------------------------------------------------------------------
    def _on_change(self, _name: str) -> None:
        # Runs on collector threads: only wake the writer.
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SWEEP_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                if self._writer is None:
                    return
                try:
                    self._sweep()
                except OSError as exc:  # a full disk ends the recording, never the session
                    self.error = error_sentence(exc)
                    self.store.unsubscribe(self._on_change)
                    return

    def _emit(self, obj: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.write(obj)
        self.events += 1

    def _sweep(self) -> None:
        """Write every sample, status change, verdict and target change not written yet."""
        window = self.store.window()
        # Status, target and cost lines are stamped on the store's clock, the one its samples carry: on another
        # clock (a test's synthetic time, a replayed store) they would sort far from the samples on replay.
        now = window.now_mono_s
        marks = self._marks
        for name, samples in sorted(window.samples.items()):
            last = marks.sample_mono.get(name, float("-inf"))
            for sample in samples:
                if sample.mono_s > last:
                    self._emit(sample_line(name, sample))
                    last = sample.mono_s
            marks.sample_mono[name] = last
        for name, status in sorted(window.statuses.items()):
            self._write_status(name, status, now)
        for diagnosis in _new_diagnoses(window.diagnoses, marks):
            self._emit(diagnosis_line(diagnosis))
            marks.diag_last, marks.diag_mono = diagnosis, diagnosis.mono_s
        if window.target != marks.target:
            self._emit(target_line(window.target, now))
            marks.target = window.target
        cost = window.self_cost
        if cost != marks.self_cost and cost.cpu_pct is not None and now - marks.self_mono >= 1.0:
            self._emit(self_line(cost, now))
            marks.self_cost, marks.self_mono = cost, now

    def _write_status(self, name: str, status: SourceStatus, now: float) -> None:
        # Every successful sample refreshes latency and last-ok time; only a change of state or reason counts.
        key = (status.state.value, status.reason)
        if self._marks.status.get(name) == key:
            return
        self._marks.status[name] = key
        self._emit(status_line(name, status, now))


def error_sentence(exc: OSError) -> str:
    """The sentence of an OSError without its errno and path ("No space left on device")."""
    return exc.strerror or str(exc)


def _new_diagnoses(diagnoses: tuple[Diagnosis, ...], marks: _Marks) -> tuple[Diagnosis, ...]:
    """The verdicts after the last one written: found by identity, by time when it has left the ring."""
    if marks.diag_last is not None:
        for i in range(len(diagnoses) - 1, -1, -1):
            if diagnoses[i] is marks.diag_last:
                return diagnoses[i + 1 :]
    return tuple(d for d in diagnoses if d.mono_s > marks.diag_mono)


def write_snapshot(store: Store, path: str, options: Options | None = None, since_s: float | None = None) -> int:
    """Write what the store holds now (the last ``since_s`` seconds, all when None) as a record file.

    Returns the number of event lines. Used by the incident bundle: the result replays like any recording.
    """
    recorder = Recorder(store, path, options=options, backlog_s=since_s if since_s is not None else store.history_s + 1)
    recorder.start()
    recorder.stop()
    if recorder.error:
        raise OSError(errno.EIO, f"the metrics snapshot could not be written: {recorder.error}")
    return recorder.events


def default_record_path(pid: int, directory: str = ".", suffix: str = ".jsonl.gz", at_s: float | None = None) -> str:
    """A timestamped file name for the TUI's ``r`` key: ``optitop-<host>-<pid>-<YYYYmmdd-HHMMSS>.jsonl.gz``.

    The name is predictable (``at_s``: the wall time it is for, now by default); the key writes it through
    ``optitop.safefile`` and moves on to a numbered name when it is taken.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(at_s))
    host = socket.gethostname().split(".")[0] or "host"
    return os.path.join(directory, f"optitop-{host}-{pid}-{stamp}{suffix}")
