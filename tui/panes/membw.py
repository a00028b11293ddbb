"""The memory-bandwidth pane: GPU DRAM, host<->device PCIe, GPU memory capacity and host paging, as rates and % of peak.

This is where "the GPU waits on memory", "CPU<->GPU transfers" and "offload/paging" show. Peaks are derived
from NVML (bus width x max memory clock x 2 / 8; PCIe generation x width) and labelled as estimates. Host DRAM
bandwidth needs CPU performance counters; where the kernel has none the pane says so in one honest line.
"""

from __future__ import annotations

from rich.text import Text

from optitop.model import GpuDevice, GpuSample, ProcessSample, ServingSample, SystemSample, Window, pcie_bytes_per_s
from optitop.tui.format import bar, clip, fmt_bytes, fmt_pct, fmt_rate, fmt_si_rate, spark
from optitop.tui.panes.base import Pane
from optitop.tui.panes.gpu import COMPACT_ABOVE, link_label, pct_of, unavailable_line, wrap

#: Seconds of process history the RSS growth rate is fitted over.
RSS_SPAN_S = 60.0
HOST_DRAM_UNKNOWN = "host DRAM bandwidth: not checked (the GPU collector, which looks for CPU counters, is not running)"


def rss_growth(window: Window, span_s: float = RSS_SPAN_S) -> tuple[float | None, float]:
    """RSS change per second of the target tree over the last ``span_s`` (first to last sample), and the span."""
    series = window.recent_of("process", ProcessSample, span_s)
    if len(series) < 2:
        return None, 0.0
    first, last = series[0], series[-1]
    dt = last.mono_s - first.mono_s
    if dt <= 0:
        return None, 0.0
    return (last.rss_bytes - first.rss_bytes) / dt, dt


def kv_cache_pct(window: Window) -> float | None:
    """KV-cache usage from the serving metrics (queue or log collector), when either knows it."""
    for name in ("queue", "logs"):
        sample = window.latest_of(name, ServingSample)
        usage = sample.stats.kv_cache_usage_pct if sample is not None else None  # both sources carry stats
        if usage is not None:
            return float(usage)
    return None


def device_history(window: Window, index: int) -> tuple[list[float | None], list[float | None]]:
    """DRAM bandwidth % and PCIe GB/s (rx + tx) of one GPU over the window, oldest first."""
    dram: list[float | None] = []
    pcie: list[float | None] = []
    for s in window.of("gpu", GpuSample):
        dev = next((d for d in s.devices if d.index == index), None)
        if dev is None:
            dram.append(None)
            pcie.append(None)
            continue
        dram.append(dev.dram_bw_util_pct if dev.util_source == "gpm" else dev.legacy_mem_util_pct)
        both = pcie_bytes_per_s(dev)
        pcie.append(None if both is None else both / 1e9)
    return dram, pcie


