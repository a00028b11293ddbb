"""--follow: the target restarts on the same port; optitop re-attaches, keeps the history and marks the gap."""

from __future__ import annotations

from conftest import free_port, wait_for

from optitop.config import Options
from optitop.runtime import follow_session
from optitop.tui.format import with_gaps


def server(port: int) -> str:
    return f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen()
ready()
time.sleep(600)
"""


def test_reattaches_to_the_restarted_server_and_keeps_history(start_target):
    port = free_port()
    first = start_target(server(port))
    options = Options(interval_s=0.2, analysis_window_s=2.0)
    follower = follow_session(first.pid, options, port=port, name=None, poll_s=0.2)
    follower.start()
    try:
        store = follower.store
        wait_for(lambda: len(store.window().series("process")) >= 3)
        first.kill()
        wait_for(lambda: store.target.exited)
        second = start_target(server(port))
        wait_for(lambda: store.target.pid == second.pid and not store.target.exited, timeout_s=15)
        assert store.target.previous_pids == (first.pid,)
        wait_for(lambda: any(s.pid == second.pid for s in store.window().series("process")))
        series = store.window().series("process")
        assert any(s.pid == first.pid for s in series)  # the history from before the restart is kept
        assert any(v is None for _, v in with_gaps(series, lambda s: s.cpu_pct))  # and the gap shows
    finally:
        follower.stop()


def test_follow_needs_a_port_or_name():
    import pytest

    with pytest.raises(ValueError, match="--port or --name"):
        follow_session(1, Options(), port=None, name=None)
