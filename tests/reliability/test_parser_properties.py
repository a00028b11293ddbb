"""Property tests: every parser of outside text either parses or raises the one error it documents.

Exposition text (collectors/promtext.py), py-spy output (collectors/pyspyparse.py), record files
(optitop/recording/) and /proc/net tables and sock_diag replies (collectors/netparse.py) come from programs and
files optitop does not control; a parser that raises anything else would take a source (or a replay) down with
it. And tui/format.py's printable()/clip() must leave no control character in what a pane draws, whatever a
target names its threads or files, so text from the target can never move the cursor or repaint the screen.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import samplefactory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optitop.collectors.netparse import (
    hex_to_ip,
    parse_counter_table,
    parse_diag_messages,
    parse_endpoint,
    parse_socket_link,
    parse_tcp_line,
    parse_tcp_table,
    tcp_in_use,
)
from optitop.collectors.promtext import Exposition, NotExposition, parse_exposition
from optitop.collectors.promwindow import histogram_buckets, quantile
from optitop.collectors.pyspyparse import parse_dump, parse_frame, parse_raw
from optitop.config import Options
from optitop.model import SourceState, SourceStatus, TargetInfo
from optitop.recording.reader import RecordingError
from optitop.recording.scan import Recording, load
from optitop.recording.writer import header
from optitop.store import Store
from optitop.tui.format import clip, printable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "metrics"
PROM_FIXTURES = sorted(p.read_text(encoding="utf-8") for p in FIXTURES.glob("*.prom"))

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def test_fixtures_are_there() -> None:
    """The mutation tests below start from real servers' bodies; without them they would test little."""
    assert len(PROM_FIXTURES) >= 10


# -- exposition text -----------------------------------------------------------------------------------------
_PROM_PIECES = st.sampled_from(
    [
        "# TYPE ",
        "# HELP ",
        "# EOF",
        "counter",
        "gauge",
        "histogram",
        "summary",
        "untyped",
        "vllm:num_requests",
        "_total",
        "_bucket",
        "_sum",
        "_count",
        "{",
        "}",
        '="',
        '"',
        ",",
        "le",
        "+Inf",
        "-Inf",
        "NaN",
        "1e308",
        "1e999",
        "-0",
        "0x1f",
        " ",
        "\n",
        "\t",
        "\\",
        '\\"',
        "\\n",
        "=",
        "quantile",
        "0.5",
        "12",
        "-3.25",
        "1700000000000",
        "<html>",
        "\x00",
        "\ufffd",
        "é",
        ":",
        "__name__",
    ]  # fmt: skip
)


def _assert_sane(expo: Exposition) -> None:
    """A parsed body holds only float samples, and the helpers built on it do not raise either."""
    for name in expo.names():
        for value in expo.series(name).values():
            assert isinstance(value, float)
    for name in sorted(expo.names())[:10]:
        for buckets in histogram_buckets(expo, name.removesuffix("_bucket")).values():
            for q in (0.5, 0.99):
                got = quantile(buckets, q)
                assert got is None or isinstance(got, float)


def _parse_or_refuse(text: str, content_type: str = "", keep: frozenset[str] | None = None) -> None:
    try:
        expo = parse_exposition(text, content_type, keep)
    except NotExposition as exc:
        assert str(exc), "a refusal must say why"
        return
    _assert_sane(expo)


@SETTINGS
@given(st.text(max_size=3000), st.sampled_from(["", "text/plain; version=0.0.4", "text/html", "application/json"]))
def test_exposition_parser_arbitrary_text(text: str, content_type: str) -> None:
    _parse_or_refuse(text, content_type)


@SETTINGS
@given(st.lists(_PROM_PIECES, max_size=60).map("".join))
def test_exposition_parser_near_miss_text(text: str) -> None:
    """Exposition-shaped fragments reach the label, value and type handling, not just the sniffing."""
    _parse_or_refuse(text)


@SETTINGS
@given(st.lists(_PROM_PIECES, max_size=60).map("".join))
@example('# TYPE vllm:num_requests gauge\n{"vllm:num_requests"} 3\n')
def test_exposition_parser_near_miss_text_with_keep(text: str) -> None:
    """The per-tick path: only the series a profile uses are parsed."""
    _parse_or_refuse(text, keep=frozenset({"vllm:num_requests", "vllm:num_requests_total"}))


@SETTINGS
@given(
    st.sampled_from(PROM_FIXTURES or [""]),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 40), st.text(max_size=8)), max_size=8),
)
def test_exposition_parser_damaged_real_bodies(body: str, edits: list[tuple[float, int, str]]) -> None:
    """Real servers' bodies with slices cut out and junk spliced in (a torn read, a proxy's garbage)."""
    for where, cut, junk in edits:
        at = int(where * len(body))
        body = body[:at] + junk + body[at + cut :]
    _parse_or_refuse(body)


