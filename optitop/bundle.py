"""``optitop bundle``: what an on-call engineer attaches to a ticket, in one private tar.gz.

Inside: the last N minutes of metrics and verdicts as a recording (``optitop replay metrics.jsonl`` works on
it), the headless report, a fresh stack dump of every thread (py-spy), the device state (GPUs, driver,
clocks, throttle reasons), the discovered /metrics endpoints with one raw scrape, and ``optitop doctor``'s
output. Every text goes through the redaction that guards the screen. The archive is written through
``optitop.safefile``: a new 0600 file under a temporary name, renamed into place only when complete (a full disk
leaves no half archive, and an existing file is replaced only with ``--force``, never written through).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from optitop import __version__
from optitop.collectors import REGISTRY
from optitop.collectors.pyspy import find_pyspy, ptrace_fix  # the py-spy that samples is the one that dumps
from optitop.config import Options
from optitop.model import Diagnosis, GpuSample, Window
from optitop.recording.codec import SCHEMA_VERSION, to_jsonable
from optitop.recording.writer import write_snapshot
from optitop.redact import redact_json, redact_text
from optitop.safefile import SafeFile
from optitop.safetext import printable_lines
from optitop.serialize import report
from optitop.store import Store

if TYPE_CHECKING:
    from optitop.session import CollectorRunner

#: Seconds a bundle made without a live session samples the target for.
DEFAULT_SAMPLE_S = 5.0
#: Seconds py-spy may take for one dump (it pauses the target briefly, ~0.1 s normally).
PYSPY_TIMEOUT_S = 15.0
#: The raw scrape is cut at this many bytes (a full vLLM exposition is ~100 KB).
MAX_SCRAPE_BYTES = 2 * 1024 * 1024


@dataclass(slots=True)
class Bundle:
    """The archive's members, in the order they are written."""

    members: dict[str, bytes] = field(default_factory=dict)

    def add_text(self, name: str, text: str) -> None:
        """Add a redacted text member, its control characters escaped (thread and file names from py-spy)."""
        self.members[name] = printable_lines(redact_text(text)).encode()

    def add_json(self, name: str, obj: Any) -> None:
        """Add a redacted JSON member."""
        self.members[name] = (json.dumps(redact_json(obj), indent=2) + "\n").encode()


