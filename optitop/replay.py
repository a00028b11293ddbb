"""Reading record files back: real sample dataclasses, a store fed in time order, and ``optitop replay``.

A recording is untrusted and may be cut short (optitop was killed, the disk filled) or damaged: reading
stops at the last valid line and says where and why, and everything before it replays. A file written
with another ``schema_version`` is refused with a clear error rather than misread.

The analyzer re-runs on the replayed data, so a newer analyzer can re-judge an old recording; the verdicts
stored in the file are kept aside (``Recording.diagnoses``) for ``compare``.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import json
import math
import sys
import time
import types
import typing
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from optitop.record import HEADER_TYPE
from optitop.serialize import SCHEMA_VERSION
from optitop.store import Store
from optitop.types import Diagnosis, Sample, SelfCost, SourceStatus, TargetInfo, Window

#: Series name -> (module under optitop.collectors, sample class). Imported lazily: some modules may be
#: absent in this build, and replaying a file must not import NVML code it does not need.
SAMPLE_CLASSES: dict[str, tuple[str, str]] = {
    "process": ("process", "ProcessSample"),
    "system": ("system", "SystemSample"),
    "gpu": ("gpu", "GpuSample"),
    "queue": ("serving", "ServingSample"),
    "logs": ("serving", "ServingSample"),
    "sockets": ("sockets", "SocketSample"),
    "pystacks": ("pystacks", "PyStacksSample"),
}

#: Seconds a seek or step re-judges at most (the analyzer runs once per interval of recorded time).
REJUDGE_SPAN_S = 12.0
#: Bytes read per chunk from the file.
CHUNK = 1 << 16


class RecordingError(Exception):
    """The file cannot be replayed at all; the message is the one line the user sees."""


class ConversionError(ValueError):
    """A JSON value does not fit the dataclass field it is meant for."""


# -- JSON -> dataclasses ---------------------------------------------------------------------------------
_HINTS: dict[type, dict[str, Any]] = {}


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

    Raises:
        ConversionError: the data does not fit the type.
    """
    if cls is Any or cls is object:
        return data
    if dataclasses.is_dataclass(cls) and isinstance(cls, type):
        return _dataclass_from(cls, data)
    origin = typing.get_origin(cls)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return _union_from(typing.get_args(cls), data)
    if origin in (tuple, list, frozenset, set):
        return _sequence_from(origin, typing.get_args(cls), data)
    if origin is dict:
        if not isinstance(data, dict):
            raise ConversionError(f"expected an object, got {type(data).__name__}")
        _, value_type = typing.get_args(cls) or (str, Any)
        return {str(k): from_jsonable(value_type, v) for k, v in data.items()}
    if origin is typing.Literal:
        if data not in typing.get_args(cls):
            raise ConversionError(f"{data!r} is not one of {typing.get_args(cls)}")
        return data
    if isinstance(cls, type):
        return _scalar_from(cls, data)
    return data  # an annotation we do not model: keep the value as it is


