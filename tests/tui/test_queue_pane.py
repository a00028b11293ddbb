"""The queue pane renders endpoint, log and kernel blocks, each with its source, and the tried line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from rich.text import Text
from textual.app import App, ComposeResult

import optitop.tui
from optitop.model import (
    ListenQueue,
    PeerConn,
    Sample,
    ServingSample,
    ServingStats,
    SocketSample,
    SourceState,
    SourceStatus,
    TargetInfo,
    Window,
)
from optitop.tui.panes.queue import QueuePane, fmt_latency

URL = "http://127.0.0.1:8000/metrics"


def serving(i: float, source: str = f"vllm @ {URL}", profile: str = "vllm", **stats: object) -> ServingSample:
    return ServingSample(
        ts_s=1000.0 + i,
        mono_s=i,
        dt_s=1.0,
        source=source,
        profile=profile,
        stats=ServingStats(**stats),  # type: ignore[arg-type]
    )


FULL = {
    "requests_running": 8.0,
    "batch_size": 8.0,
    "max_running": 256.0,
    "kv_cache_usage_pct": 93.0,
    "ttft_p50_s": 0.12,
    "ttft_p95_s": 0.48,
    "itl_p50_s": 0.022,
    "itl_p95_s": 0.041,
    "e2e_p50_s": 2.1,
    "e2e_p95_s": 6.0,
    "prompt_tokens_per_s": 3400.0,
    "generation_tokens_per_s": 1200.0,
    "request_rate_per_s": 4.2,
    "preemptions_per_s": 0.5,
}


def window(samples: dict[str, tuple[Sample, ...]], statuses: dict[str, SourceStatus] | None = None) -> Window:
    target = TargetInfo(pid=1, name="vllm", cmdline="vllm serve", username="u", create_time_s=0.0, host="h")
    return Window(samples=samples, statuses=statuses or {}, target=target, now_mono_s=10.0, span_s=10.0)


def kernel() -> SocketSample:
    return SocketSample(
        ts_s=1009.0,
        mono_s=9.0,
        dt_s=1.0,
        listeners=(ListenQueue(8000, "0.0.0.0", 3, 4096, "netlink sock_diag"),),
        inbound_conns=12,
        inbound_recv_q_bytes=0,
        inbound_send_q_bytes=1536,
        upstreams=(PeerConn("10.0.0.2", 6379, 2, 0, 0),),
        upstream_conns=2,
        upstream_recv_q_bytes=0,
        upstream_send_q_bytes=0,
        retrans_segs_per_s=1.0,
        retrans_pct=0.5,
        listen_overflows_per_s=None,
    )


def full_window() -> Window:
    queue = tuple(serving(i, requests_waiting=w, **FULL) for i, w in enumerate([0.0, 2.0, 4.0, 8.0, 12.0]))
    logs = (serving(9, source="vllm log /var/log/vllm.log", requests_waiting=11.0, requests_running=8.0),)
    return window({"queue": queue, "logs": logs, "sockets": (kernel(),)})


def test_full_pane_shows_every_block_with_its_source():
    text = QueuePane().build(full_window(), 80).plain
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert lines[0].startswith("QUEUE ") and URL in lines[0]
    assert "waiting   12" in text and "running    8" in text
    assert "batch 8 / max 256" in text and "KV cache 93% (near full)" in text
    assert "TTFT 120ms/480ms" in text and "ITL 22ms/41ms" in text and "e2e 2.10s/6.00s" in text
    assert "tokens 3.4k in 1.2k out /s" in text and "req 4.2/s" in text and "preempt 0.5/s" in text
    assert "vllm log /var/log/vllm.log" in text
    assert "kernel TCP :8000 accept 3/4096 · in-flight conns 12" in text
    assert "kernel unread 0 B · unacked 1.5 KiB · retrans 0.5% · upstream 2 (unacked 0 B)" in text
    assert "retrans 0.5%" in text
    assert "probed" not in text  # something was found: no tried line


def test_waiting_sparkline_follows_the_window():
    text = QueuePane().build(full_window(), 80).plain
    line = next(line for line in text.splitlines() if line.startswith("waiting"))
    # 0, 2, 4, 8, 12 scaled to the highest value: the line rises to a full block.
    assert "▁▃▅█" in line


def test_nothing_found_shows_what_was_tried():
    tried = (
        "ports 8000, 9090 probed: no Prometheus text; pass --metrics-url",
        "8000: HTTP 404",
        "9090: HTML page, not Prometheus text",
        "a fourth line that does not fit",
    )
    empty = ServingSample(0, 0, None, source="", profile="", stats=ServingStats(), tried=tried)
    text = QueuePane().build(window({"queue": (empty,)}), 80).plain
    assert tried[0] in text and "8000: HTTP 404" in text and "9090: HTML page" in text
    assert "fourth line" not in text  # bounded: the pane keeps its height


def test_unavailable_source_shows_its_reason_and_kernel_block_still_shows():
    status = SourceStatus("queue", SourceState.UNAVAILABLE, "scraping is off (--no-scrape) and no --metrics-url")
    text = QueuePane().build(window({"sockets": (kernel(),)}, {"queue": status}), 80).plain
    assert "kernel TCP" in text and "metrics: scraping is off (--no-scrape)" in text


def test_log_only_source_is_shown():
    logs = (
        serving(1, source="sglang log /tmp/s.log", profile="sglang", requests_waiting=3.0, kv_cache_usage_pct=40.0),
    )
    text = QueuePane().build(window({"logs": logs}), 80).plain
    assert "sglang log /tmp/s.log" in text and "waiting    3" in text and "KV cache 40%" in text


def test_empty_window_waits():
    assert "looking for the server's /metrics" in QueuePane().build(window({}), 80).plain


@pytest.mark.parametrize(("s", "want"), [(None, "–"), (0.0004, "400µs"), (0.12, "120ms"), (2.5, "2.50s")])
def test_fmt_latency(s, want):
    assert fmt_latency(s) == want


class PaneApp(App[None]):
    CSS_PATH = str(Path(optitop.tui.__file__).parent / "optitop.tcss")  # the app's colours

    def __init__(self, win: Window) -> None:
        super().__init__()
        self.win = win

    def compose(self) -> ComposeResult:
        yield QueuePane(id="queue")


async def test_pane_renders_in_an_80x24_app_and_shows_names_literally():
    source = "vllm @ http://127.0.0.1:8000/[bold]metrics[/]"
    win = window({"queue": (serving(1, source=source, requests_waiting=1.0),)})
    app = PaneApp(win)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(QueuePane)
        assert pane.show(win) is True
        await pilot.pause()
        assert pane.show(win) is False  # unchanged text: no redraw
        rendered = pane.build(win, pane.content_width())
        assert "[bold]metrics[/]" in rendered.plain
        assert any(span.style for span in rendered.spans)  # styled through component classes once mounted


def test_second_source_is_one_line_with_its_own_name():
    text = QueuePane().build(full_window(), 80).plain
    assert "vllm log /var/log/vllm.log: waiting 11 · running 8" in text.splitlines()


def styled(text: Text, needle: str) -> set[str]:
    """The styles of the spans that cover ``needle`` in ``text``."""
    start = text.plain.index(needle)
    end = start + len(needle)
    return {str(s.style) for s in text.spans if s.start <= start and s.end >= end}


async def test_warnings_are_coloured_in_the_app():
    full_backlog = kernel()
    full_backlog = dataclasses.replace(
        full_backlog, listeners=(ListenQueue(8000, "0.0.0.0", 4000, 4096, "netlink sock_diag"),)
    )
    queue = tuple(serving(i, requests_waiting=5.0, **FULL) for i in range(3))
    win = window({"queue": queue, "sockets": (full_backlog,)})
    app = PaneApp(win)
    async with app.run_test(size=(80, 24)):
        pane = app.query_one(QueuePane)
        warn = str(pane.sty("pane--warn"))
        assert warn  # the stylesheet gives warnings a colour
        rendered = pane.build(win, 78)
        assert warn in styled(rendered, "KV cache 93% (near full)")
        assert warn in styled(rendered, ":8000 accept 4000/4096")
        assert warn in styled(rendered, "preempt 0.5/s")
        assert warn not in styled(rendered, "req 4.2/s")


def test_lines_come_most_important_first_for_small_terminals():
    lines = QueuePane().build(full_window(), 80).plain.splitlines()
    # The app keeps the first max_lines lines at 80x24: source, queue, batch/KV, latencies, accept queue.
    assert lines[0].startswith("QUEUE vllm @")
    assert lines[1].startswith("waiting")
    assert lines[2].startswith("batch")
    assert lines[3].startswith("p50/p95 TTFT")
    assert lines[4].startswith("kernel TCP :8000 accept")
    assert lines[-1].startswith("kernel unread")


async def test_max_lines_keeps_the_head_in_the_app():
    win = full_window()
    app = PaneApp(win)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(QueuePane)
        pane.max_lines = 2
        pane.show(win)
        await pilot.pause()
        shown = str(pane.render()).splitlines()
        assert len(shown) == 2 and shown[0].startswith("QUEUE vllm @") and shown[1].startswith("waiting")


def test_shows_the_accept_queue_against_the_backlog():
    sample = dataclasses.replace(kernel(), listeners=(ListenQueue(8000, "0.0.0.0", 9, 10, "netlink sock_diag"),))
    text = QueuePane().build(window({"sockets": (sample,)}), 80).plain
    assert "kernel TCP :8000 accept 9/10 · in-flight conns 12" in text
