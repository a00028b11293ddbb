"""The target tree's kernel TCP queues at one tick: what the sockets collector produces."""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model.core import Sample


@dataclass(frozen=True, slots=True)
class ListenQueue:
    """One listening socket of the target tree.

    Attributes:
        port: the listening port.
        addr: the bound address (``0.0.0.0``/``::`` for all).
        accept_queue: connections waiting to be accepted (the listener's Recv-Q).
        backlog: the accept queue's capacity (or an upper bound, see ``backlog_source``).
        backlog_source: ``netlink sock_diag`` (exact) or ``somaxconn (upper bound: why)``.
    """

    port: int
    addr: str
    accept_queue: int
    backlog: int
    backlog_source: str


@dataclass(frozen=True, slots=True)
class PeerConn:
    """The target's connections to one remote endpoint, summed."""

    remote_addr: str
    remote_port: int
    conns: int
    recv_q_bytes: int
    send_q_bytes: int


@dataclass(frozen=True, slots=True)
class SocketSample(Sample):
    """The target tree's TCP queues at one tick; rates are None on the first tick.

    Attributes:
        listeners: the listening sockets, by port.
        inbound_conns: established connections on the listening ports (requests in flight for most HTTP
            servers); connections still in an accept queue are counted there instead.
        inbound_recv_q_bytes: bytes those connections received that the server has not read.
        inbound_send_q_bytes: bytes the server wrote that the clients have not acknowledged.
        upstreams: connections the target opened, grouped by remote endpoint, busiest first (top 16).
        upstream_conns: all upstream connections.
        upstream_recv_q_bytes: unread bytes on them (the target is slow to read replies).
        upstream_send_q_bytes: unsent/unacknowledged bytes on them (the peer or the network is slow).
        retrans_segs_per_s: TCP segments retransmitted per second in the target's network namespace.
        retrans_pct: retransmitted / sent segments over the interval, in percent (None when none were sent).
        listen_overflows_per_s: connections dropped because an accept queue was full (TcpExt ListenOverflows).
        denied: what could not be read (e.g. another user's fds), so a short list is not mistaken for none.
    """

    listeners: tuple[ListenQueue, ...]
    inbound_conns: int
    inbound_recv_q_bytes: int
    inbound_send_q_bytes: int
    upstreams: tuple[PeerConn, ...]
    upstream_conns: int
    upstream_recv_q_bytes: int
    upstream_send_q_bytes: int
    retrans_segs_per_s: float | None
    retrans_pct: float | None
    listen_overflows_per_s: float | None
    denied: tuple[str, ...] = ()
