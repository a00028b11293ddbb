"""A record file read back as a ``Recording``: its header, its extent in time, and its events on demand.

``scan`` reads the file once (validating every line, measuring its times and how far out of order lines were
written) and keeps no events: the replay then reads the file again as it plays (``Recording.iter_events``).
A backward seek reads from the start again (gzip allows nothing else without keeping decompressor states),
rebuilding only the samples the store would still hold. ``load`` keeps everything in memory, for tests and
small files. A file written with another ``schema_version`` is refused with a clear error rather than misread;
the verdicts stored in the file are kept aside (``Recording.diagnoses``) for ``compare``, since the replay
re-judges.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from optitop.model import Diagnosis, Sample, SourceStatus, TargetInfo
from optitop.recording.codec import (
    DIAGNOSIS,
    END,
    HEADER_TYPE,
    LINE_HEAD,
    REPLAYED_KINDS,
    SAMPLE,
    SCHEMA_VERSION,
    SKIP,
    UNKNOWN_SERIES,
    BadLineError,
    ConversionError,
    Event,
    decode_line,
    from_jsonable,
    header_problem,
    sample_class,
)
from optitop.recording.reader import (
    REORDER_MAX_S,
    UNREAD_SAMPLE,
    UNREAD_STATE,
    Cursor,
    RecordingError,
    in_time_order,
    iter_lines,
    open_recording,
    raw_chunks,
)
from optitop.safetext import printable_json

#: Seconds by which the wall and monotonic clocks must move apart to count as a suspend or a clock change (NTP
#: slews far less; a sample's two stamps are taken microseconds apart).
CLOCK_STEP_S = 1.0
#: Clock steps kept per recording (a crafted file cannot grow the list without bound).
MAX_CLOCK_STEPS = 4096


@dataclass(slots=True)
class Extent:
    """What the reading pass learned about the events' times, so a streamed recording needs no event list.

    Attributes:
        good_lines: the lines read before the first bad one (the header included).
        first_mono_s: the earliest event or verdict (inf when none).
        last_mono_s: the latest event or verdict (-inf when none).
        series: the series that have samples.
        wall_minus_mono_s: wall minus monotonic clock of the first sample in time order (None: no sample).
        lateness_s: how far behind the newest time before it a replayed line came, at most.
        replayed: the number of events the replay applies.
        clock_steps: (monotonic time, wall minus monotonic) from each sample on where the two clocks moved apart
            by more than CLOCK_STEP_S: the machine was suspended (CLOCK_MONOTONIC stops while suspended, the
            wall clock does not) or the wall clock was set. Wall times after a step are read with its offset.
    """

    good_lines: int = 1
    first_mono_s: float = math.inf
    last_mono_s: float = -math.inf
    series: set[str] = field(default_factory=set)
    wall_minus_mono_s: float | None = None
    lateness_s: float = 0.0
    replayed: int = 0
    clock_steps: list[tuple[float, float]] = field(default_factory=list)
    _first_sample: tuple[float, int] = (math.inf, 0)
    _newest_s: float = -math.inf

    def add(self, event: Event, number: int) -> None:
        """Take one accepted event (line ``number``) into account."""
        mono = float(event.value.mono_s) if event.kind == DIAGNOSIS else event.mono_s
        self.first_mono_s = min(self.first_mono_s, mono)
        self.last_mono_s = max(self.last_mono_s, mono)
        if event.kind not in REPLAYED_KINDS:
            return
        self.replayed += 1
        self.lateness_s = max(self.lateness_s, self._newest_s - mono)
        self._newest_s = max(self._newest_s, mono)
        if event.kind == SAMPLE:
            self.series.add(event.series)
            offset = float(event.value.ts_s - event.value.mono_s)
            if (mono, number) < self._first_sample:
                self._first_sample = (mono, number)
                self.wall_minus_mono_s = offset
            self._note_clock(mono, offset)

    def _note_clock(self, mono_s: float, offset_s: float) -> None:
        """Keep a step where this sample's wall-minus-monotonic differs from the one in force at its time."""
        steps = self.clock_steps
        at = bisect.bisect_right(steps, (mono_s, math.inf))
        in_force = steps[at - 1][1] if at else None
        moved = in_force is None or abs(offset_s - in_force) > CLOCK_STEP_S
        if moved and len(steps) < MAX_CLOCK_STEPS:
            steps.insert(at, (mono_s, offset_s))

    def wall_minus_mono_at(self, mono_s: float) -> float | None:
        """Wall minus monotonic clock in force at ``mono_s``: the step before it (the first sample's before that)."""
        at = bisect.bisect_right(self.clock_steps, (mono_s, math.inf))
        if at:
            return self.clock_steps[at - 1][1]
        return self.clock_steps[0][1] if self.clock_steps else self.wall_minus_mono_s