# -- py-spy output ------------------------------------------------------------------------------------------
_RAW_PIECES = st.sampled_from(
    [
        "thread (0x7f00aa)",
        "thread (123)",
        ": MainThread",
        ";",
        " ",
        "1",
        "0",
        "42",
        "\n",
        "py-spy> ",
        "(",
        ")",
        "forward (model.py:12)",
        "<module> (serve.py)",
        "libtorch.so",
        ":",
        "x.py:",
        "99999999999999999999",
        "[bold]",
        "\x1b[2J",
        "\r",
    ]  # fmt: skip
)


@SETTINGS
@given(st.text(max_size=2000) | st.lists(_RAW_PIECES, max_size=60).map("".join))
def test_pyspy_raw_parser_never_raises(text: str) -> None:
    counts = parse_raw(text)
    for (tid, name, frames), n in counts.items():
        assert isinstance(tid, int) and isinstance(name, str) and n > 0
        assert all(isinstance(f.name, str) for f in frames)


@SETTINGS
@given(st.text(max_size=300))
def test_pyspy_frame_parser_never_raises(label: str) -> None:
    frame = parse_frame(label)
    assert frame.line is None or frame.line >= 0


@SETTINGS
@given(st.text(max_size=500))
def test_pyspy_dump_parser_on_text_raises_only_value_error(text: str) -> None:
    """The dump trigger catches ValueError and TypeError; arbitrary text is a ValueError (bad JSON) or parses."""
    try:
        threads = parse_dump(text)
    except (ValueError, TypeError):
        return
    assert isinstance(threads, list)


_FRAME_JSON = st.fixed_dictionaries(
    {},
    optional={"name": JSON, "filename": JSON, "line": JSON, "module": JSON},
)
_THREAD_JSON = st.fixed_dictionaries(
    {},
    optional={
        "os_thread_id": JSON,
        "thread_id": JSON,
        "thread_name": JSON,
        "active": JSON,
        "owns_gil": JSON,
        "frames": st.lists(_FRAME_JSON | JSON, max_size=4) | JSON,
    },
)


@SETTINGS
@given(st.lists(_THREAD_JSON | JSON, max_size=4) | JSON)
@example([None])
@example([{"os_thread_id": 1, "frames": ["not a frame"]}])
def test_pyspy_dump_parser_on_odd_json_raises_only_value_or_type_error(doc: object) -> None:
    try:
        threads = parse_dump(json.dumps(doc))
    except (ValueError, TypeError):
        return
    for thread in threads:
        assert isinstance(thread.tid, int) and isinstance(thread.name, str)


# -- record files -------------------------------------------------------------------------------------------
def _target() -> TargetInfo:
    return TargetInfo(
        pid=4242, name="python", cmdline="python serve.py", username="me", create_time_s=1.7e9, host="box"
    )


def _header_line() -> bytes:
    store = Store(_target())
    store.set_status(SourceStatus("process", SourceState.OK))
    return json.dumps(header(store, Options(), ["process"])).encode() + b"\n"


HEADER = _header_line()


@contextmanager
def _file(data: bytes) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="optitop-prop-") as tmp:
        path = os.path.join(tmp, "rec.jsonl")
        with open(path, "wb") as fh:
            fh.write(data)
        yield path


def _load_or_refuse(data: bytes) -> Recording | None:
    with _file(data) as path:
        try:
            rec = load(path)
        except RecordingError as exc:
            assert path in str(exc) or "cannot read" in str(exc)
            return None
    assert rec.stopped_at is None or isinstance(rec.stopped_at[1], str)
    assert all(isinstance(e.mono_s, float) for e in rec.events)
    rec.problems()
    return rec


@SETTINGS
@given(st.binary(max_size=3000))
def test_record_reader_arbitrary_bytes(data: bytes) -> None:
    _load_or_refuse(data)


@SETTINGS
@given(st.binary(max_size=2000))
def test_record_reader_arbitrary_bytes_after_a_valid_header(data: bytes) -> None:
    """A real header and then garbage: a partial load (the header's target), never a crash."""
    rec = _load_or_refuse(HEADER + data)
    assert rec is not None and rec.target.pid == 4242


_LINE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["sample", "status", "diagnosis", "target", "self", "end", "future-kind"]) | JSON,
    },
    optional={
        "mono_s": st.floats() | st.integers() | JSON,
        "series": st.sampled_from(["process", "system", "gpu", "queue", "sockets", "logs", "pystacks", "zz"]) | JSON,
        "data": JSON,
    },
)


@SETTINGS
@given(st.lists(_LINE | JSON, max_size=12))
def test_record_reader_odd_lines_after_a_valid_header(lines: list[object]) -> None:
    """Well-formed JSON lines whose fields have the wrong types and shapes: skipped or stopped at, not raised."""
    body = b"".join(json.dumps(line).encode() + b"\n" for line in lines)
    rec = _load_or_refuse(HEADER + body)
    assert rec is not None


