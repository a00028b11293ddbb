"""The Python pane: what each thread of the target is doing, the wait breakdown, hot functions, native op mix.

It renders ``PyStacksSample``s from the window only (py-spy runs in the collector). Thread names, function
names and paths come from the target and are appended as plain text, never parsed as markup.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text

from optitop.model import PyStacksSample, SourceState, Window
from optitop.tui.format import clip, fmt_clock, fmt_duration, fmt_pct, printable
from optitop.tui.panes.base import Pane

if TYPE_CHECKING:
    from optitop.model import PyThread

#: Each breakdown class: the colour class it is drawn in and the fill character (readable without colour).
CLASS_STYLE: dict[str, tuple[str, str]] = {
    "active": ("verdict--host_cpu", "█"),
    "network": ("verdict--network", "▓"),
    "loop": ("verdict--idle", "~"),
    "queue": ("verdict--scheduling", "▒"),
    "gpu_sync": ("verdict--compute", "░"),
    "sleep": ("verdict--idle", "·"),
    "io": ("verdict--memory_io", "▚"),
    "gc": ("pane--warn", "▞"),
    "gil": ("pane--bad", "▖"),
    "other": ("pane--dim", " "),
}
#: Short names for the op-mix line.
OP_LABELS = {"math": "math", "memory": "memory", "alloc": "alloc", "interpreter": "interp", "other": "other"}

NAME_W = 16
TID_W = 8
STATE_W = 8


def stacked_bar(parts: tuple[tuple[str, float], ...], width: int) -> list[tuple[str, str]]:
    """Cells of a stacked bar as (class, run of characters); largest-remainder rounding so it fills ``width``."""
    total = sum(max(0.0, f) for _, f in parts)
    if width <= 0 or total <= 0:
        return []
    exact = [(cls, max(0.0, f) / total * width) for cls, f in parts]
    cells = [(cls, int(x)) for cls, x in exact]
    short = width - sum(n for _, n in cells)
    order = sorted(range(len(exact)), key=lambda i: exact[i][1] - int(exact[i][1]), reverse=True)
    for i in order[:short]:
        cells[i] = (cells[i][0], cells[i][1] + 1)
    return [(cls, CLASS_STYLE.get(cls, ("pane--dim", "?"))[1] * n) for cls, n in cells if n > 0]


def compact_symbol(name: str, width: int) -> str:
    """A long C++ symbol made readable in ``width`` columns: template arguments and parameter lists dropped,
    and the kernel named inside the templates kept (``add_kernel in callback_fn``)."""
    if len(name) <= width or ("<" not in name and "(" not in name):
        return name
    depth = 0
    outer = []
    for ch in name:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif depth == 0:
            outer.append(ch)
    plain = "".join(outer).replace("(anonymous namespace)::", "")
    plain = re.sub(r"\([^()]*\)", "", plain)
    kernels = re.findall(r"\w*_kernel\w*|\w*gemm\w*|\w*conv\w*", name)
    kernel = next((k for k in kernels if k not in plain), "")
    last = plain.rsplit("::", 1)[-1]
    return f"{kernel} in {last}" if kernel else plain


def thread_state(thread: PyThread) -> str:
    """``run`` when mostly on CPU, else what it mostly waits on (``idle`` when unknown)."""
    if not thread.wait:
        return "run"
    return "idle" if thread.wait == "other" else thread.wait


class PythonPane(Pane):
    """Thread table, wait bar, hot functions and the native op mix of the target's Python."""

    max_threads: int = 8
    max_hot: int = 5
    HEADINGS: ClassVar[tuple[str, ...]] = ("THREAD ",)

    def inputs(self, window: Window) -> tuple[object, ...]:
        """The stacks samples and the source's state: a new window arrives only every few seconds.

        Only the status's state and reason are shown; its latency and last-success time move every tick.
        """
        stamps = tuple(sample.mono_s for sample in window.of("pystacks", PyStacksSample))
        status = window.statuses.get("pystacks")
        shown = (status.state, status.reason) if status is not None else None
        return (stamps, shown, self.max_threads, self.max_hot)

    def build(self, window: Window, width: int) -> Text:
        """Render the newest stacks sample of the window."""
        text = Text()
        text.append("PYTHON ", style=self.sty("pane--title"))
        series = window.of("pystacks", PyStacksSample)
        regular = next((s for s in reversed(series) if not s.trigger), None)
        if regular is None:
            self._no_data(window, text, width)
            return text
        self._header(text, regular, width)
        if regular.stacks_pid is not None and regular.stacks_pid != window.target.pid:
            # the target is not Python (a Java or C++ frontend), or it idles while a child works (a pre-fork
            # master): say whose stacks these are
            text.append("\n")
            whose = f"stacks of its busiest Python child, pid {regular.stacks_pid}"
            text.append(self.fit(whose, width), style=self.sty("pane--warn"))
        self._waits(text, regular.waits, width)
        self._threads(text, regular, width)
        self._hot(text, regular, width)
        self._native(text, regular, width)
        latest = series[-1]
        if latest.trigger:
            self._trigger(text, latest, width)
        return text

    # -- sections ---------------------------------------------------------------------------------------------
    def _no_data(self, window: Window, text: Text, width: int) -> None:
        status = window.statuses.get("pystacks")
        if status is not None and status.state in (SourceState.UNAVAILABLE, SourceState.ERROR):
            text.append(self.fit(status.reason, max(0, width - 7)), style=self.sty("pane--warn"))
        elif status is not None and status.state is SourceState.DISABLED:
            text.append(self.fit(status.reason or "off", max(0, width - 7)), style=self.sty("pane--dim"))
        else:
            text.append("sampling the first window…", style=self.sty("pane--dim"))

    def _header(self, text: Text, s: PyStacksSample, width: int) -> None:
        gil = "–" if s.gil_pct is None else fmt_pct(s.gil_pct)
        line = (
            f"{s.mode} {s.window_s:.1f} s · {s.samples} samples · GIL held {gil}"
            f" · active {fmt_pct(s.active_pct)} (mean of busy threads)"
        )
        text.append(self.fit(line, max(0, width - 7)), style=self.sty("pane--dim"))

    def _waits(self, text: Text, waits: tuple[tuple[str, float], ...], width: int) -> None:
        text.append("\nwaits ")
        bar_w = max(10, min(40, width // 3))
        for cls, run in stacked_bar(waits, bar_w):
            text.append(run, style=self.sty(CLASS_STYLE.get(cls, ("pane--dim", ""))[0]))
        legend = [(cls, f) for cls, f in waits if f >= 0.005]
        legend.sort(key=lambda x: x[1], reverse=True)
        room = width - len(text.plain.rsplit("\n", 1)[-1]) - 1
        for cls, frac in legend:
            item = f" {cls} {frac * 100:.0f}%"
            if len(item) > room:
                break
            text.append(item, style=self.sty(CLASS_STYLE.get(cls, ("pane--dim", ""))[0]))
            room -= len(item)

    def _threads(self, text: Text, s: PyStacksSample, width: int) -> None:
        if not s.threads:
            text.append("\nno Python threads seen", style=self.sty("pane--dim"))
            return
        head = f"{'THREAD':<{NAME_W}} {'TID':>{TID_W}} {'STATE':<{STATE_W}} {'ACT':>4} {'GIL':>4}  WAITS ON / TOP FRAME"
        text.append("\n" + clip(head, width), style=self.sty("pane--dim"))
        shown = len(s.threads) if self.zoomed else self.max_threads
        for t in s.threads[:shown]:
            state = thread_state(t)
            text.append("\n")
            text.append(clip(t.name or "?", NAME_W).ljust(NAME_W))  # literal: names are never markup
            text.append(f" {t.tid:>{TID_W}} ")
            style = CLASS_STYLE["active" if state == "run" else t.wait][0] if t.wait or state == "run" else "pane--dim"
            text.append(state[:STATE_W].ljust(STATE_W), style=self.sty(style))
            text.append(f" {fmt_pct(t.active_pct, 4)} {fmt_pct(t.gil_pct, 4)}  ")
            text.append(self.fit(t.top_frame, max(0, width - len(text.plain.rsplit("\n", 1)[-1]))))
        hidden = len(s.threads) - shown
        if hidden > 0:
            text.append(f"\n… {hidden} more threads", style=self.sty("pane--dim"))

    def _hot(self, text: Text, s: PyStacksSample, width: int) -> None:
        hot = [h for h in s.hot if h.self_pct > 0 or h.native][: self.max_hot * (4 if self.zoomed else 1)]
        if not hot:
            return
        text.append(
            "\n" + clip(f"{'HOT FUNCTION':<28} {'SELF':>5} {'TOTAL':>5}  WHERE", width), style=self.sty("pane--dim")
        )
        for h in hot:
            text.append("\n")
            name = ("⚙ " + compact_symbol(h.name, 26)) if h.native else h.name
            if self.zoomed and len(name) > 28:  # the whole name on its own row, the numbers under it
                text.append(printable(name) + "\n" + " " * 28)
            else:
                text.append(clip(name, 28).ljust(28))
            text.append(f" {fmt_pct(h.self_pct, 5)} {fmt_pct(h.total_pct, 5)}  ")
            room = max(0, width - len(text.plain.rsplit("\n", 1)[-1]))
            if self.zoomed:
                text.append(printable(h.location), style=self.sty("pane--dim"))
                continue
            where = h.location if len(h.location) <= room else "…" + h.location[-max(0, room - 1) :]
            text.append(printable(where[:room]), style=self.sty("pane--dim"))

    def _op_mix(self, text: Text, s: PyStacksSample, width: int) -> None:
        """The op mix read from the Python frames (no pause): an arithmetic-intensity view of the CPU work."""
        mix = s.py_op_mix
        if not mix:
            return
        text.append("\n")
        text.append("ops (Python frames):", style=self.sty("pane--dim"))
        self._mix_items(text, mix, width)

    def _mix_items(self, text: Text, mix: tuple[tuple[str, float], ...], width: int) -> None:
        for cls, frac in mix:
            if frac < 0.005:
                continue
            item = f" {OP_LABELS.get(cls, cls)} {frac * 100:.0f}%"
            if len(text.plain.rsplit("\n", 1)[-1]) + len(item) > width:
                break
            style = {"math": "verdict--compute", "memory": "verdict--memory_io", "alloc": "pane--warn"}.get(
                cls, "verdict--host_cpu" if cls == "interpreter" else "pane--dim"
            )
            text.append(item, style=self.sty(style))

    def _native(self, text: Text, s: PyStacksSample, width: int) -> None:
        self._op_mix(text, s, width)
        text.append("\n")
        if s.native_mix is None:
            text.append(
                self.fit(
                    "native ops: none sampled yet (n: a 1 s native sample; it pauses the target, ~2 s for torch)", width
                ),
                style=self.sty("pane--dim"),
            )
            return
        age = fmt_duration(s.native_age_s)
        text.append(f"native ops ({age} ago):", style=self.sty("pane--dim"))
        self._mix_items(text, s.native_mix, width)

    def _trigger(self, text: Text, s: PyStacksSample, width: int) -> None:
        text.append("\n")
        text.append(clip(f"⚡ {fmt_clock(s.ts_s)} {s.trigger}:", width), style=self.sty("pane--warn"))
        for t in s.threads[:3]:
            state = thread_state(t)
            line = f"  {t.name} {state} {t.top_frame}"
            text.append("\n" + self.fit(line, width))
