"""The record file's encoding in one place: model values to JSON and back, and the shape of every line.

A recording is JSON Lines. Line one is a header (``HEADER_TYPE``, ``SCHEMA_VERSION``, the target, the sources,
the options); every later line is one event::

    {"type": "sample", "series": "process", "mono_s": …, "data": {…every field of the sample…}}
    {"type": "status", "series": "gpu", "mono_s": …, "data": {…SourceStatus…}}
    {"type": "diagnosis", "mono_s": …, "data": {…Diagnosis…}}
    {"type": "target", "mono_s": …, "data": {…TargetInfo…}}      (the target changed, e.g. it exited)
    {"type": "self", "mono_s": …, "data": {…SelfCost…}}
    {"type": "end", "mono_s": …, "ts_s": …, "events": N}          (a clean stop; absent when killed)

The writer builds lines with the ``*_line`` functions and ``encode_line``; the reader turns a line back into an
``Event`` with ``decode_line``, and finds an event's time without parsing it with ``LINE_HEAD``, which matches
the exact bytes ``encode_line`` writes: the two sides agree because they are both here. ``to_jsonable`` also
makes the headless ``--once`` JSON (``optitop.serialize``), whose ``schema_version`` is the same.

Everything a file says is untrusted: ``from_jsonable`` checks every value against its field's type and gives
every string back printable (control characters escaped), so a crafted host or reason is shown, never obeyed
by the terminal.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optitop.model import SAMPLE_TYPES, Diagnosis, Sample, SelfCost, SourceStatus, TargetInfo
from optitop.safetext import printable

#: Bumped whenever a key is renamed or removed (adding keys keeps the version); the headless JSON shares it.
SCHEMA_VERSION = 1
#: The value of the header line's ``type``; a file whose first line says otherwise is not a recording.
HEADER_TYPE = "optitop-record"
#: The options a header keeps (the reader uses them to replay at the recorded pace and window).
HEADER_OPTIONS = ("interval_s", "history_s", "analysis_window_s", "pyspy_rate_hz")

#: The ``type`` of each event line.
SAMPLE, STATUS, DIAGNOSIS, TARGET, SELF, END = "sample", "status", "diagnosis", "target", "self", "end"
#: The kind ``decode_line`` gives a sample of a series this build cannot rebuild (counted, not replayed).
SKIP = "skip"
#: The kinds the replay applies to its store, in time order (verdicts are re-judged, not replayed).
REPLAYED_KINDS = frozenset({SAMPLE, STATUS, TARGET, SELF})


# -- model values -> JSON -------------------------------------------------------------------------------
def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from dataclasses, enums, tuples; NaN and infinities become None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class ConversionError(ValueError):
    """A JSON value does not fit the dataclass field it is meant for."""


# -- JSON -> dataclasses --------------------------------------------------------------------------------
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
    """Rebuild a value of type ``cls`` from what ``to_jsonable`` made of it.

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


# -- series -> sample class -----------------------------------------------------------------------------
def sample_class(series: str) -> type[Sample] | None:
    """The sample type of one series (``model.SAMPLE_TYPES``); None when this build has no series of that name."""
    return SAMPLE_TYPES.get(series)


#: Why a series' lines are skipped when this build has no such series.
UNKNOWN_SERIES = "no series of that name in this build"


# -- the lines ------------------------------------------------------------------------------------------
def encode_line(obj: dict[str, Any]) -> bytes:
    """One line's bytes: compact JSON (the separators ``LINE_HEAD`` expects), never NaN, and its newline."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def sample_line(series: str, sample: Sample) -> dict[str, Any]:
    """One sample as a record line."""
    return {"type": SAMPLE, "series": series, "mono_s": sample.mono_s, "data": to_jsonable(sample)}


def status_line(series: str, status: SourceStatus, mono_s: float) -> dict[str, Any]:
    """A source's status change as a record line, stamped ``mono_s`` on the store's clock."""
    return {"type": STATUS, "series": series, "mono_s": mono_s, "data": to_jsonable(status)}


def diagnosis_line(diagnosis: Diagnosis) -> dict[str, Any]:
    """One verdict as a record line (``mono_s`` kept: replay orders by it)."""
    return {"type": DIAGNOSIS, "mono_s": diagnosis.mono_s, "data": to_jsonable(diagnosis)}


def target_line(target: TargetInfo, mono_s: float) -> dict[str, Any]:
    """A change of the target (it exited, say) as a record line."""
    return {"type": TARGET, "mono_s": mono_s, "data": to_jsonable(target)}


def self_line(cost: SelfCost, mono_s: float) -> dict[str, Any]:
    """optitop's own cost as a record line."""
    return {"type": SELF, "mono_s": mono_s, "data": to_jsonable(cost)}


