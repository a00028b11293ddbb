"""The logs collector: follows server logs like ``tail -F`` and turns their stats lines into ServingStats.

Each ``--log PATH`` is followed by name: reading starts from the last ``TAIL_BYTES`` (never the whole
file, which may be gigabytes), a rename or re-creation (a new inode under the name) is followed to the new
file after the old one is drained, a truncation (size below our offset) restarts at 0, and a deleted file
is drained, closed (so optitop never pins a deleted log's disk space) and waited for by name. A writer
that outruns us by more than ``MAX_CATCHUP_BYTES`` makes us skip ahead to the tail: only the newest stats
matter. Lines longer than ``MAX_LINE_BYTES`` are cut (stats lines are short;
a 1 MB JSON dump must not cost memory), and bytes that are not UTF-8 are replaced, never fatal.

The sample holds the newest stats across the followed files, re-sent each tick while the line that gave
them is at most ``STALE_AFTER_S`` old, then nothing (vLLM drops its stats line to DEBUG when idle, so
silence is not zero). Preemption rates count warnings read live (not the initial tail, whose times are
unknown) over the last ``PREEMPT_WINDOW_S``; they are 0 rather than None only where the format reports
every preemption (vLLM V0's warning carries a cumulative count; SGLang warns on every retraction; vLLM V1
prints ``Preemptions:`` only from v0.11 and only when non-zero, so 0 is claimed only once a file showed one).

Security (decided here): when optitop runs as root it could read files the person who started it cannot,
so a ``--log`` is checked on the file actually opened (fstat of the open descriptor, so a swapped name
cannot slip past the check):

* running as root through sudo (``SUDO_UID`` set, non-zero): the file must be readable by that user by
  its owner/group/other bits; otherwise it is refused with a reason. This covers a symlinked ``--log``
  into another user's file and a direct path alike.
* running as root itself: a symlink in the final component's chain is followed only when it is owned by
  root or by the owner of the file it leads to (the rule of fs.protected_symlinks), so a link planted in
  a shared directory such as /tmp cannot point root at someone else's file.
* not root: the kernel's own permission check applies.

Directory symlinks along the path and directory search permissions are not checked.
"""

from __future__ import annotations

import os
import pwd
import stat
import time
from collections import deque
from dataclasses import dataclass, field

from optitop.collectors.logparse import LogEvent, make_stats, parse_line
from optitop.config import CollectorContext
from optitop.model import ServingSample, ServingStats, SourceUnavailable

#: Where reading starts in a file found already written: this many bytes before its end.
TAIL_BYTES = 16 * 1024
#: Longest line kept; the rest of a longer line is dropped.
MAX_LINE_BYTES = 64 * 1024
#: Falling further behind than this skips ahead to the tail.
MAX_CATCHUP_BYTES = 4 * 1024 * 1024
#: Read size per syscall.
CHUNK_BYTES = 256 * 1024
#: Stats older than this are no longer re-sent (vLLM logs every 5-10 s while busy, nothing when idle).
STALE_AFTER_S = 60.0
#: Window over which preemptions are counted into a rate.
PREEMPT_WINDOW_S = 60.0
#: Fields summed across engines/ranks; the others (percentages, limits) are averaged.
SUMMED_FIELDS = frozenset(
    {
        "requests_waiting",
        "requests_running",
        "requests_swapped",
        "batch_size",
        "prompt_tokens_per_s",
        "generation_tokens_per_s",
        "max_running",
    }
)
_O_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


# -- who may read what -----------------------------------------------------------------------------------
def invoking_uid() -> int | None:
    """The uid optitop acts for when it runs as root (SUDO_UID, else 0); None when not running as root."""
    if os.geteuid() != 0:
        return None
    sudo = os.environ.get("SUDO_UID", "")
    return int(sudo) if sudo.isdigit() else 0


def _groups_of(uid: int) -> set[int]:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        sudo_gid = os.environ.get("SUDO_GID", "")
        return {int(sudo_gid)} if sudo_gid.isdigit() else set()
    return set(os.getgrouplist(entry.pw_name, entry.pw_gid))


