"""The ``?`` screen: every key and what each pane shows (the zoom keys come from the pane table)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from optitop.tui.layout import zoom_help

#: Where the keys' descriptions start, and the width the zoom list wraps at.
KEY_COLUMN = 13
HELP_WIDTH = 72

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
  verdict  the bottleneck class, confidence, evidence and fixes;
           the strip on the right is the verdict history, newest right
  CPU      the target tree's CPU (% of one core), per-core bars, the
           busiest threads (state R running, S sleeping, D disk)
  TREE     the target and its children, busiest first
  GPU      per GPU: SM/tensor/DRAM/graphics (gpm) or busy % (legacy),
           memory and the target's share, power, clocks, throttling
  MEMORY   GPU DRAM GB/s of peak (est.), PCIe % of link, host paging
  PYTHON   py-spy: per thread active/GIL %, what it waits on (network,
           queue, GPU sync, sleep, I/O), hot functions, native op mix
  QUEUE    waiting/running, batch, KV cache, p50/p95 latencies, accept
           queue; each block names its source (endpoint, log, kernel)

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
