"""Reading what is on a headless Textual screen, as text (from the app's own screenshot)."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable

from textual.app import App
from textual.pilot import Pilot

_TEXT = re.compile(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)" textLength="([\d.]+)"[^>]*>(.*?)</text>')


def screen_text(app: App) -> str:
    """Every row of the current screen as plain text, placed by column (the SVG omits blank runs)."""
    cells = []
    for m in _TEXT.finditer(app.export_screenshot()):
        text = html.unescape(m.group(4)).replace("\xa0", " ")
        cells.append((float(m.group(2)), float(m.group(1)), float(m.group(3)), text))
    if not cells:
        return ""
    char_w = min(length / len(text) for _, _, length, text in cells if text)
    rows: dict[float, list[str]] = {}
    for y, x, _, text in cells:
        row = rows.setdefault(y, [])
        col = round(x / char_w)
        if len(row) < col:
            row.extend(" " * (col - len(row)))
        row[col : col + len(text)] = list(text)
    return "\n".join("".join(rows[y]).rstrip() for y in sorted(rows))


def without_scrollbar(row: str, width: int = 80) -> str:
    """A screen row less the screen's scrollbar (its last two columns, drawn in block characters)."""
    tail = row[width - 2 :].strip()
    return row[: width - 2] if tail and set(tail) <= set("▁▂▃▄▅▆▇█") else row


async def wait_for_screen(pilot: Pilot, predicate: Callable[[str], bool], timeout_s: float = 15.0) -> str:
    """Pause the pilot until the screen text satisfies ``predicate``; fail with the last screen."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        await pilot.pause(0.1)
        text = screen_text(pilot.app)
        if predicate(text):
            return text
    raise AssertionError(f"screen never matched within {timeout_s} s; last screen:\n{text}")
