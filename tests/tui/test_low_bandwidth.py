"""--low-bandwidth: numbers update every interval, sparklines and the verdict strip only every 5 s.

The store is a replay's, whose clock the test moves by hand, so "5 s later" is exact and instant.
"""

from __future__ import annotations

import dataclasses

import pytest
from screen_recording import replayed_store
from tuiscreen import wait_for_screen

from optitop.config import Options
from optitop.live import StoreView
from optitop.recording.replayer import ReplayStore
from optitop.tui.app import OptitopApp


def cpu_row(text: str) -> str:
    return next(line for line in text.splitlines() if line.lstrip().startswith("CPU "))


def spark_of(text: str) -> str:
    return cpu_row(text).rsplit("  ", 1)[-1]


def push_cpu(store: ReplayStore, cpu: float, seconds_later: float) -> None:
    """A new process sample ``seconds_later`` than the newest, and the replay clock moved to it."""
    last = store.window().samples["process"][-1]
    mono = last.mono_s + seconds_later
    store.clock_mono_s = mono
    store.add("process", dataclasses.replace(last, mono_s=mono, ts_s=last.ts_s + seconds_later, cpu_pct=cpu))


@pytest.mark.parametrize("low_bandwidth", [False, True])
async def test_sparklines_hold_for_five_seconds_in_low_bandwidth_mode(tmp_path, low_bandwidth):
    store = replayed_store(str(tmp_path / "busy.jsonl"))
    app = OptitopApp(StoreView(store), Options(interval_s=0.2, low_bandwidth=low_bandwidth))
    async with app.run_test(size=(80, 24)) as pilot:
        text = await wait_for_screen(pilot, lambda t: "CPU 96%" in t)
        before = spark_of(text)
        push_cpu(store, 10.0, 1.0)  # a drop to 10 % (same width): the last cell would become ▁
        text = await wait_for_screen(pilot, lambda t: "CPU 10% of a core" in t)  # numbers: at the next frame
        if low_bandwidth:
            assert spark_of(text) == before
            assert app.query_one("#cpu").history_every_s == OptitopApp.LOW_BANDWIDTH_HISTORY_S
        else:
            assert spark_of(text) != before
        push_cpu(store, 150.0, OptitopApp.LOW_BANDWIDTH_HISTORY_S)  # 5 s later: the held window is let go
        text = await wait_for_screen(pilot, lambda t: "CPU 150% of a core" in t)
        assert spark_of(text) != before


@pytest.mark.parametrize("low_bandwidth", [False, True])
async def test_low_bandwidth_draws_fewer_frames_but_a_new_verdict_at_once(tmp_path, monkeypatch, low_bandwidth):
    monkeypatch.setattr(OptitopApp, "LOW_BANDWIDTH_REDRAW_S", 60.0)  # so any frame below is not the periodic one
    store = replayed_store(str(tmp_path / "busy.jsonl"))
    app = OptitopApp(StoreView(store), Options(interval_s=0.2, low_bandwidth=low_bandwidth))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "CPU 96%" in t)
        frames = app._renders
        for i in range(15):  # 1.5 s of new samples, a changed number in each
            push_cpu(store, 10.0 + i, 0.1)
            await pilot.pause(0.1)
        if low_bandwidth:
            assert app._renders == frames
        else:
            assert app._renders - frames >= 3  # 7 ticks; a loaded machine may drop some
        last = store.window().diagnoses[-1]
        store.add_diagnosis(dataclasses.replace(last, category="network", mono_s=store.clock_mono_s))
        await wait_for_screen(pilot, lambda t: "NETWORK / LATENCY" in t)  # a class change is drawn at once
        await pilot.press("p")
        await wait_for_screen(pilot, lambda t: "PAUSED" in t)  # and so is a key
