"""The live screen against a real target, driven headlessly with Pilot."""

from __future__ import annotations

import pytest
from tuiscreen import screen_text, wait_for_screen

from optitop.config import Options
from optitop.runtime import live_runtime
from optitop.tui.app import OptitopApp

TARGET = """
named_thread(spin, "burner")
named_thread(nap, "[bold]sleepy[/]")
ready()
time.sleep(600)
"""


def make_app(pid: int, **opts) -> OptitopApp:
    options = Options(interval_s=0.3, **opts)
    return OptitopApp(live_runtime(pid, options), options)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_cpu_pane_shows_thread_names_literally(start_target, size):
    target = start_target(TARGET)
    app = make_app(target.pid)
    async with app.run_test(size=size) as pilot:
        text = await wait_for_screen(pilot, lambda t: "burner" in t)
        assert f"pid {target.pid}" in text
        text = await wait_for_screen(pilot, lambda t: "[bold]sleepy[/]" in t)  # markup shown, not applied
        assert "●process" in text and "●system" in text  # the header says which sources are live
        assert "q quit" in text and "p pause" in text and "? help" in text  # footer with key bindings


async def test_exit_banner_appears_and_history_stays(start_target):
    target = start_target(TARGET)
    app = make_app(target.pid)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, lambda t: "burner" in t)
        target.kill()
        text = await wait_for_screen(pilot, lambda t: "target exited at" in t)
        assert "burner" in text  # the last sample is still on screen
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_pause_help_and_quit(start_target):
    target = start_target(TARGET)
    app = make_app(target.pid)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, lambda t: "burner" in t)
        await pilot.press("p")
        await wait_for_screen(pilot, lambda t: "PAUSED" in t)
        await pilot.press("space")
        await wait_for_screen(pilot, lambda t: "PAUSED" not in t)
        await pilot.press("question_mark")
        await wait_for_screen(pilot, lambda t: "optitop — keys" in t)
        await pilot.press("escape")
        await wait_for_screen(pilot, lambda t: "optitop — keys" not in t)
        await pilot.press("q")
    assert not app.is_running


async def test_resize_down_to_tiny_and_back_does_not_crash(start_target):
    target = start_target(TARGET)
    app = make_app(target.pid)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for_screen(pilot, lambda t: "burner" in t)
        for size in [(80, 24), (40, 12), (20, 8), (120, 40)]:
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
            assert screen_text(app)  # renders something, no exception
        await wait_for_screen(pilot, lambda t: "burner" in t)


async def test_zoom_and_history_keys(start_target):
    target = start_target(TARGET)
    app = make_app(target.pid)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for_screen(pilot, lambda t: "burner" in t)
        await pilot.press("2")  # zoom the CPU pane: the tree and verdict go away
        text = await wait_for_screen(pilot, lambda t: "TREE" not in t)
        assert "burner" in text and app.zoomed == "cpu-box"
        await pilot.press("2")  # back
        await wait_for_screen(pilot, lambda t: "TREE" in t)
        before = app.live.history_s
        await pilot.press("minus")
        assert app.live.history_s < before
        await pilot.press("plus")
        await pilot.press("plus")
        assert app.live.history_s > before
