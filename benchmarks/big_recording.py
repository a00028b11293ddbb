"""A large recording, and what replaying and comparing it costs: time to the first frame or answer, peak RSS.

Why: a 500 MB recording used to take 45 s and 1.1 GB before ``optitop replay`` drew anything, because the
whole file became objects in memory first. This script makes such a file in the real Recorder line format
(a short real recording of a busy child process, repeated with shifted times) and measures:

- ``compare``: wall time and peak RSS of ``optitop compare BIG BIG --json`` (a subprocess; its peak RSS
  comes from ``wait4``'s rusage);
- ``replay``: wall time until the replay screen first shows in a tmux pane, and the process's peak RSS
  (VmHWM) at that moment.

Usage::

    python benchmarks/big_recording.py make -o /tmp/big.jsonl --size-mb 500 [--seed seed.jsonl]
    python benchmarks/big_recording.py measure /tmp/big.jsonl

A ``.gz`` output name writes gzip (as ``optitop record -o x.jsonl.gz`` does, one sync flush per 1000 lines).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from typing import IO, Any

SPINNER = """
import threading, time
def spin():
    while True:
        sum(range(1000))
for _ in range(3):
    threading.Thread(target=spin, daemon=True).start()
time.sleep(60)
"""


def record_seed(path: str, seconds: float = 8.0) -> None:
    """A real recording of a busy child process (the Recorder's own line format)."""
    child = subprocess.Popen([sys.executable, "-c", SPINNER])
    try:
        time.sleep(0.5)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "optitop",
                "record",
                "--pid",
                str(child.pid),
                "-o",
                path,
                "--duration",
                str(seconds),
                "--interval",
                "0.5",
            ],
            check=True,
            cwd="/",
        )
    finally:
        child.kill()
        child.wait()


def _shift(obj: Any, by_s: float) -> Any:
    """The same line ``by_s`` seconds later (its mono_s and the data's ts_s/mono_s)."""
    out = dict(obj)
    out["mono_s"] = obj["mono_s"] + by_s
    data = obj.get("data")
    if isinstance(data, dict):
        data = dict(data)
        for key in ("ts_s", "mono_s"):
            if isinstance(data.get(key), (int, float)):
                data[key] = data[key] + by_s
        out["data"] = data
    return out


def make(seed: str, out: str, size_mb: float) -> int:
    """Write ``out`` of about ``size_mb`` MiB from ``seed``; returns the number of lines."""
    with open(seed, "rb") as fh:
        lines = [json.loads(line) for line in fh if line.strip()]
    head, body = lines[0], [o for o in lines[1:] if o.get("type") != "end"]
    monos = [o["mono_s"] for o in body]
    period = max(monos) - min(monos) + 0.5
    limit = int(size_mb * (1 << 20))
    written = 0
    count = 0
    raw: IO[bytes]
    with open(out, "wb") as raw:
        sink: Any = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if out.endswith(".gz") else raw
        sink.write(json.dumps(head, separators=(",", ":")).encode() + b"\n")
        k = 0
        while written < limit:
            chunk = b"".join(json.dumps(_shift(o, k * period), separators=(",", ":")).encode() + b"\n" for o in body)
            sink.write(chunk)
            written += len(chunk)
            count += len(body)
            k += 1
            if out.endswith(".gz") and k % 20 == 0:
                sink.flush(zlib.Z_SYNC_FLUSH)
        end = {"type": "end", "mono_s": max(monos) + k * period, "ts_s": time.time(), "events": count}
        sink.write(json.dumps(end).encode() + b"\n")
        if sink is not raw:
            sink.close()
    return count + 2


def _vm_hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure_compare(path: str) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of ``optitop compare path path --json``."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "optitop", "compare", path, path, "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd="/",  # not the checkout: its optitop/ folder would shadow the installed package
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"compare failed with status {status}")
    return elapsed, usage.ru_maxrss / 1024


def measure_replay(path: str, timeout_s: float = 600.0) -> tuple[float, float]:
    """(seconds until the replay screen shows, peak RSS MiB by then) in a detached tmux session."""
    if shutil.which("tmux") is None:
        raise SystemExit("measuring replay needs tmux")
    session = f"optitop-big-{os.getpid()}"
    command = f"{sys.executable} -m optitop replay {path}"
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "TMUX_TMPDIR": tmp}
        tmux = ["tmux", "-f", "/dev/null"]
        t0 = time.monotonic()
        size = ["-x", "120", "-y", "40"]
        subprocess.run([*tmux, "new-session", "-d", "-s", session, *size, command], env=env, check=True, cwd="/")
        try:
            pid = int(subprocess.check_output([*tmux, "list-panes", "-t", session, "-F", "#{pane_pid}"], env=env))
            hwm = 0
            while time.monotonic() - t0 < timeout_s:
                hwm = max(hwm, _vm_hwm_kib(pid))
                screen = subprocess.run(
                    [*tmux, "capture-pane", "-p", "-t", session], env=env, capture_output=True, text=True
                ).stdout
                if "REPLAY" in screen:
                    return time.monotonic() - t0, max(hwm, _vm_hwm_kib(pid)) / 1024
                time.sleep(0.05)
            raise SystemExit("the replay screen never showed")
        finally:
            subprocess.run([*tmux, "kill-server"], env=env, check=False)


def measure_seek(path: str) -> tuple[float, float]:
    """(seconds to open at the start, seconds for a 10 s backward seek from the end), in this process."""
    from optitop.recording.replayer import Replayer
    from optitop.recording.scan import scan

    t0 = time.monotonic()
    rec = scan(path)
    replayer = Replayer(rec)
    opened = time.monotonic() - t0
    replayer.seek(rec.end_mono_s)
    t0 = time.monotonic()
    replayer.seek(rec.end_mono_s - 10)
    return opened, time.monotonic() - t0


def main() -> int:
    """``make`` or ``measure``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="write a large recording")
    mk.add_argument("-o", "--out", required=True)
    mk.add_argument("--size-mb", type=float, default=500.0)
    mk.add_argument("--seed", help="a recording to repeat (default: record a busy child for 8 s)")
    ms = sub.add_parser("measure", help="time and peak RSS of compare and replay on a recording")
    ms.add_argument("path")
    ms.add_argument("--skip-replay", action="store_true")
    ms.add_argument("--seek", action="store_true", help="also time a backward seek (in this process)")
    args = parser.parse_args()
    if args.cmd == "make":
        seed = args.seed
        with tempfile.TemporaryDirectory() as tmp:
            if seed is None:
                seed = os.path.join(tmp, "seed.jsonl")
                record_seed(seed)
            t0 = time.monotonic()
            n = make(seed, args.out, args.size_mb)
        size = os.path.getsize(args.out) / (1 << 20)
        print(f"{args.out}: {n} lines, {size:.0f} MiB on disk, written in {time.monotonic() - t0:.0f} s")
        return 0
    size = os.path.getsize(args.path) / (1 << 20)
    seconds, rss = measure_compare(args.path)
    print(f"compare {args.path} ({size:.0f} MiB) twice: {seconds:.1f} s to the answer, peak RSS {rss:.0f} MiB")
    if not args.skip_replay:
        seconds, rss = measure_replay(args.path)
        print(f"replay {args.path}: {seconds:.1f} s to the first frame, peak RSS {rss:.0f} MiB by then")
    if args.seek:
        opened, back = measure_seek(args.path)
        print(f"replayer: {opened:.1f} s to open, {back:.1f} s for a 10 s seek back from the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
