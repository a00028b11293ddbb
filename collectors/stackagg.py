"""Aggregating sampled stacks into the public ``PyStacksSample``: per thread on-CPU and GIL shares, what the
threads wait on, the hot functions and the op mix.

The counts come from windows (``StackWindow``): a record window's all-stacks and GIL-stacks streams, or a
one-instant dump. Record windows carry no on-CPU flag, so each thread's CPU time over the window (exact, from
/proc) is spread over its stacks that can use CPU (``active_from_cpu``). Classifying a stack (rules over every
frame, plus the leaf's source line) is cached across windows in ``StackClasses``.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from optitop.collectors.pyspyparse import DumpThread, StackKey
from optitop.collectors.sourcelines import SourceLines, with_code
from optitop.collectors.stackclass import (
    ACTIVE_WAITS,
    BREAKDOWN_CLASSES,
    OP_CLASSES,
    PY_OP_CLASSES,
    Frame,
    breakdown_class,
    classify_op,
    classify_py_op,
    classify_wait,
    leaf_native,
    leaf_python,
)
from optitop.model import HotFunction, PyStacksSample, PyThread

#: Hot functions kept per sample.
TOP_HOT = 12
#: Stacks whose wait class is remembered across windows (see ``StackClasses``).
MAX_STACK_CLASSES = 20_000
#: Native hot functions kept per native burst.
TOP_NATIVE_HOT = 6


# -- labels ---------------------------------------------------------------------------------------------------
def short_path(file: str) -> str:
    """The package part of a path (``torch/cuda/__init__.py``), or the file name, like py-spy's short names."""
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.rsplit(marker, 1)[1]
    m = re.search(r"/lib/python3\.\d+/(.*)$", file)
    if m:
        return m.group(1)
    return os.path.basename(file) if "/" in file else file


def frame_label(frame: Frame) -> str:
    """``func (short_file:line)``."""
    file = short_path(frame.file)
    if not file:
        return frame.name
    return f"{frame.name} ({file}:{frame.line})" if frame.line is not None else f"{frame.name} ({file})"


# -- aggregation ----------------------------------------------------------------------------------------------
@dataclass(slots=True)
class StackWindow:
    """Raw counts of one or more sampling windows, per stack: all stacks, active stacks, GIL stacks."""

    mode: str
    window_s: float
    instants: int
    all: Counter[StackKey] = field(default_factory=Counter)
    active: Counter[StackKey] = field(default_factory=Counter)
    gil: Counter[StackKey] = field(default_factory=Counter)
    gil_known: bool = True
    trigger: str = ""
    #: The process these stacks came from (the target or its Python child); None when unknown.
    pid: int | None = None
    #: Record windows: ``active`` is not sampled; each thread's on-CPU share comes from its CPU time instead.
    active_from_cpu: bool = False
    #: CPU seconds per thread id over the window(s), from /proc (threads that ended mid-window are missing).
    cpu_s: dict[int, float] = field(default_factory=dict)
    #: Seconds over which each thread's ``cpu_s`` was measured (less than the window for a thread born in it).
    cpu_wall_s: dict[int, float] = field(default_factory=dict)

    def merge(self, other: StackWindow) -> None:
        """Add another window's counts (sample() aggregates what arrived since the last call)."""
        self.window_s += other.window_s
        self.instants += other.instants
        self.all.update(other.all)
        self.active.update(other.active)
        self.gil.update(other.gil)
        self.gil_known = self.gil_known and other.gil_known
        self.active_from_cpu = self.active_from_cpu or other.active_from_cpu
        for tid, cpu in other.cpu_s.items():
            self.cpu_s[tid] = self.cpu_s.get(tid, 0.0) + cpu
            self.cpu_wall_s[tid] = self.cpu_wall_s.get(tid, 0.0) + other.cpu_wall_s.get(tid, 0.0)


def window_from_dump(threads: Iterable[DumpThread], trigger: str) -> StackWindow:
    """A one-instant window from a dump (exact active and GIL flags)."""
    win = StackWindow(mode="dump", window_s=0.0, instants=1, trigger=trigger)
    for t in threads:
        key = (t.tid, t.name, t.frames)
        win.all[key] += 1
        if t.active:
            win.active[key] += 1
        if t.gil:
            win.gil[key] += 1
    return win


