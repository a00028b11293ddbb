"""The installed ``optitop`` command, run as a user would: exit codes, one-line errors, the JSON schema, doctor."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPTITOP, *args], capture_output=True, text=True, timeout=timeout, cwd="/")


def assert_one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert needle in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("optitop")]
    assert len(lines) == 1, result.stderr


def test_missing_pid_is_one_line_and_exit_2():
    import psutil

    from optitop.args import pid_max

    free = next(pid for pid in range(pid_max() - 1, 1, -1) if not psutil.pid_exists(pid))
    result = run("--pid", str(free))
    assert_one_line_error(result, f"optitop: no process with pid {free}")


def test_pid_past_pid_max_is_a_usage_error():
    result = run("--pid", "999999999")
    assert_one_line_error(result, "not a pid: '999999999'")


def test_kernel_thread_is_refused_at_resolve():
    """pid 2 (kthreadd) was shown as "target exited": it has no user space to watch, and the error says so."""
    result = run("--pid", "2", "--once")
    assert_one_line_error(result, "optitop: pid 2 is a kernel thread")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--pid", "abc"], "not a pid"),
        (["--interval", "-1", "--pid", "1"], "must be 0.05-3600 s"),
        (["--bogus"], "unrecognized arguments"),
        (["--pid", "1", "--port", "80"], "not allowed with"),
        (["--json", "--pid", "1"], "--json goes with --once"),
    ],
)
def test_bad_options_are_usage_errors(args, needle):
    result = run(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_no_target_says_how_to_pick_one():
    result = run("--once")
    assert result.returncode == 2
    assert "--pid" in result.stderr


def test_once_json_has_the_schema(start_target):
    target = start_target(
        "threading.Thread(target=spin, args=('burner',), daemon=True).start()\nready()\ntime.sleep(600)\n"
    )
    result = run("--pid", str(target.pid), "--once", "--json", "--duration", "2.5", "--interval", "0.5")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1
    assert set(doc) >= {"schema_version", "target", "metrics", "sources", "diagnosis"}
    assert doc["target"]["pid"] == target.pid and doc["target"]["exited"] is False
    assert doc["sources"]["process"]["state"] == "ok"
    proc = doc["metrics"]["process"]
    assert proc["window"]["cpu_pct"]["max"] > 50
    assert any(t["name"] == "burner" for t in proc["latest"]["threads"])
    assert doc["diagnosis"]["category"] in {
        "compute",
        "memory_io",
        "scheduling",
        "network",
        "host_cpu",
        "idle",
        "none",
        "unknown",
    }
    assert isinstance(doc["diagnosis"]["evidence"], list)


def test_once_returns_what_it_gathered_when_the_target_exits(start_target):
    target = start_target("ready()\ntime.sleep(1.5)\n")
    result = run("--pid", str(target.pid), "--once", "--json", "--duration", "20", "--interval", "0.3")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["target"]["exited"] is True
    assert doc["duration_s"] < 15
    assert doc["metrics"]["process"]["samples"] >= 1


def test_secrets_in_the_cmdline_never_reach_the_json(start_target):
    target = start_target("ready()\ntime.sleep(600)\n")
    # the target's argv carries a secret: re-exec a sleeper with one
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", "--api-key", "SUPERSECRET", "--token=ALSOSECRET"]
    )
    try:
        result = run("--pid", str(proc.pid), "--once", "--json", "--duration", "1")
        assert result.returncode == 0, result.stderr
        assert "SUPERSECRET" not in result.stdout and "ALSOSECRET" not in result.stdout
        assert "--api-key ***" in result.stdout
    finally:
        proc.kill()
        proc.wait()
    assert target.pid


def test_doctor_reports_every_source(start_target):
    target = start_target("ready()\ntime.sleep(600)\n")
    result = run("doctor", "--pid", str(target.pid), "--json", "--interval", "0.2")
    doc = json.loads(result.stdout)
    assert doc["sources"]["process"]["ok"] is True
    assert doc["sources"]["system"]["ok"] is True
    for finding in doc["sources"].values():
        assert finding["detail"], finding  # every line says something a person can act on
    text = run("doctor", "--pid", str(target.pid), "--interval", "0.2")
    assert "process" in text.stdout and "Traceback" not in text.stderr


def test_port_and_name_select_or_list(start_target):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    marker = f"optitop-test-marker-{os.getpid()}"
    code = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen()
ready()
time.sleep(600)  # {marker}
"""
    target = start_target(code)
    result = run("--port", str(port), "--once", "--json", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["target"]["pid"] == target.pid
    second = start_target(f"ready()\ntime.sleep(600)  # {marker}\n")
    listing = run("--name", marker, "--once", "--json", "--duration", "1")
    assert listing.returncode == 2
    assert "several processes" in listing.stderr
    assert str(target.pid) in listing.stderr and str(second.pid) in listing.stderr
    assert "Traceback" not in listing.stderr
    none = run("--name", "no-such-process-anywhere-" + marker[::-1], "--once")
    assert none.returncode == 2 and "no process matching" in none.stderr


def test_live_screen_needs_a_terminal(start_target):
    target = start_target("ready()\ntime.sleep(600)\n")
    result = run("--pid", str(target.pid))
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr
