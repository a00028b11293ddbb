"""At 80x24, as on call: a zoomed pane shows every line whole, the main screen leaves no row blank while a pane
is cut, and the words match the numbers (confidence words; TTFT only for servers that count tokens)."""

from __future__ import annotations

import dataclasses
import time

import pytest
import samplefactory
from tuiscreen import screen_text, wait_for_screen, without_scrollbar

from optitop.config import Options
from optitop.live import StoreView
from optitop.model import (
    Diagnosis,
    HotFunction,
    PyStacksSample,
    PyThread,
    ServingStats,
    SourceState,
    SourceStatus,
    TargetInfo,
    confidence_word,
)
from optitop.store import Store
from optitop.tui.app import OptitopApp
from optitop.tui.panes.base import Pane, wrap_row

TARGET = TargetInfo(pid=4242, name="server", cmdline="python server.py", username="u", create_time_s=0.0, host="h")
WALL0 = 1_800_000_000.0

EVIDENCE = (
    "4 requests in progress while the tree used 2 % of a core and no GPU: each request spent 630 ms in the server",
    "workers parked on queues/timers 97 % of the time with 4 clients connected and no upstream connection open",
)
FIXES = (
    "Shorten the batcher's timeout / max-wait, or run a partial batch when capacity is free: requests wait for a "
    "timer or a full batch",
    "Batch waiting requests together (dynamic batching with a short max-wait) instead of one forward pass per request",
)
COUNTER = ("not scheduling if busiest Python thread active % >= 70 (now 3), or if the requests stop arriving at all",)
MISSING = ("no GPU counters: NVML not found (libnvidia-ml.so.1): no NVIDIA driver on this machine; run with --no-gpu",)
RULES = ("scheduling 0.71 · +0.35 sched.parked: py_parked 0.97 >= 0.5, inbound_conns 4 >= 1",)
LONG = Diagnosis(
    "scheduling",
    0.71,
    evidence=EVIDENCE,
    fixes=FIXES,
    secondary=(("host_cpu", 0.22),),
    missing=MISSING,
    counter=COUNTER,
    rules=RULES,
    mono_s=10.0,
)

FRAME = "batched_forward_with_a_long_name (inference/workers/adaptive_batching/scheduler_loop.py:1234)"
WHERE = "inference/workers/adaptive_batching/a/deeply/nested/package/of/the/model/server/module.py:77"
SOURCE = "generic @ http://127.0.0.1:18080/a/long/path/to/the/metrics/endpoint/of/this/server/metrics"


def whole(screen: str) -> str:
    """The screen's words in one line (without the scrollbar's columns): a wrapped line reads as it was."""
    return " ".join(" ".join(without_scrollbar(row) for row in screen.splitlines()).split())


def unbroken(screen: str) -> str:
    """The screen's characters without whitespace or scrollbar: a word longer than a row is cut into pieces."""
    return "".join(whole(screen).split())


def make_store(diagnosis: Diagnosis = LONG, stats: ServingStats | None = None) -> Store:
    store = Store(TARGET, clock=lambda: 20.0)
    for name in ("process", "pystacks", "queue"):
        store.set_status(SourceStatus(name, SourceState.OK))
    for i in range(2):
        store.add("process", samplefactory.process_sample(WALL0 + i, 10.0 + i, 1.0 if i else None, cpu_pct=3.0))
    threads = tuple(
        PyThread(4300 + i, f"worker-{i}", 100, 3.0, 0.0, FRAME, "queue", (("queue", 0.97), ("active", 0.03)))
        for i in range(3)
    )
    store.add(
        "pystacks",
        PyStacksSample(
            WALL0 + 1, 11.0, 2.0, mode="record", window_s=2.0, samples=100, threads=threads, gil_pct=1.0,
            active_pct=3.0, waits=(("queue", 0.97), ("active", 0.03)),
            hot=(HotFunction("batched_forward_with_a_long_name", WHERE, 2.0, 3.0, False),),
            native_mix=None, native_age_s=None, trigger="",
        ),
    )  # fmt: skip
    stats = stats or ServingStats(
        requests_running=4.0, request_rate_per_s=7.4, ttft_p50_s=0.075, ttft_p95_s=0.098, e2e_p50_s=0.075,
        e2e_p95_s=0.098,
    )  # fmt: skip
    store.add("queue", samplefactory.serving_sample(WALL0 + 1, 11.0, stats=stats, source=SOURCE, profile="generic"))
    store.add_diagnosis(diagnosis)
    return store


