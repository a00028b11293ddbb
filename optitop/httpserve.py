"""The exporter's HTTP server: one page, served to a network that may be slow, crowded or hostile.

prometheus_client's server spawns a thread per connection with no idle timeout and a listen backlog of 5:
200 concurrent scrapes timed out a third of them, and held-open connections grew 401 threads in a minute.
Here the threads are fixed whatever the clients do:

- one I/O thread owns every socket, non-blocking, through a selector: it accepts (backlog ``BACKLOG``), reads
  requests, runs TLS handshakes and writes responses. A client that trickles its request (slowloris), never
  sends one, or never reads its answer costs a buffer, never a thread, and is dropped at its deadline
  (``REQUEST_TIMEOUT_S`` from connect to the end of its headers, ``SEND_TIMEOUT_S`` to read the answer).
  Beyond ``MAX_CONNECTIONS`` open connections a new one gets a 503 at once and is closed.
- ``WORKERS`` threads turn a complete request into response bytes (the page, or an error). They never touch
  a socket, so no slow reader can hold one. Requests the ``slow`` predicate picks (credentials not checked
  yet: bcrypt costs ~80 ms by design) go to one thread of their own with at most ``SLOW_QUEUE`` waiting, so
  a flood of wrong passwords takes one core and answers 503 past that, while scrapes whose credentials
  passed before go on at full speed.
- the page is rendered at most once per ``max_age_s`` (the collection interval: the store changes no
  faster) and served from a cache: 200 scrapes in the same second render once.

Every response closes its connection (``Connection: close``): there is no keep-alive connection to hold
open, and Prometheus reconnects each scrape at no measurable cost at scrape intervals of seconds.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: Pending connections the kernel queues before accept() (prometheus_client's server: 5).
BACKLOG = 1024
#: Open connections at most; past it a new one is answered 503 and closed.
MAX_CONNECTIONS = 256
#: Threads that build responses (auth check and page); fixed, whatever the number of clients.
WORKERS = 4
#: Requests waiting for the slow thread at most; past it they are answered 503 at once.
SLOW_QUEUE = 32
#: Seconds from connect (and TLS handshake) to the end of the request headers.
REQUEST_TIMEOUT_S = 5.0
#: Seconds a client has to read the whole response.
SEND_TIMEOUT_S = 10.0
#: Bytes of request line and headers at most (Go's net/http allows 1 MiB; a scraper sends ~300).
MAX_REQUEST_BYTES = 16 * 1024
#: Seconds a connection is kept after its answer, reading and discarding what the client still sends: closing
#: with unread bytes resets the connection, and the client may then lose the answer (a 431, a 503).
LINGER_S = 2.0
#: The loop wakes at least this often to drop connections past their deadline.
TICK_S = 0.5

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def response(status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8", extra: str = "") -> bytes:
    """The head of an HTTP/1.1 response that closes its connection (the body is sent after it)."""
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
    ).encode("latin-1")


_BUSY = response(503, b"busy: too many connections\n") + b"busy: too many connections\n"
_CHECKS_BUSY = response(503, b"busy: too many password checks\n") + b"busy: too many password checks\n"


@dataclass(frozen=True, slots=True)
class Request:
    """A request line and its headers (names lower-cased; the first of a repeated name wins)."""

    method: str
    target: str
    headers: dict[str, str]


#: Builds (head, body) for a request; runs on a worker thread.
Handler = Callable[[Request], tuple[bytes, bytes]]


class PageCache:
    """The page, rendered at most once per ``max_age_s``; concurrent callers share one render."""

    def __init__(self, render: Callable[[], bytes], max_age_s: float) -> None:
        """Cache ``render()``'s result for ``max_age_s`` seconds."""
        self.render = render
        self.max_age_s = max_age_s
        self.renders = 0
        self._page: bytes | None = None
        self._at = 0.0
        self._lock = threading.Lock()

    def get(self) -> bytes:
        """The page, rendered now when the cached one is older than ``max_age_s`` (raises like render)."""
        with self._lock:
            if self._page is None or time.monotonic() - self._at >= self.max_age_s:
                self._page = self.render()
                self._at = time.monotonic()
                self.renders += 1
            return self._page


@dataclass(eq=False)
class _Conn:
    """One client connection, owned by the I/O thread."""

    sock: socket.socket
    deadline: float
    handshaking: bool = False
    inbuf: bytearray = field(default_factory=bytearray)
    out: list[memoryview] = field(default_factory=list)
    working: bool = False
    lingering: bool = False
    closed: bool = False
    #: Over the limit: only answered 503 (and counted apart, so rejects never crowd out scrapes).
    rejected: bool = False


