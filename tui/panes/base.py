"""The pane base: render a Window to rich Text, update the widget only when the text changed.

Text objects (never markup strings) carry names from the target, so a thread called ``[bold]x[/]`` is
shown literally.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Span, Text
from textual.app import RenderResult
from textual.color import Color
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widgets import Static

from optitop.model import CATEGORIES, Window
from optitop.tui.format import clip, printable


class Pane(Static):
    """A text pane fed with windows.

    Colours are component classes styled in ``optitop.tcss`` (one colour per bottleneck class, used
    everywhere), so a monochrome theme or NO_COLOR changes them in one place.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "pane--title",
        "pane--dim",
        "pane--ok",
        "pane--warn",
        "pane--bad",
        "pane--exited",
        *(f"verdict--{c}" for c in CATEGORIES),
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        """An empty pane."""
        super().__init__("", id=id, classes=classes)
        #: False until the first ``show`` and after a zoom: the next one repaints the whole pane.
        self._shown = False
        self._last_width = 0
        self._rows: list[Text] = []
        self._held: Window | None = None
        self._styles: dict[str, Style] = {}
        self._style_basis: tuple[object, ...] = ()
        self._last_inputs: tuple[object, ...] | None = None
        self._strips: dict[int, Strip] = {}
        self._strips_for: tuple[int, Style] | None = None
        #: ``rich_style`` (the pane's colours over its ancestors' backgrounds), kept until the CSS changes: it
        #: walks every ancestor, and asking once per row was a tenth of the frame.
        self._base_style: Style | None = None
        self._background_colors: tuple[Color, Color] | None = None

    def content_width(self) -> int:
        """The width available for text (80 before the first layout)."""
        return self.content_size.width or 78

    zoomed: bool = False
    #: Lines this pane may use (None: as many as it likes); the app sets it from the terminal height.
    max_lines: int | None = None
    #: Starts of column-heading rows: when the budget cuts right after one, its first data row is shown in
    #: its place (a heading with nothing under it is a wasted row).
    HEADINGS: ClassVar[tuple[str, ...]] = ()

    #: Rows the last build had before the line budget cut them (the app gives spare rows to panes that were cut).
    natural_rows: int = 0
    #: Rows a zoomed pane has on screen (the app sets it from the terminal height).
    room_rows: int = 1_000
    #: Set by a ``build`` that applies the budget itself (the verdict keeps its rows by importance): how many
    #: rows it had before it did.
    uncut_rows: int = 0

    def set_zoomed(self, zoomed: bool) -> None:
        """Zoomed panes get the whole screen: show more rows (subclasses read ``self.zoomed``) and wrap them."""
        self.zoomed = zoomed
        self._shown = False
        self._last_inputs = None

    def fit(self, text: str, width: int) -> str:
        """``text`` made printable and, unless zoomed, clipped to ``width`` with an ellipsis.

        Zoomed, nothing is clipped: ``show`` wraps every row to the pane's width instead, so the whole line
        (an evidence line, a fix, a frame, a source URL) is there to read.
        """
        return printable(text) if self.zoomed else clip(text, width)

    #: Seconds between refreshes of sparklines and history strips (the app sets it in low-bandwidth mode).
    #: Textual rewrites a whole pane when any cell of it changes, so a pane whose numbers hold still must
    #: not be rewritten every tick just to scroll its sparkline.
    history_every_s: float = 0.0

    def history(self, window: Window) -> Window:
        """The window sparklines are drawn from: ``window``, or one held for ``history_every_s``."""
        held = self._held
        if (
            self.history_every_s <= 0
            or held is None
            or not 0 <= window.now_mono_s - held.now_mono_s < self.history_every_s
            or held.span_s != window.span_s
        ):
            self._held = window
            return window
        return held

    def quiet(self, window: Window) -> bool:
        """True when the pane has nothing worth more than one line (the app then gives it one)."""
        return False

    def sty(self, name: str) -> Style:
        """The Rich style of one component class (empty before the widget is mounted).

        Cached: Textual resolves a component class through the CSS each time, which was a fifth of the cost of
        building the panes. ``show`` drops the cache when the theme or the app's classes (monochrome) change.
        """
        if not self.is_mounted:
            return Style()
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name, partial=True, default=Style())
        return style

    def notify_style_update(self) -> None:
        """The CSS changed: resolve the component styles again."""
        self._styles.clear()
        self._base_style = None
        self._background_colors = None
        super().notify_style_update()

    @property
    def background_colors(self) -> tuple[Color, Color]:
        """Textual's background colours, kept until the CSS changes: the compositor asks for them on every
        render, and each time they were blended over every ancestor (4 % of the UI thread)."""
        colors = self._background_colors
        if colors is None:
            colors = self._background_colors = super().background_colors
        return colors

    def inputs(self, window: Window) -> tuple[object, ...] | None:
        """What this pane's text depends on, when that is cheap to tell; None: build every time (override).

        When two windows give equal inputs (and the width, budget and zoom are the same), ``show`` skips the
        build: a pane fed by a source that samples every few seconds is not rebuilt every tick.
        """
        return None

    def build(self, window: Window, width: int) -> Text:
        """The pane's text for ``window`` at ``width`` columns (override)."""
        raise NotImplementedError

    def show(self, window: Window) -> bool:
        """Render ``window``; returns True when the screen changed."""
        width = self.content_width()
        if self.is_mounted:
            basis = (self.app.theme, self.app.classes)
            if basis != self._style_basis:
                self._styles.clear()
                self._base_style = None
                self._background_colors = None
                self._style_basis = basis
                self._last_inputs = None
        inputs = self.inputs(window)
        if inputs is not None:
            inputs = (*inputs, width, self.max_lines, self.zoomed, window.span_s, self._style_basis)
            if inputs == self._last_inputs:
                return False
        self._last_inputs = inputs
        rows = self._rows_for(window, width)
        if self.zoomed and len(rows) > self.room_rows and self.is_mounted and not self.screen.show_vertical_scrollbar:
            # The wrapped text is taller than the screen: the screen's scrollbar is about to take its columns,
            # so wrap for the width that will be left rather than show the first frame clipped.
            width = max(1, width - self.screen.styles.scrollbar_size_vertical)
            rows = self._rows_for(window, width)
        if self.max_lines is not None and not self.zoomed and len(rows) > self.max_lines:
            kept = max(1, self.max_lines)
            last = rows[kept - 1].plain
            if kept > 1 and self.HEADINGS and last.startswith(self.HEADINGS):
                rows = [*rows[: kept - 1], rows[kept]]
            else:
                rows = rows[:kept]
        if self._shown and width == self._last_width and len(rows) == len(self._rows):
            # Same shape: repaint only the cells that changed (with tui/wire.py, only those reach the terminal),
            # so a clock ticking in a header does not resend the pane's other lines over SSH. Rows are compared
            # directly (text, then spans): building one key string per pane cost more than the comparison.
            changed = False
            for y, (old, new) in enumerate(zip(self._rows, rows, strict=True)):
                cells = changed_cells(old, new)
                if cells is not None:
                    changed = True
                    self._strips.pop(y, None)
                    self.refresh(Region(cells[0], y, cells[1] - cells[0], 1))
            if not changed:
                return False
        else:
            self._strips.clear()
            # A relayout is only needed when the pane's height may change.
            self.refresh(layout=len(rows) != len(self._rows))
        self._rows = rows
        self._shown, self._last_width = True, width
        return True

    def show_failure(self, exc: BaseException) -> None:
        """Show that this pane's build raised ``exc`` instead of its last text (which would go stale unsaid).

        The message is plain text (a Text, never markup: an exception may quote the target's names). The next
        ``show`` builds again, so a pane whose data stop upsetting it recovers by itself.
        """
        message = f"this pane failed: {type(exc).__name__}: {exc}".strip().rstrip(":")
        self._last_inputs = None
        self._strips.clear()
        self._rows = [Text(printable(message), style=self.sty("pane--bad"))]
        self.natural_rows = 1
        self._shown = False  # the next show repaints the whole pane
        self.refresh(layout=True)

    def _rows_for(self, window: Window, width: int) -> list[Text]:
        """The pane's rows at ``width``: built, split, wrapped when zoomed; sets ``natural_rows``."""
        self.uncut_rows = 0
        rows = split_rows(self.build(window, width))
        if self.zoomed:
            rows = [part for row in rows for part in wrap_row(row, width)]
        self.natural_rows = max(len(rows), self.uncut_rows)
        return rows

    def render(self) -> RenderResult:
        """The text of the last ``show`` (rows are drawn one by one through ``render_line``)."""
        return Text("\n").join(self._rows)

    # -- Textual's line API: each row is rendered on its own and kept until it changes ---------------------
    def render_line(self, y: int) -> Strip:
        """One row as a Strip, from the cache unless ``show`` changed it.

        A Static renders its whole text again whenever any cell of it is dirty; rendering only the changed rows
        was a third of the UI thread's time at 1 Hz.
        """
        width = self.size.width
        base = self._base_style
        if base is None:
            base = self._base_style = self.rich_style
        if (width, base) != self._strips_for:
            self._strips.clear()
            self._strips_for = (width, base)
        strip = self._strips.get(y)
        if strip is None:
            if y >= len(self._rows):
                return Strip.blank(width, base)
            row = self._rows[y].copy()
            row.truncate(width, overflow="ellipsis")
            row.stylize_before(base)
            strip = Strip(row.render(self.app.console), row.cell_len).crop_extend(0, width, base)
            self._strips[y] = strip
        return strip

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """As many lines as the text has."""
        return max(1, len(self._rows))

    def get_content_width(self, container: Size, viewport: Size) -> int:
        """The widest row."""
        return max((row.cell_len for row in self._rows), default=0)


