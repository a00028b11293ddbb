"""The sockets collector: the queues the kernel already keeps for the target's TCP sockets.

Every server has these, with or without a metrics endpoint. The target tree's socket inodes come from the
``socket:[inode]`` links under /proc/PID/fd; they are matched against /proc/PID/net/tcp{,6} (the tables of
the *target's* network namespace, so a containerised server is seen as it sees itself). From them:

* each listening socket's accept queue (its Recv-Q: connections the kernel completed that the server has
  not accepted yet) against its backlog;
* the established connections on the server's listening ports (for most HTTP servers, requests in
  flight) with their unread (Recv-Q) and unsent/unacknowledged (Send-Q) bytes;
* the connections the target opened to other endpoints (its upstreams), grouped by remote endpoint;
* system TCP retransmits and listen-queue overflows (per network namespace) from /proc/PID/net/snmp and
  /proc/PID/net/netstat.

The backlog is not in /proc/net/tcp (its tx_queue column is 0 for a listener). It comes from a netlink
sock_diag dump — what ``ss -lt`` shows as Send-Q — which is one cheap syscall pair. That dump sees only
optitop's own network namespace, so for a target in another namespace (or where netlink is refused) the
backlog falls back to net.core.somaxconn, the cap the kernel applies to every ``listen()``: an upper
bound, which ``ListenQueue.backlog_source`` says.

Printing /proc/net/tcp makes the kernel walk its whole established-hash table (262,144 buckets on a 24 GB
VM: ~11 ms for tcp and ~6 ms for tcp6 even with a handful of sockets), so a table is skipped when the
tree holds no socket or /proc/PID/net/sockstat{,6} says the family has none in use, and the collector
stretches its own interval to keep its cost under 5 % of a core. Unix-domain sockets (e.g. ZMQ IPC between an API
server and its engine) are not TCP and are not covered here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from optitop.collectors.netparse import (
    NETLINK_SOCK_DIAG,
    TcpEntry,
    diag_request,
    parse_counter_table,
    parse_diag_messages,
    parse_socket_link,
    parse_tcp_table,
    tcp_in_use,
)
from optitop.collectors.procfs import read_proc_text
from optitop.collectors.tree import TargetTree
from optitop.config import CollectorContext
from optitop.model import ListenQueue, PeerConn, SocketSample, SourceUnavailable, TargetGone

#: How many upstream endpoints the sample lists (the busiest first); the totals cover all of them.
TOP_UPSTREAMS = 16
#: Connection states counted as an upstream: open, or still trying to open (a hanging connect matters).
UPSTREAM_STATES = frozenset({"ESTABLISHED", "SYN_SENT"})
#: The collector slows itself so that reading costs at most 1/COST_FACTOR of one core (5 %): /proc/net/tcp
#: is host-wide text; a server holding 2,000 sockets costs ~0.1 s per reading on a small VM.
COST_FACTOR = 20.0
#: The collector reads at most this often, whatever ``--interval`` says: each reading makes the kernel walk its
#: whole TCP hash table, while the queues it shows are judged over windows of ten seconds and more. Measured on
#: this 2-core VM with 40 sockets: one read() of /proc/net/tcp costs ~1.1 ms of system time, and reading to EOF
#: takes a second read() that walks the table again (2.2 ms per table), so the collector cost 0.18-0.20 % of a
#: core at a 2 s floor, more than any other collector. A netlink sock_diag dump of the same states is no cheaper:
#: 2.8-2.9 ms per family here against 1.9 ms for both reads of /proc/net/tcp (tried and dropped, 2026-11-23); only
#: the LISTEN dump that ``listen_backlogs`` does is cheap (0.06 ms: the listening hash, not the established one).
MIN_INTERVAL_S = 3.0
#: The most of a /proc/net/tcp table read (150 bytes a socket: a million sockets).
TCP_TABLE_MAX_BYTES = 150 << 20
#: sock_diag state mask for LISTEN (1 << TCP_LISTEN).
_LISTEN_MASK = 1 << 10
#: net.core.somaxconn's default since Linux 5.4, used only when /proc/sys cannot be read.
DEFAULT_SOMAXCONN = 4096
BACKLOG_NETLINK = "netlink sock_diag"
BACKLOG_SOMAXCONN = "somaxconn (upper bound: {why})"


@dataclass(frozen=True, slots=True)
class _NetCounters:
    """The cumulative counters rates are computed from; None where the kernel does not export one."""

    retrans_segs: int | None
    out_segs: int | None
    listen_overflows: int | None


def _read_text(path: str) -> str | None:
    """A whole /proc file (a TCP table can hold megabytes), or None when it is missing or unreadable."""
    return read_proc_text(path, limit_bytes=TCP_TABLE_MAX_BYTES)


def socket_inodes(pids: Iterable[int]) -> tuple[set[int], list[str]]:
    """The socket inodes held open by ``pids``, and the pids whose fds could not be read."""
    inodes: set[int] = set()
    denied: list[str] = []
    for pid in pids:
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except PermissionError:
            denied.append(f"pid {pid} fds (needs the same user or root)")
            continue
        except OSError:  # the process exited between the tree scan and now
            continue
        for name in names:
            try:
                inode = parse_socket_link(os.readlink(f"{fd_dir}/{name}"))
            except OSError:  # the fd was closed meanwhile
                continue
            if inode is not None:
                inodes.add(inode)
    return inodes, denied


def listen_backlogs() -> dict[int, int]:
    """Backlog per listening-socket inode from a sock_diag dump of optitop's own network namespace.

    Raises:
        OSError: when netlink sock_diag is unavailable or refused.
    """
    out: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(1.0)
        for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), start=1):
            sock.send(diag_request(family, _LISTEN_MASK, seq))
            done = False
            while not done:
                entries, done = parse_diag_messages(sock.recv(1 << 16))
                for entry in entries:
                    out[entry.inode] = entry.wqueue
    return out


def _same_netns(pid: int) -> bool:
    """Whether the target shares optitop's network namespace (False when that cannot be told)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


