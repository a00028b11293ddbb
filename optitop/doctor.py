"""``optitop doctor``: for every data source, whether it works for this target here, and if not why and the fix."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import psutil

from optitop.collectors import REGISTRY, available_specs
from optitop.collectors.pidns import in_initial_pid_namespace
from optitop.collectors.procfs import read_status_field
from optitop.collectors.pyspy import CAP_SYS_PTRACE_BIT, effective_caps
from optitop.config import CollectorContext, Options
from optitop.model import ProcessSample, SocketSample, SourceUnavailable, TargetGone

#: Seconds doctor waits for a source's first reading (py-spy's first 2 s window and its start-up).
FIRST_DATA_WAIT_S = 4.0
#: The samples that say what they could not read (``denied``): a source that reads only part is not "ok".
PARTIAL_SAMPLES = (ProcessSample, SocketSample)


@runtime_checkable
class Describes(Protocol):
    """A collector that says what it found (the GPUs, the endpoints, the py-spy in use): doctor's "ok" detail."""

    def describe(self) -> str:
        """One line on what the source reads here."""
        ...


@dataclass(frozen=True, slots=True)
class Finding:
    """One source's verdict."""

    source: str
    ok: bool
    detail: str


def check_source(name: str, pid: int, options: Options) -> Finding:
    """Build one collector and sample it twice (rates and GPM need two readings)."""
    spec = next(s for s in REGISTRY if s.name == name)
    try:
        collector = spec.build(CollectorContext(pid=pid, options=options))
    except SourceUnavailable as exc:
        return Finding(name, False, str(exc))
    except Exception as exc:
        return Finding(name, False, f"cannot start: {type(exc).__name__}: {exc}")
    try:
        collector.sample()
        time.sleep(min(0.5, options.interval_s))
        sample = collector.sample()
        # A source whose first reading takes a while (py-spy's first window): wait for it, or for its error,
        # rather than calling it ok on no evidence (a refused ptrace only shows when the window ends).
        deadline = time.monotonic() + FIRST_DATA_WAIT_S
        while sample is None and time.monotonic() < deadline:
            time.sleep(0.25)
            sample = collector.sample()
        if isinstance(collector, Describes):
            detail = collector.describe()
        else:
            detail = "ok" if sample is not None else "ok (no data yet)"
        # A source that works only in part (another user's fds, I/O counters) is not "ok": what it cannot
        # read is missing from the screen, and the fix is who optitop runs as.
        denied = sample.denied if isinstance(sample, PARTIAL_SAMPLES) else ()
        if denied:
            return Finding(name, False, f"only in part: cannot read {'; '.join(denied)}: {_run_as_fix(pid)}")
        return Finding(name, True, str(detail))
    except SourceUnavailable as exc:
        return Finding(name, False, str(exc))
    except TargetGone as exc:
        return Finding(name, False, f"target exited: {exc}")
    except Exception as exc:
        return Finding(name, False, f"failed: {type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):  # doctor reports, it never crashes
            collector.close()


def namespace_note(pid: int) -> str:
    """What PID namespaces mean for watching ``pid`` from here, or "" when optitop and the target share the host's.

    Containers are where the pids people see stop matching: the server knows itself by its namespace's pid,
    NVML by the host's. Watching from the host works (host pids everywhere, as NVML and py-spy want); watching
    from inside a namespace (a sidecar) loses the per-process GPU attribution, and doctor should say so up front.
    """
    if in_initial_pid_namespace() is False:
        return (
            "optitop runs inside a PID namespace (a container, or a pod sharing its process namespace): "
            f"pid {pid} is this namespace's pid; NVML reports host pids, so the target's own GPU use cannot be "
            "attributed (device-wide GPU metrics still work); run optitop on the host (hostPID) for that"
        )
    ids = (read_status_field(pid, "NSpid") or "").split()
    if len(ids) > 1:
        return (
            f"pid {pid} is pid {ids[-1]} inside its own PID namespace (a container); optitop sees it from the host, "
            "where NVML and py-spy use host pids: give optitop the host pid, as here"
        )
    return ""


def _run_as_fix(pid: int) -> str:
    """How to get read access to ``pid``: run as its owner, or as root; for root, what it is missing.

    /proc/PID/fd and /proc/PID/io need ptrace read access: root is refused them without CAP_SYS_PTRACE (a
    container), and telling root to run as root was the old advice.
    """
    if os.geteuid() == 0:
        caps = effective_caps()
        if caps is not None and not caps >> CAP_SYS_PTRACE_BIT & 1:
            return "optitop runs as root but without CAP_SYS_PTRACE (a container: --cap-add SYS_PTRACE)"
        return "refused even to root: a security module (AppArmor, SELinux) or another user namespace"
    try:
        owner = psutil.Process(pid).username()
    except (psutil.Error, KeyError):
        owner = "the target's user"
    if owner == "root":
        return "run optitop as root (sudo optitop …)"
    return f"run optitop as {owner} (sudo -u {owner} optitop …) or as root"


def run_doctor(pid: int | None, options: Options, as_json: bool = False) -> int:
    """Print one line per source; exit 0 when every enabled source works, 1 otherwise."""
    target_pid = pid if pid is not None else os.getpid()
    findings = []
    for spec in available_specs():
        off = spec.off_reason(options)
        if off:
            findings.append(Finding(spec.name, True, off))
            continue
        findings.append(check_source(spec.name, target_pid, options))
    note = namespace_note(target_pid)
    if as_json:
        doc: dict[str, object] = {"pid": pid}
        if note:
            doc["pid_namespace"] = note
        doc["sources"] = {f.source: {"ok": f.ok, "detail": f.detail} for f in findings}
        print(json.dumps(doc, indent=2))
    else:
        who = f"pid {pid}" if pid is not None else "this machine (no --pid given: checked against optitop itself)"
        print(f"optitop doctor — {who}")
        if note:
            print(f"  note  {note}")
        width = max(len(f.source) for f in findings) if findings else 8
        for f in findings:
            mark = "ok  " if f.ok else "FAIL"
            print(f"  {mark}  {f.source:<{width}}  {f.detail}")
    return 0 if all(f.ok for f in findings) else 1
