"""Reading record files back: real sample dataclasses, a store fed in time order, and ``optitop replay``.

A recording is untrusted and may be cut short (optitop was killed, the disk filled) or damaged: reading
stops at the last valid line and says where and why, and everything before it replays. A file written
with another ``schema_version`` is refused with a clear error rather than misread.

The analyzer re-runs on the replayed data, so a newer analyzer can re-judge an old recording; the verdicts
stored in the file are kept aside (``Recording.diagnoses``) for ``compare``.

Memory does not grow with the file: ``scan`` reads it once (validating every line, measuring its times and
how far out of order lines were written) and keeps no events; the replay then reads the file again as it
plays, putting lines back in time order with a heap that holds only what may still be overtaken. A backward
seek reads from the start again (gzip allows nothing else without keeping decompressor states), rebuilding
only the samples the store would still hold. ``load`` keeps everything in memory, for tests and small files.
Everything a file says is untrusted: only regular files are read, a line may not exceed MAX_LINE_BYTES, and
every string comes back printable (control characters escaped), so a crafted host or reason is shown, never
obeyed by the terminal.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import enum
import heapq
import json
import math
import os
import re
import stat
import sys
import time
import types
import typing
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TextIO

from optitop.model import SAMPLE_TYPES, Diagnosis, Sample, SelfCost, SourceStatus, TargetInfo, Window
from optitop.record import HEADER_TYPE
from optitop.safetext import printable, printable_json
from optitop.serialize import SCHEMA_VERSION
from optitop.store import Store

#: Seconds a seek or step re-judges at most (the analyzer runs once per interval of recorded time).
REJUDGE_SPAN_S = 12.0
#: Bytes read per chunk from the file.
CHUNK = 1 << 16
#: Bytes of decompressed data handed out at a time (a small gzip member can inflate to gigabytes).
INFLATE_MAX = 1 << 20
#: The longest line a recording may hold: a py-spy sample of a thousand threads is well under 1 MiB.
MAX_LINE_BYTES = 16 << 20
#: Seconds of events the streamed replay holds back to put lines written out of order back in time order.
#: The recorder writes each sweep series by series (a bundle's backlog: a whole history per series), so
#: the reading pass measures how late lines come; this bounds what a crafted file can make it hold.
REORDER_MAX_S = 1200.0
#: Events held back at most for that, whatever the times say.
REORDER_MAX_EVENTS = 50_000
#: Opening flags: a FIFO must not block the open (the fstat then refuses it).
_O_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


class RecordingError(Exception):
    """The file cannot be replayed at all; the message is the one line the user sees."""


class ConversionError(ValueError):
    """A JSON value does not fit the dataclass field it is meant for."""


# -- JSON -> dataclasses ---------------------------------------------------------------------------------
_HINTS: dict[type, dict[str, Any]] = {}

Convert = Callable[[Any], Any]
#: One converter per type, built once: reading a recording is mostly this (a 500 MB file is millions of
#: values), so the type hints are walked once per type, not once per value.
_CONVERTERS: dict[Any, Convert] = {}


def _hints(cls: type) -> dict[str, Any]:
    got = _HINTS.get(cls)
    if got is None:
        got = _HINTS[cls] = typing.get_type_hints(cls)
    return got


def from_jsonable(cls: Any, data: Any) -> Any:
    """Rebuild a value of type ``cls`` from what ``serialize.to_jsonable`` made of it.

    Walks dataclass fields and their type hints: nested (frozen) dataclasses, ``tuple[X, ...]`` and fixed
    tuples, ``list``/``frozenset``/``dict[str, X]``, ``Optional``/unions, enums and plain scalars. Unknown
    keys are ignored (a newer file may carry more fields); a missing key takes the field's default, and is
    an error only for fields without one. NaN written as null comes back as NaN for a non-optional float.
    Every string comes back printable (control characters escaped): it was read from a file.

    Raises:
        ConversionError: the data does not fit the type.
    """
    return _converter(cls)(data)


def _converter(cls: Any) -> Convert:
    try:
        got = _CONVERTERS.get(cls)
    except TypeError:  # an unhashable annotation: built each time
        return _build(cls)
    if got is None:
        got = _CONVERTERS[cls] = _build(cls)
    return got


def _identity(data: Any) -> Any:
    return data


def _build(cls: Any) -> Convert:
    if cls is Any or cls is object:
        return _identity
    if dataclasses.is_dataclass(cls) and isinstance(cls, type):
        return _dataclass_converter(cls)
    origin = typing.get_origin(cls)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return _union_converter(typing.get_args(cls))
    if origin in (tuple, list, frozenset, set):
        return _sequence_converter(origin, typing.get_args(cls))
    if origin is dict:
        _, value_type = typing.get_args(cls) or (str, Any)
        value_of = _converter(value_type)

        def mapping(data: Any) -> Any:
            if not isinstance(data, dict):
                raise ConversionError(f"expected an object, got {type(data).__name__}")
            return {printable(str(k)): value_of(v) for k, v in data.items()}

        return mapping
    if origin is typing.Literal:
        allowed = typing.get_args(cls)

        def literal(data: Any) -> Any:
            if data not in allowed:
                raise ConversionError(f"{data!r} is not one of {allowed}")
            return data

        return literal
    if isinstance(cls, type):
        return _scalar_converter(cls)
    return _identity  # an annotation we do not model: keep the value as it is


def _dataclass_converter(cls: type) -> Convert:
    name = cls.__name__
    # (field, converter, required), resolved on first use: a dataclass may refer to itself
    specs: list[tuple[str, Convert, bool]] | None = None

    def convert(data: Any) -> Any:
        nonlocal specs
        if specs is None:
            hints = _hints(cls)
            specs = [
                (
                    f.name,
                    _converter(hints.get(f.name, Any)),
                    f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
                )
                for f in dataclasses.fields(cls)
                if f.init
            ]
        if not isinstance(data, dict):
            raise ConversionError(f"{name}: expected an object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for field_name, field_of, required in specs:
            if field_name in data:
                try:
                    kwargs[field_name] = field_of(data[field_name])
                except ConversionError as exc:
                    raise ConversionError(f"{name}.{field_name}: {exc}") from None
            elif required:
                raise ConversionError(f"{name}: missing field {field_name!r}")
        return cls(**kwargs)

    return convert


def _union_converter(args: tuple[Any, ...]) -> Convert:
    optional = type(None) in args
    choices = [_converter(arg) for arg in args if arg is not type(None)]

    def convert(data: Any) -> Any:
        if data is None and optional:
            return None
        errors = []
        for choice in choices:
            try:
                return choice(data)
            except ConversionError as exc:
                errors.append(str(exc))
        raise ConversionError("; ".join(errors) or f"unexpected {data!r}")

    return convert


def _sequence_converter(origin: Any, args: tuple[Any, ...]) -> Convert:
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        items = [_converter(a) for a in args]

        def fixed(data: Any) -> Any:
            if not isinstance(data, list):
                raise ConversionError(f"expected a list, got {type(data).__name__}")
            if len(items) != len(data):
                raise ConversionError(f"expected {len(items)} items, got {len(data)}")
            return tuple(item(v) for item, v in zip(items, data, strict=True))

        return fixed
    item = _converter(args[0] if args else Any)

    def sequence(data: Any) -> Any:
        if not isinstance(data, list):
            raise ConversionError(f"expected a list, got {type(data).__name__}")
        return origin([item(v) for v in data])

    return sequence


def _mismatch(cls: type, data: Any) -> ConversionError:
    return ConversionError(f"expected {cls.__name__}, got {type(data).__name__} {data!r:.40}")


def _scalar_converter(cls: type) -> Convert:
    if issubclass(cls, enum.Enum):

        def member(data: Any) -> Any:
            try:
                return cls(data)
            except ValueError as exc:
                raise ConversionError(str(exc)) from None

        return member
    if cls is bool:

        def boolean(data: Any) -> Any:
            if isinstance(data, bool):
                return data
            raise _mismatch(cls, data)

        return boolean
    if cls is float:

        def real(data: Any) -> Any:
            if type(data) is float:
                return data
            if data is None:
                return math.nan  # to_jsonable wrote NaN/inf as null
            if isinstance(data, (int, float)) and not isinstance(data, bool):
                return float(data)
            raise _mismatch(cls, data)

        return real
    if cls is int:

        def integer(data: Any) -> Any:
            if isinstance(data, int) and not isinstance(data, bool):
                return data
            if isinstance(data, float) and data.is_integer():
                return int(data)
            raise _mismatch(cls, data)

        return integer
    if cls is str:

        def text(data: Any) -> Any:
            if isinstance(data, str):
                # Everything read from a file is shown escaped: a thread name, a reason, a host in a recording.
                return data if data.isprintable() else printable(data)
            raise _mismatch(cls, data)

        return text

    def other(data: Any) -> Any:
        if isinstance(data, cls):
            return data
        raise _mismatch(cls, data)

    return other


# -- series -> sample class ------------------------------------------------------------------------------
def sample_class(series: str) -> type[Sample] | None:
    """The sample type of one series (``model.SAMPLE_TYPES``); None (see ``unknown_reason``) when unknown."""
    return SAMPLE_TYPES.get(series)


def unknown_reason(series: str) -> str:
    """Why a series could not be rebuilt (after sample_class returned None)."""
    return "no series of that name in this build"


# -- reading lines ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Cursor:
    """Where line reading stopped early (line number and why), if it did."""

    stopped_line: int | None = None
    stopped_why: str = ""


def open_recording(path: str) -> int:
    """Open ``path`` for reading and return its descriptor; only a regular file is accepted.

    ``/dev/zero`` never ends, a FIFO never answers and a directory is not a file: each is refused, as
    ``--log`` refuses them. ``O_NONBLOCK`` keeps a FIFO from blocking the open itself, and the check is on the
    opened descriptor (``fstat``), not the name, so nothing can be swapped in between the check and the reads.

    Raises:
        RecordingError: no such file, no permission, or not a regular file.
    """
    try:
        fd = os.open(path, _O_FLAGS)
    except FileNotFoundError:
        raise RecordingError(f"no such file: {path}") from None
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RecordingError(f"{path}: not a regular file (a recording is a file written by `optitop record`)")
    return fd


def _raw_chunks(fd: int, cursor: _Cursor, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The file's bytes, decompressed when it is gzip (detected by its magic bytes, not its name).

    A truncated gzip stream still yields everything up to the cut: each recorded line was sync-flushed, so
    the decompressor can hand out every complete line before the damage. Reads with ``pread`` from offset 0,
    so several passes can share one descriptor; ``progress`` is told the bytes read so far. Decompressed
    output comes in pieces of at most INFLATE_MAX bytes, so a gzip bomb never sits in memory whole.
    """
    offset = 0

    def read() -> bytes:
        nonlocal offset
        chunk = os.pread(fd, CHUNK, offset)
        offset += len(chunk)
        if progress is not None:
            progress(offset)
        return chunk

    first = read()
    if not first.startswith(b"\x1f\x8b"):
        chunk = first
        while chunk:
            yield chunk
            chunk = read()
        return
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    chunk = first
    while chunk:
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, INFLATE_MAX)
            except zlib.error as exc:
                cursor.stopped_why = f"damaged gzip data ({exc})"
                return
            if out:
                yield out
            if inflater.eof:
                return  # one member is all optitop writes; trailing bytes are ignored
            data = inflater.unconsumed_tail
        chunk = read()
    if not inflater.eof:
        cursor.stopped_why = "the compressed stream is cut short"


