"""Faults in the watched process, injected for real: exec() mid-session, pid reuse, a storm of short-lived
children, and the wall clock jumping an hour either way.

Each test starts the real processes it needs and asserts what the user would see: the store's target, the
source's status, the ``--once`` report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from optitop.collectors.process import ProcessCollector
from optitop.collectors.tree import TargetTree
from optitop.config import CollectorContext, Options
from optitop.model import ProcessSample, SourceState, TargetGone
from optitop.runtime import make_session
from optitop.session import Session
from optitop.store import Store
from optitop.target import describe

OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"
SLEEP = shutil.which("sleep") or "/bin/sleep"
#: Every source but the process collector: the fault tests here are about the process tree.
OTHERS = frozenset({"system", "gpu", "queue", "sockets", "logs", "pystacks"})


def _spawn(code: str, *, stdin: bool = False) -> subprocess.Popen[str]:
    """``python -c code``; waits for its "ready" line."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", f"target did not start: {line!r}"
    return proc


def _reap(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(code: str, *, stdin: bool = False) -> subprocess.Popen[str]:
        proc = _spawn(code, stdin=stdin)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        _reap(proc)


def _session_started(pid: int) -> bool:
    """optitop's session is running once its collector threads exist (it prints nothing before the end)."""
    try:
        return psutil.Process(pid).num_threads() >= 4
    except psutil.Error:
        return False


# -- exec() mid-session ------------------------------------------------------------------------------------
EXEC_ON_LINE = f"""
import os, sys
print("ready", flush=True)
sys.stdin.readline()
os.execv({SLEEP!r}, ["sleep", "30"])
"""


def _exec_now(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    wait_for(lambda: psutil.Process(proc.pid).name() == "sleep", timeout_s=10)


def test_exec_keeps_the_process_collector_going_and_renames_the_target(spawn):
    target = spawn(EXEC_ON_LINE, stdin=True)
    options = Options(interval_s=0.1, history_s=30.0, disabled=OTHERS)
    session = make_session(target.pid, options)
    assert session.store.target.name.startswith("python")
    session.start()
    try:
        wait_for(lambda: len(session.store.window().series("process")) >= 2)
        before = len(session.store.window().series("process"))
        _exec_now(target)
        wait_for(lambda: session.store.target.name == "sleep", timeout_s=10)
        wait_for(lambda: len(session.store.window().series("process")) >= before + 3)
        info = session.store.target
        assert info.cmdline == "sleep 30", info
        assert info.pid == target.pid and not info.exited
        status = session.store.statuses()["process"]
        assert status.state == SourceState.OK and status.failures == 0, status
        latest = session.store.window().series("process")[-1]
        assert isinstance(latest, ProcessSample) and latest.procs[0].name == "sleep"
        assert latest.pid == target.pid
    finally:
        session.stop()


def test_exec_during_a_once_run_exits_0_with_the_new_name(spawn):
    target = spawn(EXEC_ON_LINE, stdin=True)
    run = subprocess.Popen(
        [OPTITOP, "--pid", str(target.pid), "--once", "--json", "--duration", "4", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        wait_for(lambda: _session_started(run.pid) or run.poll() is not None, timeout_s=20)
        assert run.poll() is None, run.communicate()
        _exec_now(target)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, err
    doc = json.loads(out)
    assert doc["target"]["pid"] == target.pid
    assert doc["target"]["name"] == "sleep" and doc["target"]["cmdline"] == "sleep 30", doc["target"]
    assert doc["target"]["exited"] is False
    assert doc["sources"]["process"]["state"] == "ok", doc["sources"]["process"]
    assert doc["metrics"]["process"]["latest"]["pid"] == target.pid


# -- pid reuse ----------------------------------------------------------------------------------------------
def test_a_recorded_create_time_that_no_longer_matches_is_target_gone(spawn):
    """The pid names a live process, but not the one we attached to: never watched silently."""
    target = spawn('print("ready", flush=True)\nimport time\ntime.sleep(600)')
    tree = TargetTree(target.pid)
    tree.check()  # ours
    tree.create_time -= 3600.0  # what was recorded at attach time, for a process since replaced
    with pytest.raises(TargetGone, match="another process"):
        tree.check()
    with pytest.raises(TargetGone, match="another process"):
        tree.descendants()

    collector = ProcessCollector(CollectorContext(pid=target.pid, options=Options(interval_s=0.1)))
    collector.sample()
    collector._tree_of.create_time -= 3600.0
    store = Store(describe(target.pid))
    session = Session(store, [collector], Options(interval_s=0.1))
    session.start()
    try:
        wait_for(lambda: store.target.exited, timeout_s=10)
        assert "another process" in store.target.exit_reason
        assert "target exited" in store.statuses()["process"].reason
        count = len(store.window().series("process"))
        assert count == 0, "no sample of the stranger may be stored"
    finally:
        session.stop()


def _respawn_at(pid: int, attempts: int = 60) -> subprocess.Popen[bytes] | None:
    """A new process that gets ``pid`` (set through /proc/sys/kernel/ns_last_pid); None when another
    process on the machine keeps taking it first."""
    for _ in range(attempts):
        with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
            fh.write(str(pid - 1))
        proc = subprocess.Popen([SLEEP, "30"])
        if proc.pid == pid:
            return proc
        proc.kill()
        proc.wait()
        if psutil.pid_exists(pid):
            return None
    return None


def _can_set_last_pid() -> str:
    try:
        with open("/proc/sys/kernel/ns_last_pid") as fh:
            value = fh.read().strip()
        with open("/proc/sys/kernel/ns_last_pid", "w") as fh:
            fh.write(value)
    except OSError as exc:
        return f"cannot choose the next pid here (/proc/sys/kernel/ns_last_pid: {exc.strerror}; needs root)"
    return ""


@pytest.mark.skipif(bool(_can_set_last_pid()), reason=_can_set_last_pid() or "ok")
def test_real_pid_reuse_is_detected_by_create_time():
    """The target dies and a new process really gets its pid: TargetGone, not a silent attach to the stranger.

    psutil caches a Process's create time, so the check must read it afresh; this is the test that caught that.
    """
    first = subprocess.Popen([SLEEP, "30"])
    pid = first.pid
    collector = ProcessCollector(CollectorContext(pid=pid, options=Options(interval_s=0.1)))
    assert collector.sample().pid == pid
    tree = TargetTree(pid)
    first.kill()
    first.wait()
    gone_at = time.monotonic()
    # create times count in clock ticks (10 ms): a pid reused within the same tick cannot be told apart, which
    # takes a full wrap of the pid space in real life; here the next process is started later than that
    wait_for(lambda: time.monotonic() - gone_at > 0.05, every_s=0.01)
    second = _respawn_at(pid)
    if second is None:
        pytest.skip(f"another process took pid {pid} before we could (busy machine); nothing was tested")
    try:
        assert psutil.Process(pid).create_time() != tree.create_time
        assert tree.proc.create_time() == tree.create_time, "psutil no longer caches: the comment in tree.py is stale"
        with pytest.raises(TargetGone, match="another process"):
            tree.check()
        with pytest.raises(TargetGone, match="another process"):
            collector.sample()
    finally:
        second.kill()
        second.wait()


# -- children appearing and exiting quickly --------------------------------------------------------------------
CHURN = f"""
import os, signal, threading, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps them: no zombies
spawned = 0
def churn():
    global spawned
    while True:
        args = ["true"] if spawned % 2 else ["sleep", "0.03"]
        os.posix_spawn({SLEEP!r} if args[0] == "sleep" else {shutil.which("true") or "/bin/true"!r}, args, os.environ)
        spawned += 1
        time.sleep(0.01)  # 50-100 children a second, depending on the machine's load
def report():
    while True:
        with open(os.environ["CHURN_COUNT"], "w") as fh:
            fh.write(str(spawned))
        time.sleep(0.2)
threading.Thread(target=churn, daemon=True).start()
threading.Thread(target=report, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


def _spawned(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def test_a_storm_of_short_lived_children_does_not_break_the_process_collector(spawn, tmp_path, monkeypatch):
    count_file = tmp_path / "spawned"
    monkeypatch.setenv("CHURN_COUNT", str(count_file))
    target = spawn(CHURN)
    collector = ProcessCollector(CollectorContext(pid=target.pid, options=Options(interval_s=0.05)))
    start_count = _spawned(count_file)
    start = time.monotonic()
    samples: list[ProcessSample] = []
    while time.monotonic() - start < 3.0:
        samples.append(collector.sample())
        wait_for(lambda: time.monotonic() - samples[-1].mono_s >= 0.05, timeout_s=5, every_s=0.01)
    rate = (_spawned(count_file) - start_count) / (time.monotonic() - start)
    print(f"churn: {rate:.0f} children/s, {len(samples)} samples, max procs seen {max(s.num_procs for s in samples)}")
    assert rate > 25, f"the target spawned only {rate:.0f} children/s: the fault was not injected"
    assert len(samples) > 20
    assert max(s.num_procs for s in samples) > 1, "no child was ever seen"
    assert all(s.status != "?" and s.pid == target.pid for s in samples)
    assert all(s.cpu_pct is not None and s.cpu_pct >= 0 for s in samples[1:])
    assert all(0 <= (s.cpu_pct_of_allowed or 0) <= 100.5 for s in samples[1:]), "a vanished child inflated CPU"


def test_once_over_a_storm_of_children_reports_ok(spawn, tmp_path, monkeypatch):
    monkeypatch.setenv("CHURN_COUNT", str(tmp_path / "spawned"))
    target = spawn(CHURN)
    result = subprocess.run(
        [OPTITOP, "--pid", str(target.pid), "--once", "--json", "--duration", "3", "--interval", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["target"]["exited"] is False
    process = doc["sources"]["process"]
    assert process["state"] == "ok" and process["failures"] == 0, process
    for name in ("sockets", "system"):
        assert doc["sources"][name]["state"] in ("ok", "unavailable", "disabled"), doc["sources"][name]
    assert doc["metrics"]["process"]["latest"]["pid"] == target.pid
    assert _spawned(tmp_path / "spawned") > 50


# -- the wall clock jumping ---------------------------------------------------------------------------------------
SPINNER = """
import threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def test_rates_and_windows_ignore_the_wall_clock_jumping(spawn, monkeypatch):
    """time.time() jumps +1 h, then -1 h (NTP, a VM resumed): rates divide by monotonic intervals and windows
    cut on monotonic time, so neither notices."""
    target = spawn(SPINNER)
    real_time = time.time
    offset = [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + offset[0])
    options = Options(interval_s=0.1, history_s=60.0, disabled=OTHERS)
    session = make_session(target.pid, options)
    session.start()
    phases: dict[float, list[ProcessSample]] = {}
    truth: dict[float, float] = {}  # the spinner's CPU % over each phase, from /proc and the monotonic clock
    me = psutil.Process(target.pid)
    try:
        wait_for(lambda: len(session.store.window().series("process")) >= 2)
        for jump in (0.0, 3600.0, -3600.0):
            offset[0] = jump
            mark = time.monotonic()
            cpu0 = sum(me.cpu_times()[:2])
            wait_for(lambda m=mark: sum(x.mono_s > m for x in session.store.window().series("process")) >= 10)
            truth[jump] = 100.0 * (sum(me.cpu_times()[:2]) - cpu0) / (time.monotonic() - mark)
            phases[jump] = [x for x in session.store.window().series("process") if x.mono_s > mark]
        window = session.store.window(1.0)
        everything = session.store.window(None).series("process")
    finally:
        session.stop()
    assert phases[3600.0][-1].ts_s - real_time() > 3000, "the jump was not injected"
    assert phases[-3600.0][-1].ts_s - real_time() < -3000, "the jump back was not injected"
    monos = [x.mono_s for x in everything]
    assert monos == sorted(monos)
    for jump, samples in phases.items():
        for x in samples:
            assert x.dt_s is not None and 0.02 < x.dt_s < 2.0, (jump, x.dt_s)
        # CPU over the phase as the collector measured it, against /proc: a rate divided by a wall-clock
        # interval would read ~0 after +1 h and nothing (clamped) after -1 h
        measured = sum((x.cpu_pct or 0.0) * (x.dt_s or 0.0) for x in samples) / sum(x.dt_s or 0.0 for x in samples)
        print(
            f"clock {jump:+.0f} s: {len(samples)} samples, CPU {measured:.0f} % measured vs {truth[jump]:.0f} % /proc"
        )
        assert truth[jump] > 5.0, f"the spinner got no CPU ({truth[jump]:.0f} %): the machine is saturated"
        assert abs(measured - truth[jump]) <= 0.35 * truth[jump] + 3.0, (jump, measured, truth[jump])
    # the last second holds about ten samples: not an hour's worth, not none
    assert 3 <= len(window.series("process")) <= 15, len(window.series("process"))
    assert session.store.target.exited is False


def test_the_store_window_cuts_on_monotonic_time_not_the_wall_clock():
    """Samples stamped an hour ahead and an hour behind still fall into the window by their monotonic time."""
    from optitop.model import Sample

    store = Store(describe(os.getpid()), history_s=60.0)
    now = time.monotonic()
    wall = time.time()
    for i, (mono_back, wall_shift) in enumerate([(5.0, 0.0), (1.5, 3600.0), (0.5, -3600.0), (0.1, 0.0)]):
        store.add("x", Sample(ts_s=wall + wall_shift + i, mono_s=now - mono_back, dt_s=None))
    assert [s.mono_s for s in store.window(2.0, now_mono_s=now).series("x")] == [now - 1.5, now - 0.5, now - 0.1]
    assert len(store.window(None, now_mono_s=now).series("x")) == 4


def test_sigkill_of_the_target_mid_session_is_an_exit_not_an_error(spawn):
    """Sanity for the fixtures above: killing the target ends the source with 'target exited', once."""
    target = spawn(SPINNER)
    session = make_session(target.pid, Options(interval_s=0.1, disabled=OTHERS))
    session.start()
    try:
        wait_for(lambda: len(session.store.window().series("process")) >= 2)
        os.kill(target.pid, signal.SIGKILL)
        wait_for(lambda: session.store.target.exited, timeout_s=10)
        assert "exited" in session.store.target.exit_reason
        assert session.store.statuses()["process"].state == SourceState.UNAVAILABLE
    finally:
        session.stop()