def _dataclass_from(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConversionError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in data:
            try:
                kwargs[f.name] = from_jsonable(hints.get(f.name, Any), data[f.name])
            except ConversionError as exc:
                raise ConversionError(f"{cls.__name__}.{f.name}: {exc}") from None
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConversionError(f"{cls.__name__}: missing field {f.name!r}")
    return cls(**kwargs)


def _union_from(args: tuple[Any, ...], data: Any) -> Any:
    if data is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return from_jsonable(arg, data)
        except ConversionError as exc:
            errors.append(str(exc))
    raise ConversionError("; ".join(errors) or f"unexpected {data!r}")


def _sequence_from(origin: Any, args: tuple[Any, ...], data: Any) -> Any:
    if not isinstance(data, list):
        raise ConversionError(f"expected a list, got {type(data).__name__}")
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(data):
            raise ConversionError(f"expected {len(args)} items, got {len(data)}")
        return tuple(from_jsonable(a, v) for a, v in zip(args, data, strict=True))
    item = args[0] if args else Any
    items = [from_jsonable(item, v) for v in data]
    return origin(items)


def _scalar_from(cls: type, data: Any) -> Any:
    if issubclass(cls, enum.Enum):
        try:
            return cls(data)
        except ValueError as exc:
            raise ConversionError(str(exc)) from None
    if cls is bool:
        if isinstance(data, bool):
            return data
    elif cls is float:
        if data is None:
            return math.nan  # to_jsonable wrote NaN/inf as null
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
    elif cls is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        if isinstance(data, float) and data.is_integer():
            return int(data)
    elif cls is str:
        if isinstance(data, str):
            return data
    elif isinstance(data, cls):
        return data
    raise ConversionError(f"expected {cls.__name__}, got {type(data).__name__} {data!r:.40}")


# -- series -> sample class ------------------------------------------------------------------------------
_CLASS_CACHE: dict[str, type | None] = {}
_CLASS_WHY: dict[str, str] = {}


def sample_class(series: str) -> type | None:
    """The Sample subclass of one series, imported on first use; None (with ``unknown_reason``) when unknown.

    Series missing from SAMPLE_CLASSES are looked up through the collector registry: the registered
    collector's ``sample()`` return annotation names its sample class.
    """
    if series in _CLASS_CACHE:
        return _CLASS_CACHE[series]
    cls: type | None = None
    try:
        if series in SAMPLE_CLASSES:
            module, name = SAMPLE_CLASSES[series]
            cls = getattr(importlib.import_module(f"optitop.collectors.{module}"), name)
        else:
            cls = _class_from_registry(series)
    except (ImportError, AttributeError) as exc:
        _CLASS_WHY[series] = f"its collector is not in this build ({exc})"
        cls = None
    if cls is None and series not in _CLASS_WHY:
        _CLASS_WHY[series] = "no collector of that name in this build"
    _CLASS_CACHE[series] = cls
    return cls


def _class_from_registry(series: str) -> type | None:
    from optitop.collectors import spec_by_name

    try:
        spec = spec_by_name(series)
    except KeyError:
        return None
    collector = getattr(importlib.import_module(f"optitop.collectors.{spec.module}"), spec.class_name)
    returned = typing.get_type_hints(collector.sample).get("return")
    for candidate in typing.get_args(returned) or (returned,):
        if isinstance(candidate, type) and issubclass(candidate, Sample):
            return candidate
    return None


def unknown_reason(series: str) -> str:
    """Why a series could not be rebuilt (after sample_class returned None)."""
    return _CLASS_WHY.get(series, "unknown series")


# -- reading lines ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Cursor:
    """Where line reading stopped early (line number and why), if it did."""

    stopped_line: int | None = None
    stopped_why: str = ""


def _raw_chunks(path: str, cursor: _Cursor) -> Iterator[bytes]:
    """The file's bytes, decompressed when it is gzip (detected by its magic bytes, not its name).

    A truncated gzip stream still yields everything up to the cut: each recorded line was sync-flushed, so
    the decompressor can hand out every complete line before the damage.
    """
    with open(path, "rb") as fh:
        first = fh.read(CHUNK)
        if not first.startswith(b"\x1f\x8b"):
            chunk = first
            while chunk:
                yield chunk
                chunk = fh.read(CHUNK)
            return
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = first
        while chunk:
            try:
                out = inflater.decompress(chunk)
            except zlib.error as exc:
                cursor.stopped_why = f"damaged gzip data ({exc})"
                return
            if out:
                yield out
            if inflater.eof:
                return  # one member is all optitop writes; trailing bytes are ignored
            chunk = fh.read(CHUNK)
        if not inflater.eof:
            cursor.stopped_why = "the compressed stream is cut short"


def iter_lines(path: str, cursor: _Cursor) -> Iterator[tuple[int, bytes]]:
    """(line number, complete line) pairs; a final line without its newline counts as cut short."""
    pending = b""
    number = 0
    for chunk in _raw_chunks(path, cursor):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            number += 1
            yield number, line
    if pending and not cursor.stopped_why:
        cursor.stopped_why = "the last line is cut short (the recording was interrupted)"
    if cursor.stopped_why:
        cursor.stopped_line = number + 1


# -- the loaded recording --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event in replay order."""

    mono_s: float
    kind: str  # sample | status | diagnosis | target | self
    series: str
    value: Any


@dataclass(slots=True)
class Recording:
    """A record file read back.

    Attributes:
        path: the file.
        header: the header line as written.
        target: the target as it was when recording started.
        events: samples, status changes, target changes and optitop's cost, in time order.
        diagnoses: the verdicts recorded at the time (the replay re-judges; compare reads these).
        initial_statuses: the sources' statuses from the header.
        stopped_at: (line number, why) when reading stopped before the end of the file.
        skipped: series that could not be rebuilt -> why (counted, not fatal).
        complete: True when the file has its ``end`` line (the recorder stopped cleanly).
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

    @property
    def start_mono_s(self) -> float:
        """The first event's time (the header's when there is none)."""
        times = [e.mono_s for e in self.events[:1]] + [d.mono_s for d in self.diagnoses[:1]]
        return min(times) if times else float(self.header.get("created_mono_s", 0.0))

    @property
    def end_mono_s(self) -> float:
        """The last event's time."""
        times = [e.mono_s for e in self.events[-1:]] + [d.mono_s for d in self.diagnoses[-1:]]
        return max(times) if times else self.start_mono_s

    @property
    def interval_s(self) -> float:
        """The sampling interval the recording was made with (1 s when the header does not say)."""
        value = self.header.get("options", {}).get("interval_s")
        return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0

    def samples(self, series: str) -> list[Sample]:
        """Every recorded sample of one series, in time order."""
        return [e.value for e in self.events if e.kind == "sample" and e.series == series]

    def series_names(self) -> list[str]:
        """The series that have samples."""
        return sorted({e.series for e in self.events if e.kind == "sample"})

    def wall_time(self, mono_s: float) -> float:
        """The wall-clock time of a recorded monotonic time (from the first sample's pair of clocks)."""
        for event in self.events:
            if event.kind == "sample":
                return float(event.value.ts_s - event.value.mono_s + mono_s)
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
    version = head.get("schema_version")
    if version != SCHEMA_VERSION:
        by = head.get("optitop_version", "an unknown version")
        raise RecordingError(
            f"{path}: written with record schema version {version} (optitop {by}); this optitop reads "
            f"schema version {SCHEMA_VERSION}: replay it with optitop {by}"
        )
    return head


