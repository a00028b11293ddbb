"""Job control and a dropped link, in a real terminal (tmux): what a person does over SSH.

Ctrl-Z then ``fg`` (SIGTSTP, then SIGCONT) must bring the screen back as it was, still updating: it used to kill
the UI (``OSError: Bad file descriptor`` in tui/quietinput.py, exit 0, history lost). SIGHUP must leave the
terminal as SIGTERM does (out of raw mode and the alternate screen, mouse reporting off, cursor shown) and keep
what the user asked for (a recording started with ``r`` gets its end line): it used to ``_exit(129)`` at once.

optitop runs from an interactive shell in the pane, so the shell gets the terminal back and tmux can be asked
about the terminal's modes after optitop is gone.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from optitop.recording.scan import load

TMUX = shutil.which("tmux")
OPTITOP = str(Path(sys.executable).parent / "optitop")
TARGET = "threading.Thread(target=spin, args=('burner',), daemon=True).start()\nready()\ntime.sleep(600)\n"
PROMPT = "PROMPT-7f3e$ "

pytestmark = [
    pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)"),
    pytest.mark.skipif(shutil.which("bash") is None, reason="the pane's shell is bash"),
]


def tmux(*args: str) -> str:
    assert TMUX is not None
    return subprocess.run([TMUX, *args], capture_output=True, text=True, check=False).stdout


class Pane:
    """A tmux session whose pane runs an interactive bash in ``cwd``."""

    def __init__(self, cwd: Path) -> None:
        self.name = f"optitop-signals-{uuid.uuid4().hex[:8]}"
        tmux("new-session", "-d", "-s", self.name, "-x", "100", "-y", "30", "-c", str(cwd))
        tmux("send-keys", "-t", self.name, f"exec env TERM=xterm-256color PS1='{PROMPT}' bash --norc -i", "Enter")
        wait_for(lambda: PROMPT in self.screen(), 15, what="the pane's shell prompt")

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", self.name)

    def type(self, *keys: str) -> None:
        tmux("send-keys", "-t", self.name, *keys)

    def flag(self, name: str) -> str:
        return tmux("display-message", "-p", "-t", self.name, f"#{{{name}}}").strip()

    def stty(self) -> str:
        tty = self.flag("pane_tty")
        return subprocess.run(["stty", "-F", tty, "-a"], capture_output=True, text=True, check=True).stdout

    def close(self) -> None:
        tmux("kill-session", "-t", self.name)


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    p = Pane(tmp_path)
    yield p
    p.close()


def start_optitop(pane: Pane, target_pid: int, then: str = "") -> psutil.Process:
    """optitop in the pane's shell; ``then`` runs after it exits, before bash's line editor takes the terminal."""
    pane.type(f"{OPTITOP} --pid {target_pid} --interval 0.5{then}", "Enter")
    wait_for(lambda: "burner" in pane.screen(), 30, what="optitop's screen with the target's thread")
    procs = [
        p
        for p in psutil.process_iter(["cmdline"])
        if (p.info["cmdline"] or [])[1:2] == [OPTITOP] and str(target_pid) in p.info["cmdline"]
    ]
    assert len(procs) == 1, procs
    return procs[0]


def stopped(proc: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        return proc.status() == psutil.STATUS_STOPPED
    return False


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_ctrl_z_then_fg_brings_the_screen_back_still_updating(start_target, pane):
    target = start_target(TARGET)
    proc = start_optitop(pane, target.pid)
    assert pane.flag("alternate_on") == "1"
    pane.type("C-z")  # raw mode makes Ctrl-Z a key: optitop suspends itself as the terminal would
    wait_for(lambda: stopped(proc), 10, what="optitop stopped by Ctrl-Z")
    wait_for(lambda: "Stopped" in pane.screen() and pane.flag("alternate_on") == "0", 10, what="the shell back")
    assert pane.flag("cursor_flag") == "1" and pane.flag("mouse_any_flag") == "0"
    pane.type("fg", "Enter")
    back = wait_for(
        lambda: (s := pane.screen()) and f"optitop pid {target.pid}" in s and "burner" in s and "q quit" in s and s,
        15,
        what="the whole screen repainted after fg",
    )
    assert proc.is_running() and not stopped(proc)
    assert pane.flag("alternate_on") == "1"
    wait_for(lambda: pane.screen() != back, 15, what="the screen updating after fg")
    # The same again by signal (kill -TSTP from another terminal, then kill -CONT): the UI survives that too.
    proc.send_signal(19 + 1)  # SIGTSTP
    wait_for(lambda: stopped(proc) and pane.flag("alternate_on") == "0", 10, what="stopped by SIGTSTP")
    pane.type("fg", "Enter")
    wait_for(lambda: f"optitop pid {target.pid}" in pane.screen(), 15, what="the screen back after SIGTSTP and fg")
    again = pane.screen()
    wait_for(lambda: pane.screen() != again, 15, what="the screen updating after the second fg")
    pane.type("q")
    wait_for(lambda: gone(proc), 15, what="q quits after two suspends")
    assert PROMPT in pane.screen()


def test_sighup_restores_the_terminal_and_ends_the_recording(start_target, pane, tmp_path):
    target = start_target(TARGET)
    # bash's line editor sets its own modes at the prompt: read the terminal's as optitop left them.
    proc = start_optitop(pane, target.pid, then='; echo "EXIT=$?"; stty -a > stty.txt')
    assert pane.flag("alternate_on") == "1" and pane.flag("mouse_any_flag") == "1"
    assert "-icanon" in pane.stty().split()
    pane.type("r")
    recording = wait_for(lambda: next(tmp_path.glob("optitop-*.jsonl*"), None), 10, what="the r key's recording")
    wait_for(lambda: "REC" in pane.screen() or "recording" in pane.screen().lower(), 10, what="recording shown")
    proc.send_signal(1)  # SIGHUP
    wait_for(lambda: gone(proc), 10, what="optitop exits on SIGHUP")
    wait_for(lambda: pane.flag("alternate_on") == "0", 5, what="the terminal out of the alternate screen")
    assert pane.flag("cursor_flag") == "1", "the cursor is still hidden"
    for flag in ("mouse_any_flag", "mouse_button_flag", "mouse_standard_flag", "mouse_sgr_flag"):
        assert pane.flag(flag) == "0", f"{flag}: mouse reporting is still on"
    wait_for(lambda: "EXIT=129" in pane.screen(), 10, what="exit status 129")
    modes = wait_for(lambda: (tmp_path / "stty.txt").exists() and (tmp_path / "stty.txt").read_text(), 10)
    assert isinstance(modes, str)
    assert {"icanon", "echo", "isig"} <= set(modes.split()), f"the terminal was left raw: {modes}"
    rec = load(str(recording).removesuffix(".part"))  # written as NAME.part, renamed when it stopped
    assert rec.complete, rec.problems()
    assert rec.target.pid == target.pid
