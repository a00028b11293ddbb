"""Fetching ``/metrics`` safely: one GET whose cost is bounded whatever the server does.

Servers no one here wrote answer ``/metrics`` in every state: slowly, endlessly, or by redirecting somewhere
else. So a fetch has a short timeout, a total deadline and caps on bytes and lines, never follows a redirect
or a proxy, and reports trouble as a reason in its result instead of raising: one bad endpoint is one line of
status, not an exception in the collector. What the body means is promtext's business.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Protocol

#: Seconds to wait for a connection or for the next bytes of a response.
FETCH_TIMEOUT_S = 1.0
#: Bytes read at most from one response; the rest is never read (an endless body cannot pin a thread).
#: The largest real pages seen are ~1 MB (Ray Serve's ~700 KB); an endless stream read to the old 8 MiB cap
#: peaked at 278 MiB RSS and never answered (330 000 lines at the parser's ~40 µs each).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Lines read at most from one response: parsing costs time and memory per line, not per byte (100 000
#: series held 193 MiB). A vLLM page has ~1 500 lines; Ray Serve's ~700 KB page ~6 000.
MAX_LINES = 20_000
#: Read size; read1() returns what has arrived, so a trickling server cannot stall a read past the deadline.
_CHUNK = 64 * 1024
#: Ask for classic text: servers that can also speak OpenMetrics or protobuf then answer what we parse.
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are reported, not followed: a probe of a loopback port must not end up on another host."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """Refuse (urllib then raises HTTPError with the 3xx status)."""
        return None


# No proxies (a loopback scrape must never go through $http_proxy) and no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one GET returned.

    Attributes:
        url: the URL asked for.
        body: the decoded body (possibly cut at the cap), or None when nothing usable came back.
        status: the HTTP status, or None when no response arrived.
        content_type: the response's Content-Type ("" when absent).
        reason: "" on success, else what went wrong in words ("timed out after 1 s", "HTTP 404" …).
        capped: True when the body was longer than a cap and reading stopped there.
        elapsed_s: seconds the fetch took.
        cut: when capped, which cap in words ("page cut at 4 MiB", "page cut at 20000 lines").
    """

    url: str
    body: str | None
    status: int | None
    content_type: str
    reason: str
    capped: bool
    elapsed_s: float
    cut: str = ""

    @property
    def ok(self) -> bool:
        """True when a body arrived with a 2xx status."""
        return self.body is not None and not self.reason


def fetch(
    url: str, timeout_s: float = FETCH_TIMEOUT_S, max_bytes: int = MAX_BODY_BYTES, max_lines: int = MAX_LINES
) -> FetchResult:
    """GET ``url`` with a per-read timeout, a total deadline of twice that, and caps on bytes and lines.

    The body is streamed and reading stops at either cap: what one scrape costs is bounded whatever the
    server sends, and the result says where the page was cut.

    Never raises for network trouble: the reason is in the result, so one bad endpoint is one line of
    status rather than an exception in the collector.
    """
    start = time.monotonic()
    deadline = start + 2 * timeout_s
    try:
        request = _request(url)
    except ValueError as exc:  # a malformed URL (bad port, bad IPv6 literal)
        return _failed(url, start, f"{type(exc).__name__}: {exc}")
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            status = int(resp.status)
            ctype = resp.headers.get("Content-Type", "") or ""
            data, cut, late = _read_capped(resp, max_bytes, max_lines, deadline)
    except urllib.error.HTTPError as exc:
        exc.close()  # the error body is not wanted; release the connection now
        return _failed(url, start, f"HTTP {exc.code}", status=exc.code)
    except TimeoutError:
        return _failed(url, start, f"timed out after {timeout_s:g} s")
    except urllib.error.URLError as exc:
        return _failed(url, start, _url_error_reason(exc, timeout_s))
    except (OSError, ValueError) as exc:  # reset mid-body, bad chunking, malformed URL
        return _failed(url, start, f"{type(exc).__name__}: {exc}".rstrip(": "))
    if late:
        return _failed(url, start, f"body still arriving after {2 * timeout_s:g} s: timed out", status=status)
    body = data.decode("utf-8", errors="replace")
    if cut:
        body = body[: body.rfind("\n") + 1]  # the last line is cut mid-way: drop it
    return FetchResult(url, body, status, ctype, "", bool(cut), time.monotonic() - start, cut)


def _request(url: str) -> urllib.request.Request:
    """The GET for ``url``; its ``user:password@`` is sent as Basic authentication.

    urllib reads a URL's userinfo as part of the host name (the fetch then fails on a name lookup that
    carries the password); redirects are never followed, so the header goes to this host only.
    """
    headers = {"Accept": ACCEPT, "User-Agent": "optitop"}
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        url = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return urllib.request.Request(url, headers=headers)


class _Body(Protocol):
    def read1(self, n: int = -1, /) -> bytes: ...


def _read_capped(resp: _Body, max_bytes: int, max_lines: int, deadline: float) -> tuple[bytes, str, bool]:
    """Read until EOF, a cap or the deadline; returns (data, the cap hit in words or "", late).

    At the line cap the data ends with the last line kept (its newline included).
    """
    data = bytearray()
    lines = 0
    while True:
        if time.monotonic() > deadline:
            return bytes(data), "", True
        chunk = resp.read1(_CHUNK)
        if not chunk:
            return bytes(data), "", False
        newlines = chunk.count(b"\n")
        if lines + newlines > max_lines:
            end = -1
            for _ in range(max_lines - lines):
                end = chunk.index(b"\n", end + 1)
            data += chunk[: end + 1]
            if len(data) <= max_bytes:
                return bytes(data), f"page cut at {max_lines} lines", False
        else:
            data += chunk
            lines += newlines
        if len(data) > max_bytes:
            return bytes(data[:max_bytes]), f"page cut at {_size(max_bytes)}", False


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB"


def _url_error_reason(exc: urllib.error.URLError, timeout_s: float) -> str:
    inner = exc.reason
    if isinstance(inner, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    return str(inner)


def _failed(url: str, start: float, reason: str, status: int | None = None) -> FetchResult:
    return FetchResult(url, None, status, "", reason, False, time.monotonic() - start)
