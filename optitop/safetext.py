"""Text from a target or a file made safe for a terminal: every control character shown as a visible escape.

Why one module: a thread name, a hostname in a recording or a line of a py-spy dump can hold ``ESC ] 0 ;``
(set the window title), ``ESC [ 2 J`` (clear the screen) or a bare ``\\r`` that overwrites what was printed.
The live panes, the replay loader, ``compare``'s table and the bundle's text members all pass such text
through these two functions, so what a file says is shown, never obeyed. Headless (no Textual): the core
modules use it too.
"""

from __future__ import annotations

from typing import Any

#: C0 controls, DEL and the C1 controls (U+0080..U+009F: U+009B is a one-byte CSI on 8-bit terminals).
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), *range(0x7F, 0xA0))} | {10: "\\n", 13: "\\r", 9: " "}
#: The same, keeping newlines and tabs: for text whose lines are its layout (a stack dump, a table).
_CONTROL_KEEP_LINES = {c: v for c, v in _CONTROL.items() if c not in (9, 10)}


def printable(text: str) -> str:
    """Control characters (ANSI escapes, \\r, newlines) made visible, so target text can never repaint the screen."""
    return text.translate(_CONTROL)


def printable_lines(text: str) -> str:
    """Like ``printable`` but newlines and tabs stay: multi-line text keeps its layout and loses its escapes."""
    return text.translate(_CONTROL_KEEP_LINES)


def printable_json(value: Any) -> Any:
    """Every string in a JSON value (keys included) made printable; other values unchanged.

    For what is read from a recording's header before it becomes anything else (host, user, options).
    """
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_json(v) for v in value]
    if isinstance(value, dict):
        return {printable(str(k)): printable_json(v) for k, v in value.items()}
    return value
