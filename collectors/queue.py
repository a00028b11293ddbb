"""The queue collector: the server's own Prometheus /metrics, found without being told.

Discovery looks at the TCP ports the target tree listens on (v4 and v6) and asks ``/metrics`` on loopback
only; endpoints that answer exposition text are kept. ``--metrics-url`` adds endpoints (and wins the pick
over discovered ones); ``--no-scrape`` turns discovery off. Discovery runs once at the start, and again every
``REDISCOVER_S`` seconds while no endpoint (found or given) answers; the sample says what was tried so the pane
can tell the user what to pass. Finding candidate URLs lives in discovery.py; one endpoint's scrape and the
state it keeps between scrapes in endpoint.py.

Every fetch runs on a small thread pool and ``sample()`` waits for them only a short while: a slow endpoint
is harvested on a later tick, never holding back the others. Rates and windowed quantiles are computed per
endpoint against that endpoint's previous scrape, over the measured time between the two responses.

Some exporters serve a cache that refreshes less often than optitop scrapes (Ray Serve: every 10 s). An
answer identical to the baseline in every series it shares with it is such a cache, not a second with no
traffic: the last reading (and its rates) is held and the baseline kept, so the next changed answer gives
rates over the whole span instead of nine zeros and a spike. Gauges are compared too, so a live endpoint
whose queue moves while no request completes still reads 0/s. Past HOLD_MAX_S the unchanged counters are
believed (an idle server must not show its last busy rate for ever), and a reading with no rates yet is
never held (a server idle from the start reads 0/s at once).
"""

from __future__ import annotations

import random
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import ClassVar

import psutil

from optitop.collectors.discovery import Discovery, loopback_hosts, normalise_url, probe, server_fault, tcp_sockets
from optitop.collectors.endpoint import Endpoint, Scrape, scrape, unrefreshed
from optitop.collectors.profileread import evaluate, wanted_names
from optitop.collectors.profiles import metrics_paths, profile_by_name
from optitop.collectors.promfetch import FETCH_TIMEOUT_S, MAX_BODY_BYTES, MAX_LINES
from optitop.config import CollectorContext
from optitop.model import ServingSample, ServingStats, SourceUnavailable, TargetGone
from optitop.redact import redact_text

#: Seconds between discovery rounds while no endpoint answers.
REDISCOVER_S = 30.0
#: Ports probed at most per round (lowest first); a server rarely listens on more.
MAX_PROBE_PORTS = 16
#: Consecutive failed scrapes after which a discovered endpoint is forgotten (and discovery runs again).
FORGET_AFTER = 3
#: Concurrent fetches; threads are created only as needed.
POOL_WORKERS = 16
#: Seconds between full parses of an endpoint; in between only the series its profile reads are parsed.
REPARSE_S = 60.0
#: The longest an endpoint's unchanged answers are taken for a cache that has not refreshed (Ray Serve
#: refreshes every 10 s by default); past it, unchanged counters are believed: nothing happened.
HOLD_MAX_S = 12.0
#: Seconds between scrapes at least, whatever ``--interval`` says, once the first rates exist: fetching and
#: parsing the demo's 84 lines costs ~5 ms (prometheus_client's parser ~40 µs a line), the largest share of
#: optitop's own CPU at 1 Hz, while the queue is judged over windows of ten seconds.
MIN_INTERVAL_S = 2.0
#: Scrapes come at least this many times their CPU cost apart (at most 1/COST_FACTOR of a core: 5 %), so a
#: 700 KB page (Ray Serve's, ~170 ms to parse) is read every few seconds rather than every second.
COST_FACTOR = 20.0
#: Each gap between scrapes is drawn within +/- this share of the interval. Gauges are instants: read at a
#: fixed period from a server with a periodic rhythm of its own (a batch timer, clients sending every 200 ms),
#: they alias, and the same phase is read for many scrapes in a row ("1 waiting" for ten seconds when one
#: request in a thousand waits 5 ms). A random gap makes the readings a sample of the whole cycle.
JITTER = 0.1
#: Samples taken at the base interval before the minimum applies: two scrapes give the first rates.
EAGER_SAMPLES = 2