def may_read(uid: int, st: os.stat_result) -> bool:
    """Whether ``uid`` could read a file with this owner/mode (POSIX order: owner, then group, then other)."""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in _groups_of(uid):
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _link_owners(path: str) -> list[tuple[str, int]]:
    """The symlinks of the final component's chain with their owners (at most 40 hops, like the kernel)."""
    out: list[tuple[str, int]] = []
    current = path
    for _ in range(40):
        try:
            st = os.lstat(current)
        except OSError:
            break
        if not stat.S_ISLNK(st.st_mode):
            break
        out.append((current, st.st_uid))
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return out


def refusal(path: str, opened: os.stat_result) -> str | None:
    """Why following ``path`` (already opened, with ``opened`` its fstat) is refused, or None when allowed."""
    uid = invoking_uid()
    if uid is None:
        return None
    if uid != 0 and not may_read(uid, opened):
        return f"refused: running as root for uid {uid}, who could not read this file themselves"
    for link, owner in _link_owners(path):
        if owner not in (0, opened.st_uid):
            return f"refused: symlink {link} (owner uid {owner}) leads to a file of uid {opened.st_uid}"
    return None


# -- following one file ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _ReadResult:
    """Lines read in one poll; ``live`` is False for bytes that were already there when reading began."""

    lines: list[str]
    live: bool


