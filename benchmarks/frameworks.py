"""Analyzer accuracy on third-party servers (TorchServe, Ray Serve, FastAPI/uvicorn, gunicorn) put into classes.

benchmarks/accuracy.py measures optitop on its own demo server; this runs servers we did not write. Each
case starts a real framework (CPU, a small torch MLP with random weights defined in benchmarks/frameworks/)
from its own virtualenv ``.venv-frameworks/``, drives it with a bounded loopback load, attaches
``optitop record`` to the process a user would pick, and compares the recorded verdicts with the class the
case's configuration or load puts it in. It prints the same confusion matrix and table as accuracy.py.

    python benchmarks/frameworks.py --setup-only               # create .venv-frameworks/ (once, ~2.5 GB)
    python benchmarks/frameworks.py                            # every case, 25 s recorded each
    python benchmarks/frameworks.py --cases ray/scheduling,torchserve/compute --keep recordings/fw

Run it with optitop's interpreter (``.venv/bin/python``): optitop and the load generator run from there,
only the framework servers run from ``.venv-frameworks/``. Everything a case starts is stopped when the case
ends, on Ctrl-C too (process groups, ``torchserve --stop``, ``ray stop``). Exit status 0 when every case is
classified correctly.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import Result, judge, read_verdicts, run_cases  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent / "frameworks"
VENV = ROOT / ".venv-frameworks"
FW_BIN = VENV / "bin"
OPTITOP = str(Path(sys.executable).parent / "optitop")
#: Install order matters: the CPU torch wheel first, so the frameworks' resolution keeps it.
REQUIREMENTS = (
    "requirements-torch.txt",
    "requirements-ray.txt",
    "requirements-torchserve.txt",
    "requirements-asgi.txt",
)


# -- the framework virtualenv ------------------------------------------------------------------------------
def venv_ready() -> bool:
    """Whether every framework entry point is installed."""
    exes = ("python", "ray", "torchserve", "torch-model-archiver", "uvicorn", "gunicorn")
    return all((FW_BIN / exe).exists() for exe in exes)


def setup_venv() -> float:
    """Create ``.venv-frameworks/`` if missing; returns the seconds it took (0 when already there).

    torch is installed on its own first (pinned to the CPU build the machine's local wheel directory holds):
    resolving ``ray[serve]`` or ``torchserve`` with an unpinned torch would fetch the multi-GB CUDA build.
    """
    if venv_ready():
        return 0.0
    if shutil.which("java") is None:
        raise RuntimeError("TorchServe needs Java 17 on PATH (apt-get install openjdk-17-jre-headless)")
    started = time.monotonic()
    if not (FW_BIN / "python").exists():
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    pip = [str(FW_BIN / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(HERE / REQUIREMENTS[0])], check=True)
    subprocess.run([*pip, *(a for r in REQUIREMENTS[1:] for a in ("-r", str(HERE / r)))], check=True)
    return time.monotonic() - started


def fw_env() -> dict[str, str]:
    """The environment for framework processes: their venv first on PATH (TorchServe spawns ``python``)."""
    env = dict(os.environ)
    env["PATH"] = f"{FW_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.pop("PYTHONPATH", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


# -- small process helpers ---------------------------------------------------------------------------------
def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(proc: subprocess.Popen[str] | subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left after ``grace_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def poll(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Wait until ``check()`` holds (servers start in tens of seconds on a busy 2-core host)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def http_ok(url: str, body: bytes | None = None) -> bool:
    """Whether ``url`` answers 200 (POST when ``body`` is given)."""
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


# -- the cases ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """What a running case gives optitop: the pid a user would attach to and, if needed, a metrics URL."""

    pid: int
    load_url: str
    metrics_url: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Case:
    """One framework configured into one class."""

    framework: str  # torchserve | ray | uvicorn | gunicorn
    expected: str
    settings: dict[str, object] = field(default_factory=dict)
    concurrency: int = 4
    text_chars: int = 256

    @property
    def name(self) -> str:
        return f"{self.framework}/{self.expected}"


CASES = (
    # One worker, no batching, a 1024x4096 MLP over 64 rows per request, 4 clients back to back: the worker's
    # torch threads keep both cores in GEMM.
    Case("torchserve", "compute", {"rows": 64, "hidden": 4096, "threads": 2, "batchSize": 1, "maxBatchDelay": 100}),
    # batchSize 8 with maxBatchDelay 1000 ms and only 3 clients: every batch waits the full second for
    # requests that never come, while the worker and the cores are idle.
    Case(
        "torchserve",
        "scheduling",
        {"rows": 1, "hidden": 256, "threads": 1, "batchSize": 8, "maxBatchDelay": 1000},
        concurrency=3,
    ),  # fmt: skip
    Case("ray", "compute"),
    # max_ongoing_requests=1 and @serve.batch(batch_wait_timeout_s=0.25): one request per 250 ms timer.
    Case("ray", "scheduling", concurrency=6),
    Case("ray", "host_cpu", concurrency=4, text_chars=2048),
    # FastAPI on uvicorn with its own adaptive batcher (max batch 64, max wait 0.5 s) and only 4 clients: each
    # request waits for the timer while the event loop idles; /metrics has only an in-progress gauge and a
    # duration histogram (issue 22's first miss).
    Case("uvicorn", "scheduling", concurrency=4),
    # gunicorn, one sync worker, ~50 ms of Python per request, 8 clients: the worker pegs a core, connections
    # wait in the accept queue, optitop is attached to the master (issue 22's third miss).
    Case("gunicorn", "scheduling", concurrency=8),
)


def _ts_config(work: Path, case: Case, ports: dict[str, int]) -> Path:
    """Write TorchServe's config.properties and the model's model-config.yaml; build the .mar archive."""
    s = case.settings
    (work / "store").mkdir()
    model_yaml = work / "model-config.yaml"
    model_yaml.write_text(
        f"minWorkers: 1\nmaxWorkers: 1\nbatchSize: {s['batchSize']}\nmaxBatchDelay: {s['maxBatchDelay']}\n"
        f"responseTimeout: 120\nhandler:\n  rows: {s['rows']}\n  hidden: {s['hidden']}\n  threads: {s['threads']}\n"
    )
    subprocess.run(
        [str(FW_BIN / "torch-model-archiver"), "--model-name", "mlp", "--version", "1.0",
         "--handler", str(HERE / "ts_handler.py"), "--config-file", str(model_yaml),
         "--export-path", str(work / "store"), "--force"],
        check=True, env=fw_env(), cwd=work, capture_output=True, text=True,
    )  # fmt: skip
    props = work / "config.properties"
    props.write_text(
        f"inference_address=http://127.0.0.1:{ports['inference']}\n"
        f"management_address=http://127.0.0.1:{ports['management']}\n"
        f"metrics_address=http://127.0.0.1:{ports['metrics']}\n"
        f"grpc_inference_port={ports['grpc_inference']}\n"
        f"grpc_management_port={ports['grpc_management']}\n"
        "metrics_mode=prometheus\n"
        "disable_token_authorization=true\n"
        "enable_model_api=false\n"
        "default_workers_per_model=1\n"
        "install_py_dep_per_model=false\n"
        f"model_store={work / 'store'}\n"
        "load_models=mlp.mar\n"
    )
    return props


@contextlib.contextmanager
def run_torchserve(case: Case, attach: str) -> Iterator[Target]:
    """Start TorchServe in the foreground (its own process group), yield the Java frontend or the worker."""
    names = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
    ports = {name: free_port() for name in names}  # not TorchServe's fixed defaults: another instance may hold them
    with tempfile.TemporaryDirectory(prefix="optitop-ts-") as tmp:
        work = Path(tmp)
        props = _ts_config(work, case, ports)
        log = (work / "torchserve.out").open("w")
        proc = subprocess.Popen(
            [str(FW_BIN / "torchserve"), "--start", "--foreground", "--ncs", "--disable-token-auth",
             "--ts-config", str(props), "--model-store", str(work / "store")],
            cwd=work, env=fw_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            predict = f"http://127.0.0.1:{ports['inference']}/predictions/mlp"
            poll(lambda: http_ok(predict, b'{"text": "warm"}'), 180, "TorchServe to answer /predictions/mlp")
            java = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "java"]
            if not java:
                raise RuntimeError("TorchServe's Java frontend not found under the torchserve CLI")
            workers = [p for p in java[0].children(recursive=True) if "model_service_worker" in " ".join(p.cmdline())]
            if attach == "worker":
                if not workers:
                    raise RuntimeError("TorchServe's Python worker not found under the frontend")
                metrics = f"http://127.0.0.1:{ports['metrics']}/metrics"
                yield Target(workers[0].pid, predict, metrics, f"worker pid {workers[0].pid}")
            else:
                yield Target(java[0].pid, predict, None, f"frontend pid {java[0].pid}")
        finally:
            subprocess.run(
                [str(FW_BIN / "torchserve"), "--stop"], env=fw_env(), cwd=work, capture_output=True, timeout=60
            )
            kill_group(proc)
            log.close()


@contextlib.contextmanager
def run_ray(case: Case, attach: str) -> Iterator[Target]:
    """Start a local Ray instance with the case's Serve app; yield the replica actor's pid."""
    http_port, metrics_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="optitop-ray-", ignore_cleanup_errors=True) as tmp:
        log = (Path(tmp) / "ray_app.out").open("w+")
        cmd = [str(FW_BIN / "python"), str(HERE / "ray_app.py"), "--case", case.expected,
               "--http-port", str(http_port), "--metrics-port", str(metrics_port),
               "--temp-dir", str(Path(tmp) / "ray")]  # fmt: skip
        proc = subprocess.Popen(
            cmd, env=fw_env(), stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
        )
        try:
            assert proc.stdout is not None
            line = _read_line(proc, 240)
            info = json.loads(line)
            url = str(info["url"])
            poll(lambda: http_ok(url, b'{"text": "warm"}'), 60, "Ray Serve to answer /infer")
            yield Target(int(info["replica_pid"]), url, str(info["metrics_url"]), f"replica pid {info['replica_pid']}")
        finally:
            kill_group(proc, grace_s=40)
            subprocess.run([str(FW_BIN / "ray"), "stop", "--force"], env=fw_env(), capture_output=True, timeout=120)
            log.close()


@contextlib.contextmanager
def run_uvicorn(case: Case, attach: str) -> Iterator[Target]:
    """FastAPI on uvicorn (one process) with the batcher in fastapi_app.py; yield the uvicorn process."""
    port = free_port()
    cmd = [str(FW_BIN / "uvicorn"), "fastapi_app:app", "--app-dir", str(HERE), "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=fw_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/infer"
        poll(lambda: http_ok(url, b'{"text": "warm"}'), 60, "uvicorn to answer /infer")
        yield Target(proc.pid, url, f"http://127.0.0.1:{port}/metrics/", f"uvicorn pid {proc.pid}")
    finally:
        kill_group(proc)


@contextlib.contextmanager
def run_gunicorn(case: Case, attach: str) -> Iterator[Target]:
    """gunicorn with one sync worker (gunicorn_app.py); yield the master (the arbiter), as a user would pick."""
    port = free_port()
    cmd = [str(FW_BIN / "gunicorn"), "--chdir", str(HERE), "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
           "--log-level", "warning", "gunicorn_app:app"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=fw_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/infer"
        poll(lambda: http_ok(url, b'{"text": "warm"}'), 60, "gunicorn to answer /infer")
        yield Target(proc.pid, url, None, f"gunicorn master pid {proc.pid}")
    finally:
        kill_group(proc)


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The first stdout line of a child, or an error when it exits or takes longer than ``timeout_s``."""
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout_s
    buf = ""
    while time.monotonic() < deadline:
        chunk = proc.stdout.readline()
        buf += chunk
        if buf.endswith("\n"):
            return buf.strip()
        if proc.poll() is not None:
            raise RuntimeError(f"server exited (rc {proc.returncode}) before it was ready")
        time.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout_s:.0f} s")


