"""Every key of the live screen, driven with Pilot.

Most tests run the app on a replayed recording (screen_recording: every pane has data, nothing is
collected live); record, bundle and native-sample run against a real target with a real session, because
what they do (write a recording, dump stacks, ask the stacks collector) needs one.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest
from screen_recording import replayed_store
from textual.command import CommandPalette
from textual.pilot import Pilot
from tuiscreen import screen_text, wait_for_screen, without_scrollbar

from optitop.args import options_from
from optitop.commands.top import main_parser
from optitop.config import Options
from optitop.live import StoreView
from optitop.model import ThreadSample
from optitop.recording.scan import load
from optitop.recording.writer import default_record_path
from optitop.runtime import LiveRuntime, live_runtime
from optitop.tui.app import HelpScreen, OptitopApp
from optitop.tui.panes.verdict import VerdictPane

#: What each zoomable pane shows on the replayed data (a line no other pane has).
PANE_MARK = {
    "verdict": "COMPUTE-BOUND",
    "cpu-box": "% of 16) · host",
    "gpu": "H100 80GB HBM3 ",
    "membw": "MEMORY BANDWIDTH",
    "queue": "QUEUE vllm @",
    "python": "PYTHON record",
}

TARGET = """
named_thread(nap, "napper")
ready()
time.sleep(600)
"""


def replay_app(tmp_path: Path, **opts: object) -> OptitopApp:
    store = replayed_store(str(tmp_path / "busy.jsonl"))
    return OptitopApp(StoreView(store), Options(interval_s=0.2, **opts))  # type: ignore[arg-type]


def live_app(pid: int) -> OptitopApp:
    # py-spy and GPU probing are not what these keys are about; leave them off to keep the machine quiet
    options = Options(interval_s=0.5, disabled=frozenset({"pystacks", "gpu", "queue", "logs"}))
    return OptitopApp(live_runtime(pid, options), options)


def messages(app: OptitopApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def wait_notified(pilot: Pilot, part: str, timeout_s: float = 15.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [m for m in messages(pilot.app) if part in m]  # type: ignore[arg-type]
        if found:
            return found[-1]
        await pilot.pause(0.1)
    raise AssertionError(f"no notification with {part!r}; got {messages(pilot.app)}")  # type: ignore[arg-type]


async def wait_file(pilot: Pilot, directory: Path, pattern: str, timeout_s: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = sorted(directory.glob(pattern))
        if found:
            return found[0]
        await pilot.pause(0.1)
    raise AssertionError(f"no {pattern} in {directory}: {os.listdir(directory)}")


async def test_q_quits(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


@pytest.mark.parametrize("key", ["p", "space"])
async def test_pause_freezes_the_screen_and_resumes(tmp_path, key):
    app = replay_app(tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, lambda t: "vllm-engine" in t)
        await pilot.press(key)
        await wait_for_screen(pilot, lambda t: "PAUSED" in t)
        last = app.live.store.window().samples["process"][-1]
        thread = ThreadSample(9999, 4242, "fresh-thread", "R", 99.0)
        app.live.store.add(
            "process", dataclasses.replace(last, mono_s=last.mono_s + 1, ts_s=last.ts_s + 1, threads=(thread,))
        )
        await pilot.pause(1.0)  # five refresh intervals: a paused screen must not pick the sample up
        assert "fresh-thread" not in screen_text(app)
        await pilot.press(key)
        text = await wait_for_screen(pilot, lambda t: "fresh-thread" in t)
        assert "PAUSED" not in text


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_number_keys_zoom_every_pane_and_back(tmp_path, size):
    app = replay_app(tmp_path)
    async with app.run_test(size=size) as pilot:
        await wait_for_screen(pilot, lambda t: all(m in t for m in PANE_MARK.values()))
        for number, pane_id in enumerate(OptitopApp.ZOOMABLE, start=1):
            await pilot.press(str(number))
            others = [m for pid, m in PANE_MARK.items() if pid != pane_id]
            text = await wait_for_screen(pilot, lambda t, o=others: not any(m in t for m in o))
            assert PANE_MARK[pane_id] in text, (pane_id, text)
            assert app.zoomed == pane_id
            assert "pid 4242" in text  # the header stays
            await pilot.press(str(number))
            await wait_for_screen(pilot, lambda t: all(m in t for m in PANE_MARK.values()))
            assert app.zoomed is None


async def test_zoomed_verdict_shows_every_fix(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        assert "fixes to try first" not in text  # 80x24: the top fixes, clipped, on the main screen
        await pilot.press("1")
        text = await wait_for_screen(pilot, lambda t: "fixes to try first" in t)
        fixes = app.live.store.window().diagnoses[-1].fixes
        assert len(fixes) >= 2
        words = " ".join(without_scrollbar(row) for row in text.splitlines()).split()
        for fix in fixes:  # every fix, whole (wrapped, not clipped)
            assert " ".join(fix.split()) in " ".join(words)


async def test_plus_and_minus_step_the_history(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        assert app.live.store.history_s == 600.0
        await pilot.press("minus")
        assert app.live.store.history_s == 300.0
        assert "history: 5 min" in await wait_notified(pilot, "history: 5")
        await pilot.press("plus")
        await pilot.press("equals_sign")  # '=' is '+' without shift
        assert app.live.store.history_s == 1800.0
        for _ in range(5):
            await pilot.press("plus")
        assert app.live.store.history_s == OptitopApp.HISTORY_STEPS_S[-1]  # stops at the top
        for _ in range(10):
            await pilot.press("minus")
        assert app.live.store.history_s == OptitopApp.HISTORY_STEPS_S[0]  # and at the bottom


async def test_question_mark_opens_help_and_escape_or_q_closes_it(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        await pilot.press("question_mark")
        text = await wait_for_screen(pilot, lambda t: "optitop — keys" in t)
        assert isinstance(app.screen, HelpScreen)
        assert "1-6" in text and "ctrl+p" in text
        assert "own CPU and memory" not in text  # taller than 24 rows: the end is below the fold
        await pilot.press("end")
        await wait_for_screen(pilot, lambda t: "own CPU and memory" in t)  # and the keys scroll to it
        await pilot.press("escape")
        await wait_for_screen(pilot, lambda t: "optitop — keys" not in t)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, lambda t: "optitop — keys" in t)
        await pilot.press("q")  # inside help, q closes the help, not optitop
        await wait_for_screen(pilot, lambda t: "optitop — keys" not in t)
        assert app.is_running


async def test_ctrl_p_opens_the_command_palette(tmp_path):
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        await pilot.press("ctrl+p")
        deadline = time.monotonic() + 10
        while not isinstance(app.screen, CommandPalette) and time.monotonic() < deadline:
            await pilot.pause(0.1)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, CommandPalette)


async def test_r_records_to_a_private_file_and_r_again_stops(start_target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = start_target(TARGET)
    app = live_app(target.pid)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "napper" in t)
        await pilot.press("r")
        text = await wait_for_screen(pilot, lambda t: "● REC optitop-" in t)
        part = await wait_file(pilot, tmp_path, f"optitop-*{target.pid}*.jsonl.gz.part")  # renamed on stop
        assert part.name[:20] in text
        assert stat.S_IMODE(part.stat().st_mode) == 0o600  # cmdlines and metrics of someone's process
        await pilot.pause(1.5)  # let a few samples be recorded
        await pilot.press("r")
        await wait_for_screen(pilot, lambda t: "REC" not in t)
        path = part.with_name(part.name.removesuffix(".part"))
        assert "recorded" in await wait_notified(pilot, path.name)
        assert path.exists() and not part.exists()
        await pilot.press("q")
    recording = load(str(path))
    assert recording.complete and recording.target.pid == target.pid
    assert recording.samples("process")


def shadow_file(tmp_path: Path) -> Path:
    """A root-owned-looking file elsewhere that another user's planted links point at."""
    victim = tmp_path / "elsewhere" / "shadow"
    victim.parent.mkdir()
    victim.write_text("root:$6$precious:19000:0:99999:7:::\n")
    victim.chmod(0o640)
    return victim