# -- gathering -------------------------------------------------------------------------------------------
def stack_dump(pid: int) -> str:
    """A fresh ``py-spy dump`` of every thread, or why there is none."""
    pyspy = find_pyspy()
    if pyspy is None:
        return "no stack dump: py-spy is not installed (pip install py-spy)\n"
    try:
        got = subprocess.run(
            [pyspy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=PYSPY_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"no stack dump: py-spy did not answer within {PYSPY_TIMEOUT_S:.0f} s\n"
    except OSError as exc:
        return f"no stack dump: cannot run py-spy: {exc}\n"
    if got.returncode != 0:
        hint = ""
        if "ptrace" in got.stderr.lower() or "permission" in got.stderr.lower():
            hint = f"\n({ptrace_fix()})"  # what this process lacks: root, CAP_SYS_PTRACE, or the Yama scope
        return f"no stack dump: py-spy exited {got.returncode}:\n{got.stderr.strip()}{hint}\n"
    return got.stdout


def device_state(window: Window) -> dict[str, Any]:
    """The latest GPU sample (devices, driver, clocks, throttle reasons) or why there is none."""
    latest = window.latest_of("gpu", GpuSample)
    if latest is not None:
        return {"gpu": to_jsonable(latest)}
    status = window.statuses.get("gpu")
    why = status.reason if status is not None and status.reason else "the GPU collector produced no sample"
    return {"gpu": None, "note": f"no GPU: {why}"}


def endpoints_text(urls: Sequence[str]) -> tuple[str, str]:
    """(the endpoint list with the serving sample's notes, one raw scrape of the first endpoint)."""
    if not urls:
        return "no /metrics endpoint was discovered (pass --metrics-url URL if the server has one)\n", ""
    listing = "".join(f"{u}\n" for u in urls)
    try:
        from optitop.collectors.promfetch import fetch
    except ImportError as exc:
        return listing, f"no scrape: the queue collector is not in this build ({exc})\n"
    got = fetch(urls[0], max_bytes=MAX_SCRAPE_BYTES)
    if got.body is None:
        return listing, f"# scrape of {urls[0]} failed: {got.reason}\n"
    head = f"# raw scrape of {urls[0]} (HTTP {got.status}, {got.elapsed_s:.2f} s{', cut' if got.capped else ''})\n"
    return listing, head + got.body


@runtime_checkable
class EndpointSource(Protocol):
    """A collector that scrapes /metrics endpoints (the queue collector): the URLs it found are its keys."""

    @property
    def endpoints(self) -> Mapping[str, object]:
        """The endpoints in use, by URL."""
        ...


class RunnerLookup(Protocol):
    """What :func:`queue_endpoints` needs of a session (``Session`` and ``FollowingSession`` both have it)."""

    def runner(self, name: str) -> CollectorRunner | None:
        """The runner of one collector, if it runs."""
        ...


def queue_endpoints(session: RunnerLookup | None) -> list[str]:
    """The endpoints the session's scraping collectors found (empty when none runs), in the order found.

    The collectors are looked at by what they can do (:class:`EndpointSource`), not by the name of the one
    that scrapes today.
    """
    if session is None:
        return []
    urls: dict[str, None] = {}
    for spec in REGISTRY:
        runner = session.runner(spec.name)
        if runner is not None and isinstance(runner.collector, EndpointSource):
            urls.update(dict.fromkeys(runner.collector.endpoints))
    return list(urls)


def doctor_output(pid: int, options: Options) -> str:
    """What ``optitop doctor --pid PID`` prints."""
    from optitop.doctor import run_doctor

    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            run_doctor(pid, options)
    except Exception as exc:  # the bundle reports, it never fails on one part
        buffer.write(f"\ndoctor failed: {type(exc).__name__}: {exc}\n")
    return buffer.getvalue()


def latest_verdict(window: Window) -> Diagnosis:
    """The newest verdict in the window, or a fresh judgement when none was made."""
    if window.diagnoses:
        return window.diagnoses[-1]
    from optitop.analyzers import analyzer_failed, judge

    try:
        return judge(window, None)[0]
    except Exception as exc:  # an analyzer bug must not cost the bundle: it says so instead
        return analyzer_failed(window, exc)


def gather(
    store: Store,
    options: Options,
    minutes: float,
    endpoints: Sequence[str] = (),
    with_doctor: bool = True,
) -> Bundle:
    """Everything that goes into the archive, from a store that holds the recent history."""
    bundle = Bundle()
    pid = store.target.pid
    window = store.window(minutes * 60)
    with tempfile.TemporaryDirectory(prefix="optitop-bundle-") as tmp:  # 0700: private while it exists
        path = os.path.join(tmp, "metrics.jsonl")
        events = write_snapshot(store, path, options, since_s=minutes * 60)
        bundle.members["metrics.jsonl"] = Path(path).read_bytes()  # written from redacted samples
    bundle.add_json("report.json", report(window, latest_verdict(window), window.span_s))
    bundle.add_text("stacks.txt", stack_dump(pid) if not store.target.exited else "no stack dump: the target exited\n")
    bundle.add_json("devices.json", device_state(window))
    listing, scrape = endpoints_text(endpoints)
    bundle.add_text("endpoints.txt", listing)
    if scrape:
        bundle.add_text("scrape.txt", scrape)
    if with_doctor:
        bundle.add_text("doctor.txt", doctor_output(pid, options))
    bundle.add_json(
        "manifest.json",
        {
            "schema_version": SCHEMA_VERSION,
            "optitop_version": __version__,
            "created_at": time.time(),
            "host": socket.gethostname(),
            "target": {"pid": pid, "name": store.target.name, "cmdline": store.target.cmdline},
            "minutes": minutes,
            "metric_events": events,
            "members": [*bundle.members, "manifest.json"],
            "replay": "optitop replay metrics.jsonl",
        },
    )
    return bundle


def write_archive(path: str | SafeFile, bundle: Bundle, *, force: bool = False) -> None:
    """Write the members as a tar.gz (0600, members 0600 too) and rename it onto ``path`` when complete.

    ``path`` may be a :class:`SafeFile` created earlier (``optitop bundle`` creates it before sampling, so a
    refused path fails at once). On any error the temporary file is removed and ``path`` left as it was.
    """
    out = path if isinstance(path, SafeFile) else SafeFile(path, force=force)
    now = time.time()
    try:
        with tarfile.open(fileobj=out.file, mode="w:gz") as tar:
            for name, data in bundle.members.items():
                info = tarfile.TarInfo(f"optitop-bundle/{name}")
                info.size, info.mode, info.mtime = len(data), 0o600, int(now)
                tar.addfile(info, io.BytesIO(data))
        out.commit()
    except BaseException:
        out.discard()
        raise
