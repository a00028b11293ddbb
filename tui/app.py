"""The Textual app: lays out the panes and feeds them windows from the store.

Collection runs on the session's threads; the store only sets a dirty flag from those threads, and a UI
timer renders at the refresh interval when something changed. Panes redraw only when their text changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.driver import Driver
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Footer, Static

from optitop.config import Options
from optitop.model import Window
from optitop.session import Session
from optitop.store import Store
from optitop.tui.format import with_gaps
from optitop.tui.panes.base import Pane
from optitop.tui.panes.cpu import CpuPane
from optitop.tui.panes.gpu import GpuPane
from optitop.tui.panes.header import HeaderPane
from optitop.tui.panes.membw import MemBwPane
from optitop.tui.panes.python import PythonPane
from optitop.tui.panes.queue import QueuePane
from optitop.tui.panes.tree import TreePane
from optitop.tui.panes.verdict import VerdictPane
from optitop.tui.quietinput import quiet_driver
from optitop.tui.wire import crop_partial_updates

if TYPE_CHECKING:
    from collections.abc import Callable

    from optitop.follow import FollowingSession
    from optitop.recording.writer import Recorder

HELP_TEXT = """optitop — keys (↑/↓ scroll, esc closes)

  q          quit (stops everything optitop started)
  p / space  pause the screen (collection goes on)
  r          record to optitop-<host>-<pid>-<time>.jsonl.gz; again: stop
  b          write an incident bundle (metrics, stacks, devices, doctor)
  n          1 s native stack sample (pauses the target; ~2 s for torch)
  1-6        zoom a pane (same key: back): 1 verdict 2 CPU 3 GPU
             4 memory bandwidth 5 queue 6 Python
  + / -      keep more / less history
  ?          this help      ctrl+p  command palette

Panes
  verdict  the bottleneck class, confidence, evidence and fixes;
           the strip on the right is the verdict history, newest right
  CPU      the target tree's CPU (% of one core), per-core bars, the
           busiest threads (state R running, S sleeping, D disk)
  TREE     the target and its children, busiest first
  GPU      per GPU: SM/tensor/DRAM/graphics (gpm) or busy % (legacy),
           memory and the target's share, power, clocks, throttling
  MEMORY   GPU DRAM GB/s of peak (est.), PCIe % of link, host paging
  PYTHON   py-spy: per thread active/GIL %, what it waits on (network,
           queue, GPU sync, sleep, I/O), hot functions, native op mix
  QUEUE    waiting/running, batch, KV cache, p50/p95 latencies, accept
           queue; each block names its source (endpoint, log, kernel)

