"""The data model: every sample, the window analyzers and panes read, the diagnosis, and the values derived once.

Nothing here imports a vendor library (psutil, pynvml, textual) or another optitop layer: collectors produce these
types, the store keeps them, analyzers judge them, and the TUI, JSON, recorder, replayer and exporter present
them. Import the names from here (``from optitop.model import GpuSample, Window``); the modules split them by
source.
"""

from __future__ import annotations

from optitop.model.core import (
    CATEGORIES,
    CONFIDENCE_WORDS,
    Candidate,
    Collector,
    Diagnosis,
    Latency,
    Sample,
    SelfCost,
    SourceState,
    SourceStatus,
    SourceUnavailable,
    TargetGone,
    TargetInfo,
    confidence_word,
    sum_known,
)
from optitop.model.gpu import GpuDevice, GpuSample, TargetDevices, gpu_busy_pct, pcie_bytes_per_s, target_devices
from optitop.model.process import ProcessSample, ProcInfo, ThreadSample
from optitop.model.pystacks import HotFunction, PyStacksSample, PyThread
from optitop.model.series import SAMPLE_TYPES
from optitop.model.serving import ServingSample, ServingStats, requests_in_system
from optitop.model.sockets import ListenQueue, PeerConn, SocketSample
from optitop.model.system import SystemSample
from optitop.model.window import Window

__all__ = [
    "CATEGORIES",
    "CONFIDENCE_WORDS",
    "SAMPLE_TYPES",
    "Candidate",
    "Collector",
    "Diagnosis",
    "GpuDevice",
    "GpuSample",
    "HotFunction",
    "Latency",
    "ListenQueue",
    "PeerConn",
    "ProcInfo",
    "ProcessSample",
    "PyStacksSample",
    "PyThread",
    "Sample",
    "SelfCost",
    "ServingSample",
    "ServingStats",
    "SocketSample",
    "SourceState",
    "SourceStatus",
    "SourceUnavailable",
    "SystemSample",
    "TargetDevices",
    "TargetGone",
    "TargetInfo",
    "ThreadSample",
    "Window",
    "confidence_word",
    "gpu_busy_pct",
    "pcie_bytes_per_s",
    "requests_in_system",
    "sum_known",
    "target_devices",
]
