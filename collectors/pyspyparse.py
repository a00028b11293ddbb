"""Parsing py-spy's output: ``record --format raw --threads`` lines and ``dump --json`` documents into frames.

Pure text in, frames out (leaf first), so the parsers are tested on their own against whatever py-spy prints,
odd names included (tests/reliability/test_parser_properties.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass

from optitop.collectors.stackclass import Frame, is_native_file

#: One stack of one thread: (tid, thread name, frames leaf first); 0 and "" when py-spy printed no thread header.
StackKey = tuple[int, str, tuple[Frame, ...]]

_FRAME_RE = re.compile(r"^(?P<name>.*) \((?P<where>[^()]*)\)$")
_THREAD_RE = re.compile(r"^thread \((?P<tid>0x[0-9a-fA-F]+|\d+)\)(?:: (?P<name>.*))?$")


def parse_frame(label: str) -> Frame:
    """``func (file:line)`` or ``func (lib.so)`` as printed by py-spy."""
    m = _FRAME_RE.match(label)
    if m is None:
        return Frame(name=label, native=True)
    name, where = m.group("name"), m.group("where")
    file, line = where, None
    head, sep, tail = where.rpartition(":")
    if sep and tail.isdigit():
        file, line = head, int(tail)
    return Frame(name=name, file=file, line=line, native=is_native_file(file))


def parse_raw(text: str) -> Counter[StackKey]:
    """``py-spy record --format raw --threads`` output -> counts per (tid, thread name, frames leaf first)."""
    counts: Counter[StackKey] = Counter()
    for raw in text.splitlines():
        stack, _, count = raw.rstrip().rpartition(" ")
        if not stack or not count.isdigit() or int(count) == 0 or stack.startswith("py-spy> "):
            continue
        tid, name, parts = split_stack(stack)
        frames = tuple(parse_frame(p) for p in reversed(parts))
        counts[(tid, name, frames)] += int(count)
    return counts


#: A ``;`` that starts a new frame: frames end in ``(file:line)``, so only a ``;`` right after ``)`` separates
#: two. Function, file and thread names may hold ``;`` themselves (a plain split made ``hot;func
#: (/a;b.py:3)`` into the frames ``hot``, ``func (/a`` and ``b.py:3)``: a bogus hot function).
_FRAME_SEP_RE = re.compile(r"(?<=\));")
#: The thread's name and its first (root) frame, when no ``)`` ends the name: the frame is the part after the
#: last ``;`` that is followed by ``name (where)`` with no ``;`` in the name.
_NAME_AND_ROOT_RE = re.compile(r"^(?P<name>.*);(?P<frame>[^;]* \([^()]*\))$")


def split_stack(stack: str) -> tuple[int, str, list[str]]:
    """One raw line's stack -> (tid, thread name, frame labels root first); tid 0 and "" without a header."""
    parts = _FRAME_SEP_RE.split(stack)
    m = _THREAD_RE.match(parts[0])
    if m is None:
        return 0, "", parts
    tid, name = int(m.group("tid"), 0), m.group("name") or ""
    # Thread names like "Thread-1 (worker)" end in ")": the separator split already cut them off their root
    # frame. Otherwise the root frame is still on the name.
    both = _NAME_AND_ROOT_RE.match(name)
    if both is None:
        return tid, name, parts[1:]
    return tid, both.group("name"), [both.group("frame"), *parts[1:]]


@dataclass(frozen=True, slots=True)
class DumpThread:
    """One thread of a ``py-spy dump --json``."""

    tid: int
    name: str
    frames: tuple[Frame, ...]
    active: bool
    gil: bool


def _int_or_none(value: object) -> int | None:
    """A positive JSON integer, else None (py-spy never writes anything else there)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_dump(text: str) -> list[DumpThread]:
    """``py-spy dump --json`` output (frames are leaf first there).

    Raises:
        ValueError: when the text is not JSON or not shaped like py-spy's (the dump trigger skips it).
    """
    doc = json.loads(text)
    if not isinstance(doc, list) or not all(isinstance(t, dict) for t in doc):
        raise ValueError("not py-spy dump --json output (a list of thread objects)")
    out = []
    for thread in doc:
        raw_frames = thread.get("frames") or []
        if not isinstance(raw_frames, list) or not all(isinstance(f, dict) for f in raw_frames):
            raise ValueError("not py-spy dump --json output (frames must be a list of objects)")
        frames = tuple(
            Frame(
                name=str(f.get("name", "?")),
                file=str(f.get("filename", "")),
                line=_int_or_none(f.get("line")),
                native=is_native_file(str(f.get("filename", ""))),
            )
            for f in raw_frames
        )
        tid = thread.get("os_thread_id") or thread.get("thread_id") or 0
        out.append(
            DumpThread(
                tid=_int_or_none(tid) or 0,
                name=str(thread.get("thread_name") or ""),
                frames=frames,
                active=bool(thread.get("active")),
                gil=bool(thread.get("owns_gil")),
            )
        )
    return out