def _coarse(frames: tuple[Frame, ...]) -> tuple[tuple[str, str], ...]:
    """A stack without line numbers: the active and all streams sample different instants, so a hot loop
    lands on different lines in each; comparing per function keeps their difference meaningful."""
    return tuple((f.name, f.file) for f in frames)


def _idle_weights(all_keys: dict[StackKey, int], active_keys: dict[StackKey, float]) -> dict[StackKey, float]:
    """Per stack of one thread, how many of its samples were idle: all minus active, per line-free stack."""
    all_by: dict[tuple[tuple[str, str], ...], int] = Counter()
    act_by: defaultdict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for key, n in all_keys.items():
        all_by[_coarse(key[2])] += n
    for key, on_cpu in active_keys.items():
        act_by[_coarse(key[2])] += on_cpu
    out: dict[StackKey, float] = {}
    for key, n in all_keys.items():
        coarse = _coarse(key[2])
        idle = max(0.0, all_by[coarse] - act_by[coarse])
        out[key] = idle * n / all_by[coarse] if all_by[coarse] else 0.0
    return out


class StackClasses:
    """Each stack's wait class, kept across windows: a server's threads show the same few hundred stacks
    window after window, and classifying them (rules over every frame, plus the leaf's source line) was
    most of the stacks thread's own CPU. Cleared when it grows past MAX_STACK_CLASSES."""

    def __init__(self, source: SourceLines) -> None:
        """Classify against ``source`` (the process's files, for the leaf line's text)."""
        self.source = source
        self._waits: dict[StackKey, str] = {}
        self._ops: dict[StackKey, str] = {}

    def wait_of(self, key: StackKey) -> str:
        """The wait class of one stack ("" when nothing marks it as a wait)."""
        wait = self._waits.get(key)
        if wait is None:
            if len(self._waits) >= MAX_STACK_CLASSES:
                self._waits.clear()
            wait = self._waits[key] = classify_wait(with_code(key[2], self.source))
        return wait

    def op_of(self, key: StackKey) -> str:
        """The op class of one on-CPU stack from its Python frames (math, memory or interpreter)."""
        op = self._ops.get(key)
        if op is None:
            if len(self._ops) >= MAX_STACK_CLASSES:
                self._ops.clear()
            op = self._ops[key] = classify_py_op(with_code(key[2], self.source))
        return op


def py_op_mix(
    on_cpu: Mapping[StackKey, float], op_of: Callable[[StackKey], str]
) -> tuple[tuple[str, float], ...] | None:
    """Fractions of the on-CPU samples per op class (PY_OP_CLASSES order); None when nothing was on CPU."""
    weights: defaultdict[str, float] = defaultdict(float)
    for key, n in on_cpu.items():
        op = op_of(key) if n > 0 else ""
        if op:  # "" : no Python frame to read
            weights[op] += n
    total = sum(weights.values())
    if total <= 0:
        return None
    return tuple((cls, round(weights.get(cls, 0.0) / total, 4)) for cls in PY_OP_CLASSES)


@dataclass(slots=True)
class _ThreadAcc:
    name: str = ""
    all: dict[StackKey, int] = field(default_factory=dict)
    active: dict[StackKey, float] = field(default_factory=dict)
    gil: int = 0


def _per_thread(win: StackWindow) -> dict[int, _ThreadAcc]:
    threads: dict[int, _ThreadAcc] = {}
    for key, n in win.all.items():
        acc = threads.setdefault(key[0], _ThreadAcc(name=key[1]))
        acc.all[key] = n
        acc.name = acc.name or key[1]
    for key, n in win.active.items():
        acc = threads.setdefault(key[0], _ThreadAcc(name=key[1]))
        acc.active[key] = float(n)
    for key, n in win.gil.items():
        threads.setdefault(key[0], _ThreadAcc(name=key[1])).gil += n
    return threads


