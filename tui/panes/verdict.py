"""The analyzer pane: the verdict with its confidence, evidence, fixes, runners-up and a strip of past verdicts.

It is where the eye lands first, so the class is a reverse-video block in its colour, followed by the
confidence as a number and a bar; the strip on the right shows one cell per past verdict (newest right) so
a change of class is visible at a glance. Everything below is plain lines, most decisive first, so a short
terminal cuts the least useful ones.
"""

from __future__ import annotations

import itertools

from rich.style import Style
from rich.text import Text

from optitop.model import Diagnosis, Window, confidence_word
from optitop.tui.format import bar, clip, printable
from optitop.tui.panes.base import Pane

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
#: How the analyzer's "unknown" begins when work flows but classes compete below their gates (analyzers/verdict.py).
UNDECIDED_WHY = "work flows but"
SHORT = {
    "compute": "compute",
    "memory_io": "memory i/o",
    "scheduling": "scheduling",
    "network": "network",
    "host_cpu": "host cpu",
    "idle": "idle",
    "none": "none",
    "unknown": "unknown",
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
#: Widest the history strip gets, and the least room it needs to be worth drawing.
STRIP_MAX = 40
STRIP_MIN = 8
CONF_BAR = 8


def runners_label(d: Diagnosis) -> str:
    """What the runners-up line is called: a class above the winner is never shown without saying why."""
    if d.leading:
        return f"held ({d.leading} leads this window)"
    if any(p > d.confidence for _, p in d.secondary):
        return "runners-up (higher, but later in precedence)"
    return "runners-up"


def runners_text(d: Diagnosis) -> str:
    """``host_cpu 37 %, network 20 %``."""
    return ", ".join(f"{SHORT.get(c, c)} {p:.0%}" for c, p in d.secondary)


class VerdictPane(Pane):
    """Where the eye lands first.

    The app may give the pane only a few rows (``max_lines``); rows are then chosen by importance — the
    verdict, the strongest evidence, the first fix, the runners-up, then the rest — and shown in reading
    order. Zoomed, everything the Diagnosis holds is shown.
    """

    max_evidence: int = 3
    max_fixes: int = 2

    def build(self, window: Window, width: int) -> Text:
        """Render the latest verdict of the window."""
        if not window.diagnoses:
            return Text("verdict: gathering data…", style=Style(bold=True))
        d = window.diagnoses[-1]
        head = Text()
        self._headline(head, d, self.history(window).diagnoses or window.diagnoses, width)
        if self.zoomed:
            return Text("\n").join([head, *self._zoomed_rows(d)])
        rows: list[tuple[float, Text]] = [(0, head), *self._detail_rows(d, width)]
        self.uncut_rows = len(rows)
        budget = None if self.zoomed or self.max_lines is None else max(1, self.max_lines)
        if budget is not None:
            keep = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))[:budget]
            rows = [rows[i] for i in sorted(keep)]
        return Text("\n").join(text for _, text in rows)

    def _zoomed_rows(self, d: Diagnosis) -> list[Text]:
        """Everything the Diagnosis holds, in sections, each line whole (the base pane wraps them)."""
        dim = self.sty("pane--dim")
        rows: list[Text] = []

        def section(title: str, lines: tuple[str, ...], numbered: bool = False) -> None:
            if not lines:
                return
            rows.append(Text(title, style=self.sty("pane--title")))
            for i, line in enumerate(lines):
                mark = f"  {i + 1}. " if numbered else "  · "
                # literal Text: evidence may quote thread names from the target
                rows.append(Text(mark, style=Style(bold=True) if numbered else Style()) + Text(printable(line)))

        section("evidence", d.evidence)
        if d.latency is not None:
            lat = d.latency
            extra = () if lat.absent else (f"residence: {lat.residence_from}",)
            section("where a request's time goes", (lat.line(), *extra))
        section("fixes to try first", d.fixes, numbered=True)
        if d.secondary:
            rows.append(Text(runners_label(d) + ": ", style=self.sty("pane--title")) + Text(runners_text(d)))
        section("what would change it", d.counter)
        section("missing", d.missing)
        if d.rules:
            rows.append(Text("rules that fired (class score · weight rule: signal now vs threshold)", style=dim))
            rows.extend(Text("  " + printable(line), style=dim) for line in d.rules)
        return rows

    def _detail_rows(self, d: Diagnosis, width: int) -> list[tuple[float, Text]]:
        """(priority, row) in reading order; a lower priority number is kept first when rows are short."""
        n_evidence = self.max_evidence
        n_fixes = self.max_fixes
        rows: list[tuple[float, Text]] = []
        for i, line in enumerate(d.evidence[:n_evidence]):
            # literal Text: evidence may quote thread names from the target
            rows.append((1 if i == 0 else 2 + 2 * i, Text("  · ") + Text(clip(line, width - 4))))
        for i, fix in enumerate(d.fixes[:n_fixes]):
            row = Text(f"  {i + 1}. ", style=Style(bold=True)) + Text(clip(fix, width - 5))
            rows.append((2 if i == 0 else 3 + 2 * i, row))
        if d.latency is not None and d.latency.line() not in d.evidence[:n_evidence]:
            # the analyzer puts the line among the evidence where it matters; else it sits under it, dimmed
            rows.append((2.5, Text(clip(d.latency.line(), width), style=self.sty("pane--dim"))))
        if d.secondary:
            line = f"{runners_label(d)}: {runners_text(d)}"
            rows.append((3, Text(clip(line, width), style=self.sty("pane--dim"))))
        for line in d.counter[:1]:
            rows.append((20, Text(clip("would change it: " + line, width), style=self.sty("pane--dim"))))
        if d.missing:
            rows.append((6.5, Text(clip("missing: " + "; ".join(d.missing), width), style=self.sty("pane--dim"))))
        return rows

    def _headline(self, text: Text, d: Diagnosis, history: tuple[Diagnosis, ...], width: int) -> None:
        """The class block, the confidence, and the strip of past verdicts pushed to the right."""
        colour = self.sty(f"verdict--{d.category}")
        name = LABELS.get(d.category, d.category.upper())
        if d.category == "unknown" and d.evidence and d.evidence[0].startswith(UNDECIDED_WHY):
            name = "UNDECIDED"  # work flows, classes compete below their gates: judged, not yet settled
        label = clip(f" {name} ", width)
        text.append(label, style=colour + Style(bold=True, reverse=True))
        if d.category != "unknown":
            # Drop the words, then the bar, before the number: the number is what matters.
            pct = f" {d.confidence:.0%} "
            if len(label) + len(pct) <= width:
                text.append(pct, style=Style(bold=True))
            if len(text.plain) + CONF_BAR <= width:
                text.append(bar(d.confidence * 100, CONF_BAR), style=colour)
            # a held verdict says so: the evidence now leads elsewhere (the runners-up line names where)
            word = " " + ("held" if d.leading else confidence_word(d.confidence))
            if len(text.plain) + len(word) <= width:
                text.append(word, style=self.sty("pane--dim"))
        room = width - len(text.plain) - 2
        cells = min(STRIP_MAX, room, len(history))
        if room < STRIP_MIN or cells <= 0:
            return
        text.append(" " * (width - len(text.plain) - cells))
        # One span per run of a class: each span costs an escape sequence on the wire.
        for category, run in itertools.groupby(past.category for past in history[-cells:]):
            text.append(STRIP_CHARS.get(category, "?") * len(list(run)), style=self.sty(f"verdict--{category}"))
