"""The /proc/net parsers: captured rows, real sockets read back from /proc, counters and sock_diag."""

from __future__ import annotations

import contextlib
import socket
import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optitop.collectors.netparse import (
    NLMSG_DONE,
    NLMSG_ERROR,
    SOCK_DIAG_BY_FAMILY,
    hex_to_ip,
    parse_counter_table,
    parse_diag_messages,
    parse_socket_link,
    parse_tcp_line,
    parse_tcp_table,
    tcp_in_use,
)

little_endian = pytest.mark.skipif(sys.byteorder != "little", reason="captured rows come from a little-endian host")

# Rows captured from this project's x86-64 machines (header included, as the kernel prints it).
TCP4 = "\n".join(
    (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000011 00:00000000 00000000     0        0 1099 1 "
        "000000007eb6c5c9 100 0 0 10 0",
        "   1: 0100007F:1F40 0100007F:D2F0 01 000001F4:000003E8 00:00000000 00000000  1000        0 8395 1 "
        "0000000000000000 20 4 30 10 -1",
    )
)
TCP6 = "\n".join(
    (
        "  sl  local_address                         remote_address                        st tx_queue rx_queue tr "
        "tm->when retrnsmt   uid  timeout inode",
        "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0",
        "   1: 0000000000000000FFFF00000100007F:1F90 0000000000000000FFFF00000100007F:C350 01 "
        "00000000:00000000 00:00000000 00000000     0        0 4243 1 0000000000000000 20 4 30 10 -1",
    )
)


@little_endian
def test_ipv4_rows():
    rows = parse_tcp_table(TCP4)
    assert len(rows) == 2
    listen, conn = rows
    assert (listen.local_addr, listen.local_port, listen.state, listen.rx_queue, listen.inode) == (
        "0.0.0.0",
        2024,
        "LISTEN",
        0x11,
        1099,
    )
    assert (conn.local_addr, conn.local_port, conn.remote_addr, conn.remote_port) == (
        "127.0.0.1",
        8000,
        "127.0.0.1",
        54000,
    )
    assert (conn.state, conn.tx_queue, conn.rx_queue, conn.uid) == ("ESTABLISHED", 500, 1000, 1000)


@little_endian
def test_ipv6_rows_and_mapped_addresses():
    listen, mapped = parse_tcp_table(TCP6)
    assert (listen.local_addr, listen.local_port, listen.state) == ("::1", 8080, "LISTEN")
    # An IPv4 client on a dual-stack socket is shown as plain IPv4.
    assert (mapped.local_addr, mapped.remote_addr, mapped.remote_port) == ("127.0.0.1", "127.0.0.1", 50000)


def test_real_sockets_read_back_from_proc():
    """Whatever the host's byte order, a socket we bind reads back with its own address and port."""
    v4 = socket.socket()
    v4.bind(("127.0.0.1", 0))
    v4.listen(3)
    port = v4.getsockname()[1]
    with open("/proc/self/net/tcp") as fh:
        rows = [r for r in parse_tcp_table(fh.read()) if r.local_port == port]
    v4.close()
    assert [(r.local_addr, r.state) for r in rows] == [("127.0.0.1", "LISTEN")]
    try:
        v6 = socket.socket(socket.AF_INET6)
        v6.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 on this host")
    v6.listen(3)
    port6 = v6.getsockname()[1]
    with open("/proc/self/net/tcp6") as fh:
        rows6 = [r for r in parse_tcp_table(fh.read()) if r.local_port == port6]
    v6.close()
    assert [(r.local_addr, r.state) for r in rows6] == [("::1", "LISTEN")]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
        "   0: ZZZZZZZZ:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1099",
        "   0: 00000000:07E8 00000000:0000 0A 00000000:00000000",  # cut short
        "   0: 0000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1099",
    ],
)
def test_malformed_rows_are_skipped(line):
    assert parse_tcp_line(line) is None


def test_hex_to_ip_rejects_other_lengths():
    with pytest.raises(ValueError):
        hex_to_ip("0100")


def test_socket_links():
    assert parse_socket_link("socket:[12345]") == 12345
    assert parse_socket_link("pipe:[12345]") is None
    assert parse_socket_link("/var/log/x.log") is None
    assert parse_socket_link("socket:[12345]x") is None


def test_counter_tables():
    text = (
        "Ip: Forwarding DefaultTTL\nIp: 1 64\n"
        "Tcp: RtoAlgorithm ActiveOpens OutSegs RetransSegs\nTcp: 1 20 1928 7\n"
        "Udp: InDatagrams\nUdp: 1 2\n"  # mismatched lengths: skipped
    )
    got = parse_counter_table(text)
    assert got["Tcp"] == {"RtoAlgorithm": 1, "ActiveOpens": 20, "OutSegs": 1928, "RetransSegs": 7}
    assert got["Ip"]["DefaultTTL"] == 64
    assert "Udp" not in got


def test_counter_tables_of_this_host():
    with open("/proc/self/net/snmp") as fh:
        snmp = parse_counter_table(fh.read())
    with open("/proc/self/net/netstat") as fh:
        netstat = parse_counter_table(fh.read())
    assert snmp["Tcp"]["OutSegs"] >= 0 and "RetransSegs" in snmp["Tcp"]
    assert "ListenOverflows" in netstat["TcpExt"]


def test_sockstat_in_use():
    v4 = "sockets: used 17\nTCP: inuse 3 orphan 0 tw 1135 alloc 4 mem 156\nUDP: inuse 0 mem 0\n"
    v6 = "TCP6: inuse 0\nUDP6: inuse 2\n"
    assert tcp_in_use(v4, "TCP") == 3
    assert tcp_in_use(v6, "TCP6") == 0
    assert tcp_in_use(v6, "TCP") is None  # absent: unknown, so the table is read
    assert tcp_in_use(None, "TCP") is None
    assert tcp_in_use("TCP: inuse", "TCP") is None


def _diag_msg(state: int, sport: int, rq: int, wq: int, inode: int) -> bytes:
    body = struct.pack("=BBBB", socket.AF_INET, state, 0, 0) + struct.pack(">HH", sport, 0) + b"\0" * 44
    body += struct.pack("=IIIII", 0, rq, wq, 0, inode)
    return struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body


def test_diag_messages():
    done = struct.pack("=IHHII", 20, NLMSG_DONE, 2, 1, 0) + b"\0" * 4
    entries, finished = parse_diag_messages(_diag_msg(10, 8000, 3, 128, 77) + done)
    assert finished
    assert [(e.state, e.local_port, e.rqueue, e.wqueue, e.inode) for e in entries] == [("LISTEN", 8000, 3, 128, 77)]
    entries, finished = parse_diag_messages(_diag_msg(10, 8001, 0, 16, 78))
    assert not finished and entries[0].wqueue == 16
    error = struct.pack("=IHHII", 20, NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -13)
    with pytest.raises(OSError):
        parse_diag_messages(error)


@given(st.text(max_size=400))
def test_tcp_parser_never_raises(text):
    parse_tcp_table(text)
    parse_counter_table(text)


@given(st.binary(max_size=400))
def test_diag_parser_never_raises_on_garbage_except_oserror(data):
    with contextlib.suppress(OSError):
        parse_diag_messages(data)
