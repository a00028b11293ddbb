"""The replay screen: a recording played back in ReplayApp — values on screen, pause, step and seek."""

from __future__ import annotations

import re
import time

import pytest
from conftest import wait_for
from tuiscreen import screen_text, wait_for_screen

from optitop.config import Options
from optitop.live import StoreView
from optitop.model import ProcessSample, SourceState, SourceStatus, TargetInfo, ThreadSample
from optitop.recording.replayer import Replayer
from optitop.recording.scan import load
from optitop.recording.writer import Recorder
from optitop.store import Store
from optitop.tui.replay import ReplayApp

WALL0 = time.mktime((2026, 3, 12, 3, 12, 0, 0, 0, -1))  # 03:12:00 local time
SECONDS = 40


def sample(i: int, t0: float) -> ProcessSample:
    """A target whose CPU climbs 1 % per second (so the screen tells positions apart) with named threads."""
    cpu = 20.0 + i
    return ProcessSample(
        WALL0 + i,
        t0 + i,
        1.0,
        pid=777,
        cpu_pct=cpu,
        cpu_pct_of_allowed=cpu / 2,
        allowed_cores=2,
        rss_bytes=50 << 20,
        vol_ctx_switches_per_s=1.0,
        invol_ctx_switches_per_s=1.0,
        minor_faults_per_s=0.0,
        major_faults_per_s=0.0,
        read_bytes_per_s=0.0,
        write_bytes_per_s=0.0,
        num_threads=2,
        num_fds=5,
        num_procs=1,
        status="running",
        threads=(ThreadSample(778, 777, f"worker-{i:02d}", "R", cpu), ThreadSample(779, 777, "[red]lit[/]", "S", 0.0)),
        procs=(),
    )


def make_recording(path: str) -> None:
    store = Store(TargetInfo(777, "python", "python serve.py", "me", WALL0 - 100, "replayhost"))
    recorder = Recorder(store, path)
    recorder.start()
    store.set_status(SourceStatus("process", SourceState.OK))
    t0 = time.monotonic() + 1.0  # after the status line the recorder stamps "now"
    for i in range(SECONDS):
        store.add("process", sample(i, t0))
    wait_for(lambda: recorder.events >= SECONDS)
    recorder.stop()


def make_app(tmp_path, speed: float = 1.0) -> ReplayApp:
    path = str(tmp_path / "incident.jsonl.gz")
    make_recording(path)
    replayer = Replayer(load(path), speed=speed)
    return ReplayApp(replayer, StoreView(replayer.store), Options(interval_s=0.2))


def worker_on_screen(text: str) -> int:
    found = re.findall(r"worker-(\d\d)", text)
    assert found, text
    return int(found[-1])


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_replay_shows_recorded_values_and_the_replay_bar(tmp_path, size):
    app = make_app(tmp_path, speed=20.0)
    async with app.run_test(size=size) as pilot:
        text = await wait_for_screen(pilot, lambda t: "REPLAY" in t and "worker-" in t)
        assert "incident.jsonl.gz" in text and "@ 03:12:" in text
        assert "pid 777" in text and "[red]lit[/]" in text  # target names shown literally
        await wait_for_screen(pilot, lambda t: "END" in t, timeout_s=20)  # 40 s at x20
        text = screen_text(app)
        assert worker_on_screen(text) == SECONDS - 1
        assert "59%" in text  # the last recorded CPU (20 + 39)


async def test_pause_step_and_seek_keys(tmp_path):
    app = make_app(tmp_path, speed=1.0)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, lambda t: "worker-" in t)
        await pilot.press("space")
        text = await wait_for_screen(pilot, lambda t: "PAUSED" in t)
        at = worker_on_screen(text)
        await pilot.pause(0.5)
        assert worker_on_screen(screen_text(app)) == at  # paused: the position holds
        await pilot.press("full_stop")
        text = await wait_for_screen(pilot, lambda t: worker_on_screen(t) == at + 1)
        assert "PAUSED" in text
        await pilot.press("right")
        await wait_for_screen(pilot, lambda t: worker_on_screen(t) == at + 11)
        await pilot.press("right_square_bracket")
        await wait_for_screen(pilot, lambda t: worker_on_screen(t) == at + 21)
        await pilot.press("left")
        await wait_for_screen(pilot, lambda t: worker_on_screen(t) == at + 11)  # backwards re-fills the store
        await pilot.press("left_square_bracket")
        await wait_for_screen(pilot, lambda t: worker_on_screen(t) == at + 1)
        assert "@ 03:12:" in screen_text(app)
        await pilot.press("p")
        text = await wait_for_screen(pilot, lambda t: "PAUSED" not in t and worker_on_screen(t) > at + 1)
        await pilot.press("q")
    assert not app.is_running


async def test_keys_that_need_a_live_process_say_so_at_once(tmp_path):
    """b, r and n in a replay: one notice each saying why not, never "writing the incident bundle…" first."""
    app = make_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, lambda t: "worker-" in t)
        for key in ("b", "r", "n"):
            await pilot.press(key)
        await pilot.pause()
        said = [str(n.message) for n in app._notifications]
        assert said == [StoreView.NO_BUNDLE, StoreView.NO_RECORD, StoreView.NO_NATIVE], said
        await pilot.press("q")