def load(path: str) -> Recording:
    """Read a record file (plain or gzip), tolerating a cut or damaged tail.

    Raises:
        RecordingError: the file cannot be opened, is empty, is not a recording, or has another schema.
    """
    cursor = _Cursor()
    lines = iter_lines(path, cursor)
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
    try:
        for number, raw in lines:
            why = _add_line(rec, raw)
            if why:
                rec.stopped_at = (number, why)
                break
    except OSError as exc:
        rec.stopped_at = (0, f"read error: {exc}")
    if rec.stopped_at is None and cursor.stopped_line is not None:
        rec.stopped_at = (cursor.stopped_line, cursor.stopped_why)
    rec.events.sort(key=lambda e: e.mono_s)
    rec.diagnoses.sort(key=lambda d: d.mono_s)
    return rec


def _add_line(rec: Recording, raw: bytes) -> str:
    """Add one line's event; returns why the line is invalid ("" when it was fine)."""
    if not raw.strip():
        return ""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        return f"not valid JSON ({exc})"
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        return "not a record line (no type)"
    kind = obj["type"]
    mono = obj.get("mono_s")
    if kind == "end":
        rec.complete = True
        return ""
    if not isinstance(mono, (int, float)):
        return f"a {kind} line without mono_s"
    try:
        return _add_event(rec, kind, float(mono), obj)
    except ConversionError as exc:
        return f"a {kind} line that does not fit ({exc})"


def _add_event(rec: Recording, kind: str, mono: float, obj: dict[str, Any]) -> str:
    data = obj.get("data")
    series = str(obj.get("series", ""))
    if kind == "sample":
        cls = sample_class(series)
        if cls is None:
            rec.skipped.setdefault(series, unknown_reason(series))
            rec.skipped_count += 1
            return ""
        rec.events.append(Event(mono, kind, series, from_jsonable(cls, data)))
    elif kind == "status":
        rec.events.append(Event(mono, kind, series, from_jsonable(SourceStatus, data)))
    elif kind == "diagnosis":
        rec.diagnoses.append(from_jsonable(Diagnosis, data))
    elif kind == "target":
        rec.events.append(Event(mono, kind, "target", from_jsonable(TargetInfo, data)))
    elif kind == "self":
        rec.events.append(Event(mono, kind, "self", from_jsonable(SelfCost, data)))
    # other types come from a newer optitop within the same schema version: ignored
    return ""


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

    def _reset(self) -> None:
        """Back to the start: the same store object (the app holds it), emptied and seeded again."""
        self._refill(self.store)
        self._rewind()

    def _rewind(self) -> None:
        self._cursor = 0
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
            self._reset()
        self.advance_to(target)

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
        events = self.recording.events
        while self._cursor < len(events) and events[self._cursor].mono_s <= mono_s:
            self._apply(events[self._cursor])
            self._cursor += 1
        self.store.clock_mono_s = max(self.store.clock_mono_s, mono_s)

    def _apply(self, event: Event) -> None:
        if event.kind == "sample":
            self.store.add(event.series, event.value)
        elif event.kind == "status":
            self.store.set_status(event.value)
        elif event.kind == "target":
            self.store.set_target(event.value)
        elif event.kind == "self":
            self.store.set_self_cost(event.value)

    def _judge_at(self, mono_s: float) -> None:
        window = self.store.window(self.analysis_window_s, now_mono_s=mono_s)
        diagnosis, self._state = self._judge(window, self._state)
        if diagnosis.mono_s != mono_s:
            diagnosis = dataclasses.replace(diagnosis, mono_s=mono_s, ts_s=self.recording.wall_time(mono_s))
        self.store.add_diagnosis(diagnosis)
        self.diagnoses_made += 1


# -- ``optitop replay`` ----------------------------------------------------------------------------------
def replay_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop replay``."""
    from optitop.cli import REPLAY_SPEED, _Parser, bounded

    parser = _Parser(
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


def replay_main(argv: Sequence[str]) -> int:
    """``optitop replay run.jsonl [--speed X]``: the TUI on recorded data; returns the exit code."""
    from optitop.cli import EXIT_USAGE

    args = replay_parser().parse_args(argv)
    try:
        recording = load(args.path)
    except RecordingError as exc:
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for line in recording.problems():
        print(f"optitop: {line}", file=sys.stderr)
    if not recording.events:
        print(f"optitop: {args.path}: nothing to replay (no samples)", file=sys.stderr)
        return EXIT_USAGE
    if not sys.stdout.isatty():
        print("optitop: replay needs a terminal; use `optitop compare` for a text summary", file=sys.stderr)
        return EXIT_USAGE
    from optitop.tui.replay import run_replay

    return run_replay(recording, speed=args.speed, monochrome=args.mono)
