"""The py-spy collector against real targets the tests start: threads that spin, wait on a loopback socket,
on a queue, in sleep; torch GEMM and copy loops sampled natively; a non-Python process; a missing and a
hanging py-spy; and no py-spy left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from optitop.collectors.pyspy import NO_INTERPRETER, PTRACE_FIX, explain_failure, find_pyspy, ptrace_fix
from optitop.collectors.pyspyparse import parse_raw
from optitop.collectors.pystacks import NOT_PYTHON, PyStacksCollector
from optitop.collectors.sourcelines import SOURCE_CACHE_BYTES, SOURCE_FILE_MAX_BYTES, SourceLines
from optitop.collectors.stackagg import active_from_cpu
from optitop.collectors.stackclass import Frame
from optitop.config import CollectorContext, Options
from optitop.model import PyStacksSample, PyThread, SourceUnavailable, TargetGone

pytestmark = pytest.mark.skipif(find_pyspy() is None, reason="py-spy is not installed next to Python or on PATH")

THREADS_TARGET = """
import queue, socket, threading, time

def spinner():
    n = 0
    while True:
        n += 1

server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
conn, _ = server.accept()

def netwait():
    conn.recv(16)

def qwait():
    queue.Queue().get()

def napper():
    while True:
        time.sleep(5)

for fn in (spinner, netwait, qwait, napper):
    threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(5)
"""

TORCH_TARGET = """
import sys, threading
import torch

torch.set_num_threads(1)
mode = ["gemm"]

def work():
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    x, y = torch.randn(2_000_000), torch.empty(2_000_000)
    while True:
        if mode[0] == "gemm":
            c = a @ b
        else:
            y.copy_(x)
            y.add_(1.0)

worker = threading.Thread(target=work, name="torch-worker", daemon=True)
worker.start()
print("ready", flush=True)
for line in sys.stdin:  # the test switches the loop from GEMM to copy/elementwise
    mode[0] = line.strip()
    print("switched", flush=True)
"""


def launch(tmp_path: Path, name: str, code: str, *args: str, ready_s: float = 60.0) -> subprocess.Popen[str]:
    """Run ``code`` from a real file (py-spy and the source-line rules see real paths) until it says ready."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(code))
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + ready_s
    line = proc.stdout.readline()
    assert line.strip() == "ready" and time.monotonic() < deadline, f"{name} did not start: {line!r}"
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


@pytest.fixture(scope="module")
def threads_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    proc = launch(tmp_path_factory.mktemp("pystacks"), "threads_target", THREADS_TARGET)
    yield proc
    stop(proc)


def make(pid: int, pyspy: str | None = None, rate_hz: float = 50.0) -> PyStacksCollector:
    """A collector with short windows so tests are quick."""
    collector = PyStacksCollector(
        CollectorContext(pid=pid, options=Options(pyspy_rate_hz=rate_hz, pyspy_duty=1.0)), pyspy=pyspy
    )
    collector.window_s = 1
    return collector


@pytest.fixture
def collectors() -> Iterator[Callable[..., PyStacksCollector]]:
    made: list[PyStacksCollector] = []

    def build(*args: object, **kwargs: object) -> PyStacksCollector:
        c = make(*args, **kwargs)  # type: ignore[arg-type]
        made.append(c)
        return c

    yield build
    for c in made:
        c.close()


def poll_sample(c: PyStacksCollector, ok: Callable[[PyStacksSample], bool], timeout_s: float = 20.0) -> PyStacksSample:
    """Call sample() (as the session would) until a sample satisfies ``ok``."""
    found: list[PyStacksSample] = []

    def check() -> bool:
        s = c.sample()
        if s is not None and ok(s):
            found.append(s)
            return True
        return False

    wait_for(check, timeout_s=timeout_s, every_s=0.1)
    return found[0]


def first_failure(c: PyStacksCollector, timeout_s: float = 20.0) -> str:
    """Call sample() until the collector reports its source unavailable; the reason."""
    failure: list[str] = []

    def failed() -> bool:
        try:
            c.sample()
        except SourceUnavailable as exc:
            failure.append(str(exc))
            return True
        return False

    wait_for(failed, timeout_s=timeout_s)
    return failure[0]


def by_name(s: PyStacksSample) -> dict[str, PyThread]:
    return {t.name: t for t in s.threads}


