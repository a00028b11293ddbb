"""The real ``optitop`` in a real terminal (tmux at 80×24): the screen shows up, q quits, a dropped terminal exits."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

TMUX = shutil.which("tmux")
OPTITOP = str(Path(sys.executable).parent / "optitop")

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")

TARGET = "threading.Thread(target=spin, args=('burner',), daemon=True).start()\nready()\ntime.sleep(600)\n"


def tmux(*args: str) -> str:
    return subprocess.run([TMUX, *args], capture_output=True, text=True, check=False).stdout


def optitop_pids(target_pid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if any(c.endswith("optitop") for c in cmd[:2]) and str(target_pid) in cmd:
            out.append(proc.info["pid"])
    return out


@pytest.fixture
def session_name():
    name = f"optitop-test-{uuid.uuid4().hex[:8]}"
    yield name
    tmux("kill-session", "-t", name)


def start(session_name: str, target_pid: int) -> None:
    tmux(
        "new-session",
        "-d",
        "-s",
        session_name,
        "-x",
        "80",
        "-y",
        "24",
        f"env TERM=xterm-256color {OPTITOP} --pid {target_pid} --interval 0.5",
    )


def test_screen_in_tmux_and_q_quits(start_target, session_name):
    target = start_target(TARGET)
    start(session_name, target.pid)
    screen = wait_for(lambda: (s := tmux("capture-pane", "-p", "-t", session_name)) and "burner" in s and s, 20)
    assert f"pid {target.pid}" in screen
    assert "CPU" in screen
    assert len(screen.splitlines()) <= 24 and max(len(line) for line in screen.splitlines()) <= 80
    assert optitop_pids(target.pid)
    tmux("send-keys", "-t", session_name, "q")
    wait_for(lambda: not optitop_pids(target.pid), 15)
    assert psutil.pid_exists(target.pid)  # quitting never touches the target


def test_dropped_terminal_exits_cleanly(start_target, session_name):
    target = start_target(TARGET)
    start(session_name, target.pid)
    wait_for(lambda: "burner" in tmux("capture-pane", "-p", "-t", session_name), 20)
    pids = optitop_pids(target.pid)
    assert pids
    wait_for(lambda: pyspy_children(target.pid), 20)  # the stacks collector is sampling the target
    tmux("kill-session", "-t", session_name)  # the SSH-drop case: SIGHUP to the terminal's processes
    wait_for(lambda: not any(alive(p) for p in pids), 15)
    wait_for(lambda: not pyspy_children(target.pid), 15)  # nothing optitop started outlives it
    assert psutil.pid_exists(target.pid)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pyspy_children(target_pid: int) -> list[int]:
    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and cmd[0].endswith("py-spy") and str(target_pid) in cmd:
            out.append(proc.info["pid"])
    return out


def test_keys_answer_at_once_and_the_input_thread_sleeps_between_them(start_target, session_name):
    # Textual's input loop polls 10 times a second; optitop's waits for a key, an Esc timeout or exit.
    target = start_target(TARGET)
    start(session_name, target.pid)
    wait_for(lambda: "burner" in tmux("capture-pane", "-p", "-t", session_name), 20)
    (pid,) = optitop_pids(target.pid)
    thread = wait_for(lambda: input_thread(pid), 10)
    start_wakes, start_s = wakes(pid, thread), time.monotonic()
    # Three seconds of measuring (not a wait for an event): a polling loop would wake 30 times in them.
    wait_for(lambda: time.monotonic() - start_s >= 3.0, 10)
    rate = (wakes(pid, thread) - start_wakes) / (time.monotonic() - start_s)
    assert rate < 4, f"the input thread woke {rate:.1f} times a second with no key pressed"
    tmux("send-keys", "-t", session_name, "?")
    wait_for(lambda: "esc closes" in tmux("capture-pane", "-p", "-t", session_name), 10)
    tmux("send-keys", "-t", session_name, "Escape")  # a lone Esc is a key only once the parser's timeout runs
    wait_for(lambda: "esc closes" not in tmux("capture-pane", "-p", "-t", session_name), 10)
    tmux("send-keys", "-t", session_name, "q")
    wait_for(lambda: not optitop_pids(target.pid), 15)


def input_thread(pid: int) -> int | None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == "optitop-input":
            return int(task.name)
    return None


def wakes(pid: int, tid: int) -> int:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines())
    return int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