def iter_lines(chunks: Iterable[bytes], cursor: _Cursor) -> Iterator[tuple[int, bytes]]:
    """(line number, complete line) pairs; a final line without its newline counts as cut short.

    A line longer than MAX_LINE_BYTES stops the reading there (a damaged tail): no recorded line comes near
    it, and holding a 100 MB "line" of a file that is not a recording is what must not happen.
    """
    buf = bytearray()
    number = 0
    for chunk in chunks:
        look_from = len(buf)  # the bytes before have no newline: do not search them again
        buf += chunk
        start = 0
        newline = buf.find(b"\n", look_from)
        while newline >= 0:
            number += 1
            yield number, bytes(buf[start:newline])
            start = newline + 1
            newline = buf.find(b"\n", start)
        del buf[:start]
        if len(buf) > MAX_LINE_BYTES:
            cursor.stopped_why = f"line {number + 1} is longer than {MAX_LINE_BYTES >> 20} MiB"
            break
    else:
        if buf and not cursor.stopped_why:
            cursor.stopped_why = "the last line is cut short (the recording was interrupted)"
    if cursor.stopped_why:
        cursor.stopped_line = number + 1


#: The start of an event line as the recorder writes it: its type, series and time, without parsing the rest.
_LINE_HEAD = re.compile(
    rb'\{"type":"(sample|status|target|self|diagnosis)",(?:"series":"([A-Za-z0-9_.-]{1,64})",)?'
    rb'"mono_s":(-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,3})?),"data":'
)
#: Unread lines (``Recording.iter_events``): a sample's line, or a status/target/self line (the latest wins).
UNREAD_SAMPLE, UNREAD_STATE = "unread", "unread_state"