class MemBwPane(Pane):
    """GPU DRAM and PCIe per device, then the host side of the target tree."""

    def build(self, window: Window, width: int) -> Text:
        """Render the GPU and host memory traffic."""
        text = Text()
        text.append("MEMORY BANDWIDTH", style=self.sty("pane--title"))
        sample = window.latest_of("gpu", GpuSample)
        if sample is None:
            text.append("\n" + unavailable_line(window, "GPU: "), style=self.sty("pane--dim"))
        else:
            compact = len(sample.devices) > COMPACT_ABOVE
            for dev in sample.devices:
                text.append("\n")
                if compact:
                    self._device_row(text, dev, width)
                else:
                    self._device_block(text, window, dev, width)
        kv = kv_cache_pct(window)
        if kv is not None:
            text.append("\n" + f"KV cache {fmt_pct(kv)} used (from the server's metrics)")
        self._host(text, window, sample, width)
        return text

    # -- GPU -----------------------------------------------------------------------------------------------
    def _dram_line(self, dev: GpuDevice, width: int) -> tuple[str, float | None, str]:
        """(label, pct, what follows the bar) for the DRAM line, GPM first, legacy labelled as not bandwidth."""
        peak = fmt_si_rate(dev.dram_peak_bytes_per_s)
        if dev.util_source == "gpm":
            rest = f" ≈ {fmt_si_rate(dev.dram_bytes_per_s)} of {peak} peak (est.)"
            return "DRAM bw", dev.dram_bw_util_pct, rest
        rest = f" busy (legacy: time, not bw) · peak {peak} (est.)"
        return "mem-ctl", dev.legacy_mem_util_pct, rest

    def _device_block(self, text: Text, window: Window, dev: GpuDevice, width: int) -> None:
        text.append(f"GPU{dev.index} ", style="bold")
        if dev.note:
            text.append(wrap(dev.note, width, 5), style=self.sty("pane--bad"))
            return
        label, pct, rest = self._dram_line(dev, width)
        bar_w = max(6, min(20, width - len(label) - len(rest) - 12))
        text.append(f"{label} ")
        text.append(bar(pct, bar_w), style=self.sty("pane--ok"))
        text.append(clip(fmt_pct(pct, 5) + rest, max(10, width - 6 - len(label) - bar_w)))
        link = dev.pcie_link_bytes_per_s
        head = (
            f"  PCIe rx {fmt_si_rate(dev.pcie_rx_bytes_per_s)} ({fmt_pct(pct_of(dev.pcie_rx_bytes_per_s, link))})"
            f" · tx {fmt_si_rate(dev.pcie_tx_bytes_per_s)} ({fmt_pct(pct_of(dev.pcie_tx_bytes_per_s, link))})"
        )
        tail = f"of {fmt_si_rate(link)} each way ({link_label(dev)})"
        if dev.pcie_source not in ("gpm", ""):
            tail += " [legacy]"
        sep = " " if len(head) + 1 + len(tail) <= width else "\n    "
        text.append("\n" + clip(head, width) + sep + clip(tail, width - 4))
        if dev.nvlink_present:
            if dev.nvlink_rx_bytes_per_s is None and dev.nvlink_tx_bytes_per_s is None:
                nvlink = "  NVLink present: rates need GPM (Hopper or newer)"
            else:
                nvlink = (
                    f"  NVLink rx {fmt_si_rate(dev.nvlink_rx_bytes_per_s)}"
                    f" · tx {fmt_si_rate(dev.nvlink_tx_bytes_per_s)}"
                )
            text.append("\n" + clip(nvlink, width))
        text.append("\n" + clip("  " + self._capacity(dev), width))
        dram, pcie_gbs = device_history(self.history(window), dev.index)
        if len(dram) >= 2:
            w = max(4, (width - 40) // 2)
            peak_dram = max((v for v in dram if v is not None), default=None)
            peak_pcie = max((v for v in pcie_gbs if v is not None), default=None)
            top_pcie = max(1.0, peak_pcie or 0.0)
            text.append("\n  ")
            text.append("DRAM% ", style=self.sty("pane--dim"))
            text.append(spark(dram, w), style=self.sty("pane--ok"))
            text.append(f" peak {fmt_pct(peak_dram)}  ", style=self.sty("pane--dim"))
            text.append("PCIe GB/s ", style=self.sty("pane--dim"))
            text.append(spark(pcie_gbs, w, top=top_pcie), style=self.sty("pane--ok"))
            text.append(" peak " + ("–" if peak_pcie is None else f"{peak_pcie:.1f}"), style=self.sty("pane--dim"))

    def _capacity(self, dev: GpuDevice) -> str:
        used = f"mem {fmt_bytes(dev.mem_used_bytes)} / {fmt_bytes(dev.mem_total_bytes)}"
        used += f" ({fmt_pct(pct_of(dev.mem_used_bytes, dev.mem_total_bytes))})"
        if dev.target_mem_bytes is None:
            return used + " · target share unknown"
        share = pct_of(dev.target_mem_bytes, dev.mem_total_bytes)
        return used + f" · target {fmt_bytes(dev.target_mem_bytes)} ({fmt_pct(share)} of the GPU)"

    def _device_row(self, text: Text, dev: GpuDevice, width: int) -> None:
        if dev.note:
            text.append(clip(f"GPU{dev.index} lost: needs a reset", width), style=self.sty("pane--bad"))
            return
        dram = dev.dram_bw_util_pct if dev.util_source == "gpm" else dev.legacy_mem_util_pct
        tag = "" if dev.util_source == "gpm" else "ˡ"
        link = dev.pcie_link_bytes_per_s
        row = (
            f"GPU{dev.index:<2} DRAM {fmt_pct(dram, 4)}{tag} {fmt_si_rate(dev.dram_bytes_per_s):>10}"
            f" · PCIe rx {fmt_pct(pct_of(dev.pcie_rx_bytes_per_s, link), 4)} tx"
            f" {fmt_pct(pct_of(dev.pcie_tx_bytes_per_s, link), 4)} of {link_label(dev)}"
            f" · mem {fmt_pct(pct_of(dev.mem_used_bytes, dev.mem_total_bytes), 4)}"
        )
        text.append(clip(row, width))

    # -- host ----------------------------------------------------------------------------------------------
    def _host(self, text: Text, window: Window, sample: GpuSample | None, width: int) -> None:
        proc = window.latest_of("process", ProcessSample)
        system = window.latest_of("system", SystemSample)
        text.append("\n")
        text.append("host ", style="bold")
        if proc is None:
            text.append("target: waiting for the process collector", style=self.sty("pane--dim"))
        else:
            growth, span = rss_growth(window)
            sign = "+" if growth is not None and growth >= 0 else "-"
            rss = "" if growth is None else f" {sign}{fmt_bytes(abs(growth), per_s=True)} ({span:.0f} s)"
            line = (
                f"target: faults {fmt_rate(proc.minor_faults_per_s)} minor {fmt_rate(proc.major_faults_per_s)} major"
                f" · RSS {fmt_bytes(proc.rss_bytes)}{rss}"
            )
            text.append(clip(line, width - 5))
        if system is not None:
            if system.swap_total_bytes == 0:
                swap = "host swap: none configured (no swapping possible)"
            else:
                swap = (
                    f"host swap: in {fmt_bytes(system.swap_in_bytes_per_s, per_s=True)}"
                    f" · out {fmt_bytes(system.swap_out_bytes_per_s, per_s=True)}"
                    f" · {fmt_bytes(system.swap_used_bytes)} used of {fmt_bytes(system.swap_total_bytes)}"
                )
            text.append("\n" + clip(swap, width))
        note = sample.host_dram_bw_note if sample is not None else ""
        note = note or (system.host_dram_bw_note if system is not None else "") or HOST_DRAM_UNKNOWN
        text.append("\n" + wrap(note, width), style=self.sty("pane--dim"))
