"""The ``?`` screen: every key and what each pane shows (the zoom keys come from the pane table)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from optitop.tui.layout import panes_help, zoom_help

#: Where the keys' descriptions start, and the width the zoom list wraps at.
KEY_COLUMN = 13
HELP_WIDTH = 72
#: Where a pane's description starts in the list of panes.
PANE_COLUMN = 11

HELP_TEXT = (
    """optitop — keys (↑/↓ scroll, esc closes)

  q          quit (stops everything optitop started)
  p / space  pause the screen (collection goes on)
  r          record to optitop-<host>-<pid>-<time>.jsonl.gz; again: stop
  b          write an incident bundle (metrics, stacks, devices, doctor)
  n          1 s native stack sample (pauses the target; ~2 s for torch)
"""
    + zoom_help(KEY_COLUMN, HELP_WIDTH)
    + """
  + / -      keep more / less history
  ?          this help      ctrl+p  command palette

Panes
"""
    + panes_help(PANE_COLUMN, HELP_WIDTH)
    + """

Header: ● live source, ○ starting, ✗ unavailable (doctor says why),
! failing; 'self' is optitop's own CPU and memory.
"""
)


class HelpScreen(ModalScreen[None]):
    """The ? screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "app.pop_screen", "close"),
    ]

    def compose(self) -> ComposeResult:
        """The help text, scrollable: at 80×24 it is taller than the screen."""
        with VerticalScroll(id="help-scroll"):
            yield Static(HELP_TEXT, id="help-body", markup=False)
