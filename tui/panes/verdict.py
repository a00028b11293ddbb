"""The analyzer pane: the verdict with its confidence, evidence, fixes, runners-up and a strip of past verdicts."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from optitop.tui.format import clip
from optitop.tui.panes.base import Pane
from optitop.types import Window

LABELS = {
    "compute": "COMPUTE-BOUND",
    "memory_io": "MEMORY I/O-BOUND",
    "scheduling": "SCHEDULING",
    "network": "NETWORK / LATENCY",
    "host_cpu": "HOST CPU / PYTHON-BOUND",
    "idle": "IDLE",
    "none": "NO BOTTLENECK",
    "unknown": "NOT JUDGED YET",
}
STRIP_CHARS = {
    "compute": "C",
    "memory_io": "M",
    "scheduling": "S",
    "network": "N",
    "host_cpu": "H",
    "idle": "·",
    "none": "-",
    "unknown": "?",
}


class VerdictPane(Pane):
    """Where the eye lands first."""

    max_evidence: int = 3
    max_fixes: int = 2

    def build(self, window: Window, width: int) -> Text:
        """Render the latest verdict of the window."""
        text = Text()
        if not window.diagnoses:
            text.append("verdict: gathering data…", style="bold")
            return text
        d = window.diagnoses[-1]
        text.append(
            LABELS.get(d.category, d.category.upper()),
            style=self.sty(f"verdict--{d.category}") + Style(bold=True),
        )
        text.append(f"  {d.confidence:.0%} confident", style=self.sty("pane--dim"))
        if d.secondary:
            others = ", ".join(f"{LABELS.get(c, c).lower()} {p:.0%}" for c, p in d.secondary[:2])
            text.append(clip(f"  · also {others}", max(0, width - len(text.plain))), style=self.sty("pane--dim"))
        strip_width = max(0, min(40, width // 3))
        if strip_width:
            strip = "".join(STRIP_CHARS.get(x.category, "?") for x in window.diagnoses[-strip_width:])
            pad = width - len(text.plain) - len(strip) - 1
            if pad > 0:
                text.append(" " * pad)
                for ch, diag in zip(strip, window.diagnoses[-strip_width:], strict=False):
                    text.append(ch, style=self.sty(f"verdict--{diag.category}"))
        for line in d.evidence[: self.max_evidence]:
            text.append("\n  · " + clip(line, width - 4))
        for i, fix in enumerate(d.fixes[: self.max_fixes], 1):
            text.append(f"\n  {i}. ", style="bold")
            text.append(clip(fix, width - 5))
        if d.missing:
            text.append("\n  " + clip("missing: " + "; ".join(d.missing), width - 2), style=self.sty("pane--dim"))
        return text
