"""The GPU collector: NVML per device (GPM profiling metrics where supported) and the target's share of each GPU.

GPM is used wherever ``nvmlGpmQueryDeviceSupport`` says yes (collectors/gpm.py), the legacy calls elsewhere, and
every value names its source. Every NVML call goes through one funnel (collectors/nvml.py); the devices and
what is kept of each between ticks are in collectors/gpudevices.py, the peaks and units in
collectors/gpupeaks.py, the pids and namespaces in collectors/pidns.py.

Rules kept here, each learned from another monitor's bug (research/monitors.md):
- the legacy PCIe throughput call blocks ~20 ms, so it runs at most every ``legacy_pcie_every_s``;
- NVML reports host pids: inside a container's PID namespace they cannot be matched, and the sample says so;
- under MIG there is no per-process utilisation: "not available on MIG", never zeros.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

from optitop.collectors.gpm import GPM_FALLBACK_AFTER, GPM_FIELDS, GPM_MIN_SPAN_S, GPM_RETRY_S, gpm_readings
from optitop.collectors.gpudevices import DeviceState, discover_devices
from optitop.collectors.gpupeaks import decode_throttle, dram_peak_bytes_per_s, pcie_link_bytes_per_s
from optitop.collectors.hostmem import host_dram_bw_note
from optitop.collectors.nvml import INIT_ERRORS, MISMATCH_REASON, STABLE_ERRORS, GpuLost, Nvml, as_text, import_pynvml
from optitop.collectors.pidns import in_initial_pid_namespace, newest_per_pid, tree_pids
from optitop.collectors.procfs import read_status_field
from optitop.config import CollectorContext
from optitop.model import GpuDevice, GpuSample, SourceUnavailable

#: How often the slow legacy PCIe throughput call (blocks ~20 ms per call) may run.
LEGACY_PCIE_EVERY_S = 5.0
#: Per-process utilisation does not exist on MIG: said instead of a number.
MIG_PROC_UTIL = "not available on MIG"
#: A per-process utilisation sample older than this many seconds no longer counts as the process's share.
PROC_UTIL_MAX_AGE_S = 5.0
#: How often the target's process tree is rescanned for GPU attribution (new workers show up within this).
TREE_EVERY_S = 5.0

CUDA_ORDER_NOTE = (
    "CUDA's default device order (fastest first) can differ from this PCI bus order;"
    " match GPUs by UUID, or set CUDA_DEVICE_ORDER=PCI_BUS_ID"
)

PERSISTENCE_OFF = (
    "persistence mode off: each NVML start costs ~1.5 s and clocks drop between requests"
    " (enable it: nvidia-smi -pm 1, or run nvidia-persistenced)"
)


class GpuCollector:
    """Samples every NVIDIA GPU through NVML; raises SourceUnavailable with the fix when NVML cannot work."""

    name = "gpu"
    #: Seconds between runs of the slow legacy PCIe throughput call (tests shorten it).
    legacy_pcie_every_s: float = LEGACY_PCIE_EVERY_S
    #: The shortest span GPM metrics are computed over (tests, which never sleep, lower it).
    gpm_min_span_s: float = GPM_MIN_SPAN_S
    #: Seconds between rescans of the target's process tree.
    tree_every_s: float = TREE_EVERY_S

    def __init__(self, ctx: CollectorContext, nvml: ModuleType | None = None) -> None:
        """Prepare to watch ``ctx.pid``; ``nvml`` replaces ``pynvml`` (tests pass a fake). Nothing is loaded yet."""
        self.interval_s = max(ctx.options.interval_s, GPM_MIN_SPAN_S * 2)
        self.pid = ctx.pid
        self._module = nvml
        self._nvml: Nvml | None = None
        self._devices: list[DeviceState] = []
        self._driver = ""
        self._nvml_version = ""
        self._prev_mono: float | None = None
        self._host_dram_note = host_dram_bw_note()
        self._in_root_ns = in_initial_pid_namespace()
        self._tree: tuple[list[int], dict[int, int], str] = ([], {}, "")
        self._tree_mono: float | None = None
        #: The clock ticks are timed with (tests pass a fake one to place GPM samples exactly).
        self.clock: Callable[[], float] = time.monotonic

    # -- life cycle --------------------------------------------------------------------------------------
    def _load(self) -> Nvml:
        """Import pynvml and initialise NVML once; every failure becomes an actionable SourceUnavailable."""
        if self._nvml is not None:
            return self._nvml
        mod = self._module if self._module is not None else import_pynvml()
        nvml = Nvml(mod)
        try:
            mod.nvmlInit()
        except mod.NVMLError as exc:
            kind = type(exc).__name__
            raise SourceUnavailable(INIT_ERRORS.get(kind, f"NVML failed to start: {exc}")) from exc
        try:
            self._devices = discover_devices(nvml)
        except BaseException:
            with contextlib.suppress(Exception):
                mod.nvmlShutdown()
            raise
        self._driver = as_text(nvml.call("nvmlSystemGetDriverVersion")[0] or "")
        self._nvml_version = as_text(nvml.call("nvmlSystemGetNVMLVersion")[0] or "")
        self._nvml = nvml
        return nvml

    def close(self) -> None:
        """Free the GPM samples and shut NVML down."""
        nvml, self._nvml = self._nvml, None
        if nvml is None:
            return
        for dev in self._devices:
            states = [dev.gpm_state, *dev.gpm_mig.values()]
            for s in [x for st in states for x in (st.prev, st.spare)]:
                if s is not None:
                    with contextlib.suppress(Exception):
                        nvml.mod.nvmlGpmSampleFree(s)
        self._devices = []
        with contextlib.suppress(Exception):
            nvml.mod.nvmlShutdown()

    def describe(self) -> str:
        """The doctor line: devices, driver and whether GPM works on each."""
        gpm = sum(1 for d in self._devices if d.static.gpm and not d.gpm_state.fallback)
        names = ", ".join(sorted({d.static.name for d in self._devices}))
        line = (
            f"NVML {self._nvml_version or '?'}, driver {self._driver or '?'}: {len(self._devices)} GPU(s) ({names});"
            f" GPM profiling metrics on {gpm} of {len(self._devices)}"
        )
        for d in self._devices:
            st = d.gpm_state
            if d.static.gpm and (st.fallback or st.last_error):
                what = "legacy utilisation instead" if st.fallback else f"legacy after {GPM_FALLBACK_AFTER} failures"
                line += f"; GPU {d.static.nvml_index}: GPM sampling fails: {st.fallback or st.last_error} ({what})"
        off = [str(d.static.nvml_index) for d in self._devices if d.static.persistence_mode is False]
        if off:
            line += f"; warning: GPU {', '.join(off)}: {PERSISTENCE_OFF}"
        return line

    # -- one tick ----------------------------------------------------------------------------------------
    def sample(self) -> GpuSample:
        """Read every device once; the first tick has no GPM values (GPM needs two samples)."""
        nvml = self._load()
        ts = time.time()
        mono = self.clock()
        dt = None if self._prev_mono is None else mono - self._prev_mono
        self._prev_mono = mono
        pids, host_pids, attribution = self._target_tree(mono)
        try:
            devices = [self._read_device(nvml, d, mono, host_pids) for d in self._devices]
        except SourceUnavailable:
            self.close()  # re-initialise on the next try (the session backs off)
            raise
        if all(d.lost for d in self._devices):
            reasons = self._devices[0].lost if self._devices else ""
            self.close()
            raise SourceUnavailable(
                f"every GPU is lost ({reasons}): the GPU needs a reset or a reboot; see dmesg (Xid)"
            )
        used = tuple(d.index for d in devices if d.target_pids)
        if not attribution:
            attribution = self._attribution_hint(pids, devices)
        return GpuSample(
            ts_s=ts,
            mono_s=mono,
            dt_s=dt,
            devices=tuple(devices),
            driver_version=self._driver,
            nvml_version=self._nvml_version,
            target_gpu_indices=used,
            attribution_note=attribution,
            host_dram_bw_note=self._host_dram_note,
            cuda_order_note=CUDA_ORDER_NOTE if len(devices) > 1 else "",
        )

    # -- the target tree and pid namespaces ------------------------------------------------------------------
    def _target_tree(self, mono: float) -> tuple[list[int], dict[int, int], str]:
        """The target tree with its NVML pid mapping, rescanned every TREE_EVERY_S (a /proc scan is not free)."""
        stale = self._tree_mono is None or mono - self._tree_mono >= self.tree_every_s
        if stale or not os.path.exists(f"/proc/{self.pid}"):
            pids = tree_pids(self.pid)
            host_pids, note = self._translate(pids)
            self._tree, self._tree_mono = (pids, host_pids, note), mono
        return self._tree

    def _translate(self, pids: list[int]) -> tuple[dict[int, int], str]:
        """Map the host pids NVML reports to the target tree's pids, with a note when that is impossible.

        NVML lives in the initial PID namespace. On the host, /proc pids are host pids. Inside a container
        the leftmost NSpid entry is this namespace's pid, and host pids are simply not visible: attribution
        is impossible, and the note says how to make it possible.
        """
        if not pids:
            return {}, f"the target (pid {self.pid}) has exited: no GPU attribution"
        mapping: dict[int, int] = {}
        for p in pids:
            ns = read_status_field(p, "NSpid")
            ids = [int(x) for x in ns.split()] if ns else [p]
            mapping[ids[0]] = p  # the pid in /proc's own namespace: the host pid when optitop runs on the host
        if self._in_root_ns is False:
            # Matching anyway would pair unrelated processes that happen to share a number.
            return {}, (
                "optitop runs inside a PID namespace (a container): NVML reports host pids, which this /proc"
                " cannot translate (NSpid shows no host pid), so the target's GPU use cannot be attributed;"
                " run optitop on the host or give the container the host's PID namespace (--pid=host)"
            )
        return mapping, ""

    def _attribution_hint(self, pids: list[int], devices: list[GpuDevice]) -> str:
        if any(d.target_pids for d in devices):
            return ""
        if all(d.gpu_procs is None for d in devices):
            return "NVML would not list the GPU processes: no attribution"
        others = sum(d.gpu_procs or 0 for d in devices)
        return f"the target tree ({len(pids)} processes) uses no GPU ({others} other GPU processes)"

    # -- one device ------------------------------------------------------------------------------------------
    def _read_device(self, nvml: Nvml, dev: DeviceState, mono: float, host_pids: dict[int, int]) -> GpuDevice:
        if dev.lost:
            return self._lost_device(dev)
        try:
            return self._read_live(nvml, dev, mono, host_pids)
        except GpuLost as exc:
            dev.lost = str(exc) or "GPU is lost"
            return self._lost_device(dev)

    def _lost_device(self, dev: DeviceState) -> GpuDevice:
        s = dev.static
        values: dict[str, Any] = {name: None for _, name in GPM_FIELDS}
        return GpuDevice(
            index=s.nvml_index,
            uuid=s.uuid,
            name=s.name,
            util_source="gpm" if s.gpm and not dev.gpm_state.fallback else "legacy",
            legacy_gpu_util_pct=None,
            legacy_mem_util_pct=None,
            pcie_source="",
            dram_peak_bytes_per_s=dram_peak_bytes_per_s(s.bus_width_bits, s.mem_clock_max_mhz),
            dram_bytes_per_s=None,
            pcie_link_bytes_per_s=None,
            pcie_gen=None,
            pcie_width=None,
            pcie_gen_max=s.pcie_gen_max,
            pcie_width_max=s.pcie_width_max,
            mem_used_bytes=None,
            mem_total_bytes=None,
            power_w=None,
            power_limit_w=s.power_limit_w,
            temperature_c=None,
            sm_clock_mhz=None,
            sm_clock_max_mhz=s.sm_clock_max_mhz,
            mem_clock_mhz=None,
            mem_clock_max_mhz=s.mem_clock_max_mhz,
            throttle_reasons=(),
            mig_mode=None,
            target_mem_bytes=None,
            target_sm_pct=None,
            target_mem_pct=None,
            target_pids=(),
            proc_util_note="GPU lost",
            pci_bus_id=s.bus_id,
            nvlink_present=s.nvlink_present,
            note=f"GPU lost ({dev.lost}): it needs a reset (nvidia-smi -r) or a reboot; see dmesg for Xid errors",
            **values,
        )

    def _read_live(self, nvml: Nvml, dev: DeviceState, mono: float, host_pids: dict[int, int]) -> GpuDevice:
        s = dev.static
        h = dev.handle
        m = nvml.mod
        i = s.nvml_index
        missing: list[str] = []

        def get(what: str, fn: str, *args: Any) -> Any:
            value, why = nvml.call(fn, h, *args, dev=i)
            if value is None:
                missing.append(f"{what}: {why}")
            return value

        procs, instances = self._procs(nvml, h, i, missing)
        target_pids = tuple(sorted({host_pids[p] for p in (procs or {}) if p in host_pids}))
        mig = self._mig(nvml, h, i)
        gpm: dict[str, float | None] = {}
        gpu_instance: int | None = None
        state = dev.gpm_state
        if s.gpm:
            gpm, gpu_instance, state = gpm_readings(
                nvml, dev, mono, missing, mig, instances, host_pids, min_span_s=self.gpm_min_span_s
            )
        elif s.gpm_reason:
            missing.append(s.gpm_reason)
        use_gpm = s.gpm and not state.fallback
        util_note = ""
        if state.fallback:
            util_note = (
                f"GPM sampling failed {state.failures}× in a row: {state.fallback};"
                f" showing the legacy readings (GPM retried every {GPM_RETRY_S:g} s)"
            )
        util = get("legacy utilisation", "nvmlDeviceGetUtilizationRates")
        mem = get("memory", "nvmlDeviceGetMemoryInfo")
        power = get("power", "nvmlDeviceGetPowerUsage")
        temp = get("temperature", "nvmlDeviceGetTemperature", m.NVML_TEMPERATURE_GPU)
        sm_clock = get("SM clock", "nvmlDeviceGetClockInfo", m.NVML_CLOCK_SM)
        mem_clock = get("memory clock", "nvmlDeviceGetClockInfo", m.NVML_CLOCK_MEM)
        gen = get("PCIe generation", "nvmlDeviceGetCurrPcieLinkGeneration")
        width = get("PCIe width", "nvmlDeviceGetCurrPcieLinkWidth")
        throttle = self._throttle(nvml, h, i, missing)
        if use_gpm:
            pcie_rx, pcie_tx, pcie_source = gpm.get("pcie_rx_bytes_per_s"), gpm.get("pcie_tx_bytes_per_s"), "gpm"
        else:
            pcie_rx, pcie_tx, pcie_source = self._legacy_pcie(nvml, dev, mono, missing)
        target_mem: int | None = None
        if procs is not None and host_pids:
            known = [procs[p] for p in procs if p in host_pids]
            target_mem = sum(v for v in known if v is not None) if all(v is not None for v in known) else None
        sm_share, mem_share, proc_note = self._proc_util(nvml, dev, mono, mig, host_pids, target_pids)
        peak = dram_peak_bytes_per_s(s.bus_width_bits, s.mem_clock_max_mhz)
        dram_util = gpm.get("dram_bw_util_pct")
        link = pcie_link_bytes_per_s(s.pcie_gen_max or gen, s.pcie_width_max or width)
        values: dict[str, Any] = {name: gpm.get(name) for _, name in GPM_FIELDS}
        values.update(pcie_rx_bytes_per_s=pcie_rx, pcie_tx_bytes_per_s=pcie_tx)
        if not s.nvlink_present:
            values.update(nvlink_rx_bytes_per_s=None, nvlink_tx_bytes_per_s=None)
        return GpuDevice(
            index=i,
            uuid=s.uuid,
            name=s.name,
            util_source="gpm" if use_gpm else "legacy",
            legacy_gpu_util_pct=None if util is None else float(util.gpu),
            legacy_mem_util_pct=None if util is None else float(util.memory),
            pcie_source=pcie_source,
            dram_peak_bytes_per_s=peak,
            dram_bytes_per_s=None if peak is None or dram_util is None else peak * dram_util / 100.0,
            pcie_link_bytes_per_s=link,
            pcie_gen=gen,
            pcie_width=width,
            pcie_gen_max=s.pcie_gen_max,
            pcie_width_max=s.pcie_width_max,
            mem_used_bytes=None if mem is None else int(mem.used),
            mem_total_bytes=None if mem is None else int(mem.total),
            power_w=None if power is None else power / 1000.0,
            power_limit_w=s.power_limit_w,
            temperature_c=None if temp is None else float(temp),
            sm_clock_mhz=sm_clock,
            sm_clock_max_mhz=s.sm_clock_max_mhz,
            mem_clock_mhz=mem_clock,
            mem_clock_max_mhz=s.mem_clock_max_mhz,
            throttle_reasons=throttle,
            mig_mode=mig,
            target_mem_bytes=target_mem,
            target_sm_pct=sm_share,
            target_mem_pct=mem_share,
            target_pids=target_pids,
            proc_util_note=proc_note,
            pci_bus_id=s.bus_id,
            nvlink_present=s.nvlink_present,
            gpu_procs=None if procs is None else len(procs),
            missing=tuple(missing),
            util_note=util_note,
            persistence_mode=s.persistence_mode,
            gpu_instance_id=gpu_instance,
            **values,
        )

    # -- the other per-device reads --------------------------------------------------------------------------
    def _throttle(self, nvml: Nvml, h: Any, i: int, missing: list[str]) -> tuple[str, ...]:
        mask, why = nvml.call("nvmlDeviceGetCurrentClocksEventReasons", h, dev=i)
        if mask is None:
            mask, why = nvml.call("nvmlDeviceGetCurrentClocksThrottleReasons", h, dev=i)
        if mask is None:
            missing.append(f"clock-event reasons: {why}")
            return ()
        return decode_throttle(int(mask))

    def _mig(self, nvml: Nvml, h: Any, i: int) -> bool | None:
        modes, why = nvml.call("nvmlDeviceGetMigMode", h, dev=i)
        if modes is None:
            return False if why == STABLE_ERRORS["NVMLError_NotSupported"] else None
        return int(modes[0]) == int(getattr(nvml.mod, "NVML_DEVICE_MIG_ENABLE", 1))

    def _legacy_pcie(
        self, nvml: Nvml, dev: DeviceState, mono: float, missing: list[str]
    ) -> tuple[float | None, float | None, str]:
        """The legacy PCIe counter (KB/s over a 20 ms window, blocking ~20 ms) at most every few seconds."""
        m = nvml.mod
        i = dev.static.nvml_index
        due = dev.pcie_legacy_mono is None or mono - dev.pcie_legacy_mono >= self.legacy_pcie_every_s
        if due:
            rx, why_rx = nvml.call("nvmlDeviceGetPcieThroughput", dev.handle, m.NVML_PCIE_UTIL_RX_BYTES, dev=i)
            tx, why_tx = nvml.call("nvmlDeviceGetPcieThroughput", dev.handle, m.NVML_PCIE_UTIL_TX_BYTES, dev=i)
            if rx is None or tx is None:
                missing.append(f"PCIe throughput: {why_rx or why_tx}")
            dev.pcie_legacy = (None if rx is None else rx * 1024.0, None if tx is None else tx * 1024.0)
            dev.pcie_legacy_mono = mono
        source = f"legacy (20 ms window, every {self.legacy_pcie_every_s:g} s)"
        return dev.pcie_legacy[0], dev.pcie_legacy[1], source

    def _procs(
        self, nvml: Nvml, h: Any, i: int, missing: list[str]
    ) -> tuple[dict[int, int | None] | None, dict[int, int]]:
        """Host pid -> GPU memory bytes of every compute and graphics process (None when NVML refuses), and
        host pid -> the MIG GPU instance it runs in (from the v3 process info)."""
        out: dict[int, int | None] = {}
        instances: dict[int, int] = {}
        ok = False
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            procs, why = nvml.call(fn, h, dev=i)
            if procs is None and why == MISMATCH_REASON:
                procs, why = nvml.call(fn + "_v2", h, dev=i)  # a driver older than the bindings' v3 default
            if procs is None:
                missing.append(f"{fn[len('nvmlDeviceGet') :]}: {why}")
                continue
            ok = True
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                pid = int(p.pid)
                gi = getattr(p, "gpuInstanceId", None)
                if gi is not None:
                    instances.setdefault(pid, int(gi))
                if pid in out and out[pid] is not None and used is not None:
                    out[pid] = max(int(out[pid] or 0), int(used))
                elif pid not in out:
                    out[pid] = None if used is None else int(used)
        return (out if ok else None), instances

    def _proc_util(
        self,
        nvml: Nvml,
        dev: DeviceState,
        mono: float,
        mig: bool | None,
        host_pids: dict[int, int],
        target_pids: tuple[int, ...],
    ) -> tuple[float | None, float | None, str]:
        """The target's SM and memory share from NVML's per-process sample buffer (newest sample per pid)."""
        if mig:
            return None, None, MIG_PROC_UTIL
        i = dev.static.nvml_index
        since = dev.proc_util_seen_us or int((time.time() - 2 * self.interval_s) * 1e6)
        samples, why = nvml.call("nvmlDeviceGetProcessUtilization", dev.handle, since, dev=i)
        if samples is None and nvml.last_kind == "NVMLError_NotFound":
            samples, why = [], ""  # no process ran a kernel since `since`
        if samples is None:
            return None, None, f"per-process utilisation: {why}"
        for pid, s in newest_per_pid(list(samples)).items():
            dev.proc_util[pid] = (float(s.smUtil), float(s.memUtil), mono)
            dev.proc_util_seen_us = max(dev.proc_util_seen_us, int(s.timeStamp))
        dev.proc_util = {p: v for p, v in dev.proc_util.items() if mono - v[2] <= PROC_UTIL_MAX_AGE_S}
        if not target_pids:
            return (0.0, 0.0, "") if host_pids else (None, None, "")
        ours = [v for p, v in dev.proc_util.items() if p in host_pids]
        if not ours:
            return None, None, f"no per-process sample for {PROC_UTIL_MAX_AGE_S:g} s"
        return min(100.0, sum(v[0] for v in ours)), min(100.0, sum(v[1] for v in ours)), ""