@dataclass(slots=True)
class Recording:
    """A record file read back: in memory (``load``) or streamed from the file (``scan``).

    Attributes:
        path: the file.
        header: the header line as written (every string made printable).
        target: the target as it was when recording started.
        events: samples, status changes, target changes and optitop's cost, in time order (``load`` only:
            a streamed recording reads them from the file again on each ``iter_events``).
        diagnoses: the verdicts recorded at the time (``load`` only; the replay re-judges).
        initial_statuses: the sources' statuses from the header.
        stopped_at: (line number, why) when reading stopped before the end of the file.
        skipped: series that could not be rebuilt -> why (counted, not fatal).
        complete: True when the file has its ``end`` line (the recorder stopped cleanly).
        extent: times, series and ordering learned while reading.
    """

    path: str
    header: dict[str, Any]
    target: TargetInfo
    events: list[Event] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    initial_statuses: dict[str, SourceStatus] = field(default_factory=dict)
    stopped_at: tuple[int, str] | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    skipped_count: int = 0
    complete: bool = False
    extent: Extent = field(default_factory=Extent)
    fd: int | None = None

    @property
    def streamed(self) -> bool:
        """True when the events stay in the file (``scan``), False when they are in ``events`` (``load``)."""
        return self.fd is not None

    @property
    def has_events(self) -> bool:
        """True when there is anything to replay."""
        return self.extent.replayed > 0

    @property
    def start_mono_s(self) -> float:
        """The first event's time (the header's when there is none)."""
        if math.isfinite(self.extent.first_mono_s):
            return self.extent.first_mono_s
        return float(self.header.get("created_mono_s", 0.0))

    @property
    def end_mono_s(self) -> float:
        """The last event's time."""
        return self.extent.last_mono_s if math.isfinite(self.extent.last_mono_s) else self.start_mono_s

    @property
    def interval_s(self) -> float:
        """The sampling interval the recording was made with (1 s when the header does not say)."""
        value = self.header.get("options", {}).get("interval_s")
        return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0

    def iter_events(self, unread_before_s: float = -math.inf) -> Iterator[Event]:
        """The replayed events in time order: from memory, or read again from the file in bounded memory.

        Lines of a streamed recording older than ``unread_before_s`` come unconverted, as kind UNREAD_SAMPLE
        or UNREAD_STATE with the raw line as value (see ``read_unread``): a backward seek reads the file again
        from its start, and most of what it passes on the way is dropped by the store's history or replaced by
        a later status anyway; finding a line's time costs a tenth of rebuilding its sample.
        """
        if self.fd is None:
            return iter(self.events)
        lateness = min(self.extent.lateness_s, REORDER_MAX_S)
        return in_time_order(self._read_again(self.fd, unread_before_s), lateness)

    def _read_again(self, fd: int, unread_before_s: float) -> Iterator[Event]:
        cursor = Cursor()
        try:
            for number, raw in iter_lines(raw_chunks(fd, cursor), cursor):
                if number == 1:
                    continue  # the header
                if number > self.extent.good_lines:
                    return
                head = LINE_HEAD.match(raw)
                if head is not None:
                    kind, series, mono = head[1], (head[2] or b"").decode(), float(head[3])
                    if kind == b"diagnosis":
                        continue  # the replay judges again
                    if mono < unread_before_s:
                        if kind != b"sample":
                            yield Event(mono, UNREAD_STATE, f"{kind.decode()}:{series}", raw)
                        elif sample_class(series) is not None:
                            yield Event(mono, UNREAD_SAMPLE, series, raw)
                        continue
                event = decode_line(raw)
                if event is not None and event.kind in REPLAYED_KINDS:
                    yield event
        except (OSError, BadLineError):
            return  # the file changed under us since the reading pass: replay what was read

    def close(self) -> None:
        """Close the file of a streamed recording."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def samples(self, series: str) -> list[Sample]:
        """Every recorded sample of one series, in time order."""
        return [e.value for e in self.iter_events() if e.kind == SAMPLE and e.series == series]

    def series_names(self) -> list[str]:
        """The series that have samples."""
        return sorted(self.extent.series)

    def wall_time(self, mono_s: float) -> float:
        """The wall-clock time of a recorded monotonic time, from the samples' pairs of clocks.

        Not from the first sample's pair alone: the monotonic clock stops while the machine is suspended, so
        after a resume every wall time read from it would be early by the length of the suspend.
        """
        offset = self.extent.wall_minus_mono_at(mono_s)
        if offset is not None:
            return offset + mono_s
        created = float(self.header.get("created_at", 0.0))
        return created - float(self.header.get("created_mono_s", 0.0)) + mono_s

    def problems(self) -> list[str]:
        """What the user should be told before replaying (where reading stopped, series skipped)."""
        out = []
        if self.stopped_at is not None:
            out.append(f"{self.path}: stopped at line {self.stopped_at[0]}: {self.stopped_at[1]}")
        for series, why in sorted(self.skipped.items()):
            out.append(f"{self.path}: series {series!r} skipped: {why}")
        return out


def _header_from(path: str, number: int, raw: bytes) -> dict[str, Any]:
    try:
        head = json.loads(raw)
    except ValueError as exc:
        raise RecordingError(f"{path}: not an optitop recording (line {number} is not JSON: {exc})") from None
    if not isinstance(head, dict) or head.get("type") != HEADER_TYPE:
        raise RecordingError(f"{path}: not an optitop recording (no header line)")
    head = printable_json(head)  # the host, the user, the cmdline: shown later, never obeyed
    version = head.get("schema_version")
    if version != SCHEMA_VERSION:
        by = head.get("optitop_version", "an unknown version")
        raise RecordingError(
            f"{path}: written with record schema version {version} (optitop {by}); this optitop reads "
            f"schema version {SCHEMA_VERSION}: replay it with optitop {by}"
        )
    problem = header_problem(head)
    if problem:
        raise RecordingError(f"{path}: the header is damaged: {problem}")
    return head


Progress = Callable[[float], None]


def load(path: str) -> Recording:
    """Read a record file (plain or gzip) into memory, tolerating a cut or damaged tail.

    For tests and small files; ``optitop replay`` and ``compare`` use ``scan``, whose memory does not grow
    with the file.

    Raises:
        RecordingError: the file cannot be opened, is empty, is not a recording, or has another schema.
    """
    fd = open_recording(path)
    try:
        rec = _read(path, fd, None, None)
    finally:
        os.close(fd)
    rec.events.sort(key=lambda e: e.mono_s)
    rec.diagnoses.sort(key=lambda d: d.mono_s)
    return rec


def scan(path: str, visit: Callable[[Event], None] | None = None, progress: Progress | None = None) -> Recording:
    """Read a record file once, keeping no events: the result replays by reading the file again.

    ``visit`` sees every event and verdict in file order (``compare`` sums its series this way);
    ``progress`` is told the fraction of the file read. The file stays open (``Recording.close``) so the
    replay reads the very file that was checked, whatever happens to its name meanwhile.

    Raises:
        RecordingError: as ``load``.
    """
    fd = open_recording(path)
    try:
        size = max(1, os.fstat(fd).st_size)
        told = progress if progress is None else (lambda done: progress(min(1.0, done / size)))
        rec = _read(path, fd, visit if visit is not None else _keep_nothing, told)
    except BaseException:
        os.close(fd)
        raise
    rec.fd = fd
    return rec


def _keep_nothing(_event: Event) -> None:
    """What ``scan`` does with an event nobody asked to see."""


def _read(
    path: str, fd: int, visit: Callable[[Event], None] | None, progress: Callable[[int], None] | None
) -> Recording:
    """The one reading pass: header, then every line until the end or the first bad one.

    Events are kept in the recording when ``visit`` is None (``load``), else handed to ``visit``.
    """
    cursor = Cursor()
    lines = iter_lines(raw_chunks(fd, cursor, progress), cursor)
    try:
        first = next(lines, None)
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    if first is None:
        why = cursor.stopped_why or "the file is empty"
        raise RecordingError(f"{path}: not an optitop recording ({why})")
    head = _header_from(path, *first)
    try:
        target = from_jsonable(TargetInfo, head.get("target"))
    except ConversionError as exc:
        raise RecordingError(f"{path}: the header's target is unreadable ({exc})") from None
    rec = Recording(path=path, header=head, target=target)
    for name, raw in (head.get("sources") or {}).items():
        try:
            rec.initial_statuses[str(name)] = from_jsonable(SourceStatus, raw)
        except ConversionError:
            continue
    extent = rec.extent
    try:
        for number, raw in lines:
            try:
                event = decode_line(raw)
            except BadLineError as exc:
                rec.stopped_at = (number, str(exc))
                break
            extent.good_lines = number
            if event is None:
                continue
            if event.kind == END:
                rec.complete = True
            elif event.kind == SKIP:
                rec.skipped.setdefault(event.series, UNKNOWN_SERIES)
                rec.skipped_count += 1
            else:
                extent.add(event, number)
                if visit is not None:
                    visit(event)
                elif event.kind == DIAGNOSIS:
                    rec.diagnoses.append(event.value)
                else:
                    rec.events.append(event)
    except OSError as exc:
        rec.stopped_at = (0, f"read error: {exc}")
    if rec.stopped_at is None and cursor.stopped_line is not None:
        rec.stopped_at = (cursor.stopped_line, cursor.stopped_why)
    return rec