def read_unread(event: Event) -> Event | None:
    """The event of an unread line (None when it no longer converts: the file changed since it was checked)."""
    try:
        got = _line_event(event.value)
    except _BadLineError:
        return None
    return got if got is not None and got.kind in REPLAYED_KINDS else None


# -- one line -> one event -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event in replay order."""

    mono_s: float
    kind: str  # sample | status | diagnosis | target | self (and, inside the reader, skip | end)
    series: str
    value: Any


#: The kinds the replay applies to its store, in time order (verdicts are re-judged, not replayed).
REPLAYED_KINDS = frozenset({"sample", "status", "target", "self"})


class _BadLineError(Exception):
    """A line that is not a valid record line; the message says why (reading stops there)."""


def _line_event(raw: bytes) -> Event | None:
    """The event of one line; None for a blank line or a type from a newer optitop (ignored).

    A sample of a series this build cannot rebuild comes back as kind "skip", the clean-stop line as "end".

    Raises:
        _BadLineError: the line is not JSON, not a record line, or does not fit its dataclass.
    """
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise _BadLineError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise _BadLineError("not a record line (no type)")
    kind = printable(obj["type"])
    if kind == "end":
        return Event(0.0, "end", "", None)
    mono = obj.get("mono_s")
    if not isinstance(mono, (int, float)):
        raise _BadLineError(f"a {kind} line without mono_s")
    try:
        return _event(kind, float(mono), obj)
    except ConversionError as exc:
        raise _BadLineError(f"a {kind} line that does not fit ({exc})") from None