def active_from_cpu(
    stacks: dict[StackKey, int], cpu_frac: float | None, wait_of: Callable[[StackKey], str]
) -> dict[StackKey, float]:
    """One thread's on-CPU samples, estimated from its CPU share over the window (``cpu_frac``, 0-1).

    py-spy's raw records carry no on-CPU flag, and a third record just for it cost as much as the stacks
    themselves. The thread's CPU time is exact; it is spread over the stacks that can burn CPU (no wait
    class, or a spinning one: GIL, GPU sync) in proportion to their samples, and what they cannot hold
    over the rest. Unknown CPU (the thread ended mid-window) counts those stacks as on CPU.
    """
    busy = {key: n for key, n in stacks.items() if wait_of(key) in ("", *ACTIVE_WAITS)}
    if cpu_frac is None:
        return {key: float(n) for key, n in busy.items()}
    want = min(1.0, max(0.0, cpu_frac)) * sum(stacks.values())
    busy_n = sum(busy.values())
    take = min(want, busy_n)
    out = {key: take * n / busy_n for key, n in busy.items()} if busy_n else {}
    rest = {key: n for key, n in stacks.items() if key not in busy}
    rest_n = sum(rest.values())
    if want > take and rest_n:
        out.update({key: (want - take) * n / rest_n for key, n in rest.items()})
    return {key: n for key, n in out.items() if n > 0}


def thread_breakdown(acc: _ThreadAcc, classes: StackClasses) -> PyThread:
    """One thread's active/GIL shares and wait classes from its stack counts."""
    n_all = sum(acc.all.values())
    n_act = sum(acc.active.values())
    total = max(n_all, n_act, 1)
    act_frac = min(1.0, n_act / total)
    weights: defaultdict[str, float] = defaultdict(float)
    if n_act:
        for key, n in acc.active.items():
            weights[breakdown_class(classes.wait_of(key), True)] += act_frac * n / n_act
    idle = _idle_weights(acc.all, acc.active)
    idle_sum = sum(idle.values())
    if act_frac < 1.0:
        if idle_sum > 0:
            for key, w in idle.items():
                if w > 0:
                    weights[breakdown_class(classes.wait_of(key), False)] += (1.0 - act_frac) * w / idle_sum
        else:
            weights["other"] += 1.0 - act_frac
    waits = tuple((cls, round(weights.get(cls, 0.0), 4)) for cls in BREAKDOWN_CLASSES)
    idle_classes = [(w, c) for c, w in weights.items() if c != "active" and w > 0]
    wait = max(idle_classes)[1] if weights.get("active", 0.0) < 0.5 and idle_classes else ""
    top = Counter(acc.all) or Counter(acc.active)
    top_key = top.most_common(1)[0][0] if top else None
    top_frame = ""
    if top_key is not None and top_key[2]:
        leaf = leaf_python(top_key[2]) or top_key[2][0]
        top_frame = frame_label(leaf)
    return PyThread(
        tid=0,
        name=acc.name,
        samples=round(total),
        active_pct=100.0 * act_frac,
        gil_pct=min(100.0, 100.0 * acc.gil / total),
        top_frame=top_frame,
        wait=wait,
        waits=waits,
    )