Header: ● live source, ○ starting, ✗ unavailable (doctor says why),
! failing; 'self' is optitop's own CPU and memory.
"""


class HelpScreen(ModalScreen[None]):
    """The ? screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "app.pop_screen", "close"),
    ]

    def compose(self) -> ComposeResult:
        """The help text, scrollable: at 80×24 it is taller than the screen."""
        with VerticalScroll(id="help-scroll"):
            yield Static(HELP_TEXT, id="help-body", markup=False)


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
        *(Binding(str(n), f"zoom({n})", f"zoom {n}", show=False) for n in range(1, 7)),
        Binding("plus,equals_sign", "history(2)", "+history", show=False),
        Binding("minus", "history(0.5)", "-history", show=False),
    ]
    #: The panes the number keys zoom, in order (ids; a missing pane is skipped).
    ZOOMABLE: ClassVar[tuple[str, ...]] = ("verdict", "cpu-box", "gpu", "membw", "queue", "python")
    #: History lengths the +/- keys step through (seconds).
    HISTORY_STEPS_S: ClassVar[tuple[float, ...]] = (60.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)

    def __init__(
        self,
        store: Store,
        options: Options,
        session: Session | FollowingSession | None = None,
        watch_tty: bool = False,
        start_session: Callable[[], Session] | None = None,
    ) -> None:
        """Render ``store``; ``session`` (when given) is stopped on exit; ``watch_tty`` exits when the TTY goes.

        ``start_session`` builds the session after the first frame is drawn, on a thread: importing and
        starting the collectors takes a third of a second, which the user would otherwise wait for at a blank
        terminal.
        """
        super().__init__()
        crop_partial_updates()  # only the changed cells of a line go to the terminal
        self._watch_tty = watch_tty
        self.store = store
        self.options = options
        self.session = session
        self._start_session = start_session
        self._session_lock = threading.Lock()
        self._closing = False
        self.paused = False
        self._dirty = True
        self._panes: list[Pane] = []
        self._renders = 0
        self._rendered_at = 0.0
        self._shown_category = ""
        self._chart: Widget | None = None
        self.zoomed: str | None = None
        self._recorder: Recorder | None = None
        store.subscribe(self._on_store_change)
        if options.monochrome or os.environ.get("NO_COLOR"):
            self.add_class("-monochrome")

    def get_driver_class(self) -> type[Driver]:
        """Textual's driver; on Linux, the same driver with an input loop that does not poll (quietinput.py)."""
        default = super().get_driver_class()
        return quiet_driver(default) or default

    # -- layout ----------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """Header, verdict, CPU, tree, footer."""
        yield HeaderPane(id="header")
        yield VerdictPane(id="verdict")
        with Vertical(id="cpu-box"):
            yield CpuPane(id="cpu")
        yield TreePane(id="tree")
        yield GpuPane(id="gpu")
        yield MemBwPane(id="membw")
        yield QueuePane(id="queue")
        yield PythonPane(id="python")
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
        if self._start_session is not None:
            self.call_after_refresh(self._launch_session)
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

    def _launch_session(self) -> None:
        threading.Thread(target=self._build_session, name="optitop-start", daemon=True).start()

    def _build_session(self) -> None:
        """Build and start the session (a thread: the screen stays live meanwhile)."""
        assert self._start_session is not None
        try:
            session = self._start_session()
        except Exception as exc:  # noqa: BLE001 - shown to the user, not a traceback
            self.call_from_thread(self.exit, None, 2, f"optitop: could not start collecting: {exc}")
            return
        with self._session_lock:
            if self._closing:
                return  # the user quit while we were building: nothing was started
            session.start()
            self.session = session

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
            if self._recorder is not None:
                self._recorder.stop()
            if self.session is not None:
                self.session.stop(timeout_s=2.0)
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
        self._update_chart(self.store.window())

    # -- data ------------------------------------------------------------------------------------------
    def _on_store_change(self, _name: str) -> None:
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
        recent = self.store.window(period + self.options.interval_s).diagnoses
        return bool(recent) and recent[-1].category != self._shown_category

    #: Below this many rows the panes share a line budget and lose their borders (80×24 must fit).
    COMPACT_BELOW_ROWS: ClassVar[int] = 50
    #: How the line budget is shared in compact mode: (pane id, weight, minimum lines).
    BUDGET: ClassVar[tuple[tuple[str, float, int], ...]] = (
        ("cpu", 4, 3),
        ("python", 3, 2),
        ("queue", 3, 2),
        ("gpu", 3, 1),
        ("membw", 2, 2),
        ("tree", 2, 1),
    )
    #: Pane id -> the source whose absence shrinks it to one line.
    PANE_SOURCE: ClassVar[dict[str, str]] = {"gpu": "gpu", "python": "pystacks", "queue": "queue"}

    def _allocate_lines(self, window: Window) -> None:
        """Share the terminal's rows among the panes so everything essential fits without scrolling."""
        height = self.size.height
        compact = height < self.COMPACT_BELOW_ROWS
        self.set_class(compact, "-compact")
        panes = {pane.id: pane for pane in self.panes()}
        header_lines = 3 if window.target.exited else 2
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
            if (source and (status is None or not status.live)) or panes[pane_id].quiet(window):
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
        window = self.store.window()
        self._shown_category = window.diagnoses[-1].category if window.diagnoses else ""
        self._allocate_lines(window)
        header = self.query_one(HeaderPane)
        header.paused = self.paused
        for pane in self.panes():
            pane.show(window)
        every = self.LOW_BANDWIDTH_CHART_EVERY if self.options.low_bandwidth else 2
        if self._chart is not None and self._renders % every == 0:
            self._update_chart(window)

    def on_resize(self) -> None:
        """Re-share the rows and redraw at the new size."""
        self._render_window()

    def _update_chart(self, window: Window) -> None:
        from optitop.tui.panes.chart import HistoryChart

        if not isinstance(self._chart, HistoryChart):
            return
        series = window.series("process")
        now = window.now_mono_s
        gapped = with_gaps(series, "cpu_pct")
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
        if self.session is not None:  # stacks the user is looking at are sampled at full duty
            self.session.stacks_watched = wanted == "python"
        self._render_window()

    def action_history(self, factor: float) -> None:
        """+/-: keep more or less history (the charts and sparklines follow)."""
        now = self.store.history_s
        steps = self.HISTORY_STEPS_S
        if factor > 1:
            new = next((h for h in steps if h > now), steps[-1])
        else:
            new = next((h for h in reversed(steps) if h < now), steps[0])
        self.store.set_history(new)
        self.notify(f"history: {new / 60:.0f} min", timeout=2)
        self._render_window()

    def action_toggle_record(self) -> None:
        """Start or stop recording everything the store receives to a timestamped file (0600) in the cwd.

        The file is written as ``NAME.part`` and renamed to NAME on stop (optitop.safefile). The name is
        predictable, so when it is taken (or a link was planted there) the next numbered name is used: a key
        press never writes through a link or over a file.
        """
        from optitop.recording.writer import Recorder, default_record_path
        from optitop.safefile import RefusedPathError, numbered_names

        header = self.query_one(HeaderPane)
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.stop()
            header.recording = ""
            if recorder.error:
                self.notify(
                    f"the recording stopped early ({recorder.error}); {recorder.events} events kept in "
                    f"{recorder.saved_path}",
                    severity="error",
                )
            else:
                self.notify(f"recorded {recorder.events} events to {recorder.path}")
        else:
            first = default_record_path(self.store.target.pid)
            skipped: list[RefusedPathError] = []
            for path in numbered_names(first, ".jsonl.gz"):
                recorder = Recorder(self.store, path, options=self.options)
                try:
                    recorder.start()
                    break
                except RefusedPathError as exc:
                    skipped.append(exc)
                except OSError as exc:
                    self.notify(f"cannot record to {path}: {exc.strerror or exc}", severity="error")
                    return
            else:
                self.notify(f"cannot record: {first} and the numbered names after it are taken", severity="error")
                return
            if skipped:
                self.notify(
                    f"{skipped[0].filename} {skipped[0].strerror}: recording to {path} instead", severity="warning"
                )
            self._recorder = recorder
            header.recording = os.path.basename(path)
        self._render_window()

    def action_bundle(self) -> None:
        """Write an incident bundle in the background (py-spy and doctor take seconds)."""
        self.notify("writing the incident bundle…", timeout=3)
        self.run_worker(self._write_bundle, thread=True, exclusive=True, group="bundle")

    def _write_bundle(self) -> None:
        """Create the archive's file first (a free name, never through a link), then gather and write it."""
        from optitop.bundle import gather, queue_endpoints, write_archive
        from optitop.safefile import create_numbered

        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = f"optitop-incident-{self.store.target.pid}-{stamp}.tar.gz"
        try:
            out, skipped = create_numbered(path, ".tar.gz")
        except OSError as exc:
            self.call_from_thread(self.notify, f"cannot write {path}: {exc.strerror or exc}", severity="error")
            return
        try:
            write_archive(out, gather(self.store, self.options, 10, queue_endpoints(self.session)))
        except OSError as exc:  # write_archive removed the temporary file: no half archive is left
            self.call_from_thread(self.notify, f"cannot write {out.path}: {exc.strerror or exc}", severity="error")
            return
        finally:
            out.discard()  # a no-op once committed; removes the file when gather failed
        note = f" ({skipped[0].filename} {skipped[0].strerror})" if skipped else ""
        self.call_from_thread(self.notify, f"wrote {out.path}{note}")

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
        """Ask the stacks collector for a 1 s native burst (it pauses the target; ~2 s for torch)."""
        runner = self.session.runner("pystacks") if self.session is not None else None
        request = getattr(runner.collector if runner else None, "request_native", None)
        if request is None:
            self.notify("native stacks: the pystacks collector is not running", severity="warning")
            return
        started = request()  # returns at once; the burst runs on its own thread
        self.notify(
            "native stack sample started (pauses the target briefly)"
            if started
            else "a native sample is already running"
        )

    def action_help(self) -> None:
        """Show the key help."""
        self.push_screen(HelpScreen())

    def on_unmount(self) -> None:
        """Stop collection when the app goes."""
        self.store.unsubscribe(self._on_store_change)
        if self._recorder is not None:
            self._recorder.stop()
            self._recorder = None
        self.stop_session()

    def stop_session(self) -> None:
        """Stop collecting; a session still being built is never started (idempotent)."""
        with self._session_lock:
            self._closing = True
        if self.session is not None:
            self.session.stop()


def _session_for(pid: int, options: Options, store: Store) -> Session:
    """The session for ``pid`` into ``store`` (imports the collectors: called on the start-up thread)."""
    from optitop.runtime import make_session

    return make_session(pid, options, store)


def run_tui(pid: int, options: Options, follow: tuple[int | None, str | None] | None = None) -> int:
    """Attach the live screen to ``pid`` until the user quits; ``follow`` = (port, name) re-attaches on restart."""
    from optitop.target import describe

    if not sys.stdout.isatty():
        print("optitop: the live screen needs a terminal; use --once --json for scripts", file=sys.stderr)
        return 2
    if follow is not None:
        from optitop.follow import FollowingSession

        following = FollowingSession(pid, options, port=follow[0], name=follow[1])
        following.start()
        app = OptitopApp(following.store, options, session=following, watch_tty=True)
    else:
        store = Store(describe(pid), history_s=options.history_s)  # a missing pid fails here, before the screen
        app = OptitopApp(store, options, watch_tty=True, start_session=lambda: _session_for(pid, options, store))
    try:
        app.run()
    finally:
        app.stop_session()
    return 0 if app.return_code in (None, 0) else app.return_code