def _event(kind: str, mono: float, obj: dict[str, Any]) -> Event | None:
    data = obj.get("data")
    series = printable(str(obj.get("series", "")))
    if kind == "sample":
        cls = sample_class(series)
        if cls is None:
            return Event(mono, "skip", series, None)
        return Event(mono, kind, series, from_jsonable(cls, data))
    if kind == "status":
        return Event(mono, kind, series, from_jsonable(SourceStatus, data))
    if kind == "diagnosis":
        return Event(mono, kind, "", from_jsonable(Diagnosis, data))
    if kind == "target":
        return Event(mono, kind, "target", from_jsonable(TargetInfo, data))
    if kind == "self":
        return Event(mono, kind, "self", from_jsonable(SelfCost, data))
    return None  # another type comes from a newer optitop within the same schema version: ignored


def _in_time_order(events: Iterable[Event], lateness_s: float, max_held: int = REORDER_MAX_EVENTS) -> Iterator[Event]:
    """``events`` (in file order) in time order, holding only what may still be overtaken.

    A line is written at most ``lateness_s`` behind the newest time written before it (the reading pass
    measured it), so an event can go out once the newest time read is ``lateness_s`` past it: nothing read
    later can come before it. Ties keep file order, as the stable sort of a loaded recording does. The heap
    never holds more than ``max_held`` events: past that (a crafted file), the oldest goes out anyway.
    """
    heap: list[tuple[float, int, Event]] = []
    newest = -math.inf
    for seq, event in enumerate(events):
        newest = max(newest, event.mono_s)
        heapq.heappush(heap, (event.mono_s, seq, event))
        while heap and (heap[0][0] <= newest - lateness_s or len(heap) > max_held):
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]


