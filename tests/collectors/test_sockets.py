"""The sockets collector against a real child server: accept-queue growth, in-flight connections, upstreams."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest
from conftest import wait_for

from optitop.collectors import sockets as sockets_module
from optitop.collectors.sockets import BACKLOG_NETLINK, SocketsCollector, listen_backlogs
from optitop.config import CollectorContext, Options
from optitop.model import SocketSample, SourceUnavailable, TargetGone

# The child: listener A (backlog 16) never accepts; listener B accepts and holds connections without reading
# them; listener C on ::1 (when the host has IPv6); and one upstream connection to the test's own listener
# whose incoming bytes the child never reads.
SERVER = """
import json, socket
a = socket.socket(); a.bind(("127.0.0.1", 0)); a.listen(16)
b = socket.socket(); b.bind(("127.0.0.1", 0)); b.listen(64)
held = []
def accept_forever():
    while True:
        held.append(b.accept()[0])
threading.Thread(target=accept_forever, daemon=True).start()
ports = {{"a": a.getsockname()[1], "b": b.getsockname()[1], "c": None}}
try:
    c = socket.socket(socket.AF_INET6); c.bind(("::1", 0)); c.listen(8)
    ports["c"] = c.getsockname()[1]
except OSError:
    pass
up = socket.create_connection(("127.0.0.1", {upstream_port}))
with open({ports_file!r}, "w") as fh:
    json.dump(ports, fh)
