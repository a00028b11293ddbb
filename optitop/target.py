"""Finding the process to watch: by pid, by listening port or by cmdline pattern — never by guessing."""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import socket
from dataclasses import dataclass

import psutil

from optitop.model import TargetInfo
from optitop.redact import redact_cmdline


class TargetError(Exception):
    """The target cannot be resolved; the message is the one line the user sees."""


@dataclass(frozen=True, slots=True)
class Match:
    """A process that matched a --port or --name query."""

    pid: int
    cmdline: str
    cpu_pct: float


def describe(pid: int) -> TargetInfo:
    """Describe ``pid`` (cmdline redacted); TargetError when it does not exist."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            name = proc.name()
            create = proc.create_time()
            try:
                cmdline = redact_cmdline(proc.cmdline()) or name
            except psutil.AccessDenied:
                cmdline = name
            try:
                user = proc.username()
            except (psutil.AccessDenied, KeyError):
                user = "?"
    except psutil.NoSuchProcess as exc:
        raise TargetError(f"no process with pid {pid}") from exc
    except psutil.AccessDenied as exc:
        raise TargetError(f"not permitted to read pid {pid}: run as its user or root") from exc
    return TargetInfo(
        pid=pid, name=name, cmdline=cmdline, username=user, create_time_s=create, host=socket.gethostname()
    )


def _own_pids() -> set[int]:
    me = psutil.Process(os.getpid())
    pids = {me.pid}
    with contextlib.suppress(psutil.Error):
        pids.update(p.pid for p in me.parents())
    return pids


def _sample_cpu(pids: list[int]) -> dict[int, float]:
    """CPU % of each pid over a short interval (one blocking 0.2 s pause for all of them)."""
    procs = {}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.cpu_percent(None)
            procs[pid] = p
        except psutil.Error:
            continue
    if procs:
        psutil.cpu_percent(0.2)
    out = {}
    for pid, p in procs.items():
        try:
            out[pid] = p.cpu_percent(None)
        except psutil.Error:
            out[pid] = 0.0
    return out


def _candidates(pids: list[int]) -> list[Match]:
    cpu = _sample_cpu(pids)
    out = []
    for pid in pids:
        try:
            cmd = redact_cmdline(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        out.append(Match(pid, cmd, cpu.get(pid, 0.0)))
    return sorted(out, key=lambda c: c.cpu_pct, reverse=True)


def pids_listening_on(port: int) -> list[int]:
    """Pids with a TCP socket listening on ``port`` (v4 or v6); only the topmost of a process tree."""
    pids: set[int] = set()
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied as exc:
        raise TargetError("not permitted to list sockets of other users: run as root, or use --pid") from exc
    unowned = False
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid:
                pids.add(conn.pid)
            else:
                unowned = True
    if not pids and unowned:
        # The kernel lists every socket, but says whose it is only for processes we may read (/proc/PID/fd).
        if os.geteuid() != 0:
            raise TargetError(
                f"port {port} is listened on by a process of another user, which {current_user()} may not read:"
                f" run optitop as that user or as root (sudo optitop --port {port}), or pass --pid"
            )
        raise TargetError(
            f"port {port} is listened on by no process optitop can see (another PID namespace, e.g. a container):"
            " run optitop inside it, or pass --pid"
        )
    # Forked workers share the listening socket: keep the ancestor.
    top = set()
    for pid in pids:
        try:
            ancestors = {p.pid for p in psutil.Process(pid).parents()}
        except psutil.Error:
            ancestors = set()
        if not ancestors & pids:
            top.add(pid)
    return sorted(top)


def pids_matching(pattern: str) -> list[int]:
    """Pids whose cmdline matches ``pattern`` (a regular expression, case-insensitive); not optitop itself."""
    try:
        rx = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise TargetError(f"bad --name pattern {pattern!r}: {exc}") from exc
    mine = _own_pids()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        if proc.info["pid"] in mine:
            continue
        cmd = " ".join(proc.info["cmdline"] or []) or (proc.info["name"] or "")
        if rx.search(cmd):
            found.append(proc.info["pid"])
    # Keep only the top of each matching tree (workers share the parent's cmdline).
    fs = set(found)
    top = []
    for pid in found:
        try:
            if not {p.pid for p in psutil.Process(pid).parents()} & fs:
                top.append(pid)
        except psutil.Error:
            continue
    return top


#: ``PF_KTHREAD`` in the flags field of /proc/PID/stat (include/linux/sched.h): a kernel thread.
PF_KTHREAD = 0x00200000


def is_kernel_thread(pid: int) -> bool:
    """True when ``pid`` is a kernel thread (kthreadd, kworkers): no user space, nothing optitop can watch."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    # The name (field 2) is in parentheses and may hold spaces or ')': the fields after the last ')' are safe.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return bool(int(fields[6]) & PF_KTHREAD)  # field 9 of the whole line: flags
    except (IndexError, ValueError):
        return False


def check_pid(pid: int) -> int:
    """``pid`` when it is a user-space process that exists; TargetError saying why not otherwise."""
    try:
        exists = psutil.pid_exists(pid)
    except (OverflowError, ValueError):  # past a C int: no such pid can exist
        exists = False
    if not exists:
        raise TargetError(f"no process with pid {pid}")
    if is_kernel_thread(pid):
        raise TargetError(f"pid {pid} is a kernel thread: it has no user space (no Python, no sockets) to watch")
    return pid


def resolve(pid: int | None, port: int | None, name: str | None) -> int:
    """One pid from exactly one of --pid/--port/--name; TargetError listing the matches when ambiguous."""
    if pid is not None:
        return check_pid(pid)
    if port is not None:
        pids = pids_listening_on(port)
        what = f"listening on port {port}"
    elif name is not None:
        pids = pids_matching(name)
        what = f"matching {name!r}"
    else:
        raise TargetError("no target: pass --pid PID, --port PORT or --name PATTERN")
    if not pids:
        raise TargetError(f"no process {what}")
    if len(pids) > 1:
        lines = [f"several processes {what}; pick one with --pid:"]
        for cand in _candidates(pids):
            lines.append(f"  {cand.pid:>8}  {cand.cpu_pct:5.1f}%  {cand.cmdline[:100]}")
        raise TargetError("\n".join(lines))
    return pids[0]


def current_user() -> str:
    """Who optitop runs as."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