NAMES = {"spinner", "netwait", "qwait", "napper"}


def test_each_thread_is_classified(threads_target, collectors):
    c = collectors(threads_target.pid)
    s = poll_sample(c, lambda s: set(by_name(s)) >= NAMES and min(t.samples for t in s.threads) >= 20)
    t = by_name(s)
    assert s.mode == "record" and s.window_s > 0.5 and s.samples >= 20
    # The spinner is on CPU holding the GIL (> 50 % survives a loaded 2-core machine).
    assert t["spinner"].active_pct > 50 and t["spinner"].gil_pct > 50, t["spinner"]
    assert t["spinner"].wait == "" and dict(t["spinner"].waits)["active"] > 0.5
    assert t["spinner"].top_frame.startswith("spinner (threads_target.py:")
    # The others wait, each on its own kind of thing.
    assert t["netwait"].wait == "network" and t["netwait"].active_pct < 20, t["netwait"]
    assert t["qwait"].wait == "queue" and t["qwait"].top_frame.startswith("Condition.wait"), t["qwait"]
    assert t["napper"].wait == "sleep", t["napper"]
    assert dict(t["netwait"].waits)["network"] > 0.8
    # Process-wide: the GIL is held most of the time, and the breakdown sums to one.
    waits = dict(s.waits)
    assert s.gil_pct is not None and s.gil_pct > 50
    assert abs(sum(waits.values()) - 1.0) < 0.01
    assert waits["network"] > 0.05 and waits["queue"] > 0.05 and waits["sleep"] > 0.05
    assert s.active_pct > 50
    # Hot functions are where the CPU goes: the spinner's loop, with file:line.
    assert s.hot and s.hot[0].name == "spinner" and s.hot[0].self_pct > 50
    assert s.hot[0].location.startswith("threads_target.py:") and not s.hot[0].native
    assert s.native_mix is None and s.native_age_s is None and s.trigger == ""


ON_CPU_TARGET = """
import signal, threading, time

def halfspin():  # about half a core: 20 ms on CPU, 20 ms asleep
    while True:
        end = time.perf_counter() + 0.02
        while time.perf_counter() < end:
            pass
        time.sleep(0.02)

def blocked():  # a stack that names no wait, and no CPU at all
    signal.sigwait({signal.SIGUSR2})

for fn in (halfspin, blocked):
    threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
print("ready", flush=True)
while True:
    time.sleep(5)
"""


def test_on_cpu_share_comes_from_the_threads_cpu_time(tmp_path, collectors):
    """py-spy's records carry no on-CPU flag: a thread's active share is its CPU time over the window."""
    proc = launch(tmp_path, "on_cpu", ON_CPU_TARGET)
    try:
        c = collectors(proc.pid)
        s = poll_sample(c, lambda s: {"halfspin", "blocked"} <= set(by_name(s)) and s.samples >= 40)
        t = by_name(s)
        # Blocked in a call no rule knows: its stack looks busy, but it used no CPU.
        assert t["blocked"].active_pct < 20, t["blocked"]
        # Half on CPU, half asleep (less CPU on a loaded machine, never all of it).
        assert 10 < t["halfspin"].active_pct < 90, t["halfspin"]
        assert dict(t["halfspin"].waits)["sleep"] > 0.1, t["halfspin"]
        # The CPU goes to the spinning loop, not to the sleep or the blocked call.
        assert s.hot and s.hot[0].name == "halfspin", s.hot
        assert all(h.name != "blocked" for h in s.hot), s.hot
    finally:
        stop(proc)


def test_cpu_time_is_spread_over_the_stacks_that_can_use_it():
    loop = (1, "w", (Frame("work", "w.py", 3, False),))
    inner = (1, "w", (Frame("step", "w.py", 9, False), Frame("work", "w.py", 4, False)))
    asleep = (1, "w", (Frame("sleep", "time", None, False),))
    stacks = {loop: 20, inner: 10, asleep: 10}
    wait_of = {loop: "", inner: "", asleep: "sleep"}.__getitem__
    # Half of the thread's time on CPU: 20 of its 40 samples, shared by the busy stacks 2:1.
    assert active_from_cpu(stacks, 0.5, wait_of) == pytest.approx({loop: 40 / 3, inner: 20 / 3})
    # More CPU than the busy stacks can hold: the rest goes to the others.
    assert active_from_cpu(stacks, 0.9, wait_of) == pytest.approx({loop: 20, inner: 10, asleep: 6})
    assert active_from_cpu(stacks, 0.0, wait_of) == {}
    # CPU unknown (the thread ended in the window): its busy stacks count as on CPU.
    assert active_from_cpu(stacks, None, wait_of) == {loop: 20.0, inner: 10.0}