class QueueCollector:
    """Scrapes the server's Prometheus endpoints into ServingSample (name ``queue``)."""

    name: ClassVar[str] = "queue"

    def __init__(self, ctx: CollectorContext) -> None:
        """Prepare endpoints from ``--metrics-url`` and discovery; SourceUnavailable when both are off."""
        self.interval_s = ctx.options.interval_s
        self._base_interval_s = ctx.options.interval_s
        self._samples = 0
        self._scrape_cpu_s = 0.0
        self._jitter = random.Random()
        self.pid = ctx.pid
        self.discover = ctx.options.scrape
        self.timeout_s = FETCH_TIMEOUT_S
        self.max_bytes = MAX_BODY_BYTES
        self.max_lines = MAX_LINES
        self.rediscover_s = REDISCOVER_S
        self.endpoints: dict[str, Endpoint] = {}
        for raw in ctx.options.metrics_urls:
            url = normalise_url(raw)
            self.endpoints[url] = Endpoint(url, explicit=True)
        if not self.discover and not self.endpoints:
            raise SourceUnavailable("scraping is off (--no-scrape) and no --metrics-url was given")
        try:
            self._proc = psutil.Process(ctx.pid)
        except psutil.NoSuchProcess as exc:
            raise SourceUnavailable(f"no process with pid {ctx.pid}") from exc
        self._pool = ThreadPoolExecutor(POOL_WORKERS, thread_name_prefix="optitop-scrape")
        self._discovery: Discovery | None = None
        self._last_discovery_mono_s: float | None = None
        self._tried: tuple[str, ...] = ()
        self._prev_mono_s: float | None = None
        #: Why the source is failing though sample() returned (every endpoint errs or times out), else "".
        #: The session shows the source as failing with this reason and still keeps the sample (its
        #: ``tried`` lines say what was asked and what came back).
        self.problem = ""
        #: Ports whose probe got a server fault (HTTP 5xx, a timeout): something is there and broken.
        self._probe_faults: list[str] = []

    def close(self) -> None:
        """Stop the fetch threads without waiting for a hung endpoint (its socket timeout ends it)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def describe(self) -> str:
        """The ``doctor`` line."""
        urls = ", ".join(ep.shown for ep in self.endpoints.values()) or "none yet"
        mode = "discovery on" if self.discover else "discovery off"
        return f"Prometheus endpoints: {urls} ({mode}, {self.timeout_s:g} s timeout)"

    # -- one tick ----------------------------------------------------------------------------------------
    def sample(self) -> ServingSample:
        """Harvest finished scrapes, start the next ones, and report the most specific endpoint."""
        ts, mono = time.time(), time.monotonic()
        dt = None if self._prev_mono_s is None else mono - self._prev_mono_s
        self._prev_mono_s = mono
        self._maybe_discover(mono)
        waited: list[Future[Scrape]] = []
        for ep in self.endpoints.values():
            if ep.pending is None:
                fresh = ep.keep is not None and mono - ep.full_parse_mono_s < REPARSE_S
                keep = ep.keep if fresh else None
                ep.pending = self._pool.submit(scrape, ep.url, self.timeout_s, self.max_bytes, keep, self.max_lines)
                ep.submitted_mono_s = time.monotonic()
            if not ep.slow:  # a known-slow endpoint is harvested when it is done, never waited for
                waited.append(ep.pending)
        if self._discovery is not None:
            waited.extend(self._discovery.probes.values())
        if waited:
            wait_futures(waited, timeout=self._wait_budget_s())
        for ep in self.endpoints.values():
            if ep.pending is not None and not ep.pending.done():
                ep.slow = True
        self._harvest_discovery()
        harvested = [self._harvest(ep) for ep in list(self.endpoints.values())]
        if any(cost is not None for cost in harvested):
            self._scrape_cpu_s = sum(cost or 0.0 for cost in harvested)
        self._samples += 1
        if self._samples >= EAGER_SAMPLES:
            steady_s = max(self._base_interval_s, MIN_INTERVAL_S, COST_FACTOR * self._scrape_cpu_s)
            self.interval_s = steady_s * self._jitter.uniform(1.0 - JITTER, 1.0 + JITTER)
        return self._build(ts, mono, dt)

    def _wait_budget_s(self) -> float:
        """How long one tick waits for fetches: long enough for a healthy server, short enough for the rest."""
        return max(0.2, min(self.timeout_s, self.interval_s / 2))

    def _harvest(self, ep: Endpoint) -> float | None:
        """Take ``ep``'s finished scrape, if any; returns the CPU seconds it cost (None: none finished)."""
        if ep.pending is None or not ep.pending.done():
            return None
        try:
            got = ep.pending.result()
        except Exception as exc:  # noqa: BLE001 - a parser bug on one endpoint must not stop the others
            got = Scrape(ep.url, None, f"{type(exc).__name__}: {exc}", time.monotonic())
        ep.pending = None
        ep.slow = got.mono_s - ep.submitted_mono_s > self._wait_budget_s()
        self._record(ep, got)
        return got.cpu_s

    def _record(self, ep: Endpoint, got: Scrape) -> None:
        """Keep one finished scrape's reading (or its failure) on the endpoint."""
        if got.expo is None:
            ep.failures += 1
            ep.reason = redact_text(got.reason)  # an error may quote the URL it failed on
            if ep.failures >= FORGET_AFTER and not ep.explicit:
                del self.endpoints[ep.url]
            return
        dt = None if ep.prev_mono_s is None else got.mono_s - ep.prev_mono_s
        ep.held = (
            ep.prev is not None and ep.rated and dt is not None and dt < HOLD_MAX_S and unrefreshed(got.expo, ep.prev)
        )
        if got.full:  # a filtered parse sees only some lines: keep the full parse's notes
            ep.notes = got.expo.notes()
            ep.keep, ep.full_parse_mono_s = wanted_names(got.expo), got.mono_s
        ep.failures, ep.reason, ep.cut = 0, "", got.cut
        if ep.held:  # the same cache again: keep the reading and the baseline (see the module docstring)
            return
        ep.reading = evaluate(got.expo, ep.prev, dt)
        ep.rated = ep.prev is not None
        ep.prev, ep.prev_mono_s = got.expo, got.mono_s

    # -- discovery ---------------------------------------------------------------------------------------
    def _maybe_discover(self, mono: float) -> None:
        if not self.discover or self._discovery is not None:
            return
        # Something answers (a discovered endpoint, or a --metrics-url one): no more rounds. Listing the tree's
        # sockets and probing them cost a quarter of the queue thread's CPU when repeated every REDISCOVER_S.
        if any(not ep.explicit or (ep.reading is not None and not ep.failures) for ep in self.endpoints.values()):
            return
        if self._last_discovery_mono_s is not None and mono - self._last_discovery_mono_s < self.rediscover_s:
            return
        self._last_discovery_mono_s = mono
        self._discovery = self._start_discovery()

    def _start_discovery(self) -> Discovery:
        """List the tree's listening ports and start one probe per port on the pool."""
        round_ = Discovery()
        listeners, round_.denied = self._listeners()
        explicit_ports = {urllib.parse.urlsplit(u).port for u in self.endpoints}
        paths = metrics_paths()
        by_port: dict[int, list[str]] = {}
        for ip, port in sorted(listeners, key=lambda t: t[1]):
            if port in explicit_ports:
                continue
            hosts = loopback_hosts(ip)
            if hosts is None:
                round_.notes.append(f"port {port} listens on {ip} only: not probed (loopback only)")
                continue
            known = by_port.setdefault(port, [])
            known.extend(h for h in hosts if h not in known)
        ports = sorted(by_port)
        if len(ports) > MAX_PROBE_PORTS:
            round_.notes.append(f"{len(ports) - MAX_PROBE_PORTS} more port(s) not probed")
            ports = ports[:MAX_PROBE_PORTS]
        round_.ports = ports
        for port in ports:
            round_.probes[port] = self._pool.submit(probe, by_port[port], port, paths, self.timeout_s, self.max_bytes)
        return round_

    def _listeners(self) -> tuple[list[tuple[str, int]], int]:
        """The tree's listening TCP sockets as (address, port), v4 and v6, and how many processes were unreadable."""
        try:
            procs = [self._proc, *self._proc.children(recursive=True)]
        except psutil.NoSuchProcess as exc:
            raise TargetGone(f"pid {self.pid} exited") from exc
        except psutil.AccessDenied:
            procs = [self._proc]
        out: list[tuple[str, int]] = []
        denied = 0
        for proc in procs:
            try:
                conns = tcp_sockets(proc)
            except psutil.AccessDenied:
                denied += 1
                continue
            except psutil.NoSuchProcess:
                continue
            for conn in conns:
                if conn.status == psutil.CONN_LISTEN and conn.laddr:
                    out.append((str(conn.laddr[0]), int(conn.laddr[1])))
        return out, denied

    def _harvest_discovery(self) -> None:
        round_ = self._discovery
        if round_ is None or not all(f.done() for f in round_.probes.values()):
            return
        self._discovery = None
        failed: list[str] = []
        found: list[str] = []
        self._probe_faults = []
        for port, fut in sorted(round_.probes.items()):
            try:
                got = fut.result()
            except Exception as exc:  # noqa: BLE001 - one port's surprise must not end discovery
                failed.append(f"{port}: {type(exc).__name__}: {exc}")
                continue
            if got.expo is None:
                failed.append(f"{port}: {got.reason}")
                if server_fault(got.reason):
                    self._probe_faults.append(f"{got.url}: {got.reason}")
                continue
            ep = Endpoint(got.url, explicit=False)
            found.append(ep.shown)
            self.endpoints[got.url] = ep
            # The probe is this endpoint's first scrape: rates start from it.
            ep.prev, ep.prev_mono_s = got.expo, got.mono_s
            ep.reading = evaluate(got.expo, None, None)
            ep.notes, ep.cut = got.expo.notes(), got.cut
            ep.keep, ep.full_parse_mono_s = wanted_names(got.expo), got.mono_s
        self._tried = self._tried_lines(round_, found, failed)

    def _tried_lines(self, round_: Discovery, found: list[str], failed: list[str]) -> tuple[str, ...]:
        denied = (
            [f"sockets of {round_.denied} process(es) not readable (needs the same user or root)"]
            if round_.denied
            else []
        )
        # With --metrics-url given, "pass --metrics-url" would send the user after what they did: discovery is
        # then only what it found, and the given URL's own failure is what the pane leads with (_build).
        hint = "" if any(ep.explicit for ep in self.endpoints.values()) else "; pass --metrics-url"
        if found:
            head = f"found {', '.join(found)}"
        elif round_.ports:
            ports = ", ".join(str(p) for p in round_.ports)
            head = f"ports {ports} probed: no Prometheus text{hint}"
        elif round_.denied:
            head = f"cannot read pid {self.pid}'s sockets (run as its user or root)"
            head += ", or pass --metrics-url" if hint else ""
        else:
            head = f"pid {self.pid} and its children listen on no loopback TCP port{hint}"
        return (head, *failed, *round_.notes, *denied)

    # -- the sample --------------------------------------------------------------------------------------
    def _failing(self, others: list[Endpoint]) -> str:
        """Why no endpoint answers, when they fail rather than not existing: each failing URL and its reason.

        An endpoint that errs or times out (given, or found and then broken), or a probed port that answers
        HTTP 5xx or hangs, is a source that is failing, not one with nothing to read: the header must not show
        it live. "" when nothing failed yet (first answers pending, or no endpoint at all: the pane says so).
        """
        failing = [f"{ep.url}: {ep.reason}" for ep in others if ep.failures and ep.reason]
        failing += [] if self.endpoints else self._probe_faults
        if not failing:
            return ""
        more = f" (+{len(failing) - 2} more)" if len(failing) > 2 else ""
        return "no endpoint answers: " + "; ".join(failing[:2]) + more

    def _rank(self, ep: Endpoint) -> tuple[int, int, int]:
        reading = ep.reading
        assert reading is not None
        try:
            rank = profile_by_name(reading.profile).rank
        except KeyError:
            rank = 0
        return (1 if ep.explicit else 0, rank, len(reading.stats.provenance))

    def _build(self, ts: float, mono: float, dt: float | None) -> ServingSample:
        live = [ep for ep in self.endpoints.values() if ep.reading is not None and ep.failures == 0]
        others = [ep for ep in self.endpoints.values() if ep not in live]
        tried = list(self._tried)
        # The URLs the user gave lead: what is wrong with them is the answer to "why no queue metrics".
        given = [] if live else [ep for ep in others if ep.explicit]
        for ep in sorted(others, key=lambda ep: not ep.explicit):
            state = ep.reason or ("waiting for the first answer" if ep.pending is not None else "no answer yet")
            line = f"{ep.shown}: {state}"
            if ep in given:
                tried.insert(given.index(ep), line)
            else:
                tried.append(line)
        if self._discovery is not None:
            tried.insert(0, f"probing port(s) {', '.join(str(p) for p in self._discovery.ports)}")
        self.problem = "" if live else self._failing(others)
        if not live:
            if not tried:
                tried.append("no endpoint yet")
            return ServingSample(ts, mono, dt, source="", profile="", stats=ServingStats(), tried=tuple(tried))
        live.sort(key=self._rank, reverse=True)
        best = live[0]
        assert best.reading is not None
        source = f"{best.reading.profile} @ {best.shown}"
        if best.reading.also:
            source += f" (+{'+'.join(best.reading.also)})"
        if best.cut:
            source += f" [{best.cut}]"
            tried.append(f"{best.url}: {best.cut}: the series past the cut are missing")
        for ep in live[1:]:
            assert ep.reading is not None
            tried.append(f"also: {ep.reading.profile} @ {ep.shown}")
        tried.extend(f"{best.shown}: {note}" for note in best.notes)
        if best.held and best.prev_mono_s is not None:
            tried.append(
                f"{best.shown}: unchanged for {mono - best.prev_mono_s:.0f} s (the endpoint refreshes slowly): "
                "rates held until it does"
            )
        return ServingSample(
            ts, mono, dt, source=source, profile=best.reading.profile, stats=best.reading.stats, tried=tuple(tried)
        )