# -- one case ----------------------------------------------------------------------------------------------
def start_load(target: Target, case: Case, seconds: float) -> subprocess.Popen[str]:
    """The bounded load generator, from optitop's interpreter, in its own process group."""
    cmd = [sys.executable, "-m", "optitop.demo.load", "--url", target.load_url, "--duration", str(seconds),
           "--concurrency", str(case.concurrency), "--text-chars", str(case.text_chars),
           "--parent-pid", str(os.getpid())]  # fmt: skip
    # cwd away from the checkout: its optitop/ folder would shadow the installed package for ``-m``
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True, cwd=HERE)


def record(target: Target, duration_s: float, interval_s: float, out: Path) -> str:
    """Run ``optitop record`` on the target; returns an error line ('' on success)."""
    cmd = [OPTITOP, "record", "--pid", str(target.pid), "-o", str(out), "--duration", str(duration_s)]
    cmd += ["--interval", str(interval_s), "--force"]  # --keep DIR: a re-run replaces the last run's file
    if target.metrics_url:
        cmd += ["--metrics-url", target.metrics_url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 90)
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"rc {done.returncode}"
    return ""


def run_case(case: Case, args: argparse.Namespace, keep: Path | None) -> Result:
    """Start the framework, load it, warm up, record, stop everything; the verdicts judged."""
    result = Result(case.name, case.expected)
    runners = {"torchserve": run_torchserve, "ray": run_ray, "uvicorn": run_uvicorn, "gunicorn": run_gunicorn}
    runner = runners[case.framework]
    attach = args.ts_attach if case.framework == "torchserve" else "replica"
    with runner(case, attach) as target:
        load = start_load(target, case, args.warmup + args.duration + 30)
        try:
            time.sleep(args.warmup)  # a benchmark, not a test: the load needs time to reach its steady state
            with tempfile.TemporaryDirectory() as tmp:
                out = (keep or Path(tmp)) / f"{case.framework}-{case.expected}.jsonl"
                out.parent.mkdir(parents=True, exist_ok=True)
                result.error = record(target, args.duration, args.interval, out)
                judge(result, read_verdicts(out))
                result.evidence.insert(0, target.note)
        finally:
            kill_group(load, grace_s=5)
            summary = load.stdout.read() if load.stdout else ""
            if summary.strip():
                print(f"  load: {summary.strip()}", file=sys.stderr)
    return result


# -- output ------------------------------------------------------------------------------------------------


def main() -> int:
    """Set up the venv if needed, run the chosen cases, print the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(c.name for c in CASES), help="comma-separated framework/class")
    parser.add_argument("--duration", type=float, default=25.0, help="seconds recorded per case")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before attaching")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--ts-attach", choices=("frontend", "worker"), default="worker",
                        help="TorchServe: attach to the Python worker (stacks; --metrics-url given) "
                        "or to the Java frontend (no stacks)")  # fmt: skip
    parser.add_argument("--keep", type=Path, default=None, help="keep the recordings in this folder")
    parser.add_argument("--setup-only", action="store_true", help="create .venv-frameworks/ and stop")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the results here")
    args = parser.parse_args()
    took = setup_venv()
    if took:
        print(f"created {VENV} in {took:.0f} s", file=sys.stderr)
    if args.setup_only:
        return 0
    by_name = {c.name: c for c in CASES}
    chosen = [by_name[n] for n in args.cases.split(",") if n]
    run = lambda case: run_case(case, args, args.keep)  # noqa: E731
    return run_cases(chosen, run, label="case", noun="framework cases", name_w=22, json_path=args.json_path)


if __name__ == "__main__":
    raise SystemExit(main())
