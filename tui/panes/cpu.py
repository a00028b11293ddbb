"""The CPU pane: the target tree's CPU, per-core bars and the busiest threads by name."""

from __future__ import annotations

from rich.text import Text

from optitop.model import ProcessSample, SystemSample, ThreadSample, Window
from optitop.tui.format import bar, clip, fmt_bytes, fmt_pct, fmt_rate, spark, with_gaps
from optitop.tui.panes.base import Pane

CORE_CELL = 14  # "c12 ████▌  45%"


def core_lines(per_core: tuple[float, ...], width: int, max_lines: int) -> list[str]:
    """Per-core bars packed into rows; a one-character-per-core strip when they would not fit."""
    if not per_core:
        return []
    per_row = max(1, width // CORE_CELL)
    rows = (len(per_core) + per_row - 1) // per_row
    if rows <= max_lines:
        out = []
        for r in range(rows):
            cells = []
            for i in range(r * per_row, min(len(per_core), (r + 1) * per_row)):
                cells.append(f"c{i:<2}{bar(per_core[i], 5)}{fmt_pct(per_core[i], 4)}".ljust(CORE_CELL))
            out.append("".join(cells).rstrip())
        return out
    strip = spark(list(per_core), len(per_core))
    chunk = max(1, width - 6)
    return [f"cores {strip[i : i + chunk]}" for i in range(0, len(strip), chunk)][:max_lines]


#: Shown when threads that ended between two samples used at least this much CPU (% of a core): below it, the
#: difference is clock-tick rounding.
EXITED_THREADS_SHOWN_PCT = 10.0
#: Threads are ordered by their mean CPU over this many recent samples, so rows do not swap places every
#: second when several threads idle at 0–1 %.
ORDER_SAMPLES = 5


def steady_order(proc: ProcessSample, window: Window) -> list[ThreadSample]:
    """The latest sample's threads, busiest first by recent mean CPU (whole percent), then by tid."""
    recent = window.of("process", ProcessSample)[-ORDER_SAMPLES:]
    total: dict[int, float] = {}
    for sample in recent:
        for thread in sample.threads:
            total[thread.tid] = total.get(thread.tid, 0.0) + thread.cpu_pct
    count = max(1, len(recent))
    return sorted(proc.threads, key=lambda t: (-round(total.get(t.tid, t.cpu_pct) / count), t.tid))


class CpuPane(Pane):
    """Text part of the CPU pane (the chart is a separate widget)."""

    max_core_lines: int = 2

    def build(self, window: Window, width: int) -> Text:
        """Render CPU numbers, cores and threads."""
        text = Text()
        proc = window.latest_of("process", ProcessSample)
        system = window.latest_of("system", SystemSample)
        text.append("CPU ", style=self.sty("pane--title"))
        if proc is None:
            text.append("waiting for the first sample…", style=self.sty("pane--dim"))
            return text
        history = [value for _, value in with_gaps(self.history(window).of("process", ProcessSample), _cpu_pct)]
        text.append(f"{fmt_pct(proc.cpu_pct)} of a core")
        if proc.cpu_pct_of_allowed is not None:
            text.append(f" ({proc.cpu_pct_of_allowed:.0f}% of {proc.allowed_cores})")
        exited = proc.exited_threads_cpu_pct
        if exited is not None and exited >= EXITED_THREADS_SHOWN_PCT:
            # CPU no live thread accounts for: short-lived threads, invisible in the per-thread rows below
            text.append(f" · {fmt_pct(exited)} in exited threads", style=self.sty("pane--warn"))
        if system is not None:
            text.append(f" · host {fmt_pct(system.cpu_busy_pct)}", style=self.sty("pane--dim"))
        top = max(100.0, max((h for h in history if h is not None), default=100.0))
        spark_width = max(0, width - len(text.plain) - 2)
        if spark_width >= 8:
            text.append("  " + spark(history, min(spark_width, 40), top=top), style=self.sty("pane--ok"))
        # Lines in order of importance: the app may keep only the first few on a small terminal.
        if proc.threads:
            if self.zoomed:
                self._thread_table(text, proc, width)
            else:
                self._thread_cells(text, steady_order(proc, window), width)
        line = (
            f"ctx {fmt_rate(proc.vol_ctx_switches_per_s)} vol {fmt_rate(proc.invol_ctx_switches_per_s)} invol"
            f" · faults {fmt_rate(proc.minor_faults_per_s)} minor {fmt_rate(proc.major_faults_per_s)} major"
            f" · rss {fmt_bytes(proc.rss_bytes)}"
        )
        text.append("\n" + clip(line, width))
        if system is not None:
            extra = (
                f"host iowait {fmt_pct(system.iowait_pct)} · steal {fmt_pct(system.steal_pct)}"
                f" · load {system.load_1m:.2f} · mem avail {fmt_bytes(system.mem_available_bytes)}"
            )
            text.append("\n" + clip(extra, width), style=self.sty("pane--dim"))
            for row in core_lines(system.per_core_busy_pct, width, 16 if self.zoomed else self.max_core_lines):
                text.append("\n" + row)
        return text

    def _thread_cells(self, text: Text, threads: list[ThreadSample], width: int) -> None:
        """The busiest threads packed several to a line: name, CPU, state (the zoomed view has the table)."""
        name_w = max(8, min(24, max(len(t.name) for t in threads)))
        cell = name_w + 12
        per_line = max(1, width // cell)
        shown = threads[: per_line * 2]
        for i, thread in enumerate(shown):
            text.append("\n" if i % per_line == 0 else "")
            name = clip(thread.name, name_w).ljust(name_w)  # literal: names are never markup
            text.append(name, style=self.sty("pane--title") if thread.cpu_pct >= 50 else "")
            text.append(f" {fmt_pct(thread.cpu_pct, 4)} {thread.state}".ljust(cell - name_w))

    def _thread_table(self, text: Text, proc: ProcessSample, width: int) -> None:
        """Every thread we keep, one per line, with its tid and process."""
        text.append("\n")
        text.append(clip(f"{'TID':>8} {'THREAD':<16} S {'CPU':>5}", width), style=self.sty("pane--dim"))
        for thread in proc.threads:
            text.append("\n")
            text.append(f"{thread.tid:>8} ")
            text.append(clip(thread.name, 16).ljust(16))  # literal: names are never markup
            text.append(f" {thread.state} {fmt_pct(thread.cpu_pct, 5)}")
            if thread.pid != proc.pid:
                text.append(f"  pid {thread.pid}", style=self.sty("pane--dim"))


def _cpu_pct(sample: ProcessSample) -> float | None:
    return sample.cpu_pct