ready()
time.sleep(600)
"""


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    """A listener in the test process that the child connects to."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    yield sock
    sock.close()


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    """Client sockets the test opens; all closed at teardown."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def start_server(start_target, upstream: socket.socket, tmp_path) -> tuple[int, dict[str, int | None]]:
    ports_file = tmp_path / "ports.json"
    target = start_target(SERVER.format(upstream_port=upstream.getsockname()[1], ports_file=str(ports_file)))
    return target.pid, json.loads(ports_file.read_text())


def connect(clients: list[socket.socket], port: int, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
    sock = socket.socket(family)
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):  # a full accept queue leaves the connect in progress
        sock.connect((host, port))
    clients.append(sock)


def collector(pid: int) -> SocketsCollector:
    return SocketsCollector(CollectorContext(pid=pid, options=Options(interval_s=0.2)))


def netlink_works() -> bool:
    try:
        listen_backlogs()
    except OSError:
        return False
    return True


def listener(sample: SocketSample, port: int):
    found = [q for q in sample.listeners if q.port == port]
    return found[0] if found else None


def test_accept_queue_grows_when_the_server_stops_accepting(start_target, upstream, clients, tmp_path):
    pid, ports = start_server(start_target, upstream, tmp_path)
    col = collector(pid)
    first = col.sample()
    a = listener(first, ports["a"])
    assert a is not None and a.accept_queue == 0 and a.addr == "127.0.0.1"
    if netlink_works():
        assert a.backlog == 16 and a.backlog_source == BACKLOG_NETLINK  # listen(16), read exactly via sock_diag
        assert listener(first, ports["b"]).backlog == 64
    else:  # e.g. a sandbox without sock_diag: the somaxconn upper bound, labelled as such
        assert a.backlog >= 16 and a.backlog_source.startswith("somaxconn (upper bound")
    for _ in range(10):
        connect(clients, ports["a"])
    got = wait_for(lambda: (s := col.sample()) and listener(s, ports["a"]).accept_queue == 10 and s)
    assert isinstance(got, SocketSample)
    assert got.inbound_conns == 0  # queued, not accepted: counted in the accept queue only


def test_full_accept_queue_overflows(start_target, upstream, clients, tmp_path):
    pid, ports = start_server(start_target, upstream, tmp_path)
    col = collector(pid)
    col.sample()
    for _ in range(30):
        connect(clients, ports["a"])

    def overflowing() -> SocketSample | None:
        sample = col.sample()
        return sample if (sample.listen_overflows_per_s or 0) > 0 else None

    sample = wait_for(overflowing)
    assert isinstance(sample, SocketSample)
    # The kernel admits backlog + 1 before it starts dropping SYNs.
    queue = listener(sample, ports["a"]).accept_queue
    assert 16 <= queue <= 17, queue


def test_inbound_connections_and_unread_bytes_are_counted(start_target, upstream, clients, tmp_path):
    pid, ports = start_server(start_target, upstream, tmp_path)
    col = collector(pid)
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", ports["b"]))
        sock.sendall(b"x" * 1000)
        clients.append(sock)
    sample = wait_for(lambda: (s := col.sample()) and s.inbound_conns == 3 and s.inbound_recv_q_bytes == 3000 and s)
    assert isinstance(sample, SocketSample)
    assert listener(sample, ports["b"]).accept_queue == 0  # all accepted
    assert sample.inbound_send_q_bytes == 0


def test_upstream_with_unread_reply_is_seen(start_target, upstream, clients, tmp_path):
    pid, ports = start_server(start_target, upstream, tmp_path)
    conn, _ = upstream.accept()
    clients.append(conn)
    conn.sendall(b"y" * 5000)
    col = collector(pid)
    sample = wait_for(lambda: (s := col.sample()) and s.upstream_recv_q_bytes == 5000 and s)
    assert isinstance(sample, SocketSample)
    assert sample.upstream_conns == 1
    peer = sample.upstreams[0]
    assert (peer.remote_addr, peer.remote_port) == ("127.0.0.1", upstream.getsockname()[1])
    assert peer.conns == 1 and peer.recv_q_bytes == 5000 and peer.send_q_bytes == 0
    # The test's own listener is not the child's: it must not appear among the child's listeners.
    assert all(q.port != upstream.getsockname()[1] for q in sample.listeners)


def test_ipv6_listener_is_found(start_target, upstream, clients, tmp_path):
    pid, ports = start_server(start_target, upstream, tmp_path)
    if ports["c"] is None:
        pytest.skip("this host cannot bind ::1 (no IPv6)")
    col = collector(pid)
    for _ in range(2):
        connect(clients, ports["c"], socket.AF_INET6, "::1")
    sample = wait_for(lambda: (s := col.sample()) and listener(s, ports["c"]).accept_queue == 2 and s)
    c = listener(sample, ports["c"])
    assert c.addr == "::1"
    assert c.backlog == 8 if netlink_works() else c.backlog >= 8


def test_rates_need_two_readings(start_target, upstream, tmp_path):
    pid, _ = start_server(start_target, upstream, tmp_path)
    col = collector(pid)
    first = col.sample()
    assert first.dt_s is None and first.retrans_segs_per_s is None and first.listen_overflows_per_s is None
    wait_for(lambda: __import__("time").monotonic() - first.mono_s >= 0.2)
    second = col.sample()
    assert second.dt_s is not None and second.dt_s >= 0.2
    assert second.retrans_segs_per_s is not None and second.retrans_segs_per_s >= 0
    assert second.listen_overflows_per_s is not None and second.listen_overflows_per_s >= 0
    assert "sock_diag" in col.describe()


def test_interval_stretches_with_the_cost_of_reading(start_target, upstream, tmp_path, monkeypatch):
    pid, _ = start_server(start_target, upstream, tmp_path)
    fast = SocketsCollector(CollectorContext(pid=pid, options=Options(interval_s=0.25)))
    assert fast.interval_s >= sockets_module.MIN_INTERVAL_S == 3.0  # the TCP table is never read at 4 Hz
    monkeypatch.setattr(sockets_module, "MIN_INTERVAL_S", 0.0)
    col = SocketsCollector(CollectorContext(pid=pid, options=Options(interval_s=1e-6)))
    col.sample()
    assert col.interval_s > 1e-5  # any real reading costs more than 0.5 us, so 20x it exceeds the base


def test_missing_and_exited_targets(start_target, upstream, tmp_path):
    with pytest.raises(SourceUnavailable, match="no process"):
        collector(2**22 + 12345)
    target = start_target("ready()\ntime.sleep(600)\n")
    col = collector(target.pid)
    assert col.sample().listeners == ()
    target.kill()
    with pytest.raises(TargetGone):
        col.sample()