async def zoomed_screen(store: Store, key: str, expect: str) -> str:
    app = OptitopApp(StoreView(store), Options(interval_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "SCHEDULING" in t)
        await pilot.press(key)
        return await wait_for_screen(pilot, lambda t: expect in t)


async def test_zoomed_verdict_shows_every_line_whole_and_the_rules_that_fired():
    screen = await zoomed_screen(make_store(), "1", "evidence")
    words = whole(screen)
    for line in (*EVIDENCE, *FIXES, *COUNTER, *MISSING, *RULES):
        assert whole(line) in words, line
    assert "runners-up: host cpu 22%" in screen
    assert "…" not in screen  # nothing clipped
    rows = screen.splitlines()
    assert len(rows) <= 24 and all(len(row) <= 80 for row in rows)
    fix = next(i for i, row in enumerate(rows) if "1. Shorten" in row)
    assert rows[fix + 1].startswith(" " * 6)  # a wrapped fix hangs under its text, not under its number


async def test_zoomed_python_pane_shows_frames_and_paths_whole():
    screen = await zoomed_screen(make_store(), "6", "WAITS ON")
    assert unbroken(FRAME) in unbroken(screen) and unbroken(WHERE) in unbroken(screen)
    assert "…" not in screen


async def test_zoomed_queue_pane_shows_its_source_whole():
    screen = await zoomed_screen(make_store(), "5", "QUEUE")
    assert unbroken(SOURCE) in unbroken(screen)
    assert "…" not in screen


async def test_80x24_leaves_no_row_blank_while_a_pane_is_cut():
    app = OptitopApp(StoreView(make_store()), Options(interval_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "SCHEDULING" in t and "worker-" in t)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the first frames share the rows before each pane's length is known
            await pilot.pause(0.2)
            panes = [p for p in app.query(Pane) if p.display]
            cut = [p.id for p in panes if p.max_lines is not None and p.natural_rows > p.max_lines]
            rows = screen_text(app).splitlines()
            blank = [i for i, row in enumerate(rows[:-1]) if not row.strip()]
            if cut and not blank:
                break
        assert cut, "the test needs a pane with more to show than fits"
        assert not blank, f"rows {blank} are blank while {cut} are cut:\n" + "\n".join(rows)


@pytest.mark.parametrize(
    ("confidence", "word"), [(0.34, "leaning"), (0.2, "tentative"), (0.55, "likely"), (0.72, "confident")]
)
async def test_the_headline_word_matches_the_confidence(confidence, word):
    store = make_store(Diagnosis("compute", confidence, evidence=("x",), mono_s=10.0))
    app = OptitopApp(StoreView(store), Options(interval_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
    headline = next(row for row in screen.splitlines() if "COMPUTE-BOUND" in row)
    assert f"{confidence:.0%}" in headline and word in headline
    assert word == confidence_word(confidence)
    if word != "confident":
        assert "confident" not in headline


async def test_a_server_without_tokens_shows_latency_not_ttft():
    app = OptitopApp(StoreView(make_store()), Options(interval_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        screen = await wait_for_screen(pilot, lambda t: "p50/p95" in t)
    assert "latency 75ms/98ms" in screen
    assert "TTFT" not in screen and "e2e" not in screen


async def test_an_llm_server_keeps_ttft_and_e2e():
    stats = ServingStats(
        requests_running=4.0, ttft_p50_s=0.09, ttft_p95_s=0.31, e2e_p50_s=3.2, e2e_p95_s=7.9,
        generation_tokens_per_s=1500.0,
    )  # fmt: skip
    app = OptitopApp(StoreView(make_store(stats=stats)), Options(interval_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("5")
        screen = await wait_for_screen(pilot, lambda t: "p50/p95" in t)
    assert "TTFT 90ms/310ms" in screen and "e2e 3.20s/7.90s" in screen


def test_wrap_row_breaks_at_spaces_and_cuts_only_words_longer_than_a_row():
    from rich.text import Text

    rows = wrap_row(Text("  · " + "word " * 30), 40)
    assert all(len(r.plain) <= 40 for r in rows) and len(rows) > 1
    assert all(r.plain.startswith("    word") for r in rows[1:])
    long = wrap_row(Text("x" * 100), 40)
    assert [len(r.plain) for r in long] == [40, 40, 20]


@pytest.mark.parametrize("notice", ["exited", "re-attached"])
async def test_a_third_header_line_is_taken_from_the_panes_budget(notice):
    """The header grows a line when the target exits or --follow re-attaches: the panes below share one row less,
    so the bottom pane is not pushed under the footer."""

    async def budget(store: Store) -> int:
        app = OptitopApp(StoreView(store), Options(interval_s=0.2))
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for_screen(pilot, lambda t: "SCHEDULING" in t and "worker-" in t)
            await pilot.pause(0.3)
            return sum(p.max_lines or 0 for p in app.query(Pane) if p.display)

    plain = make_store()
    marked = make_store()
    if notice == "exited":
        marked.mark_target_exited("test")
    else:
        marked.set_target(dataclasses.replace(TARGET, previous_pids=(TARGET.pid - 1,), reattached_at_s=WALL0))
    assert await budget(marked) == await budget(plain) - 1
