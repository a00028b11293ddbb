"""Words that mislead (issue 20 item 10), each against real processes, endpoints and privileges.

- pid 2 (a kernel thread) was "target exited": tests/test_cli.py::test_kernel_thread_is_refused_at_resolve.
- With ``--metrics-url`` given, the queue said "pass --metrics-url", and ``●queue`` stayed live while every
  endpoint answered 500 or timed out.
- As non-root, ``--port`` on another user's listener said "no process listening": a permission problem.
- ``doctor`` said sockets were ok while the target's fds were denied.
- Root without CAP_SYS_PTRACE was told to "run optitop as root".
- A py-spy frame whose function or file name holds ``;`` was split into bogus frames (a bogus hot function).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from optitop.collectors.pyspy import find_pyspy

OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"
TARGET = "threading.Thread(target=spin, args=('burner',), daemon=True).start()\nready()\ntime.sleep(600)\n"

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody or to drop a capability")
with_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NO_PTRACE_CAP = ["setpriv", "--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"]


def optitop(*args: str, prefix: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, OPTITOP, *args], capture_output=True, text=True, timeout=timeout, cwd="/")


# -- the queue: a given URL that fails -------------------------------------------------------------------------
class _Broken(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/hang"):
            self.server.release.wait(30)  # type: ignore[attr-defined]
            return
        self.send_response(500)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"boom")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def broken_server() -> Iterator[str]:
    """An HTTP server whose /metrics answers 500 and whose /hang never answers; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_failing_metrics_urls_make_the_queue_source_fail_with_their_reasons(start_target, broken_server):
    target = start_target(TARGET)
    err500, hang = f"{broken_server}/metrics", f"{broken_server}/hang"
    args = ["--pid", str(target.pid), "--once", "--json", "--duration", "6", "--interval", "0.5"]
    result = optitop(*args, "--metrics-url", err500, "--metrics-url", hang, "--no-pystacks", "--no-gpu")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    status = doc["sources"]["queue"]
    assert status["state"] == "error", f"the queue source shows live while every endpoint fails: {status}"
    assert f"{err500}: HTTP 500" in status["reason"] and f"{hang}: timed out" in status["reason"], status
    tried = doc["metrics"]["queue"]["latest"]["tried"]
    assert {tried[0], tried[1]} == {f"{err500}: HTTP 500", f"{hang}: timed out after 1 s"}, tried
    assert not any("pass --metrics-url" in line for line in tried), f"told to pass what was passed: {tried}"


# -- privileges ------------------------------------------------------------------------------------------------
@pytest.fixture
def root_listener() -> Iterator[tuple[int, int]]:
    """A root-owned process listening on a loopback port; yields (pid, port)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = textwrap.dedent(
        f"""
        import socket, time
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port})); s.listen(8)
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc.pid, port
    proc.kill()
    proc.wait(10)
    proc.stdout.close()


@as_root
@with_setpriv
def test_port_of_another_users_listener_is_a_permission_problem(root_listener):
    _pid, port = root_listener
    result = optitop("--port", str(port), "--once", prefix=tuple(NOBODY))
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "no process listening" not in result.stderr
    assert f"port {port} is listened on by a process of another user" in result.stderr, result.stderr
    assert "run optitop as that user or as root" in result.stderr


@as_root
@with_setpriv
def test_doctor_does_not_call_sockets_ok_when_the_fds_are_denied(root_listener):
    pid, _port = root_listener
    result = optitop("doctor", "--pid", str(pid), "--no-gpu", "--no-pystacks", "--json", prefix=tuple(NOBODY))
    sockets = json.loads(result.stdout)["sources"]["sockets"]
    assert sockets["ok"] is False, f"doctor says sockets work while the fds are denied: {sockets}"
    assert f"pid {pid} fds" in sockets["detail"] and "run optitop as root" in sockets["detail"], sockets
    assert result.returncode == 1


@as_root
@with_setpriv
def test_root_without_cap_sys_ptrace_is_not_told_to_run_as_root(start_target):
    if find_pyspy() is None:
        pytest.skip("py-spy is not installed")
    target = start_target(TARGET)
    result = optitop("doctor", "--pid", str(target.pid), "--no-gpu", "--json", prefix=tuple(NO_PTRACE_CAP))
    found = json.loads(result.stdout)["sources"]
    for source in ("pystacks", "process"):
        assert found[source]["ok"] is False, f"{source} is not ok without ptrace rights: {found[source]}"
        assert "CAP_SYS_PTRACE" in found[source]["detail"], found[source]
        detail = found[source]["detail"]
        assert "run optitop as root" not in detail and "sudo" not in detail, f"root told to run as root: {detail}"


# -- a ';' in a frame's name -----------------------------------------------------------------------------------
SEMICOLON_TARGET = """
src = "def spin():\\n    while True:\\n        x = 0\\n        for i in range(1000):\\n            x += i\\n"
ns = {}
exec(compile(src, FILE, "exec"), ns)
hot = ns["spin"]
hot.__code__ = hot.__code__.replace(co_name="hot;func", co_qualname="hot;func")
def outer():
    hot()
threading.Thread(target=outer, name="th;read", daemon=True).start()
ready()
time.sleep(600)
"""


def test_semicolons_in_function_file_and_thread_names_stay_in_one_frame(start_target, tmp_path):
    if find_pyspy() is None:
        pytest.skip("py-spy is not installed")
    odd = tmp_path / "odd;dir" / "we;ird.py"
    odd.parent.mkdir()
    odd.write_text("")
    target = start_target(f"FILE = {str(odd)!r}\n" + SEMICOLON_TARGET)
    args = ["--pid", str(target.pid), "--once", "--json", "--duration", "6", "--interval", "0.5"]
    result = optitop(*args, "--pyspy-duty", "1", "--no-gpu")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    if doc["sources"]["pystacks"]["state"] != "ok":
        pytest.skip(f"py-spy cannot read the target here: {doc['sources']['pystacks']['reason']}")
    stacks = doc["metrics"]["pystacks"]["latest"]
    hot = {h["name"]: h["location"] for h in stacks["hot"]}
    assert hot.get("hot;func", "").startswith("we;ird.py:"), f"the ';' function was split: {hot}"
    assert not any(name in ("hot", "func", "dir/we") or "ird.py" in name for name in hot), hot
    assert "th;read" in {t["name"] for t in stacks["threads"]}