def changed_cells(old: Text, new: Text) -> tuple[int, int] | None:
    """The cell range [start, end) where ``new`` differs from ``old`` on screen; None when nothing differs.

    Columns are compared (a short row ends in blanks), so text that moved is a change at every column it moved
    through. Characters are compared from both ends; styles by the spans that are in one row and not the other,
    whose cells are repainted. This is a range that covers every changed cell, not always the tightest one, and it
    costs a pass over the characters plus one over the spans instead of building a style list per character
    (that was a tenth of the UI thread). A line with wide characters, a different base style, or the same spans in
    another order is repainted whole.
    """
    if old.plain == new.plain and old.spans == new.spans and old.style == new.style:
        return None
    a, b = old.plain, new.plain
    width = max(len(a), len(b))
    whole = (0, max(cell_len(a), cell_len(b), 1))
    if old.style != new.style or cell_len(a) != len(a) or cell_len(b) != len(b):
        return whole
    lo, hi = width, 0
    if a != b:
        a, b = a.ljust(width), b.ljust(width)
        lo = 0
        while lo < width and a[lo] == b[lo]:
            lo += 1
        hi = width
        while hi > lo and a[hi - 1] == b[hi - 1]:
            hi -= 1
    if old.spans != new.spans:
        old_spans, new_spans = Counter(old.spans), Counter(new.spans)
        # Spans that both rows have style the same cells alike only if they overlay in the same order.
        if [s for s in old.spans if s in new_spans] != [s for s in new.spans if s in old_spans]:
            return whole
        for span in (old_spans - new_spans) + (new_spans - old_spans):
            lo, hi = min(lo, span.start), max(hi, span.end)
    hi = min(hi, width)
    return (lo, hi) if lo < hi else None


