"""The panes of the live screen, in one table: adding a pane is one entry here plus its own module.

The app composes the screen from ``PANES`` (in order), binds the number keys and lists them in the help from the
zoom keys, and shares the rows of a small terminal by each pane's budget. A pane's own CSS (its border, its
padding) can live in its class's ``DEFAULT_CSS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from optitop.tui.panes.base import Pane
from optitop.tui.panes.cpu import CpuPane
from optitop.tui.panes.gpu import GpuPane
from optitop.tui.panes.membw import MemBwPane
from optitop.tui.panes.python import PythonPane
from optitop.tui.panes.queue import QueuePane
from optitop.tui.panes.tree import TreePane
from optitop.tui.panes.verdict import VerdictPane


@dataclass(frozen=True, slots=True)
class PaneSpec:
    """One pane of the screen.

    Attributes:
        id: the widget id (the CSS and the tests find the pane by it).
        kind: the pane's class.
        zoom_key: the number key that zooms it ("" when it does not zoom).
        label: its name in the help's zoom list.
        box: the id of a container it sits in, zoomed as a whole ("" for none): the CPU pane shares its box with
            the chart mounted above it.
        budget: (weight, minimum lines) of the rows it gets on a small terminal; None when it takes no share
            (the verdict has its own rule).
        source: the source whose absence shrinks it to one line ("" when it has none).
        watches_stacks: zoomed, it shows the Python stacks: they are then sampled at full duty.
        title: its name in the help's list of panes.
        explain: what it shows, for that list (wrapped there).
    """

    id: str
    kind: type[Pane]
    zoom_key: str = ""
    label: str = ""
    box: str = ""
    budget: tuple[float, int] | None = None
    source: str = ""
    watches_stacks: bool = False
    title: str = ""
    explain: str = ""

    @property
    def zoom_id(self) -> str:
        """The id of what the zoom key shows alone: the pane, or the box it sits in."""
        return self.box or self.id


#: Every pane below the header, top to bottom.
PANES: tuple[PaneSpec, ...] = (
    PaneSpec(
        "verdict",
        VerdictPane,
        zoom_key="1",
        label="verdict",
        title="verdict",
        explain="the bottleneck class, confidence, evidence and fixes; the strip on the right is the verdict"
        " history, newest right",
    ),
    PaneSpec(
        "cpu",
        CpuPane,
        zoom_key="2",
        label="CPU",
        box="cpu-box",
        budget=(4, 3),
        title="CPU",
        explain="the target tree's CPU (% of one core), per-core bars, the busiest threads (state R running,"
        " S sleeping, D disk)",
    ),
    PaneSpec("tree", TreePane, budget=(2, 1), title="TREE", explain="the target and its children, busiest first"),
    PaneSpec(
        "gpu",
        GpuPane,
        zoom_key="3",
        label="GPU",
        budget=(3, 1),
        source="gpu",
        title="GPU",
        explain="per GPU: SM/tensor/DRAM/graphics (gpm) or busy % (legacy), memory and the target's share, power,"
        " clocks, throttling",
    ),
    PaneSpec(
        "membw",
        MemBwPane,
        zoom_key="4",
        label="memory bandwidth",
        budget=(2, 2),
        title="MEMORY",
        explain="GPU DRAM GB/s of peak (est.), PCIe % of link, host paging",
    ),
    PaneSpec(
        "queue",
        QueuePane,
        zoom_key="5",
        label="queue",
        budget=(3, 2),
        source="queue",
        title="QUEUE",
        explain="waiting/running, batch, KV cache, p50/p95 latencies, accept queue; each block names its source"
        " (endpoint, log, kernel)",
    ),
    PaneSpec(
        "python",
        PythonPane,
        zoom_key="6",
        label="Python",
        budget=(3, 2),
        source="pystacks",
        watches_stacks=True,
        title="PYTHON",
        explain="py-spy: per thread active/GIL %, what it waits on (network, queue, GPU sync, sleep, I/O), hot"
        " functions, native op mix",
    ),
)

#: The zoomable panes in key order.
ZOOMS: tuple[PaneSpec, ...] = tuple(sorted((p for p in PANES if p.zoom_key), key=lambda p: int(p.zoom_key)))

#: The ids the number keys zoom, in key order (the key of ``ZOOMABLE[i]`` is ``i + 1``).
ZOOMABLE: tuple[str, ...] = tuple(p.zoom_id for p in ZOOMS)


#: The ids whose zoom means the user looks at the stacks.
STACK_VIEWS: frozenset[str] = frozenset(p.zoom_id for p in PANES if p.watches_stacks)


#: Compact mode's line budget: (pane id, weight, minimum lines). Spare rows go to the heavier panes first, and
#: among equal weights to the lower pane on the screen (the order below).
def _budget() -> tuple[tuple[str, float, int], ...]:
    shared = [(index, p.id, p.budget) for index, p in enumerate(PANES) if p.budget is not None]
    shared.sort(key=lambda row: (-row[2][0], -row[0]))
    return tuple((pane_id, weight, minimum) for _, pane_id, (weight, minimum) in shared)


BUDGET: tuple[tuple[str, float, int], ...] = _budget()

#: Pane id -> the source whose absence shrinks it to one line.
PANE_SOURCE: dict[str, str] = {p.id: p.source for p in PANES if p.source}


def panes_help(indent: int, width: int) -> str:
    """The help's list of panes: each pane's title, and what it shows wrapped to ``width`` under ``indent``."""
    lines = []
    for p in (p for p in PANES if p.title):
        line = f"  {p.title}".ljust(indent)
        for word in p.explain.split():
            if len(line) + 1 + len(word) > width and line.strip() != p.title:
                lines.append(line)
                line = " " * indent + word
            else:
                line += ("" if line.endswith(" ") else " ") + word
        lines.append(line)
    return "\n".join(lines)


def zoom_help(indent: int, width: int) -> str:
    """The help's zoom line: ``1-6  zoom a pane (same key: back): 1 verdict 2 CPU …``, wrapped to ``width``."""
    keys = f"{ZOOMS[0].zoom_key}-{ZOOMS[-1].zoom_key}" if len(ZOOMS) > 1 else ZOOMS[0].zoom_key
    line = f"  {keys}".ljust(indent) + "zoom a pane (same key: back):"
    lines = []
    for item in (f"{p.zoom_key} {p.label}" for p in ZOOMS):
        if len(line) + 1 + len(item) > width:
            lines.append(line)
            line = " " * indent + item
        else:
            line += " " + item
    lines.append(line)
    return "\n".join(lines)