class FileFollower:
    """Follows one path by name like ``tail -F``; never raises for a missing, replaced or odd file."""

    def __init__(self, path: str) -> None:
        """Remember the path; the first ``poll`` opens it at its tail."""
        self.path = path
        self.problem = ""
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None
        self._pos = 0
        self._buf = bytearray()
        self._skip_to_newline = False
        self._at_start = True
        self.lines_cut = 0

    @property
    def is_open(self) -> bool:
        """Whether a file is open (it may since have been deleted)."""
        return self._fd is not None

    def close(self) -> None:
        """Close the descriptor."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _open(self) -> bool:
        """Open the path: at its tail on the first poll, from the start when it appeared later (a new file)."""
        try:
            fd = os.open(self.path, _O_FLAGS)
        except FileNotFoundError:
            self.problem = "no such file (waiting for it to appear)"
            return False
        except OSError as exc:
            self.problem = f"cannot open: {exc.strerror or exc}"
            return False
        st = os.fstat(fd)
        why = "not a regular file" if not stat.S_ISREG(st.st_mode) else refusal(self.path, st)
        if why is None and not self._same_file_as_name(st):
            why = "the name changed while opening (retrying)"
        if why is not None:
            os.close(fd)
            self.problem = why
            return False
        self._fd, self._ident = fd, (st.st_dev, st.st_ino)
        self._buf.clear()
        self._pos = max(0, st.st_size - TAIL_BYTES) if self._at_start else 0
        self._skip_to_newline = self._pos > 0
        self.problem = ""
        return True

    def _same_file_as_name(self, st: os.stat_result) -> bool:
        try:
            now = os.stat(self.path)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)

    def poll(self) -> _ReadResult:
        """Read what was appended since the last poll, following rotation, truncation and deletion."""
        lines: list[str] = []
        live = not self._at_start
        try:
            if self._fd is None and not self._open():
                return _ReadResult(lines, False)
            live = self._drain(lines) and live
            if self._replaced():
                self.close()
                if self._open():
                    live = self._drain(lines) and live
        finally:
            self._at_start = False
        return _ReadResult(lines, live)

    def _replaced(self) -> bool:
        """True when the name now leads to another file (rotation).

        A name renamed away keeps the old file open (its writer may still append until it reopens); a
        file deleted outright (no links left) is closed after the final drain, so optitop does not pin the
        disk space of a deleted log.
        """
        try:
            st = os.stat(self.path)
        except OSError:
            assert self._fd is not None
            if os.fstat(self._fd).st_nlink == 0:
                self.close()
                self.problem = "deleted (waiting for it to appear again)"
            else:
                self.problem = "renamed away (reading the open file, waiting for the name to return)"
            return False
        self.problem = ""
        return (st.st_dev, st.st_ino) != self._ident

    def _drain(self, lines: list[str]) -> bool:
        """Read the open file to its current end; False when bytes were skipped (then not live)."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        live = True
        if size < self._pos:  # truncated (copytruncate rotation, or `> file`)
            self._pos = 0
            self._buf.clear()
            self._skip_to_newline = False
        if size - self._pos > MAX_CATCHUP_BYTES:
            self._pos = size - TAIL_BYTES
            self._buf.clear()
            self._skip_to_newline = True
            live = False
        while self._pos < size:
            chunk = os.pread(self._fd, min(CHUNK_BYTES, size - self._pos), self._pos)
            if not chunk:
                break
            self._pos += len(chunk)
            self._split(chunk, lines)
        return live

    def _split(self, chunk: bytes, lines: list[str]) -> None:
        """Cut complete lines out of the buffer; an over-long line keeps only its head."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                self._keep(chunk[start:], lines)
                return
            if not self._skip_to_newline:
                self._keep(chunk[start:end], lines)
                if not self._skip_to_newline:  # (else _keep already emitted the cut head)
                    lines.append(self._buf.decode("utf-8", "replace").rstrip("\r"))
            self._skip_to_newline = False
            self._buf.clear()
            start = end + 1

    def _keep(self, piece: bytes, lines: list[str]) -> None:
        if self._skip_to_newline:
            return
        room = MAX_LINE_BYTES - len(self._buf)
        self._buf += piece[:room]
        if len(piece) > room:  # emit the head now and drop the rest up to the next newline
            lines.append(self._buf.decode("utf-8", "replace"))
            self._buf.clear()
            self._skip_to_newline = True
            self.lines_cut += 1


# -- what one file said ----------------------------------------------------------------------------------
@dataclass(slots=True)
class _Engine:
    """The newest value of each canonical field for one engine/rank, with its provenance label."""

    values: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    stats_mono: float = 0.0


@dataclass(slots=True)
class FileState:
    """The stats one log has shown so far."""

    server: str = ""
    generation: str = ""
    engines: dict[str, _Engine] = field(default_factory=dict)
    last_stats_mono: float | None = None
    live_since_mono: float | None = None
    preemptions: deque[tuple[float, int]] = field(default_factory=deque)
    reports_preemptions: bool = False
    last_cumulative: int | None = None

    def apply(self, event: LogEvent, mono: float, live: bool) -> None:
        """Fold one parsed line into the state."""
        self.server = event.server
        if event.generation and event.kind == "stats":
            self.generation = event.generation
        if event.kind == "preemption" or event.preemptions is not None:
            self._count_preemptions(event, mono, live)
        if not event.values:
            return
        engine = self.engines.setdefault(event.engine, _Engine())
        engine.values.update(event.values)
        engine.labels.update(dict(event.stats.provenance))
        if event.kind in ("stats", "prefill"):
            engine.stats_mono = mono
            self.last_stats_mono = mono

    def _count_preemptions(self, event: LogEvent, mono: float, live: bool) -> None:
        count = event.preemptions
        if event.cumulative_preemptions is not None:
            before, self.last_cumulative = self.last_cumulative, event.cumulative_preemptions
            count = (
                1 if before is None or event.cumulative_preemptions < before else event.cumulative_preemptions - before
            )
        if event.generation == "v1" and event.preemptions is not None:
            self.reports_preemptions = True  # this version prints the part (when non-zero), so absence is 0
        if live and count:
            self.preemptions.append((mono, count))

    def preemptions_per_s(self, now: float) -> tuple[float | None, str]:
        """Preemptions per second over the window, with the label of where the count came from."""
        while self.preemptions and self.preemptions[0][0] < now - PREEMPT_WINDOW_S:
            self.preemptions.popleft()
        if self.server == "vllm" and self.generation == "v1":
            known, label = self.reports_preemptions, "vllm log: Preemptions"
        elif self.server == "vllm":
            known, label = True, "vllm log: preemption warnings (total_cumulative_preemption_cnt)"
        else:
            known, label = self.server == "sglang", "sglang log: #retracted_reqs"
        if self.live_since_mono is None:
            return None, label
        span = min(PREEMPT_WINDOW_S, now - self.live_since_mono)
        if span < 1.0 or not (known or self.preemptions):
            return None, label
        return sum(n for _, n in self.preemptions) / span, label

    def stats(self, now: float) -> ServingStats:
        """The canonical stats: the newest per engine, combined across fresh engines."""
        fresh = {k: e for k, e in self.engines.items() if now - e.stats_mono <= STALE_AFTER_S or not e.stats_mono}
        if "aggregated" in fresh:
            fresh = {"aggregated": fresh["aggregated"]}
        values, labels = combine_engines(list(fresh.values()))
        rate, label = self.preemptions_per_s(now)
        if rate is not None:
            values["preemptions_per_s"] = rate
            labels["preemptions_per_s"] = label
        return make_stats(values, labels)


def combine_engines(engines: list[_Engine]) -> tuple[dict[str, float], dict[str, str]]:
    """Sum counts and throughputs across engines/ranks; average percentages."""
    values: dict[str, float] = {}
    labels: dict[str, str] = {}
    counts: dict[str, int] = {}
    for engine in engines:
        for name, value in engine.values.items():
            values[name] = values.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
            labels[name] = engine.labels.get(name, "")
    for name, n in counts.items():
        if name not in SUMMED_FIELDS:
            values[name] /= n
        if n > 1:
            labels[name] += f" ({'sum' if name in SUMMED_FIELDS else 'mean'} of {n} engines)"
    return values, labels


# -- the collector ---------------------------------------------------------------------------------------
class LogsCollector:
    """Follows every ``--log`` path and reports the newest serving stats found in them."""

    name = "logs"

    def __init__(self, ctx: CollectorContext) -> None:
        """Set up one follower per path; SourceUnavailable when no path was given."""
        if not ctx.options.log_paths:
            raise SourceUnavailable("no server log given: pass --log PATH")
        self.interval_s = ctx.options.interval_s
        self._followers = [FileFollower(p) for p in ctx.options.log_paths]
        self._states = [FileState() for _ in self._followers]
        self._prev_mono: float | None = None

    def close(self) -> None:
        """Close every followed file."""
        for follower in self._followers:
            follower.close()

    def describe(self) -> str:
        """What ``optitop doctor`` prints when the source works."""
        parts = []
        for follower, state in zip(self._followers, self._states, strict=True):
            what = f"{state.server} stats" if state.server else "no vLLM/SGLang stats line yet"
            parts.append(f"{follower.path}: {follower.problem or what}")
        return "; ".join(parts)

    def sample(self) -> ServingSample | None:
        """Read what the logs gained since the last tick; None until a stats line has been seen."""
        ts = time.time()
        mono = time.monotonic()
        dt = None if self._prev_mono is None else mono - self._prev_mono
        self._prev_mono = mono
        for follower, state in zip(self._followers, self._states, strict=True):
            got = follower.poll()
            if got.live and state.live_since_mono is None:
                state.live_since_mono = mono
            for line in got.lines:
                event = parse_line(line)
                if event is not None:
                    state.apply(event, mono, got.live)
        best = self._newest(mono)
        if best is None:
            if not any(f.is_open for f in self._followers):
                raise SourceUnavailable("; ".join(f"{f.path}: {f.problem}" for f in self._followers))
            return None
        follower, state = best
        return ServingSample(
            ts_s=ts,
            mono_s=mono,
            dt_s=dt,
            source=f"{state.server} log {follower.path}",
            profile=state.server,
            stats=state.stats(mono),
        )

    def _newest(self, now: float) -> tuple[FileFollower, FileState] | None:
        """The file whose stats line is newest, if that line is fresh enough to show."""
        best: tuple[FileFollower, FileState] | None = None
        for follower, state in zip(self._followers, self._states, strict=True):
            seen = state.last_stats_mono
            if seen is None or now - seen > STALE_AFTER_S:
                continue
            if best is None or seen > (best[1].last_stats_mono or 0.0):
                best = (follower, state)
        return best
