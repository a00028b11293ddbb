"""The Textual app: lays out the panes and feeds them windows from its handle.

The app receives a ``LiveHandle`` (optitop.live): it draws the handle's windows and asks it for the actions its
keys name; it builds no store or session and imports no recorder or bundle writer. Collection runs on the
runtime's threads; a change only sets a dirty flag from those threads, and a UI timer renders at the refresh
interval when something changed. Panes redraw only when their text changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.driver import Driver
from textual.widget import Widget
from textual.widgets import Footer

from optitop.config import Options
from optitop.live import LiveHandle, Notice
from optitop.model import ProcessSample, Window
from optitop.tui.format import with_gaps
from optitop.tui.help import HelpScreen
from optitop.tui.layout import BUDGET, PANE_SOURCE, PANES, STACK_VIEWS, ZOOMABLE, ZOOMS
from optitop.tui.panes.base import Pane
from optitop.tui.panes.header import HeaderPane, has_notice_line
from optitop.tui.quietinput import quiet_driver
from optitop.tui.wire import crop_partial_updates

__all__ = ["HelpScreen", "OptitopApp"]

log = logging.getLogger(__name__)


class OptitopApp(App[int]):
    """The live screen for one target."""

    CSS_PATH = "optitop.tcss"
    TITLE = "optitop"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        # Ctrl-Z as in any terminal program (raw mode turns it into a key): suspend, and `fg` brings it back.
        Binding("ctrl+z", "suspend_process", "suspend", show=False),
        Binding("p,space", "toggle_pause", "pause"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("r", "toggle_record", "record"),
        Binding("b", "bundle", "bundle", show=False),
        Binding("n", "native_sample", "native", show=False),
        *(Binding(p.zoom_key, f"zoom({p.zoom_key})", f"zoom {p.zoom_key}", show=False) for p in ZOOMS),
        Binding("plus,equals_sign", "history(2)", "+history", show=False),
        Binding("minus", "history(0.5)", "-history", show=False),
    ]
    #: The panes the number keys zoom, in order (ids; a missing pane is skipped): from the pane table.
    ZOOMABLE: ClassVar[tuple[str, ...]] = ZOOMABLE
    #: History lengths the +/- keys step through (seconds).
    HISTORY_STEPS_S: ClassVar[tuple[float, ...]] = (60.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)

    def __init__(self, live: LiveHandle, options: Options, watch_tty: bool = False) -> None:
        """Render what ``live`` holds, started after the first frame and stopped on exit; ``watch_tty`` exits when
        the TTY goes.

        ``live.start()`` runs after the first frame is drawn, on a thread: importing and starting the collectors
        takes a third of a second, which the user would otherwise wait for at a blank terminal.
        """
        super().__init__()
        crop_partial_updates()  # only the changed cells of a line go to the terminal
        self._watch_tty = watch_tty
        self.live = live
        self.options = options
        self.paused = False
        self._dirty = True
        self._panes: list[Pane] = []
        self._renders = 0
        self._rendered_at = 0.0
        self._shown_category = ""
        self._chart: Widget | None = None
        self.zoomed: str | None = None
        #: Frames in which a pane's build raised, per pane id (the pane shows the error instead).
        self.pane_failures: Counter[str] = Counter()
        live.subscribe(self._on_change)
        if options.monochrome or os.environ.get("NO_COLOR"):
            self.add_class("-monochrome")

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver; on Linux, the same driver with an input loop that does not poll (quietinput.py)."""
        default = super().get_driver_class()
        return quiet_driver(default) or default

    # -- layout ----------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """The header, every pane of the table (optitop.tui.layout) in order, the footer."""
        yield HeaderPane(id="header")
        for spec in PANES:
            if spec.box:
                with Vertical(id=spec.box):
                    yield spec.kind(id=spec.id)
            else:
                yield spec.kind(id=spec.id)
        yield Footer()

    def panes(self) -> list[Pane]:
        """Every text pane on screen (looked up once: a DOM query on every frame cost a third of a ms)."""
        if not self._panes:
            self._panes = list(self.query(Pane))
        return self._panes

    #: Low-bandwidth mode (--low-bandwidth). Textual rewrites a whole pane when any cell of it changes, and
    #: on a busy target every pane has a number that moves each second, so the only real saving is fewer
    #: frames: the screen redraws every LOW_BANDWIDTH_REDRAW_S (at once on a key, or when the verdict's class
    #: changes); sparklines and the verdict strip move every LOW_BANDWIDTH_HISTORY_S, so a pane whose numbers
    #: hold still is not rewritten just to scroll its sparkline; the chart redraws every N-th frame.
    FIRST_FRAMES_EVERY_S: ClassVar[float] = 0.25
    FIRST_FRAMES: ClassVar[int] = 24
    LOW_BANDWIDTH_REDRAW_S: ClassVar[float] = 2.0
    LOW_BANDWIDTH_HISTORY_S: ClassVar[float] = 5.0
    LOW_BANDWIDTH_CHART_EVERY: ClassVar[int] = 3

    def on_mount(self) -> None:
        """Start rendering; mount the chart after the first frame; exit cleanly on SIGTERM/SIGHUP."""
        if self.options.low_bandwidth:
            for pane in self.panes():
                pane.history_every_s = self.LOW_BANDWIDTH_HISTORY_S
        self.set_interval(self.options.interval_s, self._tick)
        # Early on, look for new data more often, so the first samples and verdict show as soon as they exist.
        self.set_interval(self.FIRST_FRAMES_EVERY_S, self._tick, repeat=self.FIRST_FRAMES)
        self.call_after_refresh(self._render_window)
        self.call_after_refresh(self._start_in_background)
        self.set_timer(0.3, self._mount_chart)
        if self._watch_tty:
            self.set_interval(2.0, self._check_tty)
        # Back from Ctrl-Z (SIGTSTP, then SIGCONT on fg): the driver is back in application mode on a cleared
        # alternate screen, while the compositor thinks every cell is still drawn. Lay out and paint it all.
        self.app_resume_signal.subscribe(self, self._on_resume)
        loop = asyncio.get_running_loop()
        handlers = (
            (signal.SIGTERM, functools.partial(self._graceful_exit, 143, self.SIGTERM_GRACE_S)),
            (signal.SIGHUP, functools.partial(self._graceful_exit, 129, self.SIGHUP_GRACE_S, status=129)),
        )
        for sig, handler in handlers:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
                loop.add_signal_handler(sig, handler)

    def _on_resume(self, _app: object) -> None:
        self.refresh(layout=True)
        self._render_window()

    def _start_in_background(self) -> None:
        threading.Thread(target=self._start_live, name="optitop-start", daemon=True).start()

    def _start_live(self) -> None:
        """Start collecting (a thread: the screen stays live meanwhile)."""
        try:
            self.live.start()
        except Exception as exc:  # noqa: BLE001 - shown to the user, not a traceback
            self.call_from_thread(self.exit, None, 2, f"optitop: could not start collecting: {exc}")

    #: Seconds a signalled exit may take before hard_exit() cuts it short.
    SIGTERM_GRACE_S: ClassVar[float] = 5.0
    #: SIGHUP: the link may be gone for good, so less. A pty whose SSH link dropped fails writes at once (EIO),
    #: so the normal exit is quick; a terminal that stopped reading is what the cut is for.
    SIGHUP_GRACE_S: ClassVar[float] = 2.0

    def _graceful_exit(self, code: int, grace_s: float, status: int = 0) -> None:
        """SIGTERM, SIGHUP: exit normally (the recording gets its end line, the terminal leaves raw mode, the
        alternate screen and mouse reporting, the cursor shows again), but never hang doing it: a wedged
        terminal write must not keep us alive. SIGHUP used to _exit at once and left a still-open terminal
        (tmux, a `kill -HUP`, a terminal emulator closing its tab slowly) raw, mouse-reporting, cursor hidden.

        ``status`` is the exit status (SIGTERM: 0, a requested stop; SIGHUP: 129, as before); ``code`` the one
        hard_exit() uses when the grace runs out.
        """
        watchdog = threading.Timer(grace_s, self.hard_exit, args=(code,))
        watchdog.daemon = True
        watchdog.start()
        self.exit(code, return_code=status)

    def hard_exit(self, code: int) -> None:
        """The terminal is gone: stop what we started, close the recording, and leave without touching the TTY.

        Textual's own shutdown writes to the terminal and can block for ever on a hung-up one (its writer
        queue fills up), which would leave an orphan burning a core (dolphie#101). So: clean up, then _exit.
        """
        try:
            self.live.stop(timeout_s=2.0)
        finally:
            os._exit(code)

    def _check_tty(self) -> None:
        # After an SSH drop without SIGHUP the terminal is gone: exit rather than spin (dolphie#101).
        try:
            alive = os.isatty(sys.__stdout__.fileno()) if sys.__stdout__ else False
        except (OSError, ValueError):
            alive = False
        if not alive or os.getppid() == 1:
            self.hard_exit(1)

    def _mount_chart(self) -> None:
        if self._chart is not None or self.size.height < self.COMPACT_BELOW_ROWS:
            return
        boxes = self.query("#cpu-box")
        if not boxes:  # another screen (the picker, help) is on top: mount once the main screen is back
            self.set_timer(0.3, self._mount_chart)
            return
        from optitop.tui.panes.chart import HistoryChart

        self._chart = HistoryChart("target CPU % (of one core)", id="cpu-chart")
        boxes.first().mount(self._chart, before=0)
        self._update_chart(self.live.window())

    # -- data ------------------------------------------------------------------------------------------
    def _on_change(self, _name: str) -> None:
        # Called from collector threads: only a flag, the UI timer does the rest.
        self._dirty = True

    def _tick(self) -> None:
        if not self._dirty or self.paused:
            return
        if self.options.low_bandwidth and not self._low_bandwidth_due():
            return
        self._render_window()

    def _low_bandwidth_due(self) -> bool:
        """Low-bandwidth mode: is it time for a frame (its period passed, or the verdict changed class)?"""
        period = max(self.options.interval_s, self.LOW_BANDWIDTH_REDRAW_S)
        if time.monotonic() - self._rendered_at >= period:
            return True
        recent = self.live.window(period + self.options.interval_s).diagnoses
        return bool(recent) and recent[-1].category != self._shown_category

    #: Below this many rows the panes share a line budget and lose their borders (80×24 must fit).
    COMPACT_BELOW_ROWS: ClassVar[int] = 50
    #: How the line budget is shared in compact mode: (pane id, weight, minimum lines), from the pane table.
    BUDGET: ClassVar[tuple[tuple[str, float, int], ...]] = BUDGET
    #: Pane id -> the source whose absence shrinks it to one line.
    PANE_SOURCE: ClassVar[dict[str, str]] = PANE_SOURCE

    def _allocate_lines(self, window: Window) -> None:
        """Share the terminal's rows among the panes so everything essential fits without scrolling."""
        height = self.size.height
        compact = height < self.COMPACT_BELOW_ROWS
        self.set_class(compact, "-compact")
        panes = {pane.id: pane for pane in self.panes()}
        header_lines = 3 if has_notice_line(window.target) else 2
        for pane in panes.values():  # a zoomed pane has the screen below the header, less its border
            pane.room_rows = height - header_lines - 1 - (0 if compact else 1)
        if not compact:
            for pane in panes.values():
                pane.max_lines = None
            return
        verdict_lines = 4 if height < 30 else 6
        if "verdict" in panes:
            panes["verdict"].max_lines = verdict_lines
        remaining = height - header_lines - 1 - verdict_lines
        shares = []
        for pane_id, weight, minimum in self.BUDGET:
            if pane_id not in panes or not panes[pane_id].display:
                continue
            source = self.PANE_SOURCE.get(pane_id)
            status = window.statuses.get(source) if source else None
            if (source and (status is None or not status.live)) or self._quiet(panes[pane_id], window):
                weight, minimum = 0.0, 1
            shares.append((pane_id, weight, minimum))
        spare = max(0, remaining - sum(m for _, _, m in shares))
        total_weight = sum(w for _, w, _ in shares) or 1.0
        given = {pane_id: minimum + int(spare * weight / total_weight) for pane_id, weight, minimum in shares}
        # A pane whose text (as last built) is shorter than its share gives the rest back, and the rows left
        # over (those and the rounding) go to the panes that were cut, verdict first, then by weight: no blank
        # rows at the bottom while a pane above clips its lines.
        wanted = {pane_id: panes[pane_id].natural_rows or given[pane_id] for pane_id in given}
        for pane_id, _weight, minimum in shares:
            given[pane_id] = max(minimum, min(given[pane_id], wanted[pane_id]))
        free = remaining - sum(given.values())
        if "verdict" in panes and free > 0:
            extra = min(free, max(0, panes["verdict"].natural_rows - verdict_lines))
            panes["verdict"].max_lines = verdict_lines + extra
            free -= extra
        hungry = sorted(shares, key=lambda share: -share[1])
        while free > 0:
            short = [pane_id for pane_id, _, _ in hungry if wanted[pane_id] > given[pane_id]]
            if not short:
                break
            for pane_id in short[:free]:
                given[pane_id] += 1
                free -= 1
        for pane_id, rows in given.items():
            panes[pane_id].max_lines = rows

    def _render_window(self) -> None:
        if not self.query(HeaderPane):
            return  # a timer that fires while the app tears its widgets down
        self._dirty = False
        self._renders += 1
        self._rendered_at = time.monotonic()
        window = self.live.window()
        self._shown_category = window.diagnoses[-1].category if window.diagnoses else ""
        self._allocate_lines(window)
        header = self.query_one(HeaderPane)
        header.paused = self.paused
        for pane in self.panes():
            self._show(pane, window)
        every = self.LOW_BANDWIDTH_CHART_EVERY if self.options.low_bandwidth else 2
        if self._chart is not None and self._renders % every == 0:
            self._update_chart(window)

    def _show(self, pane: Pane, window: Window) -> None:
        """Feed one pane; a build that raises shows the error in that pane (counted), never a stale pane or a crash."""
        try:
            pane.show(window)
        except Exception as exc:
            self.pane_failures[pane.id or type(pane).__name__] += 1
            log.debug("pane %s failed", pane.id, exc_info=True)
            pane.show_failure(exc)

    def _quiet(self, pane: Pane, window: Window) -> bool:
        """``pane.quiet(window)``; a pane that raises is not quiet (its build will show the error)."""
        try:
            return pane.quiet(window)
        except Exception:
            log.debug("pane %s failed", pane.id, exc_info=True)
            return False

    def on_resize(self) -> None:
        """Re-share the rows and redraw at the new size."""
        self._render_window()

    def _update_chart(self, window: Window) -> None:
        from optitop.tui.panes.chart import HistoryChart

        if not isinstance(self._chart, HistoryChart):
            return
        series = window.of("process", ProcessSample)
        now = window.now_mono_s
        gapped = with_gaps(series, lambda s: s.cpu_pct)
        xs = [mono - now for mono, _ in gapped]
        ys = [value for _, value in gapped]
        self._chart.plot_series([("target", xs, ys)])

    # -- actions ---------------------------------------------------------------------------------------
    def action_toggle_pause(self) -> None:
        """Freeze the screen; collection continues."""
        self.paused = not self.paused
        self._render_window()

    def action_zoom(self, number: int) -> None:
        """Show only the ``number``-th zoomable pane (1-based), or everything again."""
        present = [pid for pid in self.ZOOMABLE if self.query(f"#{pid}")]
        if not 1 <= number <= len(self.ZOOMABLE):
            return
        wanted = self.ZOOMABLE[number - 1]
        if wanted not in present or self.zoomed == wanted:
            wanted = ""
        self.zoomed = wanted or None
        for child in self.screen.children:
            if child.id in ("header",) or isinstance(child, Footer):
                continue
            child.display = not wanted or child.id == wanted
            child.set_class(bool(wanted) and child.id == wanted, "zoomed")
        for pane in self.panes():
            pane.set_zoomed(bool(wanted))
        self.live.set_stacks_watched(wanted in STACK_VIEWS)  # stacks the user looks at are sampled at full duty
        self._render_window()

    def action_history(self, factor: float) -> None:
        """+/-: keep more or less history (the charts and sparklines follow)."""
        now = self.live.history_s
        steps = self.HISTORY_STEPS_S
        if factor > 1:
            new = next((h for h in steps if h > now), steps[-1])
        else:
            new = next((h for h in reversed(steps) if h < now), steps[0])
        self.live.set_history(new)
        self.notify(f"history: {new / 60:.0f} min", timeout=2)
        self._render_window()

    def _tell(self, notice: Notice) -> None:
        self.notify(notice.text, severity=notice.severity)

    def action_toggle_record(self) -> None:
        """Start or stop recording (the handle says what happened; the header shows the file while it records)."""
        for notice in self.live.toggle_record():
            self._tell(notice)
        self.query_one(HeaderPane).recording = self.live.recording
        self._render_window()

    def action_bundle(self) -> None:
        """Write an incident bundle in the background (py-spy and doctor take seconds); without a live process
        behind the screen (a replay) say at once that there is none to gather from."""
        if not self.live.live:
            self._tell(self.live.write_bundle())
            return
        self.notify("writing the incident bundle…", timeout=3)
        self.run_worker(self._write_bundle, thread=True, exclusive=True, group="bundle")

    def _write_bundle(self) -> None:
        self.call_from_thread(self._tell, self.live.write_bundle())

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """The command palette's Screenshot, written as every optitop output is: a new file, never through a link.

        Textual's own saves to ~/Downloads with a plain ``open()``, which follows a link planted there: as root
        (HOME kept under sudo) that wrote through it. Here the SVG goes to the current directory (or ``path``)
        under a free name (``-2``… when taken), created new and renamed into place when complete.
        """
        from optitop.safefile import create_numbered

        name = os.path.basename(filename or f"optitop-screen-{time.strftime('%Y%m%d-%H%M%S')}.svg")
        wanted = os.path.join(path or ".", name if name.endswith(".svg") else f"{name}.svg")
        try:
            out, skipped = create_numbered(wanted, ".svg")
        except OSError as exc:
            self.notify(f"cannot save the screenshot to {wanted}: {exc.strerror or exc}", severity="error")
            return None
        try:
            out.file.write(self.export_screenshot().encode())
            out.commit()
        except OSError as exc:
            self.notify(f"cannot save the screenshot to {out.path}: {exc.strerror or exc}", severity="error")
            return None
        finally:
            out.discard()  # a no-op once committed
        note = f" ({skipped[0].filename} {skipped[0].strerror})" if skipped else ""
        self.notify(f"screenshot saved to {out.path}{note}")
        return None

    def action_native_sample(self) -> None:
        """Ask for a 1 s native stack sample (it pauses the target; ~2 s for torch)."""
        self._tell(self.live.request_native())

    def action_help(self) -> None:
        """Show the key help."""
        self.push_screen(HelpScreen())

    def on_unmount(self) -> None:
        """Stop recording and collecting when the app goes."""
        self.live.unsubscribe(self._on_change)
        self.live.stop()
