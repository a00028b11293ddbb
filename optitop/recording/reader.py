"""Reading a record file's bytes: open it safely, inflate it, split it into lines, and put events in time order.

A recording is untrusted and may be cut short (optitop was killed, the disk filled) or damaged: reading
stops at the last valid line and says where and why (``Cursor``), and everything before it replays. Only
regular files are read, a line may not exceed MAX_LINE_BYTES, and a gzip member is inflated a bounded piece at
a time. What a line means is ``codec``'s business; ``scan`` builds a ``Recording`` from these pieces.

Memory does not grow with the file: the replay reads the file again as it plays, putting lines back in time
order with a heap that holds only what may still be overtaken (``in_time_order``).
"""

from __future__ import annotations

import heapq
import math
import os
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from optitop.recording.codec import REPLAYED_KINDS, BadLineError, Event, decode_line

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


# -- bytes -> lines -------------------------------------------------------------------------------------
@dataclass(slots=True)
class Cursor:
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


def raw_chunks(fd: int, cursor: Cursor, progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
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


def iter_lines(chunks: Iterable[bytes], cursor: Cursor) -> Iterator[tuple[int, bytes]]:
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


# -- lines -> events in time order ----------------------------------------------------------------------
#: Unread lines (``Recording.iter_events``): a sample's line, or a status/target/self line (the latest wins).
UNREAD_SAMPLE, UNREAD_STATE = "unread", "unread_state"


def read_unread(event: Event) -> Event | None:
    """The event of an unread line (None when it no longer converts: the file changed since it was checked)."""
    try:
        got = decode_line(event.value)
    except BadLineError:
        return None
    return got if got is not None and got.kind in REPLAYED_KINDS else None


def in_time_order(events: Iterable[Event], lateness_s: float, max_held: int = REORDER_MAX_EVENTS) -> Iterator[Event]:
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
