"""The Python stacks collector: what every thread of the target is doing, sampled with py-spy.

Why record windows and not repeated dumps. Measured with py-spy 0.4.3 on a shared 2-core VM (load 3-6 from
other work), target: one Python thread spinning plus four idle ones; "stopped" is the share of wall time
the spinning thread spent in ptrace stop (state ``t`` in /proc, polled at ~15 kHz: a measure other load
cannot blur); py-spy CPU is optitop's cost, % of one core:

    sampler                                           target stopped       py-spy CPU
    none                                              0                    0
    dump --nonblocking, 1 / 5 / 20 per s              0                    1.8 / 3.4-7.4 / 26 %
    record --nonblocking --idle, 20 / 100 Hz          0                    1.3-1.9 / 5.7 %
    3 x record --nonblocking, 20 Hz (until 2026-11)   0                    4.6 %
    record (blocking), 20 / 100 Hz                    2.2-2.4 / 4.7-5.9 %  1.7 / 5.6 %
    record --native, 20 / 100 Hz                      5.5-7.2 / 13-14 %    3.4 / 10-12 %

The loop's iterations/s (on/off pairs of 2 s, 8-10 pairs each) could not resolve the non-blocking cost:
pairs swung 30-300 % with the machine's other load, medians 83-118 %; dumps at 20/s (a quarter of a core on
a 2-core box) halved it (median 49 %).

A dump costs a process start plus attaching (reading the target's maps and symbols): ~14 ms of CPU and
70-90 ms of wall each, so dumps at the 20 Hz default would cost a quarter of a core. A record window pays
that once per window and then ~0.7-1 ms of CPU per sample. Dumps give more per sample: every thread's
``active`` (on CPU) and ``owns_gil`` flags, while ``record --format raw`` has neither (``--idle`` and
``--gil`` are *filters*; with ``--threads`` the lines are ``thread (TID): NAME;root;...;leaf COUNT``). So
each window runs two cheap non-blocking records side by side over the same seconds at the same rate: all
stacks (``--idle``) and GIL-holding stacks (``--gil``); per thread, GIL % is the ratio of their counts. The
on-CPU share is not sampled: it is the thread's CPU time over the window (/proc/PID/task/TID/stat, exact),
spread over its stacks that can use CPU (see ``active_from_cpu``). A third record filtered to active stacks
did that before and cost as much as the all-stacks one (8-thread demo server, 20 Hz, 2 s windows: all 55 ms,
active 55 ms, GIL 15 ms of py-spy CPU, ~10 ms of each start-up; py-spy's children fell from 1.65 % to 1.05 % of
a core at the default 1/3 duty when it went); what it gave beyond the CPU time was which
busy-looking stack of a thread was on CPU at each instant. A single non-blocking ``dump`` is used where one
exact instant is wanted: ``trigger()`` ("the GPU just went idle: what is the host doing?").

Native stacks (``--native``) stop the target for every sample (py-spy cannot unwind native stacks of a
running thread). A 1 s native burst at 20 Hz stopped the plain Python target for 0.08-0.10 s in all, but a
torch process (GEMM loop) for ~2.1 s, the same at 20 and at 100 Hz, so a fixed cost rather than a
per-sample one (py-spy reads libtorch's symbols and unwind tables, apparently with the target held); such a
burst takes 3.5-5 s of wall and ~0.8 s of py-spy CPU. Many-thread torch servers are
worse (py-spy#872: 5-15x slowdowns). So native runs only in short bursts, on ``request_native()`` (a key
press) or every ``Options.native_every_s`` (0 = never), and the periodic bursts keep their duty cycle at
or below 1/NATIVE_DUTY_FACTOR of wall time whatever that option says.

This module only schedules: the windows, the native bursts, the trigger dumps and which process to read. Running
py-spy and explaining its failures is collectors/pyspy.py, reading its output collectors/pyspyparse.py, turning
the counts into a sample collectors/stackagg.py (with source lines from collectors/sourcelines.py), and choosing
the Python process of the target's tree collectors/pyprocs.py.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from optitop.collectors.procfs import read_stat, thread_stats
from optitop.collectors.pyprocs import (
    busiest_python_child,
    busiest_recent,
    follow_choice,
    is_running,
    python_in_process,
)
from optitop.collectors.pyspy import PySpyRunner, explain_failure, find_pyspy
from optitop.collectors.pyspyparse import parse_dump, parse_raw
from optitop.collectors.sourcelines import SourceLines
from optitop.collectors.stackagg import (
    NativeResult,
    StackClasses,
    StackWindow,
    build_sample,
    native_result,
    window_from_dump,
)
from optitop.collectors.tree import TargetTree
from optitop.config import CollectorContext
from optitop.model import PyStacksSample, SourceUnavailable, TargetGone

#: Seconds a py-spy child may run past its window before it is treated as hung.
GRACE_S = 5.0
#: Seconds a native burst may take past its window: attaching loads the native symbols of every library
#: (libtorch_cpu is hundreds of MB), measured at ~3 s on a loaded 2-core machine.
NATIVE_GRACE_S = 20.0
#: Periodic native bursts are spaced at least this many times their own measured duration apart.
NATIVE_DUTY_FACTOR = 20.0
#: Longest pause between retries after py-spy failed.
MAX_BACKOFF_S = 60.0
#: The pre-flight check's answer when neither the target nor any process of its tree runs Python.
NOT_PYTHON = "no Python stacks: not a Python process"


# -- the collector --------------------------------------------------------------------------------------------
class PyStacksCollector:
    """Samples the target's Python stacks with py-spy on a background thread; sample() never waits on it."""

    name: ClassVar[str] = "pystacks"

    def __init__(self, ctx: CollectorContext, pyspy: str | None = None) -> None:
        """Watch ``ctx.pid``; ``pyspy`` overrides where the py-spy binary is (tests, odd installs)."""
        opts = ctx.options
        self.pid = ctx.pid
        #: The process py-spy reads: the target, or its busiest Python child when the target is not Python.
        self.stacks_pid = ctx.pid
        self.interval_s = opts.interval_s
        self.rate_hz = max(1.0, float(opts.pyspy_rate_hz))
        #: Seconds per record window (py-spy takes whole seconds).
        self.window_s = max(1, round(max(2.0, opts.interval_s)))
        #: Share of wall time spent sampling: a window, then a pause, so the target pays a fraction of the cost.
        self.duty = min(1.0, max(0.05, float(opts.pyspy_duty)))
        self.gap_s = self.window_s * (1.0 / self.duty - 1.0)
        #: The duty in force: ``duty`` times the pace the session sets (``set_pace``).
        self.paced_duty = self.duty
        self._repace = threading.Event()
        #: Seconds a child may overrun its window before it is killed as hung.
        self.grace_s = GRACE_S
        self.native_every_s = max(0.0, float(opts.native_every_s))
        #: Seconds of one native burst, and how long it may overrun (symbol loading) before it is killed.
        self.native_window_s = 1
        self.native_grace_s = NATIVE_GRACE_S
        #: Why the last native burst failed ("" when it worked), and how long it took end to end.
        self.native_error = ""
        self.native_cost_s: float | None = None
        self.pyspy = pyspy if pyspy is not None else find_pyspy()
        self._source = SourceLines(ctx.pid)
        self._classes = StackClasses(self._source)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: list[StackWindow] = []
        self._triggers: list[StackWindow] = []
        self._error: str | None = None
        self._failures = 0
        self._native: NativeResult | None = None
        self._native_new = False
        self._native_busy = threading.Lock()
        self._trigger_busy = threading.Lock()
        self._next_native = time.monotonic() + self.native_every_s if self.native_every_s else None
        self._runner: PySpyRunner | None = None
        self._thread: threading.Thread | None = None
        self._checked_python = False
        self._prev_mono: float | None = None
        #: Cumulative CPU-seconds of the tree's Python processes at the last check, and when (for following the
        #: busiest one: a pre-fork master sleeps while its workers work).
        self._tree_cpu: dict[int, float] = {}
        self._tree_cpu_mono: float | None = None
        self._python_pids: dict[int, bool] = {}

    # -- public API -----------------------------------------------------------------------------------------
    def describe(self) -> str:
        """The doctor line."""
        return (
            f"py-spy {self.pyspy} at {self.rate_hz:g} Hz in {self.window_s} s non-blocking windows,"
            f" {self.duty:.0%} of the time (less while the verdict holds steady)"
        )

    def sample(self) -> PyStacksSample | None:
        """What arrived since the last call (a trigger dump first); None while the first window runs."""
        self._preflight()
        self._ensure_started()
        with self._lock:
            native = self._native
            if self._triggers:
                return self._finish(self._triggers.pop(0), native, False)
            pending, self._pending = self._pending, []
            error = self._error
            native_new = self._native_new and bool(pending)
            if pending:
                self._native_new = False
        if not pending:
            if error:
                raise SourceUnavailable(error)
            return None
        merged = pending[0]
        for other in pending[1:]:
            merged.merge(other)
        return self._finish(merged, native, native_new)

    def request_native(self) -> bool:
        """Run a short native burst now (the TUI's n key); False when one is already running."""
        return self._start_job(self._native_burst, self._native_busy, "native")

    def trigger(self, reason: str) -> bool:
        """Take one stack dump now (e.g. "GPU util dipped"); the next sample() returns it with ``reason``."""
        return self._start_job(lambda: self._trigger_dump(reason), self._trigger_busy, "trigger")

    def set_pace(self, factor: float) -> None:
        """Sample ``factor`` times the configured duty from now on (the gap in progress is re-timed at once).

        The session slows sampling while its verdict holds steady and restores it when the verdict moves: py-spy
        is most of optitop's CPU, and stacks that keep saying the same thing are worth fewer samples.
        """
        duty = min(1.0, max(0.05, self.duty * factor))
        if duty == self.paced_duty:
            return
        self.paced_duty = duty
        self.gap_s = self.window_s * (1.0 / duty - 1.0)
        self._repace.set()

    def live_children(self) -> list[int]:
        """Pids of py-spy children running right now."""
        return self._runner.live_pids() if self._runner else []

    def close(self) -> None:
        """Stop the sampling thread and kill every py-spy child."""
        self._stop.set()
        self._repace.set()
        if self._runner is not None:
            self._runner.close()
        if self._thread is not None:
            self._thread.join(5.0)

    # -- checks ---------------------------------------------------------------------------------------------
    def _preflight(self) -> None:
        if not os.path.exists(f"/proc/{self.pid}"):
            raise TargetGone(f"pid {self.pid} exited")
        if not self.pyspy or not os.access(self.pyspy, os.X_OK):
            where = self.pyspy or "next to optitop's Python or on PATH"
            raise SourceUnavailable(f"py-spy not found ({where}): install it with `pip install py-spy`")
        if not self._checked_python:
            is_python, exe = python_in_process(self.pid)
            if is_python is False:
                child = busiest_python_child(self.pid)
                if child is None:
                    raise SourceUnavailable(f"{NOT_PYTHON} ({exe or 'unknown executable'}) and has no Python child")
                self._follow_child(child)
            self._checked_python = True

    def _child_replaced(self) -> bool:
        """The Python child we read has exited: move to the busiest one left (True), or leave it (False).

        Only the sampling thread calls this (after a failed window), so the switch never races a window.
        """
        if self.stacks_pid == self.pid:
            return False
        deadline = time.monotonic() + 1.0  # a killed worker takes a moment to finish exiting
        while is_running(self.stacks_pid):
            if time.monotonic() > deadline or self._stop.wait(0.05):
                return False
        child = busiest_python_child(self.pid)
        if child is None or child == self.stacks_pid:
            if self._python_pids.get(self.pid):  # a Python master whose worker exited: read the master again
                self._follow_child(self.pid)
                return True
            return False
        self._follow_child(child)
        return True

    def _python_tree_cpu(self) -> dict[int, float]:
        """Cumulative CPU-seconds of the target and its Python descendants (python-ness cached per pid)."""
        try:
            pids = [self.pid, *(child for child, _parent in TargetTree(self.pid).descendant_pids())]
        except (SourceUnavailable, TargetGone):
            return {}
        out: dict[int, float] = {}
        for pid in pids:
            if pid not in self._python_pids:
                try:
                    self._python_pids[pid] = python_in_process(pid)[0] is not False
                except TargetGone:
                    continue
            stat = read_stat(f"/proc/{pid}/stat")
            if self._python_pids[pid] and stat is not None:
                out[pid] = stat.cpu_s
        return out

    def _follow_busiest(self) -> None:
        """Between windows: read the tree's busiest Python process when the one read now sits idle.

        Only the sampling thread calls this (between windows), so the switch never races a window.
        """
        now = time.monotonic()
        cpu = self._python_tree_cpu()
        before, before_mono = self._tree_cpu, self._tree_cpu_mono
        self._tree_cpu, self._tree_cpu_mono = cpu, now
        if before_mono is None or len(cpu) < 2:
            return
        choice = follow_choice(self.stacks_pid, busiest_recent(cpu, before, now - before_mono))
        if choice is not None:
            self._follow_child(choice)

    def _follow_child(self, child: int) -> None:
        """Read ``child``'s stacks from now on (the target itself is not Python, or it idles while ``child`` works;
        ``child`` may also be the target itself again)."""
        self.stacks_pid = child
        self._source = SourceLines(child)
        self._classes = StackClasses(self._source)
        if self._runner is not None:
            self._runner.target_pid = child

    def _ensure_started(self) -> None:
        if self._thread is not None or self._stop.is_set():
            return
        assert self.pyspy is not None
        self._runner = PySpyRunner(self.pyspy, self.stacks_pid)
        self._thread = threading.Thread(target=self._loop, name="optitop-pystacks", daemon=True)
        self._thread.start()

    def _finish(self, win: StackWindow, native: NativeResult | None, native_new: bool) -> PyStacksSample:
        now = time.monotonic()
        dt = None if self._prev_mono is None else now - self._prev_mono
        self._prev_mono = now
        return build_sample(win, self._source, native, native_new, dt, win.pid or self.stacks_pid, self._classes)

    # -- the background loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            win, error = self._record_window()
            if win is None and self._child_replaced():
                with self._lock:
                    self._error, self._failures = None, 0
                continue
            with self._lock:
                if win is not None:
                    self._pending.append(win)
                    del self._pending[:-30]  # nobody is reading: keep a bounded backlog
                    self._error = None
                    self._failures = 0
                else:
                    self._failures += 1
                    self._error = error
            if win is None:
                delay = min(MAX_BACKOFF_S, 2.0 ** min(self._failures, 6))
                with self._lock:
                    self._error = f"{error}; retrying in {delay:.0f} s"
                self._stop.wait(delay)
                continue
            self._follow_busiest()
            self._pause()
            due = self._next_native
            if due is not None and time.monotonic() >= due:
                self._next_native = time.monotonic() + self._native_period()
                self.request_native()

    def _pause(self) -> None:
        """Wait out the gap between windows, re-timed when ``set_pace`` changes it meanwhile."""
        start = time.monotonic()
        while not self._stop.is_set():
            left = start + self.gap_s - time.monotonic()
            if left <= 0:
                return
            self._repace.wait(left)
            self._repace.clear()

    def _native_period(self) -> float:
        """Seconds to the next periodic native burst: the option, stretched so bursts stay a small share."""
        cost = self.native_cost_s or 0.0
        return max(self.native_every_s, NATIVE_DUTY_FACTOR * cost)

    def _record_args(self, extra: Sequence[str], duration: int, rate: float) -> list[str]:
        return [
            "record",
            "--pid",
            str(self.stacks_pid),
            "--format",
            "raw",
            "--threads",
            "--full-filenames",
            "--rate",
            str(max(1, round(rate))),
            "--duration",
            str(duration),
            # A pipe, not a file: nothing is left on disk if optitop is killed. py-spy's own "py-spy>" lines
            # share the pipe; the parser skips them (data lines start with "thread (").
            "-o",
            "/dev/stdout",
            *extra,
        ]

    def _record_window(self) -> tuple[StackWindow | None, str]:
        """Two non-blocking records over the same seconds (all stacks, GIL stacks) and each thread's CPU time."""
        runner = self._runner
        assert runner is not None
        streams = {"all": ["--nonblocking", "--idle"], "gil": ["--nonblocking", "--gil"]}
        pid = self.stacks_pid
        cpu_before = {tid: st.cpu_s for tid, st in thread_stats(pid).items()}
        start = time.monotonic()
        deadline = start + self.window_s + self.grace_s
        started: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for kind, flags in streams.items():
                started[kind] = runner.start(self._record_args(flags, self.window_s, self.rate_hz))
        except (OSError, RuntimeError) as exc:
            for proc in started.values():  # do not leave the streams that did start running
                runner.finish(proc, 0.0, blocking=False)
            return None, f"cannot start py-spy: {exc}"
        results = {k: runner.finish(p, deadline, blocking=False) for k, p in started.items()}
        cpu_after = {tid: st.cpu_s for tid, st in thread_stats(pid).items()}
        elapsed = time.monotonic() - start
        if self._stop.is_set():
            return None, "stopped"
        if any(r.timed_out for r in results.values()):
            return (
                None,
                f"py-spy did not finish a {self.window_s} s window in {self.window_s + self.grace_s:.0f} s: killed",
            )
        failed = next((r for r in results.values() if r.rc != 0), None)
        if failed is not None:
            if not os.path.exists(f"/proc/{self.pid}"):
                return None, f"target pid {self.pid} exited"
            if not os.path.exists(f"/proc/{self.stacks_pid}"):
                return None, f"Python child {self.stacks_pid} exited"
            return None, explain_failure(failed.messages, failed.rc)
        win = StackWindow(mode="record", window_s=elapsed, instants=0, pid=pid, active_from_cpu=True)
        win.all = parse_raw(results["all"].output)
        win.gil = parse_raw(results["gil"].output)
        per_tid: Counter[int] = Counter()
        for key, n in win.all.items():
            per_tid[key[0]] += n
        win.instants = max(per_tid.values(), default=0)
        for tid, n in per_tid.items():
            if tid not in cpu_after:
                continue  # ended mid-window: its CPU is gone with it
            win.cpu_s[tid] = cpu_after[tid] - cpu_before.get(tid, 0.0)
            # A thread born in the window used its CPU over the part of it it was sampled in.
            win.cpu_wall_s[tid] = elapsed if tid in cpu_before else elapsed * n / max(1, win.instants)
        return win, ""

    # -- on-demand jobs -------------------------------------------------------------------------------------
    def _start_job(self, job: object, busy: threading.Lock, name: str) -> bool:
        if self._stop.is_set() or not busy.acquire(blocking=False):
            return False
        try:
            self._preflight()
            self._ensure_started()
        except (SourceUnavailable, TargetGone):
            busy.release()
            return False

        def run() -> None:
            try:
                job()  # type: ignore[operator]
            finally:
                busy.release()

        threading.Thread(target=run, name=f"optitop-pystacks-{name}", daemon=True).start()
        return True

    def _native_burst(self) -> None:
        runner = self._runner
        if runner is None:
            return
        args = self._record_args(["--native", "--idle"], self.native_window_s, self.rate_hz)
        try:
            result = runner.run(args, self.native_window_s + self.native_grace_s, blocking=True)
        except (OSError, RuntimeError) as exc:
            self.native_error = f"cannot start py-spy: {exc}"
            return
        if result.timed_out:
            self.native_error = f"native burst did not finish in {self.native_window_s + self.native_grace_s:.0f} s"
            return
        if result.rc != 0:
            self.native_error = explain_failure(result.messages, result.rc)
            return
        self.native_error = ""
        self.native_cost_s = result.elapsed_s
        got = native_result(parse_raw(result.output), time.monotonic())
        if got is not None:
            with self._lock:
                self._native = got
                self._native_new = True

    def _trigger_dump(self, reason: str) -> None:
        runner = self._runner
        if runner is None:
            return
        args = ["dump", "--pid", str(self.stacks_pid), "--json", "--nonblocking", "--full-filenames"]
        try:
            result = runner.run(args, self.grace_s, blocking=False)
        except (OSError, RuntimeError):
            return
        if result.rc != 0 or result.timed_out:
            return
        try:
            threads = parse_dump(result.output)
        except (ValueError, TypeError):
            return
        with self._lock:
            self._triggers.append(window_from_dump(threads, reason))
            del self._triggers[:-5]
