"""Least privilege from the command line: run as root for a sudo user, optitop must not follow a symlinked
``--log`` into a file that user could not read (the rule is collectors/logs.py's ``refusal``)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"
SECRET = "TOPSECRET-c0ffee"
#: A vLLM stats line: were the file read, its numbers would show in the JSON.
STATS = (
    "INFO 12-05 08:51:10 [loggers.py:127] Engine 000: Avg prompt throughput: 7.3 tokens/s, "
    "Avg generation throughput: 1.6 tokens/s, Running: 7 reqs, Waiting: 3 reqs, "
    f"GPU KV cache usage: 10.0%, Prefix cache hit rate: 0.0% {SECRET}\n"
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the SUDO_UID rule only applies when optitop runs as root")


def unprivileged_uid() -> int:
    """nobody's uid, else the first uid from 60000 up that no account uses."""
    try:
        return pwd.getpwnam("nobody").pw_uid
    except KeyError:
        uid = 60000
        while any(p.pw_uid == uid for p in pwd.getpwall()):
            uid += 1
        return uid


def once_json(pid: int, log: Path, sudo_uid: int) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """``optitop --pid PID --once --json --log LOG`` as root acting for ``sudo_uid``."""
    env = {**os.environ, "SUDO_UID": str(sudo_uid)}
    env.pop("SUDO_GID", None)
    result = subprocess.run(
        [OPTITOP, "--pid", str(pid), "--once", "--json", "--duration", "1", "--no-pystacks", "--log", str(log)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), result


def test_a_symlinked_log_the_sudo_user_cannot_read_is_refused(start_target, tmp_path):
    target = start_target("ready()\nthreading.Event().wait()\n")
    secret = tmp_path / "root-only.log"
    secret.write_text(STATS)
    secret.chmod(0o600)  # root's: nobody cannot read it
    link = tmp_path / "link.log"
    link.symlink_to(secret)
    uid = unprivileged_uid()

    doc, result = once_json(target.pid, link, uid)
    logs = doc["sources"]["logs"]
    assert logs["state"] == "unavailable", logs
    assert logs["reason"] == f"{link}: refused: running as root for uid {uid}, who could not read this file themselves"
    assert "logs" not in doc["metrics"]
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert "Running: 7" not in result.stdout

    # The same command once the user could read the file: the log is followed (so the refusal above was the rule).
    secret.chmod(0o644)
    doc, _ = once_json(target.pid, link, uid)
    assert doc["sources"]["logs"]["state"] == "ok", doc["sources"]["logs"]
    assert doc["metrics"]["logs"]["latest"]["stats"]["requests_running"] == 7.0
