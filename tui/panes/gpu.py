"""The GPU pane: one block per GPU (compact rows when there are many), every number labelled with its source.

A block shows utilisation bars (SM, tensor, DRAM bandwidth, graphics from GPM; the legacy busy % where GPM is
missing), memory with the target's share, power against its limit, clocks with the throttle reasons in
words, PCIe/NVLink rates, and a one-line history of SM and DRAM-bandwidth utilisation.
"""

from __future__ import annotations

import textwrap

from rich.text import Text

from optitop.model import GpuDevice, GpuSample, SourceState, Window, gpu_busy_pct
from optitop.tui.format import bar, clip, fmt_bytes, fmt_pct, fmt_si_rate, spark
from optitop.tui.panes.base import Pane

#: Above this many GPUs each one gets a single row instead of a block.
COMPACT_ABOVE = 2
#: Seconds between recounts of the rows the full blocks would take while the pane is squeezed to summary rows.
BLOCK_ROWS_EVERY_S = 10.0
#: The warning under a GPU whose driver runs without persistence mode.
PERSISTENCE_OFF = "persistence mode off: clocks drop between requests, NVML starts slowly (nvidia-smi -pm 1)"


def link_label(dev: GpuDevice) -> str:
    """The PCIe link the percentages are of, e.g. 'Gen5×16' (the maximum; an idle link trains down)."""
    gen = dev.pcie_gen_max or dev.pcie_gen
    width = dev.pcie_width_max or dev.pcie_width
    return f"Gen{gen}×{width}" if gen and width else "link ?"


def wrap(text: str, width: int, first_used: int = 0) -> str:
    """Break a long note into lines of ``width`` (the first line already holds ``first_used`` columns)."""
    lines = textwrap.wrap(text, max(10, width - first_used), break_on_hyphens=False)
    if len(lines) > 1:
        rest = textwrap.wrap(" ".join(lines[1:]), max(10, width), break_on_hyphens=False)
        lines = lines[:1] + rest
    return "\n".join(lines)


def pct_of(part: float | None, whole: float | None) -> float | None:
    """``part`` as a percentage of ``whole``; None when either is unknown."""
    if part is None or not whole:
        return None
    return 100.0 * part / whole


def unavailable_line(window: Window, title: str) -> str:
    """Why there is no GPU sample, from the collector's status (one line)."""
    status = window.statuses.get("gpu")
    if status is None:
        return f"{title}unavailable: the GPU collector is not running"
    if status.state is SourceState.STARTING or (status.state is SourceState.OK and not status.reason):
        return f"{title}waiting for the first sample…"
    return f"{title}unavailable: {status.reason or status.state.value}"


def device_warnings(dev: GpuDevice) -> list[str]:
    """What makes this device's numbers less than they should be: GPM fallen back, persistence mode off."""
    out = []
    if dev.util_note:
        out.append(dev.util_note)
    if dev.persistence_mode is False:
        out.append(PERSISTENCE_OFF)
    return out


def util_history(window: Window, index: int) -> tuple[list[float | None], list[float | None]]:
    """SM (or legacy busy) and DRAM-bandwidth utilisation of one GPU over the window, oldest first."""
    sm: list[float | None] = []
    dram: list[float | None] = []
    for s in window.of("gpu", GpuSample):
        dev = next((d for d in s.devices if d.index == index), None)
        sm.append(None if dev is None else gpu_busy_pct(dev))
        dram.append(None if dev is None else (dev.dram_bw_util_pct if dev.util_source == "gpm" else None))
    return sm, dram