def test_trigger_takes_a_dump_now(threads_target, collectors):
    c = collectors(threads_target.pid)
    assert c.sample() is None  # the first window is still running: nothing to report yet, and no wait
    assert c.trigger("GPU util dipped to 3%")
    s = poll_sample(c, lambda s: s.trigger != "", timeout_s=10)
    assert s.mode == "dump" and s.samples == 1 and s.window_s == 0.0
    assert s.trigger == "GPU util dipped to 3%"
    t = by_name(s)
    assert set(t) >= NAMES
    assert t["netwait"].wait == "network" and t["qwait"].wait == "queue" and t["napper"].wait == "sleep"


def test_sample_never_blocks_on_pyspy(threads_target, collectors):
    c = collectors(threads_target.pid)
    start = time.monotonic()
    for _ in range(5):
        c.sample()
    assert time.monotonic() - start < 0.5  # the windows run on the collector's own thread


def test_native_op_mix_tells_math_from_memory(tmp_path, collectors):
    """One torch process (imported once): a GEMM loop, then a copy/elementwise loop, each sampled natively."""
    pytest.importorskip("torch", reason="torch (CPU) is needed for the native op-mix targets")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(TORCH_TARGET)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        c = collectors(proc.pid)
        mixes = {}
        for kind in ("gemm", "stream"):
            if kind == "stream":
                proc.stdin.write("stream\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == "switched"
            assert c.request_native()
            s = poll_sample(
                c,
                lambda s: (s.native_mix is not None and any(h.native for h in s.hot)) or c.native_error != "",
                timeout_s=40,
            )
            assert c.native_error == ""
            assert c.native_cost_s is not None and c.native_cost_s >= 1.0  # a 1 s burst plus attaching
            assert s.native_mix is not None and s.native_age_s is not None and s.native_age_s >= 0
            mixes[kind] = dict(s.native_mix)
            natives = [h for h in s.hot if h.native]
            if kind == "gemm":
                assert any("gemm" in h.name.lower() for h in natives), natives
        assert mixes["gemm"]["math"] > 0.5 and mixes["gemm"]["math"] > mixes["gemm"]["memory"], mixes
        assert mixes["stream"]["memory"] > 0.5 and mixes["stream"]["memory"] > mixes["stream"]["math"], mixes
    finally:
        stop(proc)


def test_not_a_python_process(collectors):
    proc = subprocess.Popen(["sleep", "60"])
    try:
        c = collectors(proc.pid)
        with pytest.raises(SourceUnavailable, match=NOT_PYTHON):
            c.sample()
        assert c.live_children() == []  # py-spy was never started for it
    finally:
        proc.kill()
        proc.wait()


# A frontend that is not Python (sh here; Java for TorchServe, C++ for Triton) with Python workers: the busy
# one spins in a named thread, the other sleeps.
WORKER = """
import sys, threading, time
def spin():
    while True:
        pass
if sys.argv[1] == "busy":
    threading.Thread(target=spin, name="busy-worker-loop", daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


def test_a_non_python_frontend_is_read_through_its_busiest_python_child(tmp_path, collectors):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    py = sys.executable
    frontend = subprocess.Popen(
        ["/bin/sh", "-c", f"{py} {script} idle & {py} {script} busy & wait"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert frontend.stdout is not None
        assert [frontend.stdout.readline().strip() for _ in range(2)] == ["ready", "ready"]
        kids = {p.cmdline()[-1]: p.pid for p in psutil.Process(frontend.pid).children()}
        wait_for(lambda: psutil.Process(kids["busy"]).cpu_times().user > 0.2, what="the busy worker to spin")
        c = collectors(frontend.pid)
        s = poll_sample(c, lambda s: any(t.name == "busy-worker-loop" for t in s.threads))
        assert s.stacks_pid == kids["busy"] and c.stacks_pid == kids["busy"]
        # the worker exits (a restart): the collector moves to the Python child that is left
        psutil.Process(kids["busy"]).kill()
        s = poll_sample(c, lambda s: s.stacks_pid == kids["idle"], timeout_s=30)
        assert not any(t.name == "busy-worker-loop" for t in s.threads)
    finally:
        for child in psutil.Process(frontend.pid).children():
            child.kill()
        stop(frontend)


def test_missing_pyspy_says_how_to_install(threads_target, collectors):
    c = collectors(threads_target.pid, pyspy="/nonexistent/py-spy")
    with pytest.raises(SourceUnavailable, match=r"py-spy not found .*pip install py-spy"):
        c.sample()
    assert not c.request_native() and not c.trigger("x")


def test_target_exit_is_reported(tmp_path, collectors):
    proc = launch(tmp_path, "short", "print('ready', flush=True)\nimport time\ntime.sleep(60)\n")
    c = collectors(proc.pid)
    stop(proc)
    with pytest.raises(TargetGone):
        c.sample()


def fake_pyspy(tmp_path: Path) -> tuple[Path, Path]:
    """A 'py-spy' that hangs: it writes its pid and sleeps."""
    pids = tmp_path / "pids"
    fake = tmp_path / "py-spy"
    fake.write_text(f'#!/bin/sh\necho $$ >> "{pids}"\nexec sleep 600\n')
    fake.chmod(0o755)
    return fake, pids


def started_pids(pids: Path) -> list[int]:
    return [int(x) for x in pids.read_text().split()] if pids.exists() else []


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_hung_pyspy_is_killed_and_retried_with_backoff(threads_target, collectors, tmp_path):
    fake, pids = fake_pyspy(tmp_path)
    c = collectors(threads_target.pid, pyspy=str(fake))
    c.grace_s = 0.5
    assert c.sample() is None
    first = wait_for(lambda: len(started_pids(pids)) >= 2 and started_pids(pids), timeout_s=10)
    reason = first_failure(c, timeout_s=10)
    assert "did not finish" in reason and "killed" in reason and "retrying in" in reason
    assert all(gone(pid) for pid in first)  # type: ignore[union-attr]
    # After the back-off it tries again (new children), and those are killed too.
    wait_for(lambda: len(started_pids(pids)) >= 4, timeout_s=15)
    c.close()
    assert all(gone(pid) for pid in started_pids(pids))


def pyspy_children() -> list[psutil.Process]:
    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.name() == "py-spy" and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.NoSuchProcess:
            continue
    return out


def test_close_leaves_no_pyspy_behind(threads_target):
    c = make(threads_target.pid)
    c.sample()
    c.request_native()
    wait_for(lambda: len(c.live_children()) >= 3, timeout_s=10)
    assert pyspy_children()
    start = time.monotonic()
    c.close()
    assert time.monotonic() - start < 6
    assert pyspy_children() == []
    assert c.live_children() == []


OWNER = """
import sys, time
from optitop.collectors.pystacks import PyStacksCollector
from optitop.config import CollectorContext, Options

c = PyStacksCollector(CollectorContext(pid=int(sys.argv[1]), options=Options()))
c.sample()
deadline = time.monotonic() + 20
while len(c.live_children()) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
print(" ".join(map(str, c.live_children())), flush=True)
time.sleep(600)
"""


def test_pyspy_dies_with_a_killed_optitop(threads_target, tmp_path):
    """SIGKILL gives optitop no chance to clean up: PR_SET_PDEATHSIG must take the children down."""
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen(
        [sys.executable, str(script), str(threads_target.pid)], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert owner.stdout is not None
        children = [int(x) for x in owner.stdout.readline().split()]
        assert len(children) >= 2 and all(not gone(p) for p in children)
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        wait_for(lambda: all(gone(p) for p in children), timeout_s=10)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    # The target was never left stopped.
    assert psutil.Process(threads_target.pid).status() != psutil.STATUS_STOPPED


AS_NOBODY = """
import sys, time
from optitop.collectors.pystacks import PyStacksCollector
from optitop.config import CollectorContext, Options

c = PyStacksCollector(CollectorContext(pid=int(sys.argv[1]), options=Options()))
deadline = time.monotonic() + 20
try:
    while time.monotonic() < deadline:
        try:
            c.sample()
        except Exception as exc:
            print(type(exc).__name__, exc, flush=True)
            break
        time.sleep(0.05)
finally:
    c.close()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start a collector as another user")
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux) to drop privileges")
def test_no_ptrace_permission_says_the_fix(threads_target):
    """A collector running as nobody against root's process: py-spy is refused, the status says how to fix it."""
    got = subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", AS_NOBODY]
        + [str(threads_target.pid)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert got.stdout.startswith("SourceUnavailable " + PTRACE_FIX), (got.stdout, got.stderr[-2000:])


# -- the source-line cache is bounded by bytes -------------------------------------------------------------
FILLER = "# " + "x" * 1000 + "\n"  # comment lines: megabytes of source that compile in no time


def generated_module(path: Path, size: int) -> tuple[int, str]:
    """A module of about ``size`` bytes whose ``park()`` sleeps on its last line: (that line, its text)."""
    n = size // len(FILLER)
    code = f"sleep(3600)  # parked in {path.stem}"
    path.write_text(FILLER * n + f"def park():\n    from time import sleep\n    while True:\n        {code}\n")
    return n + 4, code


BIG_TARGET = """
import importlib, sys, threading
sys.path.insert(0, sys.argv[1])
for name in sys.argv[2:]:
    threading.Thread(target=importlib.import_module(name).park, name=name, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def test_source_cache_stays_under_its_byte_bound_with_large_files(tmp_path, collectors):
    """13 threads parked deep in generated modules: 12 of 1 MiB (more than the bound together) and one of
    3 MiB (over the per-file limit). Every thread's wait is still read from its exact source line."""
    mods = tmp_path / "mods"
    mods.mkdir()
    where = {f"gen{i:02d}": generated_module(mods / f"gen{i:02d}.py", 1 << 20) for i in range(12)}
    where["huge"] = generated_module(mods / "huge.py", 3 << 20)
    total = sum(f.stat().st_size for f in mods.glob("*.py"))
    assert total > SOURCE_CACHE_BYTES and (mods / "huge.py").stat().st_size > SOURCE_FILE_MAX_BYTES
    proc = launch(tmp_path, "big_target", BIG_TARGET, str(mods), *where)
    try:
        c = collectors(proc.pid)
        s = poll_sample(c, lambda s: set(by_name(s)) >= set(where), timeout_s=30)
        threads = by_name(s)
        # "sleep" comes from the text of each thread's leaf line (a C call has no frame): only the right line
        # of the right file says it; every other line of these modules is a comment.
        assert {name: threads[name].wait for name in where} == dict.fromkeys(where, "sleep")
        assert {name: threads[name].top_frame for name in where} == {
            name: f"park ({name}.py:{line})" for name, (line, _) in where.items()
        }
        assert 0 < c._source.cached_bytes <= SOURCE_CACHE_BYTES, c._source.cached_bytes
        # The same through a fresh cache: exact text, the bound held, the huge file never held whole.
        source = SourceLines(proc.pid)
        for name, (line, code) in where.items():
            assert source.line(str(mods / f"{name}.py"), line) == code
            assert source.cached_bytes <= SOURCE_CACHE_BYTES
        assert source.line(str(mods / "gen00.py"), 1) == FILLER.strip()  # evicted long ago, read again
        huge_only = SourceLines(proc.pid)
        assert huge_only.line(str(mods / "huge.py"), where["huge"][0]) == where["huge"][1]
        assert huge_only.line(str(mods / "huge.py"), 2) == FILLER.strip()
        assert huge_only.cached_bytes < 4096, huge_only.cached_bytes  # two lines and a marker, not 3 MiB
        assert huge_only.line(str(mods / "huge.py"), 10**6) == ""  # past the end
    finally:
        stop(proc)


# -- a Python py-spy does not support ---------------------------------------------------------------------
# py-spy reads the interpreter's version from its ``Py_Version`` symbol (3.11+) and refuses layouts it has no
# bindings for with ``Error: Unsupported version of Python: X.Y.Z`` (python_process_info.rs, python_spy.rs),
# exit 1. A tiny program named like an interpreter and exporting Py_Version = 3.99.0 gets exactly that.
FAKE_INTERPRETER = """
#include <stdio.h>
#include <unistd.h>
const unsigned int Py_Version = 0x036300f0;  /* 3.99.0 final, packed like PY_VERSION_HEX */
static char bss[4096];                        /* py-spy scans .bss for an interpreter state */
int main(void) { bss[0] = 1; puts("ready"); fflush(stdout); pause(); return bss[0]; }
"""
PYSPY_SAYS = "Unsupported version of Python: 3.99.0"
UNSUPPORTED = f"py-spy does not support this Python ({PYSPY_SAYS}): upgrade it with `pip install -U py-spy`"
CC = shutil.which("cc") or shutil.which("gcc")


@pytest.mark.skipif(CC is None, reason="needs a C compiler to build a process py-spy takes for Python 3.99")
def test_a_python_too_new_for_pyspy_says_to_upgrade_it(tmp_path, collectors):
    """The real py-spy against a real process it cannot read: one line with the reason and the fix."""
    (tmp_path / "fake.c").write_text(FAKE_INTERPRETER)
    exe = tmp_path / "python3.99"
    subprocess.run([CC, "-O0", "-o", str(exe), str(tmp_path / "fake.c")], check=True, timeout=60)  # type: ignore[list-item]
    proc = subprocess.Popen([str(exe)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        reason = first_failure(collectors(proc.pid))
        assert reason.startswith(UNSUPPORTED + "; retrying in"), reason
        assert "\n" not in reason
    finally:
        stop(proc)


def test_pyspy_refusing_the_version_is_one_line_with_the_fix(threads_target, collectors, tmp_path):
    """A stand-in py-spy (a real child) printing py-spy's exact text, for machines with no C compiler."""
    fake = tmp_path / "py-spy"
    fake.write_text(f"#!/bin/sh\necho 'Error: {PYSPY_SAYS}' >&2\nexit 1\n")
    fake.chmod(0o755)
    reason = first_failure(collectors(threads_target.pid, pyspy=str(fake)))
    assert reason.startswith(UNSUPPORTED + "; retrying in"), reason
    assert "\n" not in reason


# -- parsing and messages (real py-spy output captured on this machine) --------------------------------------
RAW = (
    "thread (6771): qwait;Thread._bootstrap (threading.py:1002);Queue.get (queue.py:171);"
    "Condition.wait (threading.py:327) 49\n"
    "thread (12410): torch copy [1];copy (/tmp/t.py:12);c10::function_ref<void (char**, long const*, long, long)>"
    "::callback_fn<at::native::AVX2::VectorizedLoop2d<add_kernel::{lambda()#1}>> "
    "(/venv/torch/lib/libtorch_cpu.so);0x7f59caca3f16 (/usr/lib/x86_64-linux-gnu/libc.so.6) 51\n"
    "py-spy> Wrote raw flamegraph data to '/tmp/x'. Samples: 100 Errors: 0\n"
)


def test_parse_raw_keeps_names_literal_and_frames_leaf_first():
    counts = parse_raw(RAW)
    assert sum(counts.values()) == 100
    (q_key, q_n), (t_key, t_n) = sorted(counts.items(), key=lambda kv: kv[0][0])
    assert q_key[:2] == (6771, "qwait") and q_n == 49
    assert [f.name for f in q_key[2]] == ["Condition.wait", "Queue.get", "Thread._bootstrap"]
    assert q_key[2][0].file == "threading.py" and q_key[2][0].line == 327 and not q_key[2][0].native
    assert t_key[:2] == (12410, "torch copy [1]") and t_n == 51
    leaf, callback, py_frame = t_key[2]
    assert leaf.native and leaf.name == "0x7f59caca3f16" and leaf.file.endswith("libc.so.6")
    assert callback.native and callback.name.startswith("c10::function_ref<void (char**")
    assert callback.file == "/venv/torch/lib/libtorch_cpu.so" and callback.line is None
    assert not py_frame.native and py_frame.line == 12


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ("Error: Failed to find python version from target process\n", NO_INTERPRETER),
        (
            "Collecting stack traces from native extensions (`--native`) is not supported on your platform.\n",
            "py-spy cannot read native stacks here (Collecting stack traces",
        ),
        (
            "Error: Failed to get process executable name. Check that the process is running.\n\nCaused by:\n"
            "    0: Permission denied (os error 13)\n",
            ptrace_fix(),
        ),
        ("Error: Operation not permitted (os error 1)\n", ptrace_fix()),
        ("Error: Unsupported version of Python: 3.15.0\n", "py-spy does not support this Python (Unsupported"),
        ("thread 'main' panicked at src/x.rs:1:2:\nboom\n", "py-spy failed (exit 101): thread 'main' panicked"),
    ],
)
def test_failures_are_explained(messages, expected):
    assert explain_failure(messages, 101 if "panicked" in messages else 1).startswith(expected)


def test_default_duty_cycle_pauses_between_windows() -> None:
    """By default py-spy samples a third of the time: the target pays a third of the cost."""
    c = PyStacksCollector(CollectorContext(pid=os.getpid(), options=Options()), pyspy="/nonexistent/py-spy")
    assert c.duty == pytest.approx(1 / 3)
    assert c.gap_s == pytest.approx(2 * c.window_s)
    full = PyStacksCollector(CollectorContext(pid=os.getpid(), options=Options(pyspy_duty=1.0)), pyspy="/x")
    assert full.gap_s == 0


def test_a_change_of_pace_re_times_the_gap_in_progress() -> None:
    """The session halves the duty while its verdict holds; a verdict that moves restores it at once."""
    c = PyStacksCollector(CollectorContext(pid=os.getpid(), options=Options(pyspy_duty=0.5)), pyspy="/x")
    assert c.gap_s == pytest.approx(c.window_s)
    c.set_pace(0.5)
    assert c.paced_duty == pytest.approx(0.25) and c.gap_s == pytest.approx(3 * c.window_s)
    c.set_pace(0.01)  # never below the 5 % floor
    assert c.paced_duty == pytest.approx(0.05) and c.gap_s == pytest.approx(19 * c.window_s)
    pausing = threading.Thread(target=c._pause)
    pausing.start()
    try:
        c.set_pace(2.0)  # full duty: no gap, so the long pause in progress ends now, not 19 windows later
        pausing.join(5.0)
        assert not pausing.is_alive()
        assert c.gap_s == 0
    finally:
        c.close()
        pausing.join(5.0)


PREFORK_TARGET = """
import os, select, threading, time
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    threading.current_thread().name = "worker-main"
    while True:  # the worker: pure Python on CPU, like a sync worker serving back to back
        sum(i * i for i in range(10000))
print(pid, flush=True)
print("ready", flush=True)
while True:  # the master: gunicorn's arbiter, asleep in select
    select.select([r], [], [], 1.0)
"""


def test_a_python_master_idle_beside_a_busy_worker_is_read_through_the_worker(tmp_path, collectors):
    # issue 22: attached to a pre-fork master, the Python pane read "busiest Python thread active 0 %"
    script = tmp_path / "prefork.py"
    script.write_text(textwrap.dedent(PREFORK_TARGET))
    master = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert master.stdout is not None
        worker = int(master.stdout.readline())
        assert master.stdout.readline().strip() == "ready"
        c = collectors(master.pid)
        s = poll_sample(c, lambda s: s.stacks_pid == worker, timeout_s=30)
        assert c.stacks_pid == worker
        s = poll_sample(c, lambda s: s.stacks_pid == worker and s.active_pct > 30)
        assert s.py_op_mix is not None and dict(s.py_op_mix)["interpreter"] > 0.9  # plain Python, no tensor ops
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)
        stop(master)


def test_python_frames_give_the_op_mix_without_a_native_burst(tmp_path, collectors):
    """The TORCH_TARGET loop (GEMM, then copy_/add_) read from its Python frames only: nothing pauses it."""
    pytest.importorskip("torch", reason="torch (CPU) is needed for the op-mix target")
    script = tmp_path / "torch_target.py"  # a real file: the op is read from the leaf line's source
    script.write_text(textwrap.dedent(TORCH_TARGET))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        assert proc.stdout.readline().strip() == "ready"
        c = collectors(proc.pid)
        s = poll_sample(c, lambda s: s.py_op_mix is not None and dict(s.py_op_mix)["math"] > 0.5)
        assert s.native_mix is None  # no burst ran
        proc.stdin.write("stream\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "switched"
        poll_sample(c, lambda s: s.py_op_mix is not None and dict(s.py_op_mix)["memory"] > 0.5)
    finally:
        stop(proc)