# -- the recording ---------------------------------------------------------------------------------------
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
        mono = float(event.value.mono_s) if event.kind == "diagnosis" else event.mono_s
        self.first_mono_s = min(self.first_mono_s, mono)
        self.last_mono_s = max(self.last_mono_s, mono)
        if event.kind not in REPLAYED_KINDS:
            return
        self.replayed += 1
        self.lateness_s = max(self.lateness_s, self._newest_s - mono)
        self._newest_s = max(self._newest_s, mono)
        if event.kind == "sample":
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
        return _in_time_order(self._read_again(self.fd, unread_before_s), lateness)

    def _read_again(self, fd: int, unread_before_s: float) -> Iterator[Event]:
        cursor = _Cursor()
        try:
            for number, raw in iter_lines(_raw_chunks(fd, cursor), cursor):
                if number == 1:
                    continue  # the header
                if number > self.extent.good_lines:
                    return
                head = _LINE_HEAD.match(raw)
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
                event = _line_event(raw)
                if event is not None and event.kind in REPLAYED_KINDS:
                    yield event
        except (OSError, _BadLineError):
            return  # the file changed under us since the reading pass: replay what was read

    def close(self) -> None:
        """Close the file of a streamed recording."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def samples(self, series: str) -> list[Sample]:
        """Every recorded sample of one series, in time order."""
        return [e.value for e in self.iter_events() if e.kind == "sample" and e.series == series]

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
    cursor = _Cursor()
    lines = iter_lines(_raw_chunks(fd, cursor, progress), cursor)
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
                event = _line_event(raw)
            except _BadLineError as exc:
                rec.stopped_at = (number, str(exc))
                break
            extent.good_lines = number
            if event is None:
                continue
            if event.kind == "end":
                rec.complete = True
            elif event.kind == "skip":
                rec.skipped.setdefault(event.series, unknown_reason(event.series))
                rec.skipped_count += 1
            else:
                extent.add(event, number)
                if visit is not None:
                    visit(event)
                elif event.kind == "diagnosis":
                    rec.diagnoses.append(event.value)
                else:
                    rec.events.append(event)
    except OSError as exc:
        rec.stopped_at = (0, f"read error: {exc}")
    if rec.stopped_at is None and cursor.stopped_line is not None:
        rec.stopped_at = (cursor.stopped_line, cursor.stopped_why)
    return rec


# -- replaying -------------------------------------------------------------------------------------------
class ReplayStore(Store):
    """A store whose clock is the replay position, so windows cut at recorded time, not at now."""

    def __init__(self, target: TargetInfo, history_s: float, clock_mono_s: float) -> None:
        """An empty store at ``clock_mono_s`` of recorded time."""
        super().__init__(target, history_s=history_s)
        self.clock_mono_s = clock_mono_s

    def now_mono_s(self) -> float:
        """The replay position: windows are cut, and events stamped, at recorded time."""
        return self.clock_mono_s

    def bound(self, name: str) -> int:
        """How many samples of ``name`` the store keeps at most."""
        return self._maxlen(self._intervals.get(name, 1.0))

    def hold(self, held: deque[Event], event: Event) -> None:
        """Append ``event`` to ``held`` and drop what the store would drop from a series (same rules)."""
        held.append(event)
        self._drop_older_than_history(held, event.mono_s)  # type: ignore[arg-type]  # events have mono_s too


Judge = Callable[[Window, object], tuple[Diagnosis, object]]


def _default_judge() -> Judge:
    from optitop.analyzers import judge

    return judge


class Replayer:
    """Feeds a recording into a fresh store in time order: play at a speed, pause, step and seek.

    Positions are recorded monotonic seconds. The analyzer runs once per recorded interval, over the
    analysis window, exactly as the live session's housekeeping does.
    """

    def __init__(
        self,
        recording: Recording,
        speed: float = 1.0,
        analyzer: Judge | None = None,
        analysis_window_s: float | None = None,
    ) -> None:
        """Prepare to replay ``recording`` from its start (paused until ``play``/``tick``)."""
        self.recording = recording
        self.speed = speed
        self.paused = False
        self._judge = analyzer if analyzer is not None else _default_judge()
        opts = recording.header.get("options", {})
        self.analysis_window_s = analysis_window_s or float(opts.get("analysis_window_s", 10.0) or 10.0)
        self.history_s = float(opts.get("history_s", 600.0) or 600.0)
        self.interval_s = recording.interval_s
        self.start_mono_s = recording.start_mono_s
        self.end_mono_s = recording.end_mono_s
        self._last_tick_wall: float | None = None
        self.store: ReplayStore = self._fresh_store()
        self._rewind()

    def _reset(self, unread_before_s: float = -math.inf) -> None:
        """Back to the start: the same store object (the app holds it), emptied and seeded again."""
        self._refill(self.store)
        self._rewind(unread_before_s)

    def _rewind(self, unread_before_s: float = -math.inf) -> None:
        # A streamed recording is read again from its start: backward seeks cost a pass over the file, but
        # memory stays what the store holds, and the store ends up exactly as a replay from the start. Samples
        # before the seek's target stay unread lines in ring buffers sized as the store's (``_hold``): only
        # those the store would still hold are rebuilt (``_flush``).
        self._events = self.recording.iter_events(unread_before_s)
        self._unread: dict[str, deque[Event]] = {}
        self._unread_state: dict[str, Event] = {}
        self._pending: Event | None = next(self._events, None)
        self._state: object = None
        self.position_mono_s = self.start_mono_s
        self._next_judge = self.start_mono_s + self.interval_s
        self.diagnoses_made = 0

    def _fresh_store(self) -> ReplayStore:
        store = ReplayStore(self.recording.target, self.history_s, self.start_mono_s)
        self._seed(store)
        return store

    def _refill(self, old: ReplayStore) -> ReplayStore:
        """Empty the same store object (the app holds a reference to it) and seed it again."""
        fresh = ReplayStore(self.recording.target, self.history_s, self.start_mono_s)
        with old._lock, fresh._lock:
            old._series = fresh._series
            old._statuses = fresh._statuses
            old._diagnoses = fresh._diagnoses
            old._target = fresh._target
            old._self_cost = fresh._self_cost
            old._intervals = fresh._intervals
        old.clock_mono_s = self.start_mono_s
        self._seed(old)
        return old

    def _seed(self, store: ReplayStore) -> None:
        for series in self.recording.series_names():
            store.register(series, self.interval_s)
        for status in self.recording.initial_statuses.values():
            store.set_status(status)

    # -- position --------------------------------------------------------------------------------------
    @property
    def at_end(self) -> bool:
        """True when every event has been replayed."""
        return self.position_mono_s >= self.end_mono_s

    @property
    def elapsed_s(self) -> float:
        """Recorded seconds since the start of the recording."""
        return self.position_mono_s - self.start_mono_s

    @property
    def duration_s(self) -> float:
        """The recording's length in seconds."""
        return self.end_mono_s - self.start_mono_s

    def wall_time(self) -> float:
        """The wall-clock time of the current position, as it was when recorded."""
        return self.recording.wall_time(self.position_mono_s)

    def advance_to(self, mono_s: float) -> None:
        """Replay forward to ``mono_s`` (clamped to the end); the analyzer runs at each interval crossed."""
        target = min(mono_s, self.end_mono_s)
        if target < self.position_mono_s:
            self.seek(target)
            return
        # After a long jump only the last REJUDGE_SPAN_S are judged: enough for hysteresis to settle.
        first_judged = target - REJUDGE_SPAN_S
        while self._next_judge <= target:
            self._apply_until(self._next_judge)
            if self._next_judge >= first_judged:
                self._judge_at(self._next_judge)
            self._next_judge += self.interval_s
        self._apply_until(target)
        self.position_mono_s = target
        self.store.clock_mono_s = target

    def seek(self, mono_s: float) -> None:
        """Jump to ``mono_s`` (backwards replays from the start into an emptied store)."""
        target = max(self.start_mono_s, min(mono_s, self.end_mono_s))
        if target < self.position_mono_s:
            self._reset(unread_before_s=target)
        self.advance_to(target)
        if self._unread or self._unread_state:
            self._flush()

    def seek_by(self, seconds: float) -> None:
        """Jump ``seconds`` of recorded time forward (or back when negative)."""
        self.seek(self.position_mono_s + seconds)

    def step(self) -> None:
        """Pause and move one sampling interval forward."""
        self.paused = True
        self.advance_to(self.position_mono_s + self.interval_s)

    def toggle_pause(self) -> None:
        """Pause or resume playback."""
        self.paused = not self.paused
        self._last_tick_wall = None

    def tick(self, now_s: float | None = None) -> bool:
        """Advance by the wall time since the previous tick times the speed; True when the position moved."""
        now = time.monotonic() if now_s is None else now_s
        last, self._last_tick_wall = self._last_tick_wall, now
        if self.paused or last is None or self.at_end:
            return False
        before = self.position_mono_s
        self.advance_to(before + (now - last) * self.speed)
        return self.position_mono_s != before

    def run_to_end(self) -> None:
        """Replay everything (tests, compare)."""
        self.advance_to(self.end_mono_s)

    # -- feeding the store -----------------------------------------------------------------------------
    def _apply_until(self, mono_s: float) -> None:
        while self._pending is not None and self._pending.mono_s <= mono_s:
            self._apply(self._pending)
            self._pending = next(self._events, None)
        self.store.clock_mono_s = max(self.store.clock_mono_s, mono_s)

    def _apply(self, event: Event) -> None:
        if event.kind == UNREAD_SAMPLE:
            self._hold(event)
            return
        if event.kind == UNREAD_STATE:
            self._unread_state[event.series] = event  # only the latest status (target, cost) counts
            return
        if self._unread or self._unread_state:
            self._flush()
        if event.kind == "sample":
            self.store.add(event.series, event.value)
        elif event.kind == "status":
            self.store.set_status(event.value)
        elif event.kind == "target":
            self.store.set_target(event.value)
        elif event.kind == "self":
            self.store.set_self_cost(event.value)

    def _hold(self, event: Event) -> None:
        """Keep an unread sample line as the store would keep its sample (the same count and time bounds)."""
        held = self._unread.get(event.series)
        if held is None:
            held = self._unread[event.series] = deque(maxlen=self.store.bound(event.series))
        self.store.hold(held, event)

    def _flush(self) -> None:
        """Rebuild the held lines: samples into the store oldest first, then the latest of each status."""
        unread, self._unread = self._unread, {}
        states, self._unread_state = self._unread_state, {}
        for held in unread.values():
            for event in held:
                got = read_unread(event)
                if got is not None:
                    self._apply(got)
        for event in states.values():
            got = read_unread(event)
            if got is not None:
                self._apply(got)

    def _judge_at(self, mono_s: float) -> None:
        if self._unread or self._unread_state:
            self._flush()
        window = self.store.window(self.analysis_window_s, now_mono_s=mono_s)
        diagnosis, self._state = self._judge(window, self._state)
        if diagnosis.mono_s != mono_s:
            diagnosis = dataclasses.replace(diagnosis, mono_s=mono_s, ts_s=self.recording.wall_time(mono_s))
        self.store.add_diagnosis(diagnosis)
        self.diagnoses_made += 1