#: What starts a list item (a bullet or a number); wrapped lines of the item hang under the text after it.
_ITEM = re.compile(r"\s*(?:[·•\-*]|\d+\.|[a-z][\w /-]*:)?\s*")


def wrap_row(row: Text, width: int) -> list[Text]:
    """``row`` as rows of at most ``width`` cells, broken at spaces, later rows hanging under the item's text.

    ``  · 3.2 requests waiting while…`` continues under ``3.2``; a word longer than a row is cut into pieces.
    Styles stay on their characters (Rich's ``divide``). Rows that fit come back as they are.
    """
    plain = row.plain
    if width <= 0 or cell_len(plain) <= width:
        return [row]
    hang = _ITEM.match(plain)
    indent = hang.end() if hang else 0
    if not indent:  # a table row: continue under its last column (after the last double space that fits)
        column = plain.rfind("  ", 0, width)
        indent = column + 2 if column > 0 else 0
    if indent > width * 2 // 3 or max(map(cell_len, plain[indent:].split()), default=0) > width - indent:
        indent = 0  # a hang that would cut a word (a path, a URL) in two is worse than none
    cuts: list[int] = []
    start, room = 0, width
    while cell_len(plain[start:]) > room:
        end = start
        cells = 0
        while end < len(plain) and cells + cell_len(plain[end]) <= room:
            cells += cell_len(plain[end])
            end += 1
        space = plain.rfind(" ", start + 1, end + 1)
        cut = space + 1 if space > start else end
        if cut <= start:
            cut = start + 1
        cuts.append(cut)
        start, room = cut, width - indent
    pieces = row.divide(cuts)
    out = [pieces[0]]
    out.extend(Text(" " * indent) + piece for piece in pieces[1:])
    for piece in out:
        piece.rstrip()
    return out


def split_rows(text: Text) -> list[Text]:
    """``text.split("\\n", allow_blank=True)``, the same rows twice as fast.

    Rich divides at both ends of every newline and then drops the one-character newline lines, with a binary
    search per span over twice the rows; this looks each span's first row up once and walks on. It was a
    quarter of building the panes. Rows keep the text's style, justify and overflow, as Rich's do.
    """
    parts = text.plain.split("\n")
    style, justify, overflow = text.style, text.justify, text.overflow
    rows = [Text(part, style=style, justify=justify, overflow=overflow) for part in parts]
    spans = text.spans
    if not spans:
        return rows
    starts: list[int] = []
    offset = 0
    for part in parts:
        starts.append(offset)
        offset += len(part) + 1
    appends = [row.spans.append for row in rows]
    count = len(parts)
    for span_start, span_end, span_style in spans:
        i = max(0, bisect_right(starts, span_start) - 1)
        while i < count and starts[i] < span_end:
            line_start = starts[i]
            lo = max(span_start - line_start, 0)
            hi = min(span_end, line_start + len(parts[i])) - line_start
            if hi > lo:
                appends[i](Span(lo, hi, span_style))
            i += 1
    return rows