def _somaxconn() -> int | None:
    text = _read_text("/proc/sys/net/core/somaxconn")
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def group_upstreams(conns: Iterable[TcpEntry]) -> list[PeerConn]:
    """Group connections by remote endpoint, busiest (most queued bytes, then most connections) first."""
    groups: dict[tuple[str, int], list[int]] = {}
    for conn in conns:
        acc = groups.setdefault((conn.remote_addr, conn.remote_port), [0, 0, 0])
        acc[0] += 1
        acc[1] += conn.rx_queue
        acc[2] += conn.tx_queue
    peers = [PeerConn(addr, port, n, rq, sq) for (addr, port), (n, rq, sq) in groups.items()]
    peers.sort(key=lambda p: (p.recv_q_bytes + p.send_q_bytes, p.conns, p.remote_port), reverse=True)
    return peers


def _rate(now: int | None, before: int | None, dt: float | None) -> float | None:
    if now is None or before is None or dt is None or dt <= 0:
        return None
    return max(0, now - before) / dt


class SocketsCollector:
    """Reads the target tree's TCP queues from /proc (and the backlog from netlink) every tick."""

    name = "sockets"

    def __init__(self, ctx: CollectorContext) -> None:
        """Attach to ``ctx.pid``; SourceUnavailable when it does not exist or its TCP table is unreadable."""
        self._base_interval_s = max(ctx.options.interval_s, MIN_INTERVAL_S)
        self.interval_s = self._base_interval_s
        self.pid = ctx.pid
        self._tree = TargetTree(ctx.pid)
        if _read_text(f"/proc/{ctx.pid}/net/tcp") is None:
            fix = (
                "refused even to root: a security module (AppArmor, SELinux) or another user namespace"
                if os.geteuid() == 0
                else "run optitop as the target's user or as root"
            )
            raise SourceUnavailable(f"cannot read /proc/{ctx.pid}/net/tcp: {fix}")
        self._prev_mono: float | None = None
        self._prev_counters: _NetCounters | None = None
        self._backlog_note = ""

    def close(self) -> None:
        """Nothing to release (the netlink socket lives only for one dump)."""

    def describe(self) -> str:
        """What ``optitop doctor`` prints when the source works."""
        how = BACKLOG_NETLINK if not self._backlog_note else f"somaxconn upper bound ({self._backlog_note})"
        return f"/proc/{self.pid}/net/tcp{{,6}} matched to the tree's socket fds; backlog via {how}"

    def _tree_pids(self) -> list[int]:
        return self._tree.pids()

    def _tcp_entries(self, inodes: set[int]) -> list[TcpEntry]:
        entries: list[TcpEntry] = []
        if not inodes:
            return entries
        for table, stat_file, key in (("tcp", "sockstat", "TCP"), ("tcp6", "sockstat6", "TCP6")):
            if tcp_in_use(_read_text(f"/proc/{self.pid}/net/{stat_file}"), key) == 0:
                continue  # the kernel would walk its whole hash table to print no row of ours
            text = _read_text(f"/proc/{self.pid}/net/{table}")
            if text is None:
                if table == "tcp" and not os.path.exists(f"/proc/{self.pid}"):
                    raise TargetGone(f"pid {self.pid} exited")
                continue  # tcp6 is absent on kernels without IPv6
            entries.extend(parse_tcp_table(text, inodes))
        return entries

    def _counters(self) -> _NetCounters:
        snmp = parse_counter_table(_read_text(f"/proc/{self.pid}/net/snmp") or "").get("Tcp", {})
        ext = parse_counter_table(_read_text(f"/proc/{self.pid}/net/netstat") or "").get("TcpExt", {})
        return _NetCounters(snmp.get("RetransSegs"), snmp.get("OutSegs"), ext.get("ListenOverflows"))

    def _backlogs(self, listeners: list[TcpEntry]) -> tuple[dict[int, int], str]:
        """Backlog per listener inode and where it came from."""
        if not listeners:
            return {}, BACKLOG_NETLINK
        if _same_netns(self.pid):
            try:
                got = listen_backlogs()
                if all(entry.inode in got for entry in listeners):
                    self._backlog_note = ""
                    return got, BACKLOG_NETLINK
                self._backlog_note = "sock_diag did not list every listener"
            except OSError as exc:
                self._backlog_note = f"netlink sock_diag failed: {exc.strerror or exc}"
        else:
            self._backlog_note = "target in another network namespace"
        cap = _somaxconn()
        if cap is None:  # /proc/sys hidden (some sandboxes): the kernel default since Linux 5.4
            cap, self._backlog_note = DEFAULT_SOMAXCONN, self._backlog_note + "; somaxconn unreadable, assumed 4096"
        return {e.inode: cap for e in listeners}, BACKLOG_SOMAXCONN.format(why=self._backlog_note)

    def sample(self) -> SocketSample:
        """Read the tree's sockets once."""
        ts = time.time()
        mono = time.monotonic()
        dt = None if self._prev_mono is None else mono - self._prev_mono
        inodes, denied = socket_inodes(self._tree_pids())
        ours = [e for e in self._tcp_entries(inodes) if e.inode]
        listening = [e for e in ours if e.state == "LISTEN"]
        ports = {e.local_port for e in listening}
        inbound = [e for e in ours if e.state == "ESTABLISHED" and e.local_port in ports]
        upstream = [e for e in ours if e.state in UPSTREAM_STATES and e.local_port not in ports]
        backlogs, source = self._backlogs(listening)
        listeners = sorted(
            (ListenQueue(e.local_port, e.local_addr, e.rx_queue, backlogs[e.inode], source) for e in listening),
            key=lambda q: (q.port, q.addr),
        )
        counters = self._counters()
        before = self._prev_counters
        retrans_per_s = _rate(counters.retrans_segs, before.retrans_segs if before else None, dt)
        out_per_s = _rate(counters.out_segs, before.out_segs if before else None, dt)
        retrans_pct = None
        if retrans_per_s is not None and out_per_s:
            retrans_pct = 100.0 * retrans_per_s / out_per_s
        self._prev_mono = mono
        self._prev_counters = counters
        self.interval_s = max(self._base_interval_s, COST_FACTOR * (time.monotonic() - mono))
        return SocketSample(
            ts_s=ts,
            mono_s=mono,
            dt_s=dt,
            listeners=tuple(listeners),
            inbound_conns=len(inbound),
            inbound_recv_q_bytes=sum(e.rx_queue for e in inbound),
            inbound_send_q_bytes=sum(e.tx_queue for e in inbound),
            upstreams=tuple(group_upstreams(upstream)[:TOP_UPSTREAMS]),
            upstream_conns=len(upstream),
            upstream_recv_q_bytes=sum(e.rx_queue for e in upstream),
            upstream_send_q_bytes=sum(e.tx_queue for e in upstream),
            retrans_segs_per_s=retrans_per_s,
            retrans_pct=retrans_pct,
            listen_overflows_per_s=_rate(counters.listen_overflows, before.listen_overflows if before else None, dt),
            denied=tuple(denied),
        )