class GpuPane(Pane):
    """Per-GPU blocks, or one row per GPU above COMPACT_ABOVE devices."""

    #: ((devices, width), when, rows): the last count of the full blocks' rows (see ``build``).
    _block_rows: tuple[tuple[int, int], float, int] | None = None

    def inputs(self, window: Window) -> tuple[object, ...] | None:
        """With no sample the pane is one line from the collector's status (rebuilt when that changes); with
        one, every tick (its numbers and history move)."""
        if window.latest_of("gpu", GpuSample) is not None:
            return None
        status = window.statuses.get("gpu")
        return (None if status is None else (status.state, status.reason),)

    def build(self, window: Window, width: int) -> Text:
        """Render every GPU of the newest sample."""
        text = Text()
        sample = window.latest_of("gpu", GpuSample)
        if sample is None:
            text.append("GPU ", style=self.sty("pane--title"))
            text.append(unavailable_line(window, "")[: max(width * 3, 80)], style=self.sty("pane--dim"))
            return text
        self._header(text, sample, width)
        if self._tight(len(sample.devices)):
            for dev in sample.devices:
                text.append("\n")
                self._summary_row(text, dev, width)
            # What the blocks would take: the app gives spare rows to a pane that was cut, and a pane that only
            # ever reports its summary rows would never be given the rows for its blocks. Building the blocks
            # too doubled the pane's cost on every tick at 80x24, so their row count is taken again only when
            # the devices or the width change, or every BLOCK_ROWS_EVERY_S (a throttle line comes and goes).
            key = (len(sample.devices), width)
            cached = self._block_rows
            if cached is None or cached[0] != key or window.now_mono_s - cached[1] >= BLOCK_ROWS_EVERY_S:
                full = Text()
                for dev in sample.devices:
                    full.append("\n")
                    self._block(full, window, dev, width)
                cached = self._block_rows = (key, window.now_mono_s, full.plain.count("\n"))
            self.uncut_rows = text.plain.count("\n") - len(sample.devices) + cached[2] + 1
        elif len(sample.devices) > COMPACT_ABOVE:
            self._compact(text, window, sample, width)
        else:
            for dev in sample.devices:
                text.append("\n")
                self._block(text, window, dev, width)
        return text

    # -- header ------------------------------------------------------------------------------------------
    def _header(self, text: Text, sample: GpuSample, width: int) -> None:
        text.append("GPU ", style=self.sty("pane--title"))
        targets = _target_indices(sample)
        where = "target on GPU " + ", ".join(str(i) for i in targets) if targets else "target on no GPU"
        head = f"{len(sample.devices)} device(s) · driver {sample.driver_version or '?'} · {where}"
        text.append(clip(head, width - 4))
        if sample.attribution_note:
            text.append("\n" + wrap(sample.attribution_note, width), style=self.sty("pane--warn"))

    # -- short of rows (80x24) -------------------------------------------------------------------------
    def _tight(self, devices: int) -> bool:
        """True when the app gave too few rows for a block per GPU: then one summary row each.

        Above COMPACT_ABOVE devices the compact table already has one row per GPU.
        """
        if self.zoomed or self.max_lines is None or devices > COMPACT_ABOVE:
            return False
        return self.max_lines < 1 + 3 * devices

    def _summary_row(self, text: Text, dev: GpuDevice, width: int) -> None:
        """The numbers a verdict leans on in one row: SM, tensor, DRAM (or legacy busy), memory, temp, power."""
        name = clip(_short_name(dev.name), 14)
        if dev.note:
            text.append(clip(f"{dev.index} {name} GPU lost: needs a reset", width), style=self.sty("pane--bad"))
            return
        busy = gpu_busy_pct(dev)
        if dev.util_source == "gpm":
            util = f"SM {fmt_pct(busy)} tensor {fmt_pct(dev.tensor_util_pct)} DRAM bw {fmt_pct(dev.dram_bw_util_pct)}"
        else:
            util = f"busy {fmt_pct(busy)} mem-ctl {fmt_pct(dev.legacy_mem_util_pct)} (legacy)"
        temp = "–" if dev.temperature_c is None else f"{dev.temperature_c:.0f}°C"
        mem = f"{_gib(dev.mem_used_bytes)}/{_gib(dev.mem_total_bytes)}G"
        row = f"{dev.index} {name}  {util}  {mem}  {temp} {_num(dev.power_w)}W"
        text.append(clip(row, width), style=self.sty("pane--ok"))
        reasons = [r for r in dev.throttle_reasons if r != "idle"]
        room = width - len(row) - 2
        if reasons and room >= 6:
            text.append("  " + clip(", ".join(reasons), room), style=self.sty("pane--warn"))

    # -- one block ---------------------------------------------------------------------------------------
    def _cell(self, label: str, pct: float | None, width: int) -> str:
        bar_w = max(4, width - len(label) - 6)
        return f"{label} {bar(pct, bar_w)}{fmt_pct(pct, 5)}".ljust(width)

    def _block(self, text: Text, window: Window, dev: GpuDevice, width: int) -> None:
        title = f"{dev.index} {dev.name}"
        if dev.gpu_instance_id is not None:
            title += f" GI {dev.gpu_instance_id}"
        text.append(clip(title, max(10, width - 34)), style="bold")
        text.append(f" [{dev.util_source}]", style=self.sty("pane--dim"))
        temp = "–" if dev.temperature_c is None else f"{dev.temperature_c:.0f}°C"
        power = f"{_num(dev.power_w)}/{_num(dev.power_limit_w)} W"
        text.append(f"  {temp}  {power}")
        if dev.mig_mode:
            text.append("  MIG", style=self.sty("pane--warn"))
        if dev.note:
            text.append("\n" + wrap(dev.note, width), style=self.sty("pane--bad"))
            return
        for warning in device_warnings(dev):
            text.append("\n" + wrap(warning, width), style=self.sty("pane--warn"))
        half = max(20, (width - 1) // 2)
        rows: tuple[tuple[tuple[str, float | None], tuple[str, float | None]], ...]
        busy = gpu_busy_pct(dev)
        if dev.util_source == "gpm":
            rows = (
                (("SM     ", busy), ("tensor ", dev.tensor_util_pct)),
                (("DRAM bw", dev.dram_bw_util_pct), ("graphic", dev.graphics_util_pct)),
            )
        else:
            rows = ((("busy   ", busy), ("mem-ctl", dev.legacy_mem_util_pct)),)
        for left, right in rows:
            text.append("\n")
            text.append(self._cell(*left, half), style=self.sty("pane--ok"))
            if width >= 2 * half:
                text.append(" " + self._cell(*right, half - 1).rstrip(), style=self.sty("pane--ok"))
        if dev.util_source != "gpm":
            legacy = "legacy counters: % of time busy, not SM activity or bandwidth"
            text.append("\n" + clip(legacy, width), style=self.sty("pane--dim"))
        text.append("\n" + clip(self._memory_line(dev, width), width))
        clocks = (
            f"clocks SM {_num(dev.sm_clock_mhz)}/{_num(dev.sm_clock_max_mhz)}"
            f" · mem {_num(dev.mem_clock_mhz)}/{_num(dev.mem_clock_max_mhz)} MHz · "
        )
        text.append("\n" + clocks)
        reasons = [r for r in dev.throttle_reasons if r != "idle"]
        if reasons:
            text.append(
                clip("throttle: " + ", ".join(reasons), max(8, width - len(clocks))), style=self.sty("pane--warn")
            )
        else:
            text.append("idle" if dev.throttle_reasons else "not throttled", style=self.sty("pane--dim"))
        for line in self._links_lines(dev, width):
            text.append("\n" + clip(line, width))
        sm, dram = util_history(self.history(window), dev.index)
        if len(sm) >= 2:
            w = max(4, (width - 20) // 2)
            text.append("\n")
            text.append("hist SM ", style=self.sty("pane--dim"))
            text.append(spark(sm, w), style=self.sty("pane--ok"))
            text.append("  DRAM ", style=self.sty("pane--dim"))
            text.append(spark(dram, w), style=self.sty("pane--ok"))

    def _memory_line(self, dev: GpuDevice, width: int) -> str:
        mem = f"mem {fmt_bytes(dev.mem_used_bytes)}/{fmt_bytes(dev.mem_total_bytes)}"
        if dev.target_pids:
            line = f"{mem} · target {fmt_bytes(dev.target_mem_bytes)}"
            if dev.target_sm_pct is not None:
                line += f" SM {fmt_pct(dev.target_sm_pct)} mem-ctl {fmt_pct(dev.target_mem_pct)}"
            elif dev.proc_util_note:
                line += f" · SM –: {dev.proc_util_note}"
            pids = " pid " + ",".join(str(p) for p in dev.target_pids[:3]) + ("…" if len(dev.target_pids) > 3 else "")
            return line + pids if len(line) + len(pids) <= width else line
        if dev.mig_mode:
            return mem + " · per-process utilisation not available on MIG"
        return mem + " · target: none here"

    def _links_lines(self, dev: GpuDevice, width: int) -> list[str]:
        link = dev.pcie_link_bytes_per_s
        line = (
            f"PCIe rx {fmt_si_rate(dev.pcie_rx_bytes_per_s)} tx {fmt_si_rate(dev.pcie_tx_bytes_per_s)}"
            f" of {fmt_si_rate(link)} ({link_label(dev)})"
        )
        if dev.pcie_source and dev.pcie_source != "gpm":
            line += " [legacy]"
        if not dev.nvlink_present:
            return [line]
        if dev.nvlink_rx_bytes_per_s is None and dev.nvlink_tx_bytes_per_s is None:
            nvlink = "NVLink: needs GPM"
        else:
            nvlink = f"NVLink rx {fmt_si_rate(dev.nvlink_rx_bytes_per_s)} tx {fmt_si_rate(dev.nvlink_tx_bytes_per_s)}"
        if len(line) + 3 + len(nvlink) <= width:
            return [line + " · " + nvlink]
        return [line, nvlink]

    # -- many GPUs ---------------------------------------------------------------------------------------
    def _compact(self, text: Text, window: Window, sample: GpuSample, width: int) -> None:
        head = (
            f"{'#':>2} {'name':<14} {'SM':>4} {'TC':>4} {'DRAM':>4} {'memory':>11} {'power':>5} {'temp':>4}  PCIe rx/tx"
        )
        text.append("\n" + clip(head, width), style=self.sty("pane--dim"))
        legacy = False
        targets = set(_target_indices(sample))
        for dev in sample.devices:
            text.append("\n")
            mark = "*" if dev.index in targets else " "
            name = clip(_short_name(dev.name), 14).ljust(14)
            if dev.note:
                text.append(
                    clip(f"{dev.index:>2}{mark}{name} GPU lost: needs a reset", width), style=self.sty("pane--bad")
                )
                continue
            if dev.util_source == "gpm":
                sm = fmt_pct(gpu_busy_pct(dev), 4)
            else:
                legacy = True
                sm = (fmt_pct(gpu_busy_pct(dev)) + "ˡ").rjust(4)
            mem = f"{_gib(dev.mem_used_bytes)}/{_gib(dev.mem_total_bytes)}G"
            temp = "–" if dev.temperature_c is None else f"{dev.temperature_c:.0f}°"
            row = (
                f"{dev.index:>2}{mark}{name} {sm} {fmt_pct(dev.tensor_util_pct, 4)} {fmt_pct(dev.dram_bw_util_pct, 4)}"
                f" {mem:>8} {_num(dev.power_w) + 'W':>5} {temp:>4}"
                f"  {_gbps(dev.pcie_rx_bytes_per_s)}/{_gbps(dev.pcie_tx_bytes_per_s)}G"
            )
            text.append(clip(row, width))
            reasons = [r for r in dev.throttle_reasons if r != "idle"]
            room = width - len(row) - 2
            if reasons and room >= 6:
                text.append("  " + clip(", ".join(reasons), room), style=self.sty("pane--warn"))
        notes = "* = the target runs here" + (" · ˡ = legacy busy %, not SM" if legacy else "")
        text.append("\n" + clip(notes, width), style=self.sty("pane--dim"))


def _target_indices(sample: GpuSample) -> tuple[int, ...]:
    """The indices of the target's GPUs by the model's one rule; none when it is not known which are the target's
    (then the model hands every GPU over to be judged, which is not the same as the target running on them)."""
    chosen = sample.target_devices()
    return tuple(d.index for d in chosen.devices) if chosen.known else ()


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"


def _gib(n: int | None) -> str:
    return "–" if n is None else f"{n / 1024**3:.0f}"


def _gbps(x: float | None) -> str:
    return "–" if x is None else f"{x / 1e9:.1f}"


def _short_name(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100 80GB HBM3': the vendor is the same on every row."""
    return name.removeprefix("NVIDIA ").removeprefix("Tesla ")