# -- ``optitop replay`` ----------------------------------------------------------------------------------
def replay_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop replay``."""
    from optitop.args import REPLAY_SPEED, Parser, bounded

    parser = Parser(
        prog="optitop replay",
        description="Replay a recording in the live screen: space pauses, . steps, left/right seek 10 s.",
    )
    parser.add_argument("path", help="a file written by `optitop record` (or the r key)")
    parser.add_argument(
        "--speed",
        type=bounded(*REPLAY_SPEED),
        default=1.0,
        metavar="X",
        help=f"playback speed, {REPLAY_SPEED[0]:g}-{REPLAY_SPEED[1]:g} (default 1)",
    )
    parser.add_argument("--mono", action="store_true", help="no colour (NO_COLOR is respected too)")
    return parser


class ProgressLine:
    """``optitop: reading FILE 42%`` on stderr, rewritten in place; silent when stderr is not a terminal.

    Reading a large recording takes a while before anything can be drawn: the line says that it is moving.
    """

    def __init__(self, path: str, stream: TextIO | None = None, every_s: float = 0.2) -> None:
        """Report on reading ``path`` to ``stream`` (stderr), at most once per ``every_s``."""
        self.stream = stream if stream is not None else sys.stderr
        self.label = printable(path)
        self.every_s = every_s
        self.on = _isatty(self.stream)
        self._last = -math.inf
        self._width = 0

    def __call__(self, fraction: float) -> None:
        """Show ``fraction`` (0..1) read."""
        now = time.monotonic()
        if not self.on or (now - self._last < self.every_s and fraction < 1.0):  # the end is always shown
            return
        self._last = now
        text = f"\roptitop: reading {self.label} {fraction * 100:3.0f}%"
        self._width = max(self._width, len(text))
        self.stream.write(text)
        self.stream.flush()

    def done(self) -> None:
        """Erase the line (what follows starts on a clean line)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _isatty(stream: IO[Any] | TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def quiet_keys(stream: TextIO | None = None) -> Iterator[None]:
    """Keys pressed during a long read are neither echoed (over the progress line) nor kept for later.

    The terminal is in its normal mode until the screen starts: without this, every key echoes raw and lands
    in the app's input once it starts.
    """
    stream = stream if stream is not None else sys.stdin
    saved: list[Any] | None = None
    fd = -1
    try:
        import termios

        fd = stream.fileno()
        if os.isatty(fd):
            saved = termios.tcgetattr(fd)
            quiet = list(saved)
            quiet[3] &= ~(termios.ECHO | termios.ICANON)
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (ImportError, AttributeError, ValueError, OSError):
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            import termios

            with contextlib.suppress(OSError, termios.error):
                termios.tcflush(fd, termios.TCIFLUSH)
                termios.tcsetattr(fd, termios.TCSANOW, saved)


def read_with_progress(path: str, visit: Callable[[Event], None] | None = None) -> Recording:
    """``scan`` with a progress line on a terminal and keys kept quiet meanwhile."""
    progress = ProgressLine(path)
    with quiet_keys():
        try:
            return scan(path, visit, progress if progress.on else None)
        finally:
            progress.done()


def replay_main(argv: Sequence[str]) -> int:
    """``optitop replay run.jsonl [--speed X]``: the TUI on recorded data; returns the exit code."""
    from optitop.args import EXIT_USAGE

    args = replay_parser().parse_args(argv)
    try:
        recording = read_with_progress(args.path)
    except RecordingError as exc:
        print(f"optitop: {printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    try:
        for line in recording.problems():
            print(f"optitop: {printable(line)}", file=sys.stderr)
        if not recording.has_events:
            print(f"optitop: {printable(args.path)}: nothing to replay (no samples)", file=sys.stderr)
            return EXIT_USAGE
        if not sys.stdout.isatty():
            print("optitop: replay needs a terminal; use `optitop compare` for a text summary", file=sys.stderr)
            return EXIT_USAGE
        from optitop.tui.replay import run_replay

        return run_replay(recording, speed=args.speed, monochrome=args.mono)
    finally:
        recording.close()
