"""How the screen is wired: it receives a handle (it builds no store or session), its panes come from one table,
and a pane whose build raises says so in its place instead of going stale or taking the app down."""

from __future__ import annotations

import ast
from pathlib import Path

from screen_recording import replayed_store
from tuiscreen import wait_for_screen

from optitop.config import Options
from optitop.live import StoreView
from optitop.tui.app import HelpScreen, OptitopApp
from optitop.tui.help import HELP_TEXT
from optitop.tui.layout import PANES, ZOOMABLE
from optitop.tui.panes.base import Pane
from optitop.tui.panes.tree import TreePane

ROOT = Path(__file__).resolve().parents[2]


def test_the_app_builds_no_store_or_session():
    """tui/app.py gets a LiveHandle: the runtime builds stores and sessions, records and bundles."""
    tree = ast.parse((ROOT / "tui" / "app.py").read_text())
    names = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    banned = {"optitop.session", "optitop.store", "optitop.bundle", "optitop.follow"}
    banned |= {"optitop.runtime", "optitop.recording", "optitop.target"}
    assert not {n for n in names if n in banned or any(n.startswith(b + ".") for b in banned)}
    source = (ROOT / "tui" / "app.py").read_text()
    assert "Store(" not in source and "Session(" not in source


def test_the_zoom_keys_and_their_help_come_from_the_pane_table():
    zoomable = [p for p in PANES if p.zoom_key]
    assert [p.zoom_id for p in zoomable] == list(ZOOMABLE) == list(OptitopApp.ZOOMABLE)
    listed = " ".join(f"{p.zoom_key} {p.label}" for p in zoomable)
    assert listed in " ".join(HELP_TEXT.split())
    keys = {b.key for b in OptitopApp.BINDINGS if hasattr(b, "key")}  # type: ignore[union-attr]
    assert {p.zoom_key for p in zoomable} <= keys
    assert HelpScreen is not None


def test_the_help_lists_every_pane_of_the_table_with_what_it_shows():
    flat = " ".join(HELP_TEXT.split())
    for pane in PANES:
        assert pane.title and pane.explain, pane.id
        assert f"{pane.title} {' '.join(pane.explain.split())}" in flat, pane.id


async def test_the_screen_shows_the_panes_of_the_table_in_order(tmp_path):
    app = OptitopApp(StoreView(replayed_store(str(tmp_path / "busy.jsonl"))), Options(interval_s=0.2))
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        shown = [pane.id for pane in app.query(Pane) if pane.id != "header"]
    assert shown == [p.id for p in PANES]


async def test_a_pane_that_raises_says_so_and_the_others_go_on(tmp_path, monkeypatch):
    broken = [True]
    build = TreePane.build

    def flaky(self, window, width):
        if broken[0]:
            raise ValueError("[bold]no tree[/] today")
        return build(self, window, width)

    monkeypatch.setattr(TreePane, "build", flaky)
    app = OptitopApp(StoreView(replayed_store(str(tmp_path / "busy.jsonl"))), Options(interval_s=0.2))
    async with app.run_test(size=(160, 48)) as pilot:
        text = await wait_for_screen(pilot, lambda t: "this pane failed" in t)
        assert "this pane failed: ValueError: [bold]no tree[/] today" in text  # literal: no markup applied
        assert "COMPUTE-BOUND" in text and app.is_running  # the other panes are drawn
        assert app.pane_failures["tree"] >= 1
        broken[0] = False  # the data stop upsetting it: the pane recovers on the next frame
        app._render_window()
        await wait_for_screen(pilot, lambda t: "this pane failed" not in t and "TREE" in t)
