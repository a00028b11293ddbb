"""The picker lists likely inference servers first, filters as you type, and Enter attaches."""

from __future__ import annotations

from tuiscreen import wait_for_screen

from optitop.candidates import find_candidates
from optitop.tui.picker import PickerApp


def test_a_torch_process_with_a_port_ranks_above_a_plain_sleeper(start_target):
    server = start_target(
        """
        import socket, torch
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
        ready()
        time.sleep(600)
        """
    )
    sleeper = start_target("ready()\ntime.sleep(600)\n")
    found = find_candidates(sample_s=0.1)
    pids = [c.pid for c in found]
    assert server.pid in pids and sleeper.pid in pids
    srv = next(c for c in found if c.pid == server.pid)
    assert srv.torch and srv.ports
    assert pids.index(server.pid) < pids.index(sleeper.pid)


async def test_type_to_filter_and_enter_attaches(start_target):
    a = start_target("ready()\ntime.sleep(600)  # picker-alpha\n")
    b = start_target("ready()\ntime.sleep(600)  # picker-beta\n")
    app = PickerApp(find_candidates(sample_s=0.05))
    async with app.run_test(size=(120, 30)) as pilot:
        # filter to the two targets first: on a busy machine other processes can push them off the first page
        await pilot.press(*"picker-")
        await wait_for_screen(pilot, lambda t: str(a.pid) in t and str(b.pid) in t)
        await pilot.press(*"beta")
        text = await wait_for_screen(pilot, lambda t: str(a.pid) not in t)
        assert str(b.pid) in text
        await pilot.press("enter")
    assert app.return_value == b.pid