def hot_functions(stacks: Mapping[StackKey, float], limit: int, native_only: bool = False) -> tuple[HotFunction, ...]:
    """Self and total shares per function over ``stacks`` (the active ones: where the CPU goes)."""
    total = sum(stacks.values())
    if not total:
        return ()
    self_n: defaultdict[tuple[str, str], float] = defaultdict(float)
    total_n: defaultdict[tuple[str, str], float] = defaultdict(float)
    lines: dict[tuple[str, str], defaultdict[int | None, float]] = {}
    native: dict[tuple[str, str], bool] = {}
    for (_, _, frames), n in stacks.items():
        # Unresolved native frames (bare addresses) say nothing: their callers get the self share.
        chosen = [f for f in frames if f.native and not f.name.startswith("0x")] if native_only else list(frames)
        if not chosen:
            continue
        seen: set[tuple[str, str]] = set()
        for i, frame in enumerate(chosen):
            fkey = (frame.name, short_path(frame.file))
            if i == 0:
                self_n[fkey] += n
            if fkey not in seen:
                seen.add(fkey)
                total_n[fkey] += n
            lines.setdefault(fkey, defaultdict(float))[frame.line] += n
            native[fkey] = frame.native
    ranked = sorted(total_n, key=lambda k: (self_n[k], total_n[k]), reverse=True)[:limit]
    out = []
    for fkey in ranked:
        by_line = lines[fkey]
        line = max(by_line, key=by_line.__getitem__)
        location = fkey[1] if line is None else f"{fkey[1]}:{line}"
        out.append(
            HotFunction(
                name=fkey[0],
                location=location,
                self_pct=100.0 * self_n[fkey] / total,
                total_pct=100.0 * total_n[fkey] / total,
                native=native[fkey],
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NativeResult:
    """A native burst: op mix and native hot functions."""

    mix: tuple[tuple[str, float], ...]
    hot: tuple[HotFunction, ...]
    end_mono_s: float
    samples: int


def native_result(stacks: Counter[StackKey], end_mono_s: float) -> NativeResult | None:
    """The op mix of a native burst over the samples that were not waiting; None when there were none."""
    busy: Counter[StackKey] = Counter()
    mix: Counter[str] = Counter()
    for key, n in stacks.items():
        frames = key[2]
        if classify_wait(frames):
            continue
        busy[key] += n
        op = classify_op(frames)
        # No native frame below the leaf: the interpreter is running bytecode.
        mix["interpreter" if op is None else op] += n
    total = sum(mix.values())
    if not total:
        return None
    return NativeResult(
        mix=tuple((cls, mix.get(cls, 0) / total) for cls in OP_CLASSES),
        hot=hot_functions(Counter({k: n for k, n in busy.items() if leaf_native(k[2])}), TOP_NATIVE_HOT, True),
        end_mono_s=end_mono_s,
        samples=round(total),
    )


def build_sample(
    win: StackWindow,
    source: SourceLines,
    native: NativeResult | None,
    native_new: bool,
    dt_s: float | None,
    stacks_pid: int | None = None,
    classes: StackClasses | None = None,
) -> PyStacksSample:
    """The public sample from merged window counts (``classes``: the collector's cache, kept across windows)."""
    classes = classes if classes is not None else StackClasses(source)
    threads = []
    on_cpu: defaultdict[StackKey, float] = defaultdict(float, win.active)
    for tid, acc in _per_thread(win).items():
        if win.active_from_cpu:
            wall = win.cpu_wall_s.get(tid, 0.0)
            frac = win.cpu_s[tid] / wall if tid in win.cpu_s and wall > 0 else None
            acc.active = active_from_cpu(acc.all, frac, classes.wait_of)
            for key, n in acc.active.items():
                on_cpu[key] += n
        threads.append(replace(thread_breakdown(acc, classes), tid=tid))
    threads.sort(key=lambda t: (t.active_pct, t.samples), reverse=True)
    wall = sum(t.samples for t in threads)
    waits: defaultdict[str, float] = defaultdict(float)
    for t in threads:
        for cls, frac in t.waits:
            waits[cls] += frac * t.samples
    active = [t.active_pct for t in threads if t.active_pct > 0]
    instants = win.instants or max((t.samples for t in threads), default=0)
    gil_pct = None
    if win.gil_known and instants:
        gil_pct = min(100.0, 100.0 * sum(win.gil.values()) / instants)
    hot = hot_functions(on_cpu, TOP_HOT)
    if native is not None and native_new:
        hot = hot + native.hot
    now = time.monotonic()
    return PyStacksSample(
        ts_s=time.time(),
        mono_s=now,
        dt_s=dt_s,
        mode=win.mode,
        window_s=win.window_s,
        samples=instants,
        threads=tuple(threads),
        gil_pct=gil_pct,
        active_pct=sum(active) / len(active) if active else 0.0,
        waits=tuple((cls, (waits.get(cls, 0.0) / wall) if wall else 0.0) for cls in BREAKDOWN_CLASSES),
        hot=hot,
        native_mix=native.mix if native is not None else None,
        native_age_s=(now - native.end_mono_s) if native is not None else None,
        trigger=win.trigger,
        stacks_pid=stacks_pid,
        py_op_mix=py_op_mix(on_cpu, classes.op_of),
    )
