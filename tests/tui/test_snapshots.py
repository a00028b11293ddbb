"""Snapshot tests of the whole screen on replayed, deterministic data (pytest-textual-snapshot).

The store is filled by replaying a recording written by ``screen_recording`` (no live collector runs), so
the same SVG comes out on every run. After a deliberate change to the screen, regenerate with
``.venv/bin/pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs under
``tests/tui/__snapshots__/`` before committing them.

These tests are synchronous: ``snap_compare`` runs the app in its own event loop.
"""

from __future__ import annotations

import time

import pytest
from screen_recording import replayed_store
from textual.pilot import Pilot
from tuiscreen import screen_text

from optitop.config import Options
from optitop.live import StoreView
from optitop.tui.app import OptitopApp
from optitop.tui.panes.base import Pane


def make_app(tmp_path, **opts: object) -> OptitopApp:
    store = replayed_store(str(tmp_path / "busy.jsonl"))
    return OptitopApp(StoreView(store), Options(interval_s=0.5, **opts))  # type: ignore[arg-type]


async def settled(pilot: Pilot) -> None:
    """Wait until every pane has drawn the replayed data (the first render is scheduled after a refresh)."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        await pilot.pause(0.05)
        panes = list(pilot.app.query(Pane))
        if all(p._shown for p in panes) and "COMPUTE-BOUND" in screen_text(pilot.app):
            break
    await pilot.pause()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_busy_gpu_server(snap_compare, tmp_path, size):
    assert snap_compare(make_app(tmp_path), terminal_size=size, run_before=settled)


def test_busy_gpu_server_monochrome(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path, monochrome=True), terminal_size=(80, 24), run_before=settled)


def test_help_screen(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), press=["question_mark"], terminal_size=(80, 24), run_before=settled)


def test_gpu_pane_zoomed(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path), press=["3"], terminal_size=(80, 24), run_before=settled)


async def test_80x24_keeps_the_essentials_of_every_pane(tmp_path):
    """What the snapshot shows, said in words: a failure here names what went missing."""
    app = make_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settled(pilot)
        rows = screen_text(app).splitlines()
    text = "\n".join(rows)
    assert len(rows) <= 24
    assert "COMPUTE-BOUND" in text and "72%" in text  # the verdict and its confidence
    assert "SM 90% tensor 72% DRAM bw 32%" in text  # the GPU's numbers on one row when rows are short
    assert "vllm-engine          4243 run" in text  # a Python thread row in place of its column heading
    assert not any(row.lstrip().startswith("THREAD ") for row in rows)  # no heading left with nothing under it
    assert "waiting    3" in text and "KV cache 58%" in text
    assert "q quit" in rows[-1]
