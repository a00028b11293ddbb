"""Finding the server's /metrics without being told: candidate URLs on the target's loopback ports.

Discovery looks at the TCP ports the target tree listens on (v4 and v6) and asks each profile's metrics paths
on loopback only: a listener bound to another address is reported, never probed, so optitop never reaches
past the host it runs on. A probe that reaches something broken (HTTP 5xx, a timeout) is told apart from a
port without a metrics page, so the collector can say the source is failing rather than absent. The rounds
themselves (when to run one, what to keep) are the collector's. What the user types for ``--metrics-url``
(``8000``, ``host:8000``) becomes a full URL here too, the same shape as a discovered candidate.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import psutil

from optitop.collectors.endpoint import Scrape, scrape


@dataclass(slots=True)
class Discovery:
    """A discovery round in flight: the probes and what was learnt before probing."""

    probes: dict[int, Future[Scrape]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    denied: int = 0


def normalise_url(raw: str) -> str:
    """``8000``, ``:8000``, ``host:8000`` or a full URL → a full URL; a bare host:port gets ``/metrics``."""
    text = raw.strip()
    if text.isdigit():
        text = f"127.0.0.1:{text}"
    elif text.startswith(":") and text[1:].isdigit():
        text = f"127.0.0.1{text}"
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/metrics")
    return urllib.parse.urlunsplit(parts)


def loopback_hosts(ip: str) -> list[str] | None:
    """Loopback hosts to reach a listener bound to ``ip``, or None when it is bound to another address only."""
    try:
        addr = ipaddress.ip_address(ip.split("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified:
        return ["127.0.0.1", "[::1]"] if addr.version == 6 else ["127.0.0.1"]
    if addr.is_loopback:
        return ["127.0.0.1"] if addr.version == 4 else ["[::1]"]
    return None


def tcp_sockets(proc: psutil.Process) -> list[Any]:
    """The process's TCP sockets, v4 and v6 (``net_connections`` since psutil 6, ``connections`` before)."""
    method = getattr(proc, "net_connections", None) or getattr(proc, "connections")  # noqa: B009
    return list(method(kind="tcp"))


def server_fault(reason: str) -> bool:
    """A fetch that reached something broken (HTTP 5xx, a timeout), not a port without a metrics page."""
    return reason.startswith("HTTP 5") or "timed out" in reason


def probe(hosts: list[str], port: int, paths: tuple[str, ...], timeout_s: float, max_bytes: int) -> Scrape:
    """Try each loopback host and path of one port; the first that answers exposition text wins."""
    last: Scrape | None = None
    for path in paths:
        for host in hosts:
            got = scrape(f"http://{host}:{port}{path}", timeout_s, max_bytes)
            if got.expo is not None:
                return got
            last = got
            if got.reason != "connection refused":
                break  # the host answered (or hung): the other family would not differ
    assert last is not None
    return last
