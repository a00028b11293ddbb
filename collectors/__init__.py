"""Collectors: one module per data source, each gathering samples off the UI thread.

The registry below is data: the CLI builds ``--no-<name>`` from it, the session and ``doctor`` build
collectors from it. Modules are imported lazily so NVML/py-spy code costs nothing until it is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from optitop.config import CollectorContext, Options
from optitop.model import Collector


@dataclass(frozen=True, slots=True)
class CollectorSpec:
    """How to build one collector.

    Attributes:
        name: the collector's name (series key in the store, ``--no-<name>`` flag).
        module: the module under ``optitop.collectors`` that defines it.
        class_name: the class, constructed as ``cls(ctx: CollectorContext)``.
        default_on: whether it runs unless turned off.
        help: one line for ``--help`` and ``doctor``.
        needs: an Options attribute that must be set for the collector to run, and the hint shown when not.
    """

    name: str
    module: str
    class_name: str
    default_on: bool
    help: str
    needs: tuple[str, str] | None = None

    def off_reason(self, options: Options) -> str:
        """Why this collector does not run with ``options`` ("" when it runs): turned off, or lacking what it
        needs. The session's builder and ``doctor`` both ask here."""
        if self.name in options.disabled:
            return f"turned off with --no-{self.name}"
        if self.needs is not None and not getattr(options, self.needs[0]):
            return self.needs[1]
        return ""

    def build(self, ctx: CollectorContext) -> Collector:
        """Import the module and construct the collector."""
        mod = importlib.import_module(f"optitop.collectors.{self.module}")
        cls = getattr(mod, self.class_name)
        collector: Collector = cls(ctx)
        return collector


REGISTRY: tuple[CollectorSpec, ...] = (
    CollectorSpec("process", "process", "ProcessCollector", True, "the target's process tree: CPU, threads, memory"),
    CollectorSpec("system", "system", "SystemCollector", True, "host CPU cores, load, memory, swap"),
    CollectorSpec("gpu", "gpu", "GpuCollector", True, "NVIDIA GPUs via NVML (GPM profiling metrics where supported)"),
    CollectorSpec("queue", "queue", "QueueCollector", True, "the server's Prometheus /metrics (found automatically)"),
    CollectorSpec("sockets", "sockets", "SocketsCollector", True, "kernel TCP queues of the target's sockets"),
    CollectorSpec(
        "logs",
        "logs",
        "LogsCollector",
        True,
        "server log stats lines (--log PATH)",
        needs=("log_paths", "off: pass --log PATH to follow a server log"),
    ),
    CollectorSpec("pystacks", "pystacks", "PyStacksCollector", True, "Python thread stacks via py-spy"),
)


def available_specs() -> tuple[CollectorSpec, ...]:
    """The registered collectors whose module can be found (others land in later work)."""
    out = []
    for spec in REGISTRY:
        if importlib.util.find_spec(f"optitop.collectors.{spec.module}") is not None:
            out.append(spec)
    return tuple(out)
