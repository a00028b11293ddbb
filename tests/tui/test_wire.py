"""Only the changed cells reach the terminal: the line diff, and the cropped partial updates."""

from __future__ import annotations

import random

from rich.console import Console
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._compositor import ChopsUpdate
from textual.strip import Strip

from optitop.tui.panes.base import changed_cells, split_rows
from optitop.tui.wire import crop_partial_updates


def test_changed_cells_compare_column_by_column():
    assert changed_cells(Text("up 14s x"), Text("up 14s x")) is None
    assert changed_cells(Text("up 14s x"), Text("up 15s x")) == (4, 5)
    # a shorter number moves the rest of the line left: every column it moved through changed
    assert changed_cells(Text("faults 12/s minor 0/s"), Text("faults 1/s minor 0/s")) == (8, 21)
    # same characters, another style: a change
    assert changed_cells(Text.assemble(("ab", "red"), "cd"), Text.assemble(("ab", "blue"), "cd")) == (0, 2)
    # wide characters shift columns: the whole line
    assert changed_cells(Text("名前 1%"), Text("名前 2%")) == (0, 7)


def test_changed_cells_cover_every_changed_column():
    # a span added in the middle of unchanged text: its cells
    plain, marked = Text("cpu 12% mem 3%"), Text("cpu 12% mem 3%")
    marked.stylize("red", 8, 11)
    assert changed_cells(plain, marked) == (8, 11)
    assert changed_cells(marked, plain) == (8, 11)
    # a row that got shorter: its old tail is now blank
    assert changed_cells(Text("queue 12 waiting"), Text("queue 12")) == (9, 16)
    # the same spans overlaid in another order style their overlap differently: the whole line
    ab, ba = Text("abcdef"), Text("abcdef")
    ab.stylize("red", 0, 4)
    ab.stylize("blue", 2, 6)
    ba.stylize("blue", 2, 6)
    ba.stylize("red", 0, 4)
    assert changed_cells(ab, ba) == (0, 6)
    # text and style changing far apart: one range spanning both
    left, right = Text("a1 b2 c3"), Text("a9 b2 c3")
    right.stylize("bold", 6, 8)
    assert changed_cells(left, right) == (1, 8)


def test_partial_updates_start_at_the_first_changed_column():
    assert crop_partial_updates(), "Textual's ChopsUpdate changed shape: optitop sends whole lines again"
    strip = Strip([Segment(" "), Segment("abc", Style(bold=True)), Segment("defghij")])
    update = ChopsUpdate([{0: strip}], [(0, 5, 7)], [[11]])
    out = update.render_segments(Console(force_terminal=True, color_system="standard"))
    assert out == "\x1b[1;6Hef", repr(out)  # columns 5 and 6 of " abcdefghij", nothing before
    # a region at the line's start is unchanged by the crop
    update = ChopsUpdate([{0: strip}], [(0, 0, 2)], [[11]])
    assert update.render_segments(Console(force_terminal=True)) == "\x1b[1;1H \x1b[1ma\x1b[0m"


def test_split_rows_gives_the_rows_rich_gives():
    # Random texts: newlines anywhere (first, last, doubled), spans across rows, overlapping and empty.
    rng = random.Random(0)
    styles = [Style(bold=True), Style(color="red"), "dim", Style(italic=True)]
    for _ in range(3000):
        text = Text(style=rng.choice(["", "bold"]), justify=rng.choice([None, "left"]))
        for _ in range(rng.randint(0, 20)):
            piece = "".join(rng.choice("ab \n") for _ in range(rng.randint(0, 6)))
            text.append(piece, style=rng.choice([None, *styles]))
        if len(text):
            start = rng.randint(0, len(text))
            text.stylize(rng.choice(styles), start, rng.randint(start, len(text)))
        ours = [(r.plain, r.spans, r.style, r.justify, r.overflow) for r in split_rows(text)]
        rich = [(r.plain, r.spans, r.style, r.justify, r.overflow) for r in text.split("\n", allow_blank=True)]
        assert ours == rich, repr(text)