def fingerprint(path: Path) -> tuple[bytes, int, int]:
    """What a write through a link would change: the bytes, the mode, the inode."""
    return path.read_bytes(), path.stat().st_mode, path.stat().st_ino


async def test_r_never_writes_through_a_link_planted_at_its_predictable_name(start_target, tmp_path, monkeypatch):
    # Another user plants links at the names the r key will use (the host, the pid and the next seconds) and
    # at their .part names, pointing at a root-owned file: the key press must leave that file alone.
    monkeypatch.chdir(tmp_path)
    target = start_target(TARGET)
    victim = shadow_file(tmp_path)
    before = fingerprint(victim)
    now = time.time()
    planted = []
    for second in range(60):  # the names of the next minute
        name = Path(default_record_path(target.pid, at_s=now + second))
        for link in (name, name.with_name(name.name + ".part")):
            if not link.is_symlink():
                link.symlink_to(victim)
                planted.append(link)
    app = live_app(target.pid)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "napper" in t)
        await pilot.press("r")
        await wait_for_screen(pilot, lambda t: "● REC optitop-" in t)
        await pilot.pause(1.0)
        await pilot.press("r")
        done = await wait_notified(pilot, "recorded")
        said = messages(app)
        await pilot.press("q")
    assert fingerprint(victim) == before
    assert all(link.is_symlink() and link.resolve() == victim for link in planted)
    written = Path(done.rsplit(" to ", 1)[1])
    assert written.name.endswith("-2.jsonl.gz")
    assert any("symbolic link" in m and written.name in m for m in said), said  # the user is told why
    assert not written.is_symlink() and stat.S_IMODE(written.stat().st_mode) == 0o600
    assert load(str(written)).target.pid == target.pid


