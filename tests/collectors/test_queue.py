"""The queue collector against real HTTP servers and real target processes.

Servers run in the test (a ThreadingHTTPServer on 127.0.0.1:0) or in a child process the test starts; nothing
is mocked. Misbehaving endpoints (slow, endless, huge, HTML, garbage, 404) are real servers misbehaving.
"""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import wait_for

from optitop.collectors.discovery import normalise_url
from optitop.collectors.promfetch import fetch
from optitop.collectors.queue import QueueCollector
from optitop.config import CollectorContext, Options
from optitop.model import ServingSample, SourceUnavailable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "metrics"
VLLM_V0 = (FIXTURES / "vllm-v0-aibrix-runtime-doc.prom").read_text()


# -- a real HTTP server with scriptable routes -----------------------------------------------------------
class Route:
    """What one path answers: a status, a content type and a body (or a behaviour)."""

    def __init__(
        self, body: str = "", status: int = 200, ctype: str = "text/plain; version=0.0.4", location: str = ""
    ) -> None:
        self.body, self.status, self.ctype, self.location = body, status, ctype, location
        self.behaviour = "plain"
        self.make: Callable[[], str] | None = None  # computes the body per request when set


class MetricsServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.release = threading.Event()  # ends every slow or endless answer at teardown
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.behaviour == "slow":
                    server.release.wait(30)
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.ctype)
                if route.location:
                    self.send_header("Location", route.location)
                if route.behaviour == "endless":
                    self.end_headers()
                    self._stream(route)
                    return
                data = (route.make() if route.make is not None else route.body).encode()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, route: Route) -> None:
                line = b'endless_metric{i="%d"} 1\n'
                i = 0
                try:
                    while not server.release.is_set():
                        self.wfile.write(line % i * 256)
                        i += 1
                        if route.body == "trickle":
                            server.release.wait(0.2)  # the server's pace, not the test's synchronisation
                except OSError:
                    return

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.httpd = Server((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.host = host
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str = "/metrics") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def serve(self, path: str, body: str = "", **kw: object) -> Route:
        route = Route(body, **kw)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def behave(self, path: str, behaviour: str, body: str = "") -> None:
        self.serve(path, body).behaviour = behaviour

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http() -> Iterator[Callable[..., MetricsServer]]:
    servers: list[MetricsServer] = []

    def start(host: str = "127.0.0.1") -> MetricsServer:
        srv = MetricsServer(host)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.close()


def collector(pid: int | None = None, urls: tuple[str, ...] = (), scrape: bool = True, **opts: float) -> QueueCollector:
    options = Options(metrics_urls=urls, scrape=scrape, **opts)  # type: ignore[arg-type]
    return QueueCollector(CollectorContext(pid=pid or os.getpid(), options=options))


def sample_until(c: QueueCollector, pred: Callable[[ServingSample], object], timeout_s: float = 10.0) -> ServingSample:
    """Sample until ``pred`` holds (a scrape may land on a later tick on a loaded machine)."""
    got: list[ServingSample] = []

    def attempt() -> bool:
        s = c.sample()
        got.append(s)
        return bool(pred(s))

    try:
        wait_for(attempt, timeout_s=timeout_s, every_s=0.05)
    except AssertionError as exc:
        raise AssertionError(f"last sample: {got[-1] if got else None}") from exc
    return got[-1]


# -- rates and windowed quantiles against known values ---------------------------------------------------
def vllm_state(success: float, gen: float, preempt: float, fast: float, slow: float, waiting: float = 2) -> str:
    """A vLLM endpoint whose counters and TTFT histogram the test moves between scrapes."""
    total = fast + slow
    return f"""# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{model_name="m"}} {waiting}
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{model_name="m"}} 4
# TYPE vllm:request_success_total counter
vllm:request_success_total{{finished_reason="stop",model_name="m"}} {success}
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{{model_name="m"}} {gen}
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{{model_name="m"}} {preempt}
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="0.1",model_name="m"}} {fast}
vllm:time_to_first_token_seconds_bucket{{le="0.5",model_name="m"}} {fast}
vllm:time_to_first_token_seconds_bucket{{le="1.0",model_name="m"}} {total}
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {total}
vllm:time_to_first_token_seconds_count{{model_name="m"}} {total}
"""


def timed_sample(c: QueueCollector) -> tuple[ServingSample, float, float]:
    start = time.monotonic()
    s = c.sample()
    return s, start, time.monotonic()


def test_rates_and_windowed_quantiles_match_known_values(http):
    srv = http()
    srv.serve("/metrics", vllm_state(success=100, gen=1000, preempt=5, fast=100, slow=0))
    c = collector(urls=(srv.url(),), scrape=False)
    first, t0, t1 = timed_sample(c)
    assert first.profile == "vllm" and first.stats.requests_waiting == 2.0
    assert first.stats.request_rate_per_s is None  # one scrape: no rate yet
    srv.serve("/metrics", vllm_state(success=160, gen=1600, preempt=8, fast=100, slow=100, waiting=7))
    wait_for(lambda: time.monotonic() - t1 >= 0.5)
    second, t2, t3 = timed_sample(c)
    s = second.stats
    # The two responses arrived within [t0, t1] and [t2, t3]: the measured interval lies between.
    lo, hi = t2 - t1, t3 - t0
    assert 60 / hi <= s.request_rate_per_s <= 60 / lo
    assert 600 / hi <= s.generation_tokens_per_s <= 600 / lo
    assert 3 / hi <= s.preemptions_per_s <= 3 / lo
    # Since start the median TTFT is 0.1 s; over the window all 100 new requests took 0.5-1 s.
    assert s.ttft_p50_s == pytest.approx(0.75)
    assert s.ttft_p95_s == pytest.approx(0.975)
    assert s.requests_waiting == 7.0 and s.requests_running == 4.0
    assert second.source == f"vllm @ {srv.url()}"
    assert ("ttft_p50_s", "vllm:time_to_first_token_seconds histogram, Δ since last scrape") in s.provenance


def test_counter_reset_counts_the_new_life_not_a_negative_rate(http):
    srv = http()
    srv.serve("/metrics", vllm_state(success=1000, gen=50_000, preempt=9, fast=500, slow=500))
    c = collector(urls=(srv.url(),), scrape=False)
    _, t0, t1 = timed_sample(c)
    # The server restarted: every counter starts again from a small value.
    srv.serve("/metrics", vllm_state(success=10, gen=200, preempt=0, fast=0, slow=10))
    wait_for(lambda: time.monotonic() - t1 >= 0.5)
    second, t2, t3 = timed_sample(c)
    s = second.stats
    assert 10 / (t3 - t0) <= s.request_rate_per_s <= 10 / (t2 - t1)
    assert s.preemptions_per_s == 0.0
    assert s.ttft_p50_s == pytest.approx(0.75)  # the 10 requests since the restart, all in (0.5, 1]


def test_nan_inf_and_duplicates_are_handled_and_reported(http):
    srv = http()
    body = (
        'vllm:num_requests_waiting{model_name="m"} NaN\n'
        'vllm:kv_cache_usage_perc{model_name="m"} +Inf\n'
        'vllm:num_requests_running{model_name="m"} 3\n'
        'vllm:num_requests_running{model_name="m"} 5\n'
    )
    srv.serve("/metrics", body)
    c = collector(urls=(srv.url(),), scrape=False)
    s = sample_until(c, lambda s: s.profile)
    assert s.stats.requests_waiting is None and s.stats.kv_cache_usage_pct is None
    assert s.stats.requests_running == 3.0  # the duplicate was not added
    assert f"{srv.url()}: 2 NaN/Inf value(s) treated as unknown" in s.tried
    assert f"{srv.url()}: 1 duplicate series ignored" in s.tried


class CachedMetrics:
    """An exporter serving a cache it refreshes only every ``every`` requests (as Ray Serve's does every 10 s).

    The cache reflects a server completing ``rate`` requests per second of wall time, so the true rate is
    known whatever the scrape timing; between refreshes the same text is served again.
    """

    def __init__(self, rate: float, every: int) -> None:
        self.rate, self.every = rate, every
        self.start = time.monotonic()
        self.hits = 0
        self.body = ""
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            if self.hits % self.every == 0:
                done = self.rate * (time.monotonic() - self.start)
                self.body = vllm_state(success=done, gen=10 * done, preempt=0, fast=done, slow=0)
            self.hits += 1
            return self.body


def rates_over(c: QueueCollector, n: int, gap_s: float) -> list[ServingSample]:
    """``n`` samples about ``gap_s`` apart (the collector's own pace, as the session would tick it)."""
    out = [c.sample()]
    for _ in range(n - 1):
        last = time.monotonic()
        wait_for(lambda: time.monotonic() - last >= gap_s, timeout_s=5)  # noqa: B023 - evaluated at once
        out.append(c.sample())
    return out


def test_an_endpoint_that_refreshes_slowly_holds_its_rate_instead_of_reading_zero(http):
    srv = http()
    cache = CachedMetrics(rate=20.0, every=4)
    srv.serve("/metrics").make = cache
    c = collector(urls=(srv.url(),), scrape=False, interval_s=0.25)
    samples = rates_over(c, 16, 0.25)
    rates = [s.stats.request_rate_per_s for s in samples]
    # Before the second refresh there is no span to measure; from the first real rate on, every sample
    # carries the rate over the whole span between refreshes: ~20/s, never the 0/s of an unrefreshed cache.
    first = next(i for i, r in enumerate(rates) if r)
    assert first <= 9, rates
    steady = rates[first:]
    assert len(steady) >= 6
    assert all(r is not None and 10.0 <= r <= 40.0 for r in steady), rates
    assert any("rates held" in line for s in samples[first:] for line in s.tried)


def test_unchanged_counters_are_believed_after_the_hold_limit(http, monkeypatch):
    import optitop.collectors.queue as queue_mod

    monkeypatch.setattr(queue_mod, "HOLD_MAX_S", 0.6)
    srv = http()
    srv.serve("/metrics", vllm_state(success=100, gen=1000, preempt=0, fast=100, slow=0))
    c = collector(urls=(srv.url(),), scrape=False, interval_s=0.2)
    c.sample()
    srv.serve("/metrics", vllm_state(success=200, gen=2000, preempt=0, fast=200, slow=0))
    busy = sample_until(c, lambda s: s.stats.request_rate_per_s)
    assert busy.stats.request_rate_per_s > 0
    # The server went idle: its counters stop. Held for a while, then 0/s, not the last busy rate for ever.
    idle = sample_until(c, lambda s: s.stats.request_rate_per_s == 0.0, timeout_s=10)
    assert idle.stats.requests_waiting == 2.0


def test_a_live_endpoint_of_an_idle_server_reads_zero_at_once(http):
    srv = http()
    srv.serve("/metrics", vllm_state(success=100, gen=1000, preempt=0, fast=100, slow=0))
    c = collector(urls=(srv.url(),), scrape=False)
    first = c.sample()
    assert first.stats.request_rate_per_s is None
    second = sample_until(c, lambda s: s.stats.request_rate_per_s is not None)
    assert second.stats.request_rate_per_s == 0.0  # no rate yet to hold: unchanged counters are 0/s


def test_scrapes_are_spaced_by_the_minimum_and_by_their_cost_after_the_first_rates(http):
    import optitop.collectors.queue as queue_mod

    srv = http()
    srv.serve("/metrics", vllm_state(success=100, gen=1000, preempt=0, fast=100, slow=0))
    c = collector(urls=(srv.url(),), scrape=False, interval_s=0.25)
    sample_until(c, lambda s: s.stats.request_rate_per_s is not None)
    # The first scrapes come at --interval so rates exist soon; then at most every MIN_INTERVAL_S, give or
    # take JITTER, drawn anew for every gap (a fixed period aliases with a server's own rhythm).
    gaps = []
    for _ in range(5):
        steady = max(queue_mod.MIN_INTERVAL_S, queue_mod.COST_FACTOR * c._scrape_cpu_s)
        assert steady * (1 - queue_mod.JITTER) <= c.interval_s <= steady * (1 + queue_mod.JITTER)
        gaps.append(c.interval_s)
        c.sample()
    assert len(set(gaps)) > 1
    assert c._scrape_cpu_s > 0
    # A page that takes long to parse (~40 µs a line) is read less often: 20x its cost apart.
    lines = [f'big_series{{i="{i}",path="/a/b/c"}} {i}' for i in range(20000)]
    srv.serve("/big", "# TYPE big_series gauge\n" + "\n".join(lines) + "\n")
    big = collector(urls=(srv.url("/big"),), scrape=False, interval_s=0.25)
    sample_until(big, lambda s: big.interval_s >= queue_mod.COST_FACTOR * 0.2, timeout_s=30)
    assert big._scrape_cpu_s >= 0.2


# -- bad endpoints -----------------------------------------------------------------------------------------
def test_slow_endpoint_times_out_without_holding_back_another(http):
    srv = http()
    srv.serve("/metrics", VLLM_V0)
    srv.behave("/slow", "slow")
    c = collector(urls=(srv.url("/slow"), srv.url()), scrape=False)
    start = time.monotonic()
    first = c.sample()
    elapsed = time.monotonic() - start
    # The healthy endpoint answered on the first tick; the tick did not wait out the slow one's timeout.
    assert first.profile == "vllm" and first.source == f"vllm @ {srv.url()}"
    assert elapsed < c.timeout_s, elapsed
    # While the slow one is still out, a tick no longer waits for it at all.
    _, start, end = timed_sample(c)
    assert end - start < c.timeout_s / 2, end - start
    later = sample_until(c, lambda s: any("timed out" in t for t in s.tried))
    assert f"{srv.url('/slow')}: timed out after 1 s" in later.tried
    assert later.profile == "vllm" and later.stats.requests_running == 0.0


def test_fetch_stops_an_endless_body_at_the_cap(http):
    srv = http()
    srv.behave("/metrics", "endless")
    got = fetch(srv.url(), timeout_s=1.0, max_bytes=256 * 1024)
    assert got.ok and got.capped
    assert len(got.body or "") <= 256 * 1024
    assert (got.body or "").endswith("\n")  # the cut line was dropped, not parsed half


def test_fetch_gives_up_on_a_trickling_body_at_the_deadline(http):
    srv = http()
    srv.behave("/metrics", "endless", body="trickle")
    start = time.monotonic()
    got = fetch(srv.url(), timeout_s=0.5)
    assert not got.ok and "still arriving" in got.reason
    assert time.monotonic() - start < 3.0


def test_huge_body_is_capped_and_what_was_read_is_used(http):
    srv = http()
    lines = "".join(f'vllm:num_requests_running{{model_name="m{i}"}} 1\n' for i in range(40_000))
    srv.serve("/metrics", lines)
    c = collector(urls=(srv.url(),), scrape=False)
    c.max_bytes = 128 * 1024
    s = sample_until(c, lambda s: s.profile)
    assert s.source.endswith("[page cut at 128 KiB]")
    assert f"{srv.url()}: page cut at 128 KiB: the series past the cut are missing" in s.tried
    # Only the models within the first 128 KiB were read (each line ~45 bytes): far fewer than 40 000.
    assert s.stats.requests_running is not None and 1000 < s.stats.requests_running < 4000


def test_fetch_stops_at_the_line_cap(http):
    srv = http()
    srv.serve("/metrics", "".join(f'many_series{{i="{i}"}} 1\n' for i in range(30_000)))
    got = fetch(srv.url(), max_lines=20_000)
    assert got.ok and got.capped and got.cut == "page cut at 20000 lines"
    assert (got.body or "").count("\n") == 20_000 and (got.body or "").endswith('many_series{i="19999"} 1\n')
    whole = fetch(srv.url(), max_lines=30_000)  # exactly at the cap: read whole, not cut
    assert whole.ok and not whole.capped and whole.cut == ""


#: Runs the queue collector in its own process: samples until the source says the page was cut (or 30 s
#: pass) and prints the peak RSS over the RSS before the first scrape, in MiB.
COLLECT_AND_MEASURE = """
import os, sys, time
from optitop.collectors.queue import QueueCollector
from optitop.config import CollectorContext, Options
def peak_kib():  # VmHWM: ru_maxrss would start at the forking parent's peak (it survives exec)
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
options = Options(metrics_urls=(sys.argv[1],), scrape=False)
c = QueueCollector(CollectorContext(pid=os.getpid(), options=options))
base = peak_kib()
start = time.monotonic()
while time.monotonic() - start < 30:
    s = c.sample()
    if "page cut" in s.source:
        break
    time.sleep(0.1)
took = time.monotonic() - start
c.sample()  # one more scrape of the same page: the peak includes a filtered reparse
grown = (peak_kib() - base) / 1024
print(f"{grown:.0f} {took:.2f} {s.source}")
c.close()
"""


@pytest.mark.parametrize("page", ["endless", "100k series"])
def test_a_hostile_page_costs_bounded_memory_and_says_it_was_cut(http, page):
    srv = http()
    if page == "endless":
        srv.behave("/metrics", "endless")
    else:
        srv.serve("/metrics", "".join(f'vllm:num_requests_running{{model_name="m{i}"}} 1\n' for i in range(100_000)))
    done = subprocess.run(
        [sys.executable, "-c", COLLECT_AND_MEASURE, srv.url()], capture_output=True, text=True, timeout=90, cwd="/"
    )
    assert done.returncode == 0, done.stderr
    grown_mib, took_s, source = done.stdout.split(" ", 2)
    print(f"{page}: answered in {took_s} s, peak RSS +{grown_mib} MiB over the idle collector: {source.strip()}")
    assert "[page cut at 20000 lines]" in source  # the pane's source line says the page was cut
    assert float(took_s) < 20
    # Before the caps: an endless page grew the process by ~250 MiB (and never answered), 100k series by ~167.
    assert float(grown_mib) < 80


@pytest.mark.parametrize(
    ("route", "kwargs", "reason"),
    [
        (
            "/html",
            {"body": "<!DOCTYPE html><html>login</html>", "ctype": "text/html"},
            "HTML page, not Prometheus text",
        ),
        ("/garbage", {"body": "all good here\nno metrics today\n"}, "not Prometheus text: all 2 line(s) rejected"),
        ("/missing", None, "HTTP 404"),
        ("/error", {"body": "boom", "status": 500}, "HTTP 500"),
        ("/moved", {"status": 302, "location": "/metrics-elsewhere"}, "HTTP 302"),
    ],
)
def test_bad_endpoints_are_rejected_with_a_reason(http, route, kwargs, reason):
    srv = http()
    if kwargs is not None:
        srv.serve(route, **kwargs)
    c = collector(urls=(srv.url(route),), scrape=False)
    srv.serve("/metrics-elsewhere", VLLM_V0)
    s = sample_until(c, lambda s: any(reason in t for t in s.tried))
    assert s.profile == "" and s.stats.provenance == ()
    assert "/metrics-elsewhere" not in srv.hits  # a redirect is reported, never followed
    assert any(t.startswith(f"{srv.url(route)}: {reason}") for t in s.tried), s.tried


def test_connection_refused_is_a_reason_not_a_crash():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = collector(urls=(f"http://127.0.0.1:{port}/metrics",), scrape=False)
    s = sample_until(c, lambda s: any("connection refused" in t for t in s.tried))
    assert s.profile == ""


# -- discovery against real target processes ---------------------------------------------------------------
SERVE_IN_CHILD = """
import http.server, socket, subprocess

class H(http.server.BaseHTTPRequestHandler):
    body = open({path!r}).read().encode()
    html = {html!r}
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/metrics" and self.body:
            self.send_response(200); self.send_header("Content-Type", "text/plain"); self.end_headers()
            self.wfile.write(self.body)
        elif self.html:
            self.send_response(200); self.send_header("Content-Type", "text/html"); self.end_headers()
            self.wfile.write(b"<html>a web app</html>")
        else:
            self.send_error(404)

class S(http.server.ThreadingHTTPServer):
    address_family = socket.{family}

srv = S(({host!r}, 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
"""
PRINT_PORT_AND_WAIT = "ready()\nprint(srv.server_address[1], flush=True)\ntime.sleep(600)\n"


def serve_code(path: str, host: str = "127.0.0.1", html: bool = False) -> str:
    family = "AF_INET6" if ":" in host else "AF_INET"
    return SERVE_IN_CHILD.format(path=path, host=host, html=html, family=family)


def test_discovers_metrics_in_a_child_of_the_target(start_target, tmp_path):
    # The target itself serves HTML on one port; its child serves vLLM metrics on another.
    child = tmp_path / "child.py"
    child.write_text(
        "import threading, time\n"
        + serve_code(str(FIXTURES / "vllm-v0-aibrix-runtime-doc.prom"))
        + "print(srv.server_address[1], flush=True)\ntime.sleep(600)\n"
    )
    target = start_target(
        serve_code("/dev/null", html=True)
        + f"""
child = subprocess.Popen([sys.executable, {str(child)!r}], stdout=subprocess.PIPE, text=True)
metrics_port = int(child.stdout.readline())
html_port = srv.server_address[1]
ready()
print(metrics_port, html_port, flush=True)
time.sleep(600)
"""
    )
    assert target.proc.stdout is not None
    metrics_port, html_port = (int(x) for x in target.proc.stdout.readline().split())
    c = collector(target.pid)
    s = sample_until(c, lambda s: s.profile)
    assert s.profile == "vllm"
    assert s.source == f"vllm @ http://127.0.0.1:{metrics_port}/metrics"
    assert s.stats.kv_cache_usage_pct == 0.0 and s.stats.requests_swapped == 0.0
    assert f"{html_port}: HTML page, not Prometheus text" in s.tried


def test_nothing_found_says_what_was_tried(start_target):
    target = start_target(serve_code("/dev/null") + PRINT_PORT_AND_WAIT)
    assert target.proc.stdout is not None
    port = int(target.proc.stdout.readline())
    c = collector(target.pid)
    s = sample_until(c, lambda s: s.tried and not s.tried[0].startswith("probing"))
    assert s.profile == "" and s.source == ""
    assert s.tried[0] == f"ports {port} probed: no Prometheus text; pass --metrics-url"
    assert f"{port}: HTTP 404" in s.tried
    # Discovery is not repeated on every tick while nothing is found (every REDISCOVER_S instead).
    again = c.sample()
    assert again.tried[0] == s.tried[0]
    assert c._discovery is None


def test_no_more_discovery_rounds_once_a_given_endpoint_answers(start_target):
    target = start_target(serve_code(str(FIXTURES / "llamacpp-commit-a2df278-after.prom")) + PRINT_PORT_AND_WAIT)
    assert target.proc.stdout is not None
    port = int(target.proc.stdout.readline())
    c = collector(target.pid, urls=(f"http://127.0.0.1:{port}/metrics",))
    c.rediscover_s = 0.0  # would start a round on every tick while nothing answers
    rounds = 0
    start_discovery = c._start_discovery

    def counted() -> object:
        nonlocal rounds
        rounds += 1
        return start_discovery()

    c._start_discovery = counted  # type: ignore[method-assign]
    assert sample_until(c, lambda s: s.profile).profile == "llamacpp"
    assert rounds >= 1  # a round at the start: other ports may serve metrics too
    answered = rounds
    for _ in range(5):
        c.sample()
    assert rounds == answered


def test_target_without_listening_ports_says_so(start_target):
    target = start_target("ready()\ntime.sleep(600)\n")
    c = collector(target.pid)
    s = sample_until(c, lambda s: s.tried and not s.tried[0].startswith("probing"))
    assert "listen on no loopback TCP port; pass --metrics-url" in s.tried[0]


def test_discovers_an_ipv6_only_listener(start_target):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    target = start_target(
        serve_code(str(FIXTURES / "sglang-production-metrics-doc.prom"), host="::1") + PRINT_PORT_AND_WAIT
    )
    assert target.proc.stdout is not None
    port = int(target.proc.stdout.readline())
    s = sample_until(collector(target.pid), lambda s: s.profile)
    assert s.source == f"sglang @ http://[::1]:{port}/metrics"
    assert s.stats.requests_waiting == 2826.0


def test_explicit_url_wins_over_discovery_and_no_scrape_needs_one(http):
    srv = http()
    srv.serve("/metrics", (FIXTURES / "llamacpp-commit-a2df278-after.prom").read_text())
    c = collector(urls=(f"127.0.0.1:{srv.port}",), scrape=True)  # host:port gets /metrics
    s = sample_until(c, lambda s: s.profile)
    assert s.source == f"llamacpp @ {srv.url()}"
    with pytest.raises(SourceUnavailable, match="--no-scrape"):
        collector(scrape=False)


def test_url_normalisation():
    assert normalise_url("8000") == "http://127.0.0.1:8000/metrics"
    assert normalise_url(":9400") == "http://127.0.0.1:9400/metrics"
    assert normalise_url("localhost:8002") == "http://localhost:8002/metrics"
    assert normalise_url("http://h:1/custom/path") == "http://h:1/custom/path"


#: Target code that waits for the test's go-ahead (SIGUSR1). The signal is blocked first thing, before any
#: thread starts (threads inherit the mask), so one sent early stays pending instead of killing the target.
BLOCK_SIGUSR1 = "import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\n"
AWAIT_SIGUSR1 = "signal.sigwait({signal.SIGUSR1})\n"


def test_rediscovers_a_server_that_starts_later(start_target):
    target = start_target(
        BLOCK_SIGUSR1
        + "ready()\n"
        + AWAIT_SIGUSR1
        + serve_code(str(FIXTURES / "llamacpp-commit-a2df278-after.prom"))
        + "print(srv.server_address[1], flush=True)\ntime.sleep(600)\n"
    )
    c = collector(target.pid)
    c.rediscover_s = 0.3
    before = sample_until(c, lambda s: s.tried and s.tried[0].startswith(f"pid {target.pid}"))
    assert before.profile == ""
    os.kill(target.pid, signal.SIGUSR1)  # now start serving
    assert target.proc.stdout is not None
    port = int(target.proc.stdout.readline())
    after = sample_until(c, lambda s: s.profile)
    assert after.source == f"llamacpp @ http://127.0.0.1:{port}/metrics"


def test_most_specific_endpoint_wins_and_the_others_are_listed(start_target):
    triton = serve_code(str(FIXTURES / "triton-core-inference-counters-trtllm-readme.prom"))
    vllm = serve_code(str(FIXTURES / "vllm-v0-aibrix-runtime-doc.prom"))
    target = start_target(
        triton
        + "triton_port = srv.server_address[1]\n"
        + vllm
        + "ready()\nprint(triton_port, srv.server_address[1], flush=True)\ntime.sleep(600)\n"
    )
    assert target.proc.stdout is not None
    triton_port, vllm_port = (int(x) for x in target.proc.stdout.readline().split())
    s = sample_until(collector(target.pid), lambda s: s.profile)
    # An LLM engine's own metrics say more about its queue than the model server around it.
    assert s.source == f"vllm @ http://127.0.0.1:{vllm_port}/metrics"
    assert f"also: triton @ http://127.0.0.1:{triton_port}/metrics" in s.tried


def test_a_discovered_endpoint_that_goes_away_is_forgotten_and_searched_again(http, start_target):
    target = start_target(
        BLOCK_SIGUSR1
        + serve_code(str(FIXTURES / "llamacpp-commit-a2df278-after.prom"))
        + "ready()\nprint(srv.server_address[1], flush=True)\n"
        + AWAIT_SIGUSR1
        + "srv.shutdown()\nsrv.server_close()\nprint('closed', flush=True)\ntime.sleep(600)\n"
    )
    assert target.proc.stdout is not None
    port = int(target.proc.stdout.readline())
    c = collector(target.pid)
    c.rediscover_s = 0.2
    assert sample_until(c, lambda s: s.profile).profile == "llamacpp"
    os.kill(target.pid, signal.SIGUSR1)  # now stop serving
    assert target.proc.stdout.readline().strip() == "closed"
    gone = sample_until(c, lambda s: s.tried and "listen on no loopback TCP port" in s.tried[0])
    assert gone.profile == ""
    assert f"http://127.0.0.1:{port}/metrics" not in c.endpoints


DROP_PRIVILEGES_AND_SAMPLE = """
import os, sys, time
from optitop.collectors.queue import QueueCollector
from optitop.config import CollectorContext, Options
os.setgid(65534)
os.setuid(65534)  # from here on, an ordinary user looking at root's process
c = QueueCollector(CollectorContext(pid=int(sys.argv[1]), options=Options()))
deadline = time.monotonic() + 20
while True:
    s = c.sample()
    if (s.tried and not s.tried[0].startswith("probing")) or time.monotonic() > deadline:
        break
print(repr(s.tried))
"""


def test_unreadable_sockets_say_so_instead_of_nothing_listens(start_target):
    if os.geteuid() != 0:
        pytest.skip("needs root to watch a root-owned target as an unprivileged user")
    target = start_target(serve_code(str(FIXTURES / "vllm-v0-aibrix-runtime-doc.prom")) + PRINT_PORT_AND_WAIT)
    out = subprocess.run(
        [sys.executable, "-c", DROP_PRIVILEGES_AND_SAMPLE, str(target.pid)],
        cwd="/",  # not the checkout: its optitop/ folder would shadow the installed package
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    tried = ast.literal_eval(out.stdout.strip())
    assert tried[0] == f"cannot read pid {target.pid}'s sockets (run as its user or root), or pass --metrics-url"
    assert "sockets of 1 process(es) not readable (needs the same user or root)" in tried
