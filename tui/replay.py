"""The replay screen: the live app's panes fed from a recording, with pause, step and seek keys.

Everything the live screen shows comes from the store; here the store is filled by a replayer (an
``optitop.live.Playback``, which ``optitop replay`` builds) instead of collectors, and its clock is the replay
position, so panes that look at "the last N seconds" see recorded time. A bar above the header says that this is a
replay, of which file, and where in it we are.
"""

from __future__ import annotations

import os
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from optitop.config import Options
from optitop.live import LiveHandle, Playback
from optitop.model import Window
from optitop.safetext import printable
from optitop.tui.app import OptitopApp
from optitop.tui.format import clip, fmt_clock, fmt_duration
from optitop.tui.panes.base import Pane

#: Seconds between playback ticks (the position advances by wall time x speed at each).
TICK_S = 0.1
#: Seconds a left/right (or [ / ]) press seeks.
SEEK_S = 10.0


class ReplayBar(Pane):
    """One line: REPLAY <file> @ <recorded wall time>, the position in the recording, speed and state."""

    def __init__(self, replayer: Playback, label: str, *, id: str | None = None) -> None:  # noqa: A002
        """A bar for ``replayer``; ``label`` names the file."""
        super().__init__(id=id)
        self.replayer = replayer
        self.label = label

    def build(self, window: Window, width: int) -> Text:
        """Render the bar (the window is not needed: the position lives in the replayer)."""
        r = self.replayer
        text = Text()
        text.append("REPLAY ", style="bold reverse")
        text.append(" ")
        state = "END" if r.at_end else ("PAUSED" if r.paused else f"x{r.speed:g}")
        where = f" @ {fmt_clock(r.wall_time())}  {fmt_duration(r.elapsed_s)} / {fmt_duration(r.duration_s)}  "
        room = max(8, width - len(text.plain) - len(where) - len(state) - 2)
        text.append(clip(self.label, room), style=self.sty("pane--title"))
        text.append(where)
        text.append(state, style="reverse" if state != f"x{r.speed:g}" else self.sty("pane--ok"))
        return text


class ReplayApp(OptitopApp):
    """The live screen on recorded data."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p,space", "toggle_pause", "pause"),
        Binding("full_stop", "step", "step", key_display="."),
        Binding("left,left_square_bracket", f"seek({-SEEK_S})", f"-{SEEK_S:g}s", key_display="←"),
        Binding("right,right_square_bracket", f"seek({SEEK_S})", f"+{SEEK_S:g}s", key_display="→"),
    ]

    def __init__(self, replayer: Playback, view: LiveHandle, options: Options, label: str = "") -> None:
        """Replay with ``replayer``; ``view`` is the handle on the store it fills (what the panes render)."""
        super().__init__(view, options)
        self.replayer = replayer
        self.label = printable(label or os.path.basename(replayer.path))  # a file name may hold ESC
        self.title = f"optitop replay {self.label}"

    def compose(self) -> ComposeResult:
        """The replay bar, then the live screen's panes."""
        yield ReplayBar(self.replayer, self.label, id="replay-bar")
        yield from super().compose()

    def on_mount(self) -> None:
        """Start playback on top of the live app's rendering."""
        super().on_mount()
        self.replayer.tick()  # arms the clock: playback starts now
        self.set_interval(TICK_S, self._advance)

    def _allocate_lines(self, window: Window) -> None:
        """The live app's line budget, less the one row the replay bar takes (80×24 must still fit)."""
        super()._allocate_lines(window)
        budgeted = [p for p in self.panes() if p.max_lines is not None and p.id not in ("verdict", "replay-bar")]
        if budgeted:
            largest = max(budgeted, key=lambda p: p.max_lines or 0)
            largest.max_lines = max(1, (largest.max_lines or 1) - 1)

    def _advance(self) -> None:
        if self.replayer.tick():
            self._dirty = True
        if self.replayer.at_end and not self.replayer.paused:
            self.replayer.paused = True
            self._render_window()

    def _redraw(self) -> None:
        self._dirty = False
        self._render_window()

    # -- keys ------------------------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        """Pause or resume playback (the screen keeps following seeks and steps)."""
        if self.replayer.at_end and self.replayer.paused:
            self.replayer.seek(self.replayer.start_mono_s)  # at the end, play means play again
        self.replayer.toggle_pause()
        self._redraw()

    def action_step(self) -> None:
        """Pause and move one sampling interval forward."""
        self.replayer.step()
        self._redraw()

    def action_seek(self, seconds: float) -> None:
        """Move ``seconds`` of recorded time forward or back."""
        self.replayer.seek_by(seconds)
        self._redraw()