def _real_record_body() -> bytes:
    from optitop.recording.codec import sample_line

    lines = []
    for i in range(20):
        sample = samplefactory.system_sample(1.7e9 + i, 100.0 + i)
        lines.append(json.dumps(sample_line("system", sample)).encode() + b"\n")
    return HEADER + b"".join(lines) + b'{"type": "end"}\n'


@pytest.fixture(scope="module")
def real_body() -> bytes:
    body = _real_record_body()
    with _file(body) as path:
        rec = load(path)
    assert len(rec.samples("system")) == 20 and rec.complete, "the builder of the valid body is wrong"
    return body


@SETTINGS
@given(cut=st.floats(0, 1), flip=st.integers(0, 255), at=st.floats(0, 1), gz=st.booleans())
def test_record_reader_cut_and_corrupted_real_file(
    real_body: bytes, cut: float, flip: int, at: float, gz: bool
) -> None:
    """A real recording (gzip or not) cut anywhere and with one byte changed: what is before the damage loads."""
    data = gzip.compress(real_body) if gz else real_body
    data = data[: max(1, int(cut * len(data)))]
    pos = int(at * (len(data) - 1))
    data = data[:pos] + bytes([flip]) + data[pos + 1 :]
    _load_or_refuse(data)


# -- /proc/net and sock_diag ----------------------------------------------------------------------------------
_TCP_PIECES = st.sampled_from(
    [
        "0:",
        "1:",
        " ",
        "0100007F:1F90",
        "00000000:0000",
        "0A",
        "01",
        "00000000:00000000",
        "00:00000000",
        "00000000",
        "1000",
        "0",
        "12345",
        "ffffffff",
        "00000000000000000000000000000000:1F90",
        "zz",
        ":",
        "\n",
        "-1",
        "99999999999999999999",
    ]  # fmt: skip
)


@SETTINGS
@given(st.text(max_size=1500) | st.lists(_TCP_PIECES, max_size=80).map("".join))
def test_tcp_table_parser_never_raises(text: str) -> None:
    for entry in parse_tcp_table(text):
        assert entry.local_port >= 0 and entry.tx_queue >= 0 and isinstance(entry.state, str)
    for line in text.splitlines():
        parse_tcp_line(line, inodes={12345})


@SETTINGS
@given(st.text(max_size=300))
def test_endpoint_parsers_raise_only_value_error(text: str) -> None:
    for parse in (hex_to_ip, parse_endpoint):
        with suppress(ValueError):
            parse(text)


@SETTINGS
@given(
    st.text(max_size=1500)
    | st.lists(st.sampled_from(["Tcp:", "TcpExt:", " ", "1", "x", "-2", "\n"]), max_size=60).map("".join)
)
def test_counter_and_sockstat_parsers_never_raise(text: str) -> None:
    table = parse_counter_table(text)
    assert all(isinstance(v, int) for row in table.values() for v in row.values())
    for key in ("TCP", "TCP6"):
        got = tcp_in_use(text, key)
        assert got is None or got >= 0
    assert parse_socket_link(text) is None or isinstance(parse_socket_link(text), int)


@SETTINGS
@given(st.binary(max_size=600))
def test_sock_diag_parser_raises_only_os_error(data: bytes) -> None:
    """A torn or foreign netlink reply: entries up to the damage, or the documented OSError for an error reply."""
    try:
        entries, done = parse_diag_messages(data)
    except OSError:
        return
    assert isinstance(done, bool)
    assert all(0 <= e.local_port <= 0xFFFF and e.inode >= 0 for e in entries)


# -- what panes draw ----------------------------------------------------------------------------------------
def _controls(text: str) -> list[str]:
    """Characters a terminal may act on: C0, DEL, C1 (U+0080..U+009F, e.g. U+009B is a one-byte CSI)."""
    return [c for c in text if unicodedata.category(c) == "Cc"]


_HOSTILE = st.lists(
    st.text(max_size=8) | st.sampled_from(["\x1b[2J", "\x1b]0;x\x07", "\r", "\x9b", "\x85", "\b", "[bold]", "[/]"]),
    max_size=40,
).map("".join)


@SETTINGS
@given(_HOSTILE, st.integers(-2, 120))
@example("\x9b2J", 40)
def test_printable_and_clip_leave_no_control_character(text: str, width: int) -> None:
    assert _controls(printable(text)) == []
    clipped = clip(text, width)
    assert _controls(clipped) == []
    assert len(clipped) <= max(0, width)


@SETTINGS
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=200), st.integers(0, 120))
def test_printable_and_clip_neutralise_every_ascii_control(text: str, width: int) -> None:
    """The C0 half of the property (ANSI escapes, \\r, \\b): holds today and must keep holding."""
    shown = printable(text)
    assert _controls(shown) == []
    assert "\x1b" not in clip(text, width) and "\r" not in clip(text, width)
    if text and not _controls(text):
        assert shown == text.replace("\t", " ")


def test_printable_shows_an_escape_as_text() -> None:
    assert printable("\x1b[2Jname\rX") == "\\x1b[2Jname\\rX"
