"""The target tree read from the kernel's per-thread ``children`` files, checked against psutil's full scan."""

from __future__ import annotations

import psutil
import pytest

from optitop.collectors import procfs
from optitop.collectors.tree import TargetTree
from optitop.model import TargetGone

# A child forked from a second thread, which forks a grandchild: the main thread's children file alone
# would miss the child, and a one-level read would miss the grandchild.
FORKING_TARGET = """
import subprocess
def start_child():
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); time.sleep(600)"
    )
    started.append(subprocess.Popen([sys.executable, "-c", code]))
    time.sleep(600)  # the forking thread stays: the child is listed in its children file, not the main one's
started = []
threading.Thread(target=start_child, daemon=True).start()
def grandchild_up():
    try:
        return bool(started) and bool(psutil_free_children(started[0].pid))
    except OSError:
        return False
def psutil_free_children(pid):
    return open(f"/proc/{pid}/task/{pid}/children").read().split()
while not grandchild_up():
    time.sleep(0.01)
ready()
time.sleep(600)
"""


def _psutil_tree(pid: int) -> set[tuple[int, int]]:
    return {(p.pid, p.ppid()) for p in psutil.Process(pid).children(recursive=True)}


@pytest.mark.skipif(not procfs.HAS_CHILDREN_FILES, reason="this kernel has no /proc/PID/task/TID/children files")
def test_children_files_find_what_a_full_scan_finds(start_target):
    target = start_target(FORKING_TARGET)
    tree = TargetTree(target.pid)
    found = tree.descendant_pids()
    assert len(found) == 2, found
    assert set(found) == _psutil_tree(target.pid)
    child, grandchild = found
    assert child[1] == target.pid and grandchild[1] == child[0], "parents come before their children"
    assert tree.pids() == [target.pid, child[0], grandchild[0]]


def test_the_full_scan_fallback_gives_the_same_tree(start_target, monkeypatch):
    target = start_target(FORKING_TARGET)
    monkeypatch.setattr(procfs, "HAS_CHILDREN_FILES", False)
    assert procfs.child_pids(target.pid) is None
    found = TargetTree(target.pid).descendant_pids()
    assert set(found) == _psutil_tree(target.pid) and len(found) == 2


def test_an_exited_target_is_gone_not_an_empty_tree(start_target):
    target = start_target("ready()\ntime.sleep(600)")
    tree = TargetTree(target.pid)
    assert tree.descendant_pids() == []
    target.kill()
    with pytest.raises(TargetGone, match="exited"):
        tree.descendant_pids()
