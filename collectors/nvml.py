"""The NVML funnel: every NVML call of optitop goes through ``Nvml.call``, which returns the value or None with
the reason, so one refused call costs one missing value, never a crashed collector.

Rules kept here, each learned from another monitor's bug (research/monitors.md):
- every NVML call goes through one funnel (``Nvml.call``) that returns the value or None with the reason;
- ``pynvml`` is imported on the first sample, not at module import, so starting optitop costs nothing;
- stable refusals (not supported, function missing) are remembered per (function, device): one call a session;
- errors that doom the whole library raise SourceUnavailable with the fix; a lost GPU raises GpuLost for its
  device only, and the other devices keep going;
- only the bindings' own errors are expected from a call, and ``NVMLLibraryMismatchError`` (a plain Exception
  the unversioned process calls raise on drivers without the v3 call) is one of them.

``OPTITOP_NVML_SIM`` (test-only): the path of a simulated libnvidia-ml (tests/collectors/nvml_sim.py) to
install under the real bindings; the device script's rehearsal uses it. Unset, nothing changes.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from optitop.model import SourceUnavailable

#: The funnel's reason for a call the driver lacks though the bindings have it (NVMLLibraryMismatchError).
MISMATCH_REASON = "not in this driver (nvidia-ml-py is newer than the driver)"
#: The test-only hook: the path of a simulated libnvidia-ml to install under the real bindings.
NVML_SIM_ENV = "OPTITOP_NVML_SIM"


# -- importing the bindings --------------------------------------------------------------------------------
def import_pynvml() -> ModuleType:
    """Import NVIDIA's bindings on first use (they cost nothing until a GPU is asked about)."""
    try:
        import pynvml
    except ImportError as exc:
        raise SourceUnavailable("nvidia-ml-py is not installed: pip install nvidia-ml-py") from exc
    sim = os.environ.get(NVML_SIM_ENV)
    if sim:
        _install_simulator(sim)
    return pynvml


def _install_simulator(path: str) -> None:
    """Test-only: load a simulated libnvidia-ml from ``path`` and install it under the real bindings."""
    try:
        spec = importlib.util.spec_from_file_location("optitop_nvml_sim", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"not a Python file: {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        module.install_from_env()
    except Exception as exc:
        raise SourceUnavailable(f"{NVML_SIM_ENV}={path}: cannot load the NVML simulator: {exc}") from exc


def as_text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


# -- the funnel --------------------------------------------------------------------------------------------
class GpuLost(Exception):  # noqa: N818 - a state, not a programming error
    """A device fell off the bus (NVML_ERROR_GPU_IS_LOST): it needs a reset; other devices keep going."""


#: NVML error class name -> what it means for the whole library, with the fix (these end the session's NVML).
FATAL_ERRORS: dict[str, str] = {
    "NVMLError_LibraryNotFound": "NVML not found (libnvidia-ml.so.1): no NVIDIA driver on this machine;"
    " install the driver, or run with --no-gpu",
    "NVMLError_DriverNotLoaded": "the NVIDIA kernel driver is not loaded: `nvidia-smi` says why;"
    " load it (modprobe nvidia) or run with --no-gpu",
    "NVMLError_LibRmVersionMismatch": "NVML library and kernel driver versions differ (driver upgraded without"
    " a reboot?): reboot or reload the nvidia kernel modules",
    "NVMLError_Uninitialized": "NVML lost its initialisation (driver reloaded?): retrying",
}
#: Errors that only doom NVML when nvmlInit itself fails with them (a single call may fail so and others work).
INIT_ERRORS: dict[str, str] = {
    **FATAL_ERRORS,
    "NVMLError_NoPermission": "no permission to open the NVIDIA devices (/dev/nvidia*): run as root or add"
    " the user to the group owning them",
    "NVMLError_OperatingSystem": "the operating system blocked NVML: check the container's device access"
    " (--gpus) or run on the host",
}
#: Error class names whose meaning is "this device or driver cannot give this value" (stable: not retried).
STABLE_ERRORS: dict[str, str] = {
    "NVMLError_NotSupported": "not supported on this GPU",
    "NVMLError_FunctionNotFound": "not in this driver",
    "NVMLError_NoPermission": "needs root (insufficient permissions)",
}


@dataclass
class Nvml:
    """The one place NVML is called: every call returns (value, "") or (None, reason).

    Stable refusals (not supported, function missing) are remembered per (function, device) so they cost
    one call per session; errors that doom the whole library raise SourceUnavailable with the fix; a lost
    GPU raises GpuLost for its device only.
    """

    mod: ModuleType
    refused: dict[tuple[str, int], str] = field(default_factory=dict)
    calls: int = 0
    #: The error class name of the last failed call ("" after a success): callers that must tell
    #: NOT_FOUND ("no samples") from NO_PERMISSION read it.
    last_kind: str = ""

    def call(self, fn: str, *args: Any, dev: int = -1) -> tuple[Any, str]:
        """Call ``pynvml.<fn>(*args)``; ``dev`` keys remembered refusals per device."""
        known = self.refused.get((fn, dev))
        if known is not None:
            self.last_kind = "remembered"
            return None, known
        func: Callable[..., Any] | None = getattr(self.mod, fn, None)
        if func is None:
            reason = "not in this nvidia-ml-py (upgrade it)"
            self.refused[(fn, dev)] = reason
            self.last_kind = "missing"
            return None, reason
        self.calls += 1
        mismatch: Any = getattr(self.mod, "NVMLLibraryMismatchError", None) or ()
        try:
            value = func(*args)
        except self.mod.NVMLError as exc:
            kind = self.last_kind = type(exc).__name__
            if kind == "NVMLError_GpuIsLost":
                raise GpuLost(str(exc)) from exc
            if kind in FATAL_ERRORS:
                raise SourceUnavailable(FATAL_ERRORS[kind]) from exc
            if kind in STABLE_ERRORS:
                self.refused[(fn, dev)] = STABLE_ERRORS[kind]
                return None, STABLE_ERRORS[kind]
            return None, str(exc) or kind
        except mismatch:
            # The unversioned process calls on a driver without their _v3 function: a plain Exception.
            self.last_kind = "NVMLLibraryMismatchError"
            self.refused[(fn, dev)] = MISMATCH_REASON
            return None, MISMATCH_REASON
        self.last_kind = ""
        return value, ""