def end_line(mono_s: float, ts_s: float, events: int) -> dict[str, Any]:
    """The clean-stop line: its absence says the recording was cut short."""
    return {"type": END, "mono_s": mono_s, "ts_s": ts_s, "events": events}


#: The start of an event line as ``encode_line`` writes it: its type, series and time, without parsing the rest.
LINE_HEAD = re.compile(
    rb'\{"type":"(sample|status|target|self|diagnosis)",(?:"series":"([A-Za-z0-9_.-]{1,64})",)?'
    rb'"mono_s":(-?[0-9]{1,20}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,3})?),"data":'
)


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded event in replay order."""

    mono_s: float
    kind: str  # sample | status | diagnosis | target | self (and, inside the reader, skip | end)
    series: str
    value: Any


class BadLineError(Exception):
    """A line that is not a valid record line; the message says why (reading stops there)."""


def decode_line(raw: bytes) -> Event | None:
    """The event of one line; None for a blank line or a type from a newer optitop (ignored).

    A sample of a series this build cannot rebuild comes back as kind SKIP, the clean-stop line as END.

    Raises:
        BadLineError: the line is not JSON, not a record line, or does not fit its dataclass.
    """
    if not raw.strip():
        return None
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise BadLineError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise BadLineError("not a record line (no type)")
    kind = printable(obj["type"])
    if kind == END:
        return Event(0.0, END, "", None)
    mono = obj.get("mono_s")
    if not isinstance(mono, (int, float)):
        raise BadLineError(f"a {kind} line without mono_s")
    try:
        return _event(kind, float(mono), obj)
    except ConversionError as exc:
        raise BadLineError(f"a {kind} line that does not fit ({exc})") from None


def _event(kind: str, mono: float, obj: dict[str, Any]) -> Event | None:
    data = obj.get("data")
    series = printable(str(obj.get("series", "")))
    if kind == SAMPLE:
        cls = sample_class(series)
        if cls is None:
            return Event(mono, SKIP, series, None)
        return Event(mono, kind, series, from_jsonable(cls, data))
    if kind == STATUS:
        return Event(mono, kind, series, from_jsonable(SourceStatus, data))
    if kind == DIAGNOSIS:
        return Event(mono, kind, "", from_jsonable(Diagnosis, data))
    if kind == TARGET:
        return Event(mono, kind, "target", from_jsonable(TargetInfo, data))
    if kind == SELF:
        return Event(mono, kind, "self", from_jsonable(SelfCost, data))
    return None  # another type comes from a newer optitop within the same schema version: ignored


def header_problem(head: dict[str, Any]) -> str:
    """What makes a header unusable, in words ("" when nothing does).

    A header is untrusted like every line: the reader takes its clocks, its options and its host as they are, so
    a damaged or crafted one (``"history_s": "x"``) must be refused with one line here, not fail later as a
    traceback in the replayer or compare.
    """
    for key in ("created_at", "created_mono_s"):
        if key in head and not _finite(head[key]):
            return f"its {key} is not a number"
    if not isinstance(head.get("host", ""), str):
        return "its host is not text"
    options = head.get("options", {})
    if not isinstance(options, dict):
        return "its options are not an object"
    for key in HEADER_OPTIONS:
        value = options.get(key)
        if value is not None and not (_finite(value) and value > 0):
            return f"its option {key} is not a positive number"
    return ""


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
