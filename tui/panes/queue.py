"""The queue pane: requests waiting and running, batch, KV cache, latencies, throughput, kernel TCP queues.

Three sources feed it and each block names its own: the server's Prometheus endpoint (``queue``: profile and
URL), the server's log (``logs``) and the kernel's view of the target's sockets (``sockets``). Each is read
through the window's typed accessors, so the pane works whichever of those collectors exists or runs (a missing
one is simply absent). When no endpoint was found it says what was tried, which is the line that tells the user
to pass ``--metrics-url``.

Lines come out most important first, because on a small terminal the app keeps only the first few
(``Pane.max_lines``): the source and the queue, then batch and KV cache, latencies, the accept queue, rates,
and the details last.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.style import Style
from rich.text import Text

from optitop.model import ServingSample, ServingStats, SocketSample, Window
from optitop.tui.format import clip, fmt_bytes, fmt_pct, fmt_rate, spark
from optitop.tui.panes.base import Pane

#: KV-cache use above which the number is shown as a warning (the scheduler starts preempting near 100 %).
KV_WARN_PCT = 90.0
#: Width of the waiting/running sparklines.
SPARK_WIDTH = 16
#: An accept queue this full (of its backlog) is shown as a warning: new connections are about to be dropped.
ACCEPT_WARN_FRACTION = 0.8
#: Retransmitted segments above this % of sent ones point at the network (the analyzer's threshold too).
RETRANS_WARN_PCT = 1.0
#: Listening sockets listed on the kernel line.
MAX_LISTENERS = 3

#: One piece of an ``a · b · c`` line and whether it is a warning.
Part = tuple[str, bool]

#: A latency's (p50, p95) in seconds.
Pair = tuple[float | None, float | None]

#: Latency pairs by label, in the order shown.
_LATENCY_LABELS: tuple[tuple[str, Callable[[ServingStats], Pair]], ...] = (
    ("TTFT", lambda s: (s.ttft_p50_s, s.ttft_p95_s)),
    ("ITL", lambda s: (s.itl_p50_s, s.itl_p95_s)),
    ("e2e", lambda s: (s.e2e_p50_s, s.e2e_p95_s)),
    ("queue", lambda s: (s.queue_time_p50_s, s.queue_time_p95_s)),
)
#: Rates by label, and whether any of it is trouble: errors and preemptions are, requests are just traffic.
_RATE_LABELS: tuple[tuple[str, Callable[[ServingStats], float | None], bool], ...] = (
    ("req", lambda s: s.request_rate_per_s, False),
    ("err", lambda s: s.error_rate_per_s, True),
    ("preempt", lambda s: s.preemptions_per_s, True),
)


def fmt_latency(seconds: float | None) -> str:
    """0.0004 -> '400µs', 0.12 -> '120ms', 2.5 -> '2.50s'; None -> '–'."""
    if seconds is None:
        return "–"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds:.2f}s"


def fmt_count(value: float | None) -> str:
    """A gauge count: 12.0 -> '12', 0.5 -> '0.5', None -> '–'."""
    if value is None:
        return "–"
    if value == int(value):
        return f"{int(value)}"
    return f"{value:.1f}"


def fmt_small_rate(value: float | None, unit: str = "/s") -> str:
    """A rate that is often below 10 (requests/s): one decimal there, compact above."""
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.1f}{unit}"
    return fmt_rate(value, unit)


def _serving(window: Window, name: str) -> ServingSample | None:
    """The newest sample of a serving source when it found a server (a profile), else None."""
    sample = window.latest_of(name, ServingSample)
    return sample if sample is not None and sample.profile else None


def _history(series: Sequence[ServingSample], pick: Callable[[ServingStats], float | None]) -> list[float | None]:
    return [pick(s.stats) for s in series]


def latency_pairs(stats: ServingStats) -> list[str]:
    """``TTFT 75ms/98ms``-style p50/p95 pairs, named for what the server is.

    Time to first token means something only for a server that streams tokens; a classifier or an embedder that
    exports a "first response" histogram answers in one piece, so its first response is its latency. Without
    token counts the pane says "latency" once (end to end, or the first response when that is all there is).
    """
    # Token counts (or inter-token latencies) say the server is an LLM server: only then is a first response a TTFT.
    tokens = (stats.prompt_tokens_per_s, stats.generation_tokens_per_s, stats.itl_p50_s, stats.itl_p95_s)
    if any(v is not None for v in tokens):
        return [p for p in (_pair(label, pick(stats)) for label, pick in _LATENCY_LABELS) if p]
    e2e, ttft = (stats.e2e_p50_s, stats.e2e_p95_s), (stats.ttft_p50_s, stats.ttft_p95_s)
    whole = _pair("latency", e2e) or _pair("latency", ttft)
    queued = _pair("queue", (stats.queue_time_p50_s, stats.queue_time_p95_s))
    return [p for p in (whole, queued) if p]


def _pair(label: str, pair: Pair) -> str | None:
    p50, p95 = pair
    if p50 is None and p95 is None:
        return None
    return f"{label} {fmt_latency(p50)}/{fmt_latency(p95)}"


class QueuePane(Pane):
    """The request path of the server, from the server's metrics, its log and the kernel."""

    max_tried_lines: int = 2

    def quiet(self, window: Window) -> bool:
        """Nothing to say beyond one line: no serving metrics and no connections or accept queue."""
        if any(_serving(window, n) is not None for n in ("queue", "logs")):
            return False
        sockets = window.latest_of("sockets", SocketSample)
        if sockets is None:
            return True
        busy = sockets.inbound_conns or any(q.accept_queue for q in sockets.listeners)
        return not busy

    def build(self, window: Window, width: int) -> Text:
        """Render the first serving source in full, others in one line each, and the kernel's queues."""
        serving = [(n, s) for n in ("queue", "logs") if (s := _serving(window, n)) is not None]
        sockets = window.latest_of("sockets", SocketSample)
        kernel = self._kernel_lines(sockets, width) if sockets is not None else []
        title = Text("QUEUE ", style=self.sty("pane--title"))
        if not serving:
            head, tried = self._nothing_found(window, width, len(title))
            lines = [title + head, *kernel[:1], *tried, *kernel[1:]]
            return Text("\n").join(lines)
        name, sample = serving[0]
        source = sample.source or name
        head = title + Text(self.fit(source, max(10, width - len(title))), style=self.sty("pane--dim"))
        stats = sample.stats
        main = [self._queue_line(stats, self.history(window).of(name, ServingSample), width)]
        details = self._line(self._details(stats), width)
        latencies = latency_pairs(stats)
        lines = [head, *main]
        if details is not None:
            lines.append(details)
        if latencies:
            lines.append(Text(self.fit("p50/p95 " + " · ".join(latencies), width)))
        lines.extend(kernel[:1])
        rates = self._line(self._rates(stats), width)
        if rates is not None:
            lines.append(rates)
        lines.extend(self._brief(s, width) for _, s in serving[1:])
        lines.extend(kernel[1:])
        return Text("\n").join(lines)

    # -- pieces --------------------------------------------------------------------------------------------
    def _warn(self, warn: bool) -> Style | str:
        return self.sty("pane--warn") if warn else ""

    def _line(self, parts: list[Part], width: int, lead: Text | None = None) -> Text | None:
        """``a · b · c`` with warning parts coloured, cut at ``width``; None when there is nothing to say."""
        if not parts:
            return None
        text = lead.copy() if lead is not None else Text()
        for i, (part, warn) in enumerate(parts):
            piece = (" · " if i else "") + part
            room = width - len(text)
            if len(piece) > room and not self.zoomed:  # zoomed: the row is wrapped, not cut
                text.append(clip(piece, room))
                break
            text.append(piece, style=self._warn(warn))
        return text

    def _queue_line(self, stats: ServingStats, series: Sequence[ServingSample], width: int) -> Text:
        """waiting N ▁▂▅ running M ▃▄▄ — the two numbers the scheduling verdict leans on, with their trend."""
        waiting = _history(series, lambda s: s.requests_waiting)
        running = _history(series, lambda s: s.requests_running)
        top = max([v for v in waiting + running if v is not None] + [1.0])
        spark_w = min(SPARK_WIDTH, max(0, (width - 34) // 2))
        wait_now = stats.requests_waiting
        text = Text("waiting ")
        text.append(f"{fmt_count(wait_now):>4}", style=self._warn(bool(wait_now)))
        if spark_w >= 4:
            text.append(" " + spark(waiting, spark_w, top=top), style=self.sty("pane--warn"))
        text.append(f"  running {fmt_count(stats.requests_running):>4}")
        if spark_w >= 4:
            text.append(" " + spark(running, spark_w, top=top), style=self.sty("pane--ok"))
        swapped = stats.requests_swapped
        if swapped:
            text.append(f"  swapped {fmt_count(swapped)}", style=self.sty("pane--warn"))
        text.truncate(width)
        return text

    @staticmethod
    def _details(stats: ServingStats) -> list[Part]:
        out: list[Part] = []
        batch, cap = stats.batch_size, stats.max_running
        if batch is not None:
            out.append((f"batch {fmt_count(batch)}" + (f" / max {fmt_count(cap)}" if cap is not None else ""), False))
        kv = stats.kv_cache_usage_pct
        if kv is not None:
            near_full = kv >= KV_WARN_PCT
            out.append((f"KV cache {fmt_pct(kv)}" + (" (near full)" if near_full else ""), near_full))
        hit = stats.prefix_cache_hit_pct
        if hit is not None:
            out.append((f"prefix hit {fmt_pct(hit)}", False))
        return out

    @staticmethod
    def _rates(stats: ServingStats) -> list[Part]:
        out: list[Part] = []
        prompt, gen = stats.prompt_tokens_per_s, stats.generation_tokens_per_s
        if prompt is not None or gen is not None:
            out.append((f"tokens {fmt_rate(prompt, '')} in {fmt_rate(gen, '')} out /s", False))
        for label, pick, trouble in _RATE_LABELS:
            value = pick(stats)
            if value is not None:
                out.append((f"{label} {fmt_small_rate(value)}", trouble and value > 0))
        return out

    def _brief(self, sample: ServingSample, width: int) -> Text:
        """A second source (the log when the endpoint is shown) in one line: its own name, its own numbers."""
        stats = sample.stats
        parts: list[Part] = [
            (f"waiting {fmt_count(stats.requests_waiting)}", False),
            (f"running {fmt_count(stats.requests_running)}", False),
        ]
        kv = stats.kv_cache_usage_pct
        if kv is not None:
            parts.append((f"KV {fmt_pct(kv)}", kv >= KV_WARN_PCT))
        gen = stats.generation_tokens_per_s
        if gen is not None:
            parts.append((f"gen {fmt_rate(gen, ' tok/s')}", False))
        source = self.fit(sample.source, max(10, width // 2))
        lead = Text(source, style=self.sty("pane--dim")) + Text(": ")
        line = self._line(parts, width, lead)
        return line if line is not None else lead

    # -- the kernel's view ---------------------------------------------------------------------------------
    def _kernel_lines(self, sample: SocketSample, width: int) -> list[Text]:
        """Accept queues against their backlog and in-flight connections first; bytes, upstreams, retransmits."""
        parts: list[Part] = []
        listeners = sample.listeners
        for lq in listeners[:MAX_LISTENERS]:
            accept, backlog = lq.accept_queue, lq.backlog
            full = bool(accept and backlog and accept >= ACCEPT_WARN_FRACTION * backlog)
            parts.append((f":{lq.port} accept {fmt_count(accept)}/{fmt_count(backlog)}", full))
        if len(listeners) > MAX_LISTENERS:
            parts.append((f"+{len(listeners) - MAX_LISTENERS} more", False))
        parts.append((f"in-flight conns {fmt_count(sample.inbound_conns)}", False))
        overflows = sample.listen_overflows_per_s
        if overflows:
            parts.append((f"listen overflows {fmt_small_rate(overflows)}", True))
        lead = Text("kernel TCP ", style=self.sty("pane--dim"))
        first = self._line(parts, width, lead) or lead
        # Recv-Q is what the server has not read yet, Send-Q what the peer has not acknowledged yet.
        detail: list[Part] = [
            (f"unread {fmt_bytes(sample.inbound_recv_q_bytes)}", False),
            (f"unacked {fmt_bytes(sample.inbound_send_q_bytes)}", False),
        ]
        retrans = sample.retrans_pct
        if retrans is not None:
            detail.append((f"retrans {retrans:.1f}%", retrans > RETRANS_WARN_PCT))
        upstream = sample.upstream_conns
        if upstream:
            unacked = fmt_bytes(sample.upstream_send_q_bytes)
            detail.append((f"upstream {fmt_count(upstream)} (unacked {unacked})", False))
        second = self._line(detail, width, Text("kernel ", style=self.sty("pane--dim")))
        return [first] if second is None else [first, second]

    # -- nothing found -------------------------------------------------------------------------------------
    def _nothing_found(self, window: Window, width: int, indent: int) -> tuple[Text, list[Text]]:
        """The first tried line (or the source's status) as the head, a few more tried lines as detail."""
        status = window.statuses.get("queue")
        latest = window.latest_of("queue", ServingSample)
        tried = latest.tried if latest is not None else ()
        if tried:
            head = Text(self.fit(tried[0], width - indent), style=self.sty("pane--warn"))
            more = [Text(self.fit("  " + t, width), style=self.sty("pane--dim")) for t in tried[1:]]
            return head, more if self.zoomed else more[: self.max_tried_lines]
        if status is not None and status.reason:
            return Text(self.fit(f"metrics: {status.reason}", width - indent), style=self.sty("pane--dim")), []
        return Text("looking for the server's /metrics…", style=self.sty("pane--dim")), []
