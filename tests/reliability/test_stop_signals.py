"""SIGTERM and SIGINT to a running ``optitop --once`` and ``optitop record``: a clean exit (status 0), output
that is valid as far as it goes, and no child process (py-spy included) left behind.

The target is a Python process, so the stacks source runs py-spy, and each test waits until a py-spy child is
alive before signalling, so the signal lands mid-window. Where the real py-spy cannot read the target (no
ptrace rights, an interpreter it does not know), optitop runs from a copy of this venv's layout whose py-spy
is a stand-in that hangs like a stuck py-spy: the point is what happens to a child still running at the signal.
"""

from __future__ import annotations

import contextlib
import json
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

from optitop.collectors.pyspy import find_pyspy
from optitop.recording.scan import load

OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"

WORKER = textwrap.dedent(
    """
    import threading, time
    def work():
        while True:
            sum(i * i for i in range(20000))
            time.sleep(0.01)
    threading.Thread(target=work, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)


@pytest.fixture
def target() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", WORKER], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait(10)
    proc.stdout.close()


def _pyspy_works(pid: int) -> str:
    """'' when py-spy can read ``pid`` here, else why not (the tests then signal without it)."""
    binary = find_pyspy()
    if binary is None:
        return "py-spy is not installed"
    result = subprocess.run([binary, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    return "" if result.returncode == 0 else f"py-spy cannot read the target: {result.stderr.strip()[:200]}"


def _hanging_pyspy_venv(root: Path) -> list[str]:
    """A venv that is this one but for a py-spy that hangs; returns the command that runs optitop from it.

    find_pyspy() looks beside sys.executable first, so the stand-in is what optitop will run.
    """
    venv = Path(sys.prefix)
    (root / "bin").mkdir(parents=True)
    (root / "pyvenv.cfg").write_text((venv / "pyvenv.cfg").read_text())
    (root / "lib").symlink_to(venv / "lib")
    (root / "bin" / "python").symlink_to(Path(sys.executable).resolve())
    fake = root / "bin" / "py-spy"
    fake.write_text("#!/bin/sh\nexec sleep 600\n")
    fake.chmod(0o755)
    return [str(root / "bin" / "python"), "-m", "optitop"]


@pytest.fixture
def optitop(target: subprocess.Popen[str], tmp_path: Path) -> list[str]:
    """The optitop command: the installed one when py-spy works here, else one whose py-spy hangs."""
    return [OPTITOP] if not _pyspy_works(target.pid) else _hanging_pyspy_venv(tmp_path / "venv")


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _has_pyspy_child(pid: int, min_age_s: float = 0.0) -> bool:
    """A py-spy child runs (for at least ``min_age_s``: by then the faster sources have sampled a few times)."""
    for child in _children(pid):
        with contextlib.suppress(psutil.Error):
            if "py-spy" in " ".join(child.cmdline()) and time.time() - child.create_time() >= min_age_s:
                return True
    return False


def _safe_cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _still_running(procs: list[psutil.Process]) -> list[str]:
    """Those of ``procs`` that still run (is_running() compares create times, so a reused pid does not count)."""
    out = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{proc.pid} {' '.join(_safe_cmdline(proc))}")
    return out


def _start_and_signal(
    command: list[str], sig: signal.Signals, ready: Callable[[], object] = lambda: True
) -> tuple[int, str, str, list[str], bool]:
    """Run optitop, wait until it is sampling, ``ready()`` and py-spy runs, send ``sig``, wait for the exit.

    Returns:
        (exit status, stdout, stderr, children still running afterwards, whether py-spy was running at the signal)
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    signalled = 0.0
    try:
        wait_for(lambda: proc.poll() is not None or psutil.Process(proc.pid).num_threads() >= 4, timeout_s=20)
        assert proc.poll() is None, proc.communicate()
        wait_for(lambda: proc.poll() is not None or (_has_pyspy_child(proc.pid, 1.0) and ready()), timeout_s=30)
        assert proc.poll() is None, proc.communicate()
        kids = _children(proc.pid)
        had_pyspy = any("py-spy" in " ".join(_safe_cmdline(c)) for c in kids)
        proc.send_signal(sig)
        signalled = time.monotonic()
        out, err = proc.communicate(timeout=20)
        print(f"{sig.name}: exit {proc.returncode} after {time.monotonic() - signalled:.2f} s, {len(kids)} children")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    with contextlib.suppress(AssertionError):  # what is still running after the grace time is reported below
        wait_for(lambda: not _still_running(kids), timeout_s=5)
    return proc.returncode, out, err, _still_running(kids), had_pyspy


def _recorded(path: Path) -> int:
    """Process samples already in the (still growing, sync-flushed) recording."""
    try:
        return len(load(str(path)).samples("process"))
    except Exception:  # noqa: BLE001 - not written yet, or the header still in the compressor
        return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_a_once_run_prints_a_valid_partial_report(target, optitop, sig):
    argv = ["--pid", str(target.pid), "--once", "--json", "--duration", "120", "--interval", "0.2"]
    rc, out, err, left, had_pyspy = _start_and_signal([*optitop, *argv], sig)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["target"]["pid"] == target.pid
    assert 0 < doc["duration_s"] < 60, "the run did not stop at the signal"
    assert doc["sources"]["process"]["state"] == "ok"
    assert doc["metrics"]["process"]["latest"]["pid"] == target.pid
    assert left == [], f"children left behind: {left}"
    assert had_pyspy, "py-spy was not running when the signal came: the fault was not injected"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_record_leaves_a_complete_file(target, optitop, sig, tmp_path):
    out_path = tmp_path / "run.jsonl.gz"
    argv = ["record", "--pid", str(target.pid), "-o", str(out_path), "--interval", "0.2"]
    part = out_path.with_name(out_path.name + ".part")  # written there, renamed when the recording ends
    rc, _out, err, left, had_pyspy = _start_and_signal([*optitop, *argv], sig, lambda: _recorded(part) >= 3)
    assert rc == 0, err
    assert "recorded" in err and not part.exists()
    rec = load(str(out_path))
    assert rec.complete, rec.problems()
    assert rec.stopped_at is None, rec.problems()
    assert rec.target.pid == target.pid
    assert len(rec.samples("process")) >= 3
    assert out_path.stat().st_mode & 0o077 == 0, "the recording must be private (0600)"
    assert left == [], f"children left behind: {left}"
    assert had_pyspy, "py-spy was not running when the signal came: the fault was not injected"