async def test_b_writes_an_incident_bundle(start_target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = start_target(TARGET)
    app = live_app(target.pid)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "napper" in t)
        await pilot.press("b")
        await wait_notified(pilot, "writing the incident bundle")
        note = await wait_notified(pilot, "wrote optitop-incident-", timeout_s=40)
        path = tmp_path / note.removeprefix("wrote ")
        assert path.exists(), (note, os.listdir(tmp_path))
        await pilot.press("q")
    with tarfile.open(path) as tar:
        names = {os.path.basename(n) for n in tar.getnames()}
    assert {"manifest.json", "metrics.jsonl", "report.json", "stacks.txt"} <= names


async def test_b_never_writes_through_a_link_planted_at_its_predictable_name(start_target, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = start_target(TARGET)
    victim = shadow_file(tmp_path)
    before = fingerprint(victim)
    now = time.time()
    for second in range(90):  # the names of the next minute and a half, and their .part names
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now + second))
        for name in (
            f"optitop-incident-{target.pid}-{stamp}.tar.gz",
            f"optitop-incident-{target.pid}-{stamp}.tar.gz.part",
        ):
            if not (tmp_path / name).is_symlink():
                (tmp_path / name).symlink_to(victim)
    app = live_app(target.pid)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "napper" in t)
        await pilot.press("b")
        note = await wait_notified(pilot, "wrote optitop-incident-", timeout_s=40)
        await pilot.press("q")
    assert fingerprint(victim) == before
    written = tmp_path / note.removeprefix("wrote ").split(" ", 1)[0]
    assert written.name.endswith("-2.tar.gz") and "symbolic link" in note
    assert not written.is_symlink() and stat.S_IMODE(written.stat().st_mode) == 0o600
    with tarfile.open(written) as tar:
        assert "optitop-bundle/manifest.json" in tar.getnames()


async def test_n_without_a_stack_sampler_says_none_is_running(start_target):
    target = start_target(TARGET)
    app = live_app(target.pid)  # pystacks disabled: the session has no such runner
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "napper" in t)
        await pilot.press("n")
        assert await wait_notified(pilot, "native stacks") == LiveRuntime.NO_SAMPLER


async def test_zooming_the_python_pane_keeps_the_stacks_at_full_duty(start_target):
    target = start_target(TARGET)
    app = live_app(target.pid)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "napper" in t)
        session = app.live.session
        assert session is not None and not session.stacks_watched
        python_key = str(OptitopApp.ZOOMABLE.index("python") + 1)
        await pilot.press(python_key)
        assert app.zoomed == "python" and session.stacks_watched
        await pilot.press("1")  # another pane: the stacks are no longer watched
        assert app.zoomed == "verdict" and not session.stacks_watched
        await pilot.press(python_key, python_key)  # zoomed and back
        assert app.zoomed is None and not session.stacks_watched


async def test_n_on_a_replay_says_there_is_no_live_process(tmp_path):
    app = replay_app(tmp_path)  # no session at all
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        await pilot.press("n")
        assert await wait_notified(pilot, "native stacks") == StoreView.NO_NATIVE


# -- colour ----------------------------------------------------------------------------------------------
def verdict_colour(app: OptitopApp) -> object:
    return app.query_one(VerdictPane).sty("verdict--compute").color


async def test_colour_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        assert not app.has_class("-monochrome")
        colour = verdict_colour(app)
        assert colour is not None and colour.triplet is not None  # type: ignore[attr-defined]
        assert colour.triplet.hex == "#d75f5f"  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["NO_COLOR", "--mono"])
async def test_no_color_and_mono_drop_the_colours_but_keep_the_verdict(tmp_path, monkeypatch, how):
    monkeypatch.delenv("NO_COLOR", raising=False)
    if how == "NO_COLOR":
        monkeypatch.setenv("NO_COLOR", "1")
        options = options_from(main_parser().parse_args([]))
    else:
        options = options_from(main_parser().parse_args(["--mono"]))
        assert options.monochrome
    app = OptitopApp(StoreView(replayed_store(str(tmp_path / "busy.jsonl"))), options)
    async with app.run_test(size=(80, 24)) as pilot:
        text = await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        assert app.has_class("-monochrome")
        assert "72%" in text and "tensor cores active" in text  # the verdict is still there, in words
        colour = verdict_colour(app)
        assert colour is None or colour.triplet is None or colour.triplet.hex != "#d75f5f"  # type: ignore[attr-defined]


async def test_the_palette_screenshot_never_writes_through_a_link(tmp_path, monkeypatch):
    # Textual's own screenshot opened ~/Downloads/<name>.svg with a plain open(), following a planted link.
    monkeypatch.chdir(tmp_path)
    victim = shadow_file(tmp_path)
    before = fingerprint(victim)
    (tmp_path / "shot.svg").symlink_to(victim)
    app = replay_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        app.deliver_screenshot(filename="shot.svg")
        note = await wait_notified(pilot, "screenshot saved to")
    assert fingerprint(victim) == before
    written = tmp_path / "shot-2.svg"
    assert str(written.name) in note and written.read_text().startswith("<svg")
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
