"""Containers: a target in its own PID namespace (``unshare --pid --fork --mount-proc``) watched from the host, and
optitop itself inside a namespace with its target (a pod with ``shareProcessNamespace: true``).

Needs root (CAP_SYS_ADMIN for the namespace), as CI and these machines run; elsewhere the tests skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psutil
import pytest
from conftest import wait_for

OPTITOP = os.path.join(os.path.dirname(sys.executable), "optitop")
#: Two threads, one spinning (named "burner"): the process collector must see its CPU and both threads.
TARGET = textwrap.dedent(
    """
    import os, threading, time
    def spin():
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as fh:
            fh.write("burner")
        while True:
            pass
    threading.Thread(target=spin, daemon=True).start()
    print(os.getpid(), flush=True)
    time.sleep(120)
    """
)


def can_unshare() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.fixture
def namespaced() -> Iterator[tuple[int, int]]:
    """A spinning target as pid 1 of a new PID namespace; yields (host pid, pid inside)."""
    if not can_unshare():
        pytest.skip("unshare --pid --fork --mount-proc needs root (CAP_SYS_ADMIN) and util-linux's unshare")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", TARGET], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        inner = int(proc.stdout.readline())
        children = wait_for(lambda: psutil.Process(proc.pid).children(), 10, what="unshare's child")
        yield children[0].pid, inner
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            child.kill()
        proc.kill()
        proc.wait(10)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPTITOP, *argv], capture_output=True, text=True, timeout=90, cwd="/")


def test_a_namespaced_target_is_attributed_from_the_host(namespaced: tuple[int, int]) -> None:
    host_pid, inner = namespaced
    assert inner == 1 and host_pid != 1  # really in its own namespace
    out = run("--pid", str(host_pid), "--once", "--json", "--duration", "2", "--no-pystacks", "--no-gpu")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["target"]["pid"] == host_pid
    process = doc["metrics"]["process"]["latest"]
    assert process["num_threads"] == 2
    burner = [t for t in process["threads"] if t["name"] == "burner"]
    assert burner and burner[0]["cpu_pct"] > 5, process["threads"]  # the spinning thread, by its host tid
    assert process["cpu_pct"] > 5


def test_doctor_says_the_target_is_in_a_container_and_to_use_the_host_pid(namespaced: tuple[int, int]) -> None:
    host_pid, _ = namespaced
    out = run("doctor", "--pid", str(host_pid), "--no-gpu")
    text = out.stdout
    assert f"pid {host_pid} is pid 1 inside its own PID namespace (a container)" in text, text
    assert "give optitop the host pid, as here" in text
    lines = {line.split()[1]: line for line in text.splitlines()[2:] if line.strip()}
    assert lines["process"].split()[0] == "ok"
    assert lines["pystacks"].split()[0] == "ok", text  # py-spy attaches by the host pid across the namespace
    doc = json.loads(run("doctor", "--pid", str(host_pid), "--no-gpu", "--no-pystacks", "--json").stdout)
    assert "inside its own PID namespace" in doc["pid_namespace"]


def test_doctor_inside_the_namespace_warns_that_gpu_use_cannot_be_attributed() -> None:
    """optitop next to its target inside one PID namespace, as a sidecar sees it: process metrics work, and
    doctor says up front that NVML's host pids cannot be matched from there."""
    if not can_unshare():
        pytest.skip("unshare --pid --fork --mount-proc needs root (CAP_SYS_ADMIN) and util-linux's unshare")
    inside = textwrap.dedent(
        f"""
        import json, subprocess, sys
        target = subprocess.Popen([sys.executable, "-c", {TARGET!r}], stdout=subprocess.PIPE, text=True)
        target.stdout.readline()
        run = lambda *a: subprocess.run([{OPTITOP!r}, *a], capture_output=True, text=True, timeout=60, cwd="/")
        doctor = run("doctor", "--pid", str(target.pid), "--no-gpu", "--no-pystacks")
        once = run("--pid", str(target.pid), "--once", "--json", "--duration", "2", "--no-pystacks", "--no-gpu")
        target.kill()
        print(json.dumps({{"pid": target.pid, "doctor": doctor.stdout, "once": once.stdout, "err": once.stderr}}))
        """
    )
    out = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", inside],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["pid"] < 10  # a pid of the new namespace
    assert "optitop runs inside a PID namespace" in got["doctor"], got["doctor"]
    assert "cannot be attributed" in got["doctor"]
    process = json.loads(got["once"])["metrics"]["process"]["latest"]
    assert process["num_threads"] == 2 and process["cpu_pct"] > 5, (process, got["err"])
