"""The header: who is watched (pid, redacted cmdline, user, uptime, host), which sources are live, our own cost."""

from __future__ import annotations

import time

from rich.text import Text

from optitop.model import SourceState, TargetInfo, Window
from optitop.safetext import printable
from optitop.tui.format import clip, fmt_bytes, fmt_clock, fmt_uptime
from optitop.tui.panes.base import Pane

_STATE_MARK = {
    SourceState.OK: ("●", "pane--ok"),
    SourceState.STARTING: ("○", "pane--dim"),
    SourceState.UNAVAILABLE: ("✗", "pane--warn"),
    SourceState.ERROR: ("!", "pane--bad"),
    SourceState.DISABLED: ("-", "pane--dim"),
}


#: A collector whose tick takes this long is named in the header (faster ones are not news).
SLOW_SOURCE_S = 0.1


class HeaderPane(Pane):
    """Two lines: the target, then sources and optitop's own cost; a third when the target exited."""

    paused: bool = False
    recording: str = ""

    def build(self, window: Window, width: int) -> Text:
        """Render the header."""
        t = window.target
        # "now" is the newest sample's time, so a replay shows the uptime it had when recorded
        newest = max((series[-1].ts_s for series in window.samples.values() if series), default=time.time())
        uptime = fmt_uptime(newest - t.create_time_s)
        text = Text()
        text.append("optitop ", style="bold")
        text.append(f"pid {t.pid} ", style="bold")
        head = printable(f"{t.username}@{t.host} up {uptime}  ")  # a recording's host is anyone's text
        text.append(head)
        text.append(clip(t.cmdline, max(10, width - len(text.plain))), style=self.sty("pane--dim"))
        text.append("\n")
        # Flags first: a long line is cut at the right edge, and these must never be cut.
        if self.paused:
            text.append("PAUSED", style="reverse")
            text.append(" ")
        if self.recording:
            text.append(f"● REC {self.recording}", style=self.sty("pane--bad"))
            text.append(" ")
        for name, status in sorted(window.statuses.items()):
            mark, style = _STATE_MARK.get(status.state, ("?", "pane--dim"))
            text.append(mark + name, style=self.sty(style))
            text.append(" ")
        cost = window.self_cost
        text.append(" self ")
        text.append("–" if cost.cpu_pct is None else f"{cost.cpu_pct:.1f}%")
        text.append(f" {fmt_bytes(cost.rss_bytes, digits=0)}")
        if cost.slowest_latency_s is not None and cost.slowest_latency_s >= SLOW_SOURCE_S:
            slow = f" slowest {cost.slowest_source} {cost.slowest_latency_s * 1000:.0f}ms"
            text.append(slow, style=self.sty("pane--warn"))
        if t.previous_pids and not t.exited:
            text.append("\n")
            text.append(
                clip(
                    f"re-attached at {fmt_clock(t.reattached_at_s)} after a restart"
                    f" (was pid {t.previous_pids[-1]}); history kept, the gap shows in the charts",
                    width,
                ),
                style=self.sty("pane--warn"),
            )
        if t.exited:
            text.append("\n")
            reason = f" ({t.exit_reason})" if t.exit_reason else ""
            text.append(
                clip(f"target exited at {fmt_clock(t.exited_at_s)}{reason} — history kept, q quits", width),
                style=self.sty("pane--exited"),
            )
        return text


def has_notice_line(target: TargetInfo) -> bool:
    """Whether the header draws a third line (the target exited, or a ``--follow`` re-attach): the app's line
    budget asks here, so the panes below never lose a row to it unaccounted."""
    return target.exited or bool(target.previous_pids)
