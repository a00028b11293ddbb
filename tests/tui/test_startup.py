"""The screen comes first, the collectors after: the live handle is started after the first frame."""

from __future__ import annotations

import threading

from tuiscreen import wait_for_screen

from optitop.config import Options
from optitop.runtime import LiveRuntime, make_session
from optitop.store import Store
from optitop.target import describe
from optitop.tui.app import OptitopApp

BUSY = """
threading.Thread(target=spin, args=("burner",), daemon=True).start()
ready()
time.sleep(600)
"""


async def test_the_frame_is_drawn_before_the_session_is_built(start_target):
    target = start_target(BUSY)
    options = Options(interval_s=0.3)
    store = Store(describe(target.pid), history_s=options.history_s)
    release = threading.Event()
    built = []

    def build():
        assert release.wait(20), "the test never let the session start"
        session = make_session(target.pid, options, store)
        built.append(session)
        return session

    live = LiveRuntime(store, options, build=build)
    app = OptitopApp(live, options)
    async with app.run_test(size=(80, 24)) as pilot:
        # the whole layout and the target are on screen while the collectors do not exist yet
        text = await wait_for_screen(pilot, lambda t: f"pid {target.pid}" in t and "q quit" in t)
        assert "burner" not in text and live.session is None
        release.set()
        await wait_for_screen(pilot, lambda t: "burner" in t)  # then the data arrive
        assert live.session is built[0]
    assert built[0].stopped, "quitting stops the session that was started late"


async def test_a_session_that_cannot_be_built_exits_with_the_reason(start_target, capsys):
    target = start_target("ready()\ntime.sleep(600)")
    store = Store(describe(target.pid))

    def broken():
        raise RuntimeError("no collectors here")

    app = OptitopApp(LiveRuntime(store, Options(interval_s=0.3), build=broken), Options(interval_s=0.3))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
    assert app.return_code == 2
    err = capsys.readouterr().err
    assert "optitop: could not start collecting: no collectors here" in err and "Traceback" not in err


async def test_quitting_while_the_session_is_built_starts_nothing(start_target):
    target = start_target("ready()\ntime.sleep(600)")
    options = Options(interval_s=0.3)
    store = Store(describe(target.pid))
    release = threading.Event()
    finished = threading.Event()
    made = []

    def slow():
        release.wait(20)
        session = make_session(target.pid, options, store)
        made.append(session)
        finished.set()
        return session

    live = LiveRuntime(store, options, build=slow)
    app = OptitopApp(live, options)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_screen(pilot, lambda t: "q quit" in t)
        await pilot.press("q")
    release.set()
    assert finished.wait(20)
    starter = next((t for t in threading.enumerate() if t.name == "optitop-start"), None)
    if starter is not None:
        starter.join(20)
    assert live.session is None, "a session built after quitting must not be kept"
    assert not made[0]._housekeeper.is_alive(), "nor started"
