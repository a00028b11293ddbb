"""Source lines of the target's files: the leaf line says which C call blocks.

A stack's frames name a file and a line; the text of that line (``sock.recv(...)``, ``torch.cuda.synchronize()``)
is what tells a network wait from a GPU sync when the function names do not. The files are read as the target
sees them (through /proc/PID/root, so containers work) and cached within a byte budget.
"""

from __future__ import annotations

import itertools
from array import array
from collections import OrderedDict
from dataclasses import dataclass, replace

from optitop.collectors.stackclass import Frame

#: Bytes all cached source text may take together (least recently used files are dropped first).
SOURCE_CACHE_BYTES = 8 * 1024 * 1024
#: A file larger than this is never held whole: only the lines asked for are kept (a generated module).
SOURCE_FILE_MAX_BYTES = 2 * 1024 * 1024
#: Characters kept of one line of such a file (the pane shows far fewer).
SOURCE_LINE_MAX_CHARS = 400
#: What one cache entry costs besides its text: the key, the objects around it (a rough, fixed charge).
SOURCE_ENTRY_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class _SourceText:
    """A file's bytes and where each line starts: a fraction of the memory of a list of str per line.

    ``whole`` is False for a file too large to hold: then ``data`` is empty and only single lines of it
    are cached, each as its own entry.
    """

    data: bytes
    starts: array[int]
    whole: bool = True

    @property
    def cost(self) -> int:
        """Bytes this entry holds, counted against SOURCE_CACHE_BYTES."""
        return len(self.data) + self.starts.itemsize * len(self.starts) + SOURCE_ENTRY_OVERHEAD

    def line(self, lineno: int) -> str:
        """Line ``lineno`` (1-based) stripped, or "" past the end."""
        if lineno > len(self.starts):
            return ""
        start = self.starts[lineno - 1]
        end = self.starts[lineno] if lineno < len(self.starts) else len(self.data)
        return self.data[start:end].decode("utf-8", errors="replace").strip()


def _line_starts(data: bytes) -> array[int]:
    """Byte offsets where each line begins (``\\n`` ends a line, as for Python's own line numbers)."""
    starts = array("I", [0] if data else [])
    pos = data.find(b"\n")
    while pos != -1 and pos + 1 < len(data):
        starts.append(pos + 1)
        pos = data.find(b"\n", pos + 1)
    return starts


_NO_TEXT = _SourceText(b"", array("I"))
_TOO_BIG = _SourceText(b"", array("I"), whole=False)


class SourceLines:
    """Reads source lines of the target's files (through /proc/PID/root, so containers work), cached.

    The cache is bounded by bytes, not files: a torch server's stacks run through hundreds of large
    modules, and 256 whole files held as lists of str were tens of MB. A file above
    ``max_file_bytes`` is never read whole into the cache; the lines asked for are kept one by one.
    """

    max_bytes = SOURCE_CACHE_BYTES
    max_file_bytes = SOURCE_FILE_MAX_BYTES

    def __init__(self, pid: int) -> None:
        """Lines of files as ``pid`` sees them."""
        self.pid = pid
        #: (file, 0) -> the whole file (or a marker); (file, lineno) -> one line of a file too big to hold.
        self._cache: OrderedDict[tuple[str, int], _SourceText] = OrderedDict()
        self.cached_bytes = 0

    def line(self, file: str, lineno: int | None) -> str:
        """The stripped text of one line, or "" when unknown."""
        if lineno is None or lineno <= 0 or not file.endswith((".py", ".pyw")):
            return ""
        text = self._get((file, 0)) or self._put((file, 0), self._read(file))
        if text.whole:
            return text.line(lineno)
        one = self._get((file, lineno)) or self._put((file, lineno), self._read_line(file, lineno))
        return one.line(1)

    def _get(self, key: tuple[str, int]) -> _SourceText | None:
        text = self._cache.get(key)
        if text is not None:
            self._cache.move_to_end(key)
        return text

    def _put(self, key: tuple[str, int], text: _SourceText) -> _SourceText:
        self._cache[key] = text
        self.cached_bytes += text.cost
        while self.cached_bytes > self.max_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self.cached_bytes -= old.cost
        return text

    def _paths(self, file: str) -> list[str]:
        return [f"/proc/{self.pid}/root{file}", file] if file.startswith("/") else []

    def _read(self, file: str) -> _SourceText:
        """The whole file, _TOO_BIG past ``max_file_bytes`` (reading stops there), _NO_TEXT when unreadable."""
        for path in self._paths(file):
            try:
                with open(path, "rb") as fh:
                    data = fh.read(self.max_file_bytes + 1)
            except OSError:
                continue
            if len(data) > self.max_file_bytes:
                return _TOO_BIG
            return _SourceText(data, _line_starts(data))
        return _NO_TEXT

    def _read_line(self, file: str, lineno: int) -> _SourceText:
        """One line of a file too big to hold, read by streaming up to it."""
        for path in self._paths(file):
            try:
                with open(path, "rb") as fh:
                    raw = next(itertools.islice(fh, lineno - 1, None), b"")
            except OSError:
                continue
            data = raw[: SOURCE_LINE_MAX_CHARS * 4]
            return _SourceText(data, array("I", [0] if data else []))
        return _NO_TEXT


def with_code(frames: tuple[Frame, ...], source: SourceLines) -> tuple[Frame, ...]:
    """The frames with the leaf Python frame's source text filled in."""
    for i, frame in enumerate(frames):
        if not frame.native:
            code = source.line(frame.file, frame.line)
            if not code:
                return frames
            return (*frames[:i], replace(frame, code=code), *frames[i + 1 :])
    return frames