class MetricsServer:
    """Serves ``handler``'s responses on ``host:port`` from one I/O thread and a fixed worker pool.

    The same shape as the ``http.server`` objects it replaces: ``server_address``, ``shutdown()``,
    ``server_close()``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        ssl_context: ssl.SSLContext | None = None,
        slow: Callable[[Request], bool] | None = None,
    ) -> None:
        """Bind and listen now (so a busy port is an error at start); serve once ``start()`` is called.

        ``slow`` (called on the I/O thread: it must be quick) picks the requests that are expensive to
        answer; they are served one at a time on a thread of their own.
        """
        self.handler = handler
        self.slow = slow
        self.ssl_context = ssl_context
        self.max_connections = MAX_CONNECTIONS
        self.request_timeout_s = REQUEST_TIMEOUT_S
        self.send_timeout_s = SEND_TIMEOUT_S
        info = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = info[0]
        self.socket = socket.socket(family, kind, proto)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(addr)
            self.socket.listen(BACKLOG)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._done: queue.SimpleQueue[tuple[_Conn, bytes, bytes]] = queue.SimpleQueue()
        self._conns: set[_Conn] = set()
        self._rejected = 0
        self._accept_paused_until = 0.0
        self._jobs: queue.Queue[tuple[_Conn, Request] | None] = queue.Queue()
        self._slow_jobs: queue.Queue[tuple[_Conn, Request] | None] = queue.Queue(SLOW_QUEUE)
        self._workers = [
            threading.Thread(target=self._work, args=(self._jobs,), name=f"optitop-http-{i}", daemon=True)
            for i in range(WORKERS)
        ]
        if slow is not None:
            self._workers.append(
                threading.Thread(target=self._work, args=(self._slow_jobs,), name="optitop-http-slow", daemon=True)
            )
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="optitop-http", daemon=True)

    def start(self) -> threading.Thread:
        """Start the I/O thread; returns it."""
        self._sel.register(self.socket, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        for worker in self._workers:
            worker.start()
        self.thread.start()
        return self.thread

    def shutdown(self) -> None:
        """Stop serving: close every connection and wait for the I/O thread."""
        self._stop.set()
        self._wake()
        if self.thread.is_alive():
            self.thread.join(5)
        for _ in self._workers:
            self._jobs.put(None)
        if self.slow is not None:
            with contextlib.suppress(queue.Full):
                self._slow_jobs.put_nowait(None)

    def server_close(self) -> None:
        """Close the listening socket."""
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- the I/O thread -----------------------------------------------------------------------------------
    def _wake(self) -> None:
        # A full pipe means the loop wakes anyway; a closed one that it is shutting down.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for key, mask in self._sel.select(self._timeout_s()):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._service(key.data, mask)
                self._expire()
                if self._accept_paused_until and time.monotonic() >= self._accept_paused_until:
                    self._accept_paused_until = 0.0
                    self._sel.register(self.socket, selectors.EVENT_READ, "accept")
        finally:
            for conn in list(self._conns):
                self._close(conn)
            self._sel.close()

    def _timeout_s(self) -> float:
        if not self._conns:
            return TICK_S if self._accept_paused_until else TICK_S * 4
        soonest = min(c.deadline for c in self._conns)
        return max(0.0, min(TICK_S, soonest - time.monotonic()))

    def _accept(self) -> None:
        while True:
            try:
                sock, _addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # EMFILE, ENOBUFS …: the pending connection stays queued and the socket stays readable, so
                # watching it now would spin; look again after a tick.
                self._sel.unregister(self.socket)
                self._accept_paused_until = time.monotonic() + TICK_S
                return
            sock.setblocking(False)
            if len(self._conns) - self._rejected >= self.max_connections:
                self._reject(sock)
                continue
            conn = _Conn(sock, time.monotonic() + self.request_timeout_s)
            if self.ssl_context is not None:
                try:
                    conn.sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    continue
                conn.handshaking = True
            self._conns.add(conn)
            self._sel.register(conn.sock, selectors.EVENT_READ, conn)

    def _reject(self, sock: socket.socket) -> None:
        """503 at once; kept LINGER_S at most (so the client reads it rather than a reset), up to as many
        rejects as served connections; past that, or over TLS (no handshake for a reject), just closed."""
        if self.ssl_context is not None or self._rejected >= self.max_connections:
            sock.close()
            return
        conn = _Conn(sock, time.monotonic() + LINGER_S, out=[memoryview(_BUSY)], rejected=True)
        self._conns.add(conn)
        self._rejected += 1
        self._sel.register(sock, selectors.EVENT_WRITE, conn)
        self._service(conn, selectors.EVENT_WRITE)

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return
        while True:
            try:
                conn, head, body = self._done.get_nowait()
            except queue.Empty:
                return
            if conn.closed:
                continue
            conn.working = False
            conn.out = [memoryview(head), memoryview(body)]
            conn.deadline = time.monotonic() + self.send_timeout_s
            self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)
            self._service(conn, selectors.EVENT_WRITE)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self._conns if c.deadline <= now]:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.discard(conn)
        self._rejected -= conn.rejected
        if not conn.working:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    def _service(self, conn: _Conn, mask: int) -> None:
        try:
            if conn.handshaking:
                if self._handshake(conn):
                    self._read(conn)  # the request may have come with the handshake's last flight
                return
            if conn.lingering:
                self._discard(conn)
            elif conn.out:
                self._write(conn)
            elif mask & selectors.EVENT_READ:
                self._read(conn)
        except (OSError, ValueError):
            self._close(conn)  # reset, broken pipe, TLS alert, a socket closed under us

    def _want(self, conn: _Conn, events: int) -> None:
        self._sel.modify(conn.sock, events, conn)

    def _handshake(self, conn: _Conn) -> bool:
        assert isinstance(conn.sock, ssl.SSLSocket)
        try:
            conn.sock.do_handshake()
        except ssl.SSLWantReadError:
            self._want(conn, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            self._want(conn, selectors.EVENT_WRITE)
            return False
        conn.handshaking = False
        self._want(conn, selectors.EVENT_READ)
        return True

    def _read(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(4096)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            if not data:
                self._close(conn)  # the client left before finishing its request
                return
            start = max(0, len(conn.inbuf) - 3)
            conn.inbuf += data
            end = conn.inbuf.find(b"\r\n\r\n", start)
            if end < 0:
                end = conn.inbuf.find(b"\n\n", start)
            if 0 <= end < MAX_REQUEST_BYTES:
                self._dispatch(conn, bytes(conn.inbuf[:end]))
                return
            if len(conn.inbuf) >= MAX_REQUEST_BYTES:
                body = f"request line and headers over {MAX_REQUEST_BYTES} bytes\n".encode()
                self._reply_now(conn, response(431, body), body)
                return

    def _dispatch(self, conn: _Conn, head: bytes) -> None:
        request = parse_request(head)
        if request is None:
            self._reply_now(conn, response(400, b"bad request\n"), b"bad request\n")
            return
        conn.inbuf = bytearray()
        conn.working = True
        conn.deadline = time.monotonic() + self.send_timeout_s
        self._sel.unregister(conn.sock)  # nothing to do for this socket until the answer is ready
        if self.slow is not None and self.slow(request):
            try:
                self._slow_jobs.put_nowait((conn, request))
            except queue.Full:
                self._done.put((conn, _CHECKS_BUSY, b""))  # answered by the loop's next turn
                self._wake()
            return
        self._jobs.put((conn, request))

    def _reply_now(self, conn: _Conn, head: bytes, body: bytes) -> None:
        conn.inbuf = bytearray()
        conn.out = [memoryview(head), memoryview(body)]
        conn.deadline = time.monotonic() + self.send_timeout_s
        self._want(conn, selectors.EVENT_WRITE)
        self._write(conn)

    def _write(self, conn: _Conn) -> None:
        while conn.out:
            chunk = conn.out[0]
            try:
                sent = conn.sock.send(chunk)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                self._want(conn, selectors.EVENT_WRITE)
                return
            except ssl.SSLWantReadError:
                self._want(conn, selectors.EVENT_READ)
                return
            if sent >= len(chunk):
                conn.out.pop(0)
            else:
                conn.out[0] = chunk[sent:]
        self._linger(conn)

    def _linger(self, conn: _Conn) -> None:
        """The answer is out: half-close, and read what the client still sends until it closes too."""
        conn.sock.shutdown(socket.SHUT_WR)
        conn.lingering = True
        conn.deadline = min(conn.deadline, time.monotonic() + LINGER_S)
        self._want(conn, selectors.EVENT_READ)
        self._discard(conn)

    def _discard(self, conn: _Conn) -> None:
        for _ in range(16):  # a bounded share of the loop: a client streaming junk ends at the deadline
            try:
                if not conn.sock.recv(65536):
                    break
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
        else:
            return
        self._close(conn)

    # -- the workers --------------------------------------------------------------------------------------
    def _work(self, jobs: queue.Queue[tuple[_Conn, Request] | None]) -> None:
        while (job := jobs.get()) is not None:
            conn, request = job
            if conn.closed:
                continue  # dropped at its deadline while queued
            try:
                head, body = self.handler(request)
            except Exception as exc:  # noqa: BLE001 - a render bug answers 500; the server goes on
                body = f"{type(exc).__name__}: {exc}\n".encode(errors="replace")[:1000]
                head = response(500, body)
            self._done.put((conn, head, body))
            self._wake()


def parse_request(head: bytes) -> Request | None:
    """The request line and headers of ``head`` (without the blank line), or None when malformed."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.replace("\r\n", "\n").split("\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            return None
        headers.setdefault(name.strip().lower(), value.strip())
    return Request(parts[0], parts[1], headers)
