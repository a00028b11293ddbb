"""Pure parsers for the kernel's TCP tables and counters (/proc/net/tcp{,6}, snmp, netstat, sock_diag).

Kept free of I/O so they can be tested against captured text and so the sockets collector stays a thin
loop of reads. The kernel prints addresses as the raw in-memory words of ``struct in_addr``/``in6_addr``
formatted with ``%08X`` in *host* byte order, so the bytes are recovered with a native-order pack rather
than by assuming little-endian.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import struct
from collections.abc import Container
from dataclasses import dataclass

#: TCP states as /proc/net/tcp numbers them (include/net/tcp_states.h).
TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}

_SOCKET_LINK = re.compile(r"socket:\[(\d+)\]\Z")
_HEX = re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{32}")


@dataclass(frozen=True, slots=True)
class TcpEntry:
    """One row of /proc/net/tcp or tcp6.

    Attributes:
        local_addr: local address as text (IPv4-mapped IPv6 addresses are shown as plain IPv4).
        local_port: local port.
        remote_addr: remote address as text.
        remote_port: remote port (0 for a listening socket).
        state: the state's name (``LISTEN``, ``ESTABLISHED`` …).
        tx_queue: the kernel's tx_queue column: unsent/unacked bytes for a connection; *not* the backlog
            for a listening socket.
        rx_queue: the rx_queue column: unread bytes for a connection, the accept-queue length for a
            listening socket.
        uid: the socket owner's uid.
        inode: the socket inode (0 for sockets no process holds, e.g. TIME_WAIT or not yet accepted).
    """

    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int
    state: str
    tx_queue: int
    rx_queue: int
    uid: int
    inode: int


@functools.lru_cache(maxsize=4096)
def hex_to_ip(text: str) -> str:
    """Turn a /proc/net/tcp hex address (8 digits for IPv4, 32 for IPv6) into its text form.

    Cached: a host's tables repeat a few addresses thousands of times.

    Raises:
        ValueError: when the text is neither length or not hex.
    """
    if not _HEX.fullmatch(text):
        raise ValueError(f"not a /proc/net/tcp address: {text!r}")
    if len(text) == 8:
        return str(ipaddress.IPv4Address(struct.pack("=I", int(text, 16))))
    if len(text) == 32:
        raw = b"".join(struct.pack("=I", int(text[i : i + 8], 16)) for i in range(0, 32, 8))
        addr = ipaddress.IPv6Address(raw)
        mapped = addr.ipv4_mapped
        return str(mapped) if mapped is not None else str(addr)
    raise ValueError(f"not a /proc/net/tcp address: {text!r}")


def parse_endpoint(text: str) -> tuple[str, int]:
    """Parse ``ADDR:PORT`` (both hex) into (address text, port)."""
    addr, _, port = text.partition(":")
    if not port:
        raise ValueError(f"not an endpoint: {text!r}")
    return hex_to_ip(addr), int(port, 16)


def parse_tcp_line(line: str, inodes: Container[int] | None = None) -> TcpEntry | None:
    """Parse one data row of /proc/net/tcp{,6}; None for the header, a malformed row, or another's socket.

    Args:
        line: the row.
        inodes: when given, rows whose inode is not in it are skipped before their addresses are decoded
            (the table is host-wide within the namespace: a busy host has tens of thousands of rows).
    """
    parts = line.split()
    if len(parts) < 10 or not parts[0].endswith(":"):
        return None
    try:
        if inodes is not None and int(parts[9]) not in inodes:
            return None
        local_addr, local_port = parse_endpoint(parts[1])
        remote_addr, remote_port = parse_endpoint(parts[2])
        state_num = int(parts[3], 16)
        tx_hex, _, rx_hex = parts[4].partition(":")
        return TcpEntry(
            local_addr=local_addr,
            local_port=local_port,
            remote_addr=remote_addr,
            remote_port=remote_port,
            state=TCP_STATES.get(state_num, f"STATE_{state_num}"),
            tx_queue=int(tx_hex, 16),
            rx_queue=int(rx_hex, 16),
            uid=int(parts[7]),
            inode=int(parts[9]),
        )
    except ValueError:
        return None


def parse_tcp_table(text: str, inodes: Container[int] | None = None) -> list[TcpEntry]:
    """Parse a whole /proc/net/tcp or tcp6 file, skipping the header, anything malformed and, when
    ``inodes`` is given, sockets not in it."""
    out = []
    for line in text.splitlines():
        entry = parse_tcp_line(line, inodes)
        if entry is not None:
            out.append(entry)
    return out


def parse_socket_link(target: str) -> int | None:
    """The inode of an fd link such as ``socket:[12345]``; None for files, pipes and anything else."""
    match = _SOCKET_LINK.match(target)
    return int(match.group(1)) if match else None


def parse_counter_table(text: str) -> dict[str, dict[str, int]]:
    """Parse /proc/net/snmp or /proc/net/netstat: pairs of ``Prefix: names`` / ``Prefix: values`` lines.

    Returns:
        ``{"Tcp": {"RetransSegs": 12, ...}, "TcpExt": {...}}``; a pair whose lengths differ or whose values
        are not integers is skipped rather than guessed.
    """
    out: dict[str, dict[str, int]] = {}
    pending: dict[str, list[str]] = {}
    for line in text.splitlines():
        prefix, sep, rest = line.partition(":")
        if not sep:
            continue
        words = rest.split()
        if prefix not in pending:
            pending[prefix] = words
            continue
        names = pending.pop(prefix)
        if len(names) != len(words):
            continue
        try:
            out[prefix] = {name: int(value) for name, value in zip(names, words, strict=True)}
        except ValueError:
            continue
    return out


def tcp_in_use(sockstat: str | None, key: str) -> int | None:
    """The ``inuse`` count of one protocol line of /proc/net/sockstat{,6} (``TCP``/``TCP6``), or None."""
    for line in (sockstat or "").splitlines():
        words = line.split()
        if words and words[0] == f"{key}:" and "inuse" in words:
            at = words.index("inuse") + 1
            return int(words[at]) if at < len(words) and words[at].isdigit() else None
    return None


# -- sock_diag (netlink) ---------------------------------------------------------------------------------
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
_NLMSGHDR = struct.Struct("=IHHII")
# struct inet_diag_msg: family, state, timer, retrans (u8 each); inet_diag_sockid (sport, dport be16,
# src[4], dst[4] be32, if u32, cookie[2] u32); expires, rqueue, wqueue, uid, inode (u32 each).
_DIAG_HEAD = struct.Struct("=BBBB")
_DIAG_PORTS = struct.Struct(">HH")
_DIAG_TAIL = struct.Struct("=IIIII")
_DIAG_TAIL_OFFSET = 4 + 4 + 32 + 4 + 8
DIAG_MSG_MIN_LEN = _DIAG_TAIL_OFFSET + _DIAG_TAIL.size


@dataclass(frozen=True, slots=True)
class DiagEntry:
    """One socket as sock_diag reports it; for a listening socket ``wqueue`` is the backlog."""

    family: int
    state: str
    local_port: int
    rqueue: int
    wqueue: int
    uid: int
    inode: int


def diag_request(family: int, states_mask: int, seq: int = 1) -> bytes:
    """A SOCK_DIAG_BY_FAMILY dump request for TCP sockets of one family in the given states."""
    # inet_diag_req_v2: family, protocol, ext, pad (u8 each), states (u32), then a zeroed inet_diag_sockid.
    body = struct.pack("=BBBBI", family, 6, 0, 0, states_mask) + b"\0" * 48
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def parse_diag_messages(data: bytes) -> tuple[list[DiagEntry], bool]:
    """Parse one netlink read of sock_diag answers.

    Returns:
        (entries, done): ``done`` is True once NLMSG_DONE arrived.

    Raises:
        OSError: when the kernel answered with an error message (e.g. sock_diag not built in).
    """
    entries: list[DiagEntry] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return entries, True  # a torn message: stop rather than read garbage
        body = data[offset + _NLMSGHDR.size : offset + length]
        if msg_type == NLMSG_DONE:
            return entries, True
        if msg_type == NLMSG_ERROR:
            errno = -struct.unpack_from("=i", body, 0)[0] if len(body) >= 4 else 0
            raise OSError(errno, "sock_diag request refused")
        if msg_type == SOCK_DIAG_BY_FAMILY and len(body) >= DIAG_MSG_MIN_LEN:
            family, state, _timer, _retrans = _DIAG_HEAD.unpack_from(body, 0)
            sport, _dport = _DIAG_PORTS.unpack_from(body, 4)
            _expires, rqueue, wqueue, uid, inode = _DIAG_TAIL.unpack_from(body, _DIAG_TAIL_OFFSET)
            entries.append(DiagEntry(family, TCP_STATES.get(state, str(state)), sport, rqueue, wqueue, uid, inode))
        offset += (length + 3) & ~3
    return entries, False
