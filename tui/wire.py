"""What goes over the wire: make Textual's partial screen updates start at the first changed column.

Textual (8.x) sends a changed region of a line from the line's first column to the region's end (its
``ChopsUpdate.render_segments`` crops only the right edge; the source marks it "TODO: crop to x extents"). A
clock ticking at the right of the header then resends the whole header line every second, which is most of
optitop's bytes over SSH. ``crop_partial_updates`` installs a ``render_segments`` that crops both edges and
moves the cursor to the first changed column instead. It checks the shape of the class it patches and leaves
Textual alone when that differs, so an upgrade can cost bytes but never garble the screen; a test checks the
cropping on the installed version.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.control import Control

_INSTALLED = False


def _render_segments(self: Any, console: Console) -> str:
    """Textual's ``ChopsUpdate.render_segments``, cropped on the left too."""
    sequences: list[str] = []
    append = sequences.append
    move_to = Control.move_to
    chops = self.chops
    chop_ends = self.chop_ends
    last_y = self.spans[-1][0]
    for y, x1, x2 in self.spans:
        line = chops[y]
        ends = chop_ends[y]
        for end, (x, strip) in zip(ends, line.items(), strict=False):
            if strip is None or x > x2 or end <= x1:
                continue
            if x2 > x >= x1 and end <= x2:
                append(move_to(x, y).segment.text)
                append(strip.render(console))
                continue
            start = max(x, x1)
            strip = strip.crop(start - x, min(end, x2) - x)
            append(move_to(start, y).segment.text)
            append(strip.render(console))
        if y != last_y:
            append("\n")
    return "".join(sequences)


def crop_partial_updates() -> bool:
    """Install the cropping ``render_segments``; False (and nothing changed) when Textual's shape differs."""
    global _INSTALLED  # noqa: PLW0603 - a one-time patch of a third-party class
    if _INSTALLED:
        return True
    try:
        from textual._compositor import ChopsUpdate
        from textual.strip import Strip
    except ImportError:
        return False
    init = getattr(ChopsUpdate, "__init__", None)
    names = getattr(getattr(init, "__code__", None), "co_varnames", ())
    if not (
        callable(getattr(ChopsUpdate, "render_segments", None))
        and callable(getattr(Strip, "crop", None))
        and names[:4] == ("self", "chops", "spans", "chop_ends")
    ):
        return False
    ChopsUpdate.render_segments = _render_segments  # type: ignore[method-assign]
    _INSTALLED = True
    return True
