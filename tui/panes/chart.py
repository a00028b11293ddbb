"""A history chart (plotext via textual-plotext), redrawn only on demand: charts are where a monitor's CPU goes.

Imported after the first frame so starting optitop does not pay for plotext.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual_plotext import PlotextPlot


class HistoryChart(PlotextPlot):
    """Lines over the last N seconds; x is seconds ago (negative), y is clamped to a fixed top."""

    def __init__(self, title: str, y_top: float = 100.0, *, id: str | None = None) -> None:  # noqa: A002
        """A chart titled ``title`` with y from 0 to at least ``y_top``."""
        super().__init__(id=id)
        self._title = title
        self._y_top = y_top
        self._last: tuple[object, ...] | None = None

    def plot_series(self, series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]]) -> None:
        """Replace the lines: (label, xs seconds-ago, ys); redraw only when the data changed."""
        key = tuple((label, tuple(xs), tuple(ys)) for label, xs, ys in series)
        if key == self._last:
            return
        self._last = key
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        top = self._y_top
        for label, xs, ys in series:
            pts = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None]
            if not pts:
                continue
            top = max(top, max(y for _, y in pts))
            plt.plot([p[0] for p in pts], [p[1] for p in pts], label=label, marker="braille")
        plt.title(self._title)
        plt.ylim(0, top * 1.05)
        plt.xlabel("seconds ago")
        self.refresh()
