"""The process-tree pane: the target and its children (DataLoader or engine workers) as they come and go."""

from __future__ import annotations

from rich.text import Text

from optitop.model import ProcessSample, Window
from optitop.tui.format import clip, fmt_bytes, fmt_pct
from optitop.tui.panes.base import Pane


class TreePane(Pane):
    """A summary line and the busiest processes of the tree, indented by depth."""

    max_procs: int = 6

    def build(self, window: Window, width: int) -> Text:
        """Render the tree."""
        text = Text()
        proc = window.latest_of("process", ProcessSample)
        text.append("TREE ", style=self.sty("pane--title"))
        if proc is None:
            text.append("–", style=self.sty("pane--dim"))
            return text
        fds = "–" if proc.num_fds is None else str(proc.num_fds)
        summary = (
            f"{proc.num_procs} proc · {proc.num_threads} threads · {fds} fds"
            f" · io r {fmt_bytes(proc.read_bytes_per_s, per_s=True)} w {fmt_bytes(proc.write_bytes_per_s, per_s=True)}"
        )
        text.append(clip(summary, width - 5))
        for info in proc.procs[: self.max_procs]:
            text.append("\n")
            indent = "  " * min(info.depth, 4) + ("└ " if info.depth else "")
            head = f"{info.pid:>8} {fmt_pct(info.cpu_pct, 5)} {fmt_bytes(info.rss_bytes):>9} {indent}"
            text.append(head)
            text.append(clip(info.cmdline or info.name, max(8, width - len(head))))
        hidden = proc.num_procs - min(len(proc.procs), self.max_procs)
        if hidden > 0:
            text.append(f"\n  … {hidden} more", style=self.sty("pane--dim"))
        if proc.denied:
            text.append("\n" + clip("not permitted: " + "; ".join(proc.denied), width), style=self.sty("pane--warn"))
        return text
