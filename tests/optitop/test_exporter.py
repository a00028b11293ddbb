"""The Prometheus exporter: exposition parsed back with prometheus_client, and scraped by a real Prometheus."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace

import psutil
import pytest
import samplefactory
from conftest import free_port, wait_for
from prometheus_client.parser import text_string_to_metric_families

from optitop.commands.export import export_main
from optitop.exporter import parse_listen, prom_name, serve
from optitop.model import Diagnosis, Latency, ServingStats, SourceState, SourceStatus, TargetInfo
from optitop.store import Store


def fresh_store() -> Store:
    """A store with one sample per source, all taken "now" (so none is stale)."""
    now, wall = time.monotonic(), time.time()
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", wall - 60, "box-a"))
    store.add("process", samplefactory.process_sample(wall, now))
    store.add("system", samplefactory.system_sample(wall, now))
    device = samplefactory.gpu_device(index=1, uuid="GPU-abc", sm_clock_mhz=1980, mig_mode=False)
    store.add("gpu", samplefactory.gpu_sample(wall, now, devices=(device,), target_gpu_indices=(1,)))
    stats = ServingStats(requests_waiting=7.0, requests_running=3.0, ttft_p95_s=0.75)
    store.add("queue", samplefactory.serving_sample(wall, now, stats=stats, source="vllm @ http://x"))
    store.add("sockets", replace(store.window().latest("process"), mono_s=now - 3600))  # an hour old: stale
    store.set_status(SourceStatus("process", SourceState.OK))
    store.set_status(SourceStatus("gpu", SourceState.UNAVAILABLE, "NVML not found"))
    store.add_diagnosis(Diagnosis("memory_io", 0.72, secondary=(("compute", 0.4),), mono_s=now))
    return store


def scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {f.name: (f.documentation, f.samples) for f in text_string_to_metric_families(text)}


def value(families, metric, /, **labels):
    _, samples = families[metric]
    for s in samples:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"{metric}{labels} not exported: {samples}")


def test_exposition_parses_back_with_units_labels_help_and_verdict():
    server, _ = serve(fresh_store(), "127.0.0.1", 0)
    try:
        got = scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert value(got, "optitop_process_cpu_percent") == 87.5
    assert "% of one core" in got["optitop_process_cpu_percent"][0]  # help text
    assert value(got, "optitop_process_rss_bytes") == float(1 << 30)
    assert value(got, "optitop_process_write_bytes_per_second") == 4096.0
    assert "optitop_process_read_bytes_per_second" not in got  # unknown (None) is absent, never 0
    assert value(got, "optitop_system_core_busy_percent", core="0") == 90.0
    assert value(got, "optitop_gpu_sm_util_percent", gpu="1", uuid="GPU-abc", name="NVIDIA H100 80GB HBM3") == 78.0
    assert value(got, "optitop_gpu_sm_clock_hertz", gpu="1") == 1980e6  # MHz in base units
    assert value(got, "optitop_queue_requests_waiting", profile="vllm") == 7.0
    assert value(got, "optitop_queue_ttft_p95_seconds") == 0.75
    assert value(got, "optitop_bottleneck", category="memory_io") == 0.72
    assert value(got, "optitop_bottleneck", category="compute") == 0.0
    assert value(got, "optitop_bottleneck_secondary", category="compute") == 0.4
    assert value(got, "optitop_source_up", source="process") == 1.0
    assert value(got, "optitop_source_up", source="gpu") == 0.0
    assert value(got, "optitop_target_info", pid="4242", host="box-a") == 1.0
    ages = {s.labels["source"] for s in got["optitop_sample_age_seconds"][1]}
    assert ages == {"process", "system", "gpu", "queue"}  # the hour-old "sockets" sample is stale: left out


def test_the_latency_decomposition_is_exported_in_seconds_and_absent_when_unknown():
    store = fresh_store()
    lat = Latency(residence_s=0.63, residence_from="p50", completions_per_s=7.4, cpu_demand_s=0.003, waiting_s=0.627)
    store.add_diagnosis(Diagnosis("scheduling", 0.6, latency=lat, mono_s=time.monotonic()))
    server, _ = serve(store, "127.0.0.1", 0, interval_s=0.01)  # pages are cached an interval: keep it short
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"

    def latency_names() -> list[str]:
        return [name for name in scrape(url) if name.startswith("optitop_latency_")]

    try:
        got = scrape(url)
        assert value(got, "optitop_latency_residence_seconds") == 0.63
        assert value(got, "optitop_latency_cpu_demand_seconds") == 0.003
        assert value(got, "optitop_latency_waiting_seconds") == 0.627
        assert "optitop_latency_gpu_demand_seconds" not in got  # no GPU demand known: absent, never 0
        absent = Latency(absent="no request metrics")
        store.add_diagnosis(Diagnosis("unknown", 0.0, latency=absent, mono_s=time.monotonic()))
        wait_for(lambda: not latency_names(), what="the latency gauges to go with the decomposition")
    finally:
        server.shutdown()
        server.server_close()


def test_unit_names():
    assert prom_name("cpu_pct_of_allowed") == ("cpu_percent_of_allowed", 1.0)
    assert prom_name("read_bytes_per_s") == ("read_bytes_per_second", 1.0)
    assert prom_name("itl_p95_s") == ("itl_p95_seconds", 1.0)
    assert prom_name("power_w") == ("power_watts", 1.0)
    assert parse_listen("[::1]:9400") == ("::1", 9400)
    assert parse_listen(":9400") == ("0.0.0.0", 9400)
    with pytest.raises(ValueError):
        parse_listen("localhost")


def test_export_main_usage_errors_are_one_line(capsys):
    assert export_main(["--pid", "1", "--listen", "nowhere"]) == 2
    assert "HOST:PORT" in capsys.readouterr().err
    gone = _reaped_pid()
    assert export_main(["--pid", str(gone)]) == 2
    assert f"no process with pid {gone}" in capsys.readouterr().err


def _reaped_pid() -> int:
    """The pid of a child that has exited and been reaped: valid, and (for a while) nobody's."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def query(prom: str, promql: str) -> list:
    try:
        doc = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    except OSError:
        return []
    return doc["data"]["result"] if doc.get("status") == "success" else []


@pytest.fixture
def exporter(start_target):
    """A spinning target and `optitop export` on it, in its own process; yields (proc, metrics port)."""
    target = start_target(
        """
        threading.Thread(target=spin, args=("burner",), daemon=True).start()
        ready()
        time.sleep(600)
        """
    )
    code = "import sys; from optitop.commands.export import export_main; sys.exit(export_main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "--pid",
            str(target.pid),
            "--listen",
            "127.0.0.1:0",
            "--interval",
            "0.5",
            "--no-pystacks",
            "--no-scrape",
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "serving pid" in line, line
    port = int(line.rsplit(":", 1)[1].split("/")[0])
    yield proc, port
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def test_real_prometheus_scrapes_the_exporter(exporter, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is absent: apt-get install prometheus (Debian package) to run this test")
    proc, port = exporter
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        f"scrape_configs:\n  - job_name: optitop\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    prom = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{web}"
    try:
        cpu = wait_for(
            lambda: query(base, "optitop_process_cpu_percent"),
            40,
            every_s=0.25,
            what="Prometheus never stored optitop's CPU",
        )
        assert cpu[0]["metric"]["job"] == "optitop"
        assert float(cpu[0]["value"][1]) > 10  # the spinning target, through Prometheus
        up = wait_for(
            lambda: query(base, 'optitop_source_up{source="process"} == 1'),
            20,
            every_s=0.25,
            what="process source not up",
        )
        assert up
        verdicts = wait_for(lambda: query(base, "optitop_bottleneck"), 20, every_s=0.25, what="no verdict series")
        assert {v["metric"]["category"] for v in verdicts} >= {"compute", "memory_io", "host_cpu", "idle"}
        assert sum(float(v["value"][1]) > 0 for v in verdicts) <= 1  # one class named at a time
        meta = get_json(f"{base}/api/v1/metadata?metric=optitop_process_cpu_percent")
        assert "% of one core" in meta["data"]["optitop_process_cpu_percent"][0]["help"]
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0  # SIGTERM is a clean stop


# -- facing the network: bounded threads, deadlines, a cached page (issue 20 item 4) ----------------------
@pytest.fixture
def start_export(start_target):
    """Start `optitop export` on a sleeping target with extra arguments; returns (proc, port, scheme)."""
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> tuple[subprocess.Popen[str], int, str]:
        target = start_target("ready()\ntime.sleep(600)\n")
        code = "import sys; from optitop.commands.export import export_main; sys.exit(export_main(sys.argv[1:]))"
        args = ["--pid", str(target.pid), "--listen", "127.0.0.1:0", "--interval", "0.5", "--no-pystacks"]
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args, "--no-scrape", *extra], stderr=subprocess.PIPE, text=True, cwd="/"
        )
        started.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "serving pid" in line, line
        scheme, _, rest = line.split(" on ", 1)[1].partition("://")
        return proc, int(rest.rsplit(":", 1)[1].split("/")[0]), scheme

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def raw_get(port: int, timeout_s: float = 10.0, extra: bytes = b"") -> tuple[int, bytes, float]:
    """One GET /metrics over a fresh socket: (status, body, seconds from connect to the last byte)."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n")
        data = bytearray()
        while chunk := sock.recv(65536):
            data += chunk
    if not data:
        raise ConnectionError("closed without an answer")
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split()[1]), body, time.monotonic() - start


def test_200_concurrent_scrapes_are_all_answered_quickly(start_export):
    proc, port, _ = start_export()
    assert raw_get(port)[0] == 200
    barrier = threading.Barrier(200)
    results: list[tuple[int, bytes, float] | BaseException] = []

    def one() -> None:
        barrier.wait()
        try:
            results.append(raw_get(port, timeout_s=10))
        except OSError as exc:
            results.append(exc)

    workers = [threading.Thread(target=one) for _ in range(200)]
    start = time.monotonic()
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    took_s = time.monotonic() - start
    failed = [r for r in results if not isinstance(r, tuple) or r[0] != 200 or b"optitop_target_info" not in r[1]]
    assert len(results) == 200 and not failed, failed[:3]
    latencies = sorted(r[2] for r in results if isinstance(r, tuple))
    p50, p99 = latencies[100], latencies[197]
    print(f"200 concurrent scrapes: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, all in {took_s:.2f} s")
    assert p99 < 3.0  # prometheus_client's backlog of 5 left a third past a 1 s SYN retry
    assert threads_of(proc.pid) < 40  # not one thread per connection


def test_held_open_connections_cost_no_thread_and_are_dropped(start_export):
    from optitop.httpserve import REQUEST_TIMEOUT_S

    proc, port, _ = start_export()
    # The collectors' threads start once the server is up: count after their first samples are served.
    wait_for(lambda: b"optitop_process_cpu_percent" in raw_get(port)[1], 20, what="no process sample served")
    before = threads_of(proc.pid)
    held = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(100)]
    try:
        for sock in held[::2]:
            sock.sendall(b"GET /metrics HTTP/1.1\r\n")  # half send a partial request, half nothing
        assert raw_get(port, timeout_s=5)[0] == 200  # a scrape is answered meanwhile
        during = threads_of(proc.pid)
        print(f"threads: {before} before, {during} with 100 connections held open")
        assert during <= before + 2  # the old server: one more thread per connection, never reaped
        start = time.monotonic()
        for sock in held:
            assert sock.recv(100) == b""  # closed by the server (a timeout raises instead)
        print(f"100 idle connections dropped after {time.monotonic() - start:.1f} s more")
        assert time.monotonic() - start < REQUEST_TIMEOUT_S + 5
    finally:
        for sock in held:
            sock.close()


def test_a_scrape_succeeds_while_50_slowloris_clients_trickle(start_export):
    from optitop.httpserve import REQUEST_TIMEOUT_S

    proc, port, _ = start_export()
    slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(50)]
    stop = threading.Event()

    def trickle() -> None:
        # One header byte per client every 0.2 s: never a whole request (each socket alone would never end).
        while not stop.is_set():
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"G" if sock.fileno() >= 0 else b"")
            stop.wait(0.2)

    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    try:
        status, body, took_s = raw_get(port, timeout_s=5)
        assert status == 200 and b"optitop_target_info" in body
        print(f"scrape with 50 slowloris clients held: {took_s * 1000:.0f} ms")
        assert took_s < 2.0
        start = time.monotonic()
        wait_for(lambda: all(_closed(s) for s in slow), REQUEST_TIMEOUT_S + 5, what="slowloris clients not dropped")
        assert time.monotonic() - start < REQUEST_TIMEOUT_S + 5
    finally:
        stop.set()
        feeder.join(5)
        for sock in slow:
            sock.close()


def _closed(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (EOF or reset), without blocking."""
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_oversized_headers_get_431_and_extra_connections_503():
    from optitop.httpserve import MAX_REQUEST_BYTES

    server, _ = serve(fresh_store(), "127.0.0.1", 0)
    port = server.server_address[1]
    try:
        status, body, _ = raw_get(port, extra=b"X-Junk: " + b"a" * MAX_REQUEST_BYTES + b"\r\n")
        assert status == 431 and b"over" in body
        server.max_connections = 5
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(5)]
        wait_for(lambda: len(server._conns) == 5, 5, what="the 5 idle connections were not accepted")
        assert raw_get(port)[0] == 503  # answered at once, not queued behind the idle ones
        for sock in idle:
            sock.close()
        wait_for(lambda: raw_get(port)[0] == 200, 5, what="no 200 once the idle connections left")
    finally:
        server.shutdown()
        server.server_close()


def test_the_page_is_rendered_once_per_interval_whatever_the_scrapes():
    from optitop.exporter import metrics_handler
    from optitop.httpserve import MetricsServer, PageCache

    cache = PageCache(lambda: b"optitop_x 1\n", max_age_s=60)
    server = MetricsServer("127.0.0.1", 0, metrics_handler(cache))
    server.start()
    try:
        for _ in range(30):
            assert raw_get(server.server_address[1])[1] == b"optitop_x 1\n"
        assert cache.renders == 1
    finally:
        server.shutdown()
        server.server_close()


# -- --web-config: TLS and basic auth in Prometheus's format (issue 24) ------------------------------------
def self_signed(tmp_path) -> tuple[str, str]:
    """A throwaway certificate for 127.0.0.1 made with the openssl command (cert path, key path)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is absent: it makes the test's self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def get_status(url: str, context: ssl.SSLContext | None = None, auth: str | None = None) -> tuple[int, str, str]:
    """(status, WWW-Authenticate header, body) of one GET; HTTP errors are answers here, not exceptions."""
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, "", resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("WWW-Authenticate", ""), exc.read().decode()


def test_web_config_serves_https_behind_basic_auth(start_export, tmp_path):
    bcrypt = pytest.importorskip("bcrypt", reason="the web extra (bcrypt) is part of the test dependencies")
    cert, key = self_signed(tmp_path)
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")  # as htpasswd writes it
    config = tmp_path / "web.yml"
    config.write_text(
        "# Prometheus's web-config format\ntls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
        f"basic_auth_users:\n  prom: '{hashed}'\n"
    )
    proc, port, scheme = start_export("--web-config", str(config))
    assert scheme == "https"
    url = f"https://127.0.0.1:{port}/metrics"
    trust = ssl.create_default_context(cafile=cert)
    silent = socket.create_connection(("127.0.0.1", port))  # a client that never starts its handshake
    try:
        status, challenge, _ = get_status(url, trust)
        assert status == 401 and challenge.startswith("Basic realm=")
        assert get_status(url, trust, "prom:wrong")[0] == 401
        assert get_status(url, trust, "nobody:s3cret")[0] == 401
        status, _, body = get_status(url, trust, "prom:s3cret")
        assert status == 200 and "optitop_target_info" in body
        assert get_status(url, trust, "prom:s3cret")[0] == 200  # the remembered check
    finally:
        silent.close()
    with pytest.raises((OSError, http.client.HTTPException)):
        get_status(f"http://127.0.0.1:{port}/metrics", auth="prom:s3cret")  # plain HTTP gets no page
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        get_status(url, ssl.create_default_context(), "prom:s3cret")  # an untrusted certificate is refused
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_web_config_client_certificates(tmp_path):
    from optitop.webconfig import load_web_config

    cert, key = self_signed(tmp_path)
    config = tmp_path / "web.yml"
    config.write_text(
        f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {cert}\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  min_version: TLS12\n"
    )
    server, _ = serve(fresh_store(), "127.0.0.1", 0, web=load_web_config(str(config)))
    url = f"https://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        anonymous = ssl.create_default_context(cafile=cert)
        with pytest.raises((ssl.SSLError, OSError)):
            get_status(url, anonymous)
        known = ssl.create_default_context(cafile=cert)
        known.load_cert_chain(cert, key)
        assert get_status(url, known)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


BAD_WEB_CONFIGS = {
    "missing": None,
    "yaml": "tls_server_config: [cert_file\n",
    "top": "- a list\n",
    "typo": "tls_server_confg:\n  cert_file: c\n",
    "no key": "tls_server_config:\n  cert_file: cert.pem\n",
    "bad cert": "tls_server_config:\n  cert_file: junk.pem\n  key_file: junk.pem\n",
    "go only": "tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
    "version": "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS9\n",
    "mtls no ca": "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"
    "  client_auth_type: RequireAndVerifyClientCert\n",
    "hash": "basic_auth_users:\n  prom: plaintext-password\n",
    "users": "basic_auth_users: [prom]\n",
}


@pytest.mark.parametrize("case", sorted(BAD_WEB_CONFIGS))
def test_a_bad_web_config_is_one_line_and_exit_2(case, tmp_path, capsys):
    self_signed(tmp_path)
    (tmp_path / "junk.pem").write_text("\x1b]0;not a certificate\x07\n")
    config = tmp_path / "web.yml"
    if BAD_WEB_CONFIGS[case] is not None:
        config.write_text(BAD_WEB_CONFIGS[case])
    assert export_main(["--pid", str(os.getpid()), "--listen", "127.0.0.1:0", "--web-config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"optitop: --web-config {config}") and err.count("\n") == 1, err
    assert "\x1b" not in err and "Traceback" not in err


@pytest.mark.parametrize("missing", ["bcrypt", "yaml"])
def test_web_config_without_the_web_extra_names_it(missing, tmp_path):
    config = tmp_path / "web.yml"
    config.write_text("basic_auth_users:\n  prom: $2y$04$" + "a" * 53 + "\n")
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"  # as if the package were not installed
        "from optitop.commands.export import export_main; sys.exit(export_main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--pid", str(os.getpid()), "--web-config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "pip install 'optitop[web]'" in done.stderr, done.stderr
    assert ("needs bcrypt" if missing == "bcrypt" else "needs PyYAML") in done.stderr


def test_a_flood_of_wrong_passwords_does_not_delay_a_known_scraper():
    bcrypt = pytest.importorskip("bcrypt", reason="the web extra (bcrypt) is part of the test dependencies")
    from optitop.webconfig import WebConfig

    users = {"prom": bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10))}  # ~80 ms a check, as deployed
    server, _ = serve(fresh_store(), "127.0.0.1", 0, web=WebConfig(users=users))
    port = server.server_address[1]
    good = b"Authorization: Basic " + base64.b64encode(b"prom:s3cret") + b"\r\n"
    bad = b"Authorization: Basic " + base64.b64encode(b"prom:guess") + b"\r\n"
    stop = threading.Event()
    answers: list[int] = []

    def flood() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                answers.append(raw_get(port, timeout_s=30, extra=bad)[0])

    try:
        assert raw_get(port, extra=good)[0] == 200  # checked once, then remembered
        flooders = [threading.Thread(target=flood, daemon=True) for _ in range(40)]
        for t in flooders:
            t.start()
        wait_for(lambda: 401 in answers, 30, what="no wrong password was refused")
        took = []
        for _ in range(10):
            status, _, took_s = raw_get(port, extra=good)
            assert status == 200
            took.append(took_s)
        print(f"known scraper during a 40-client wrong-password flood: worst {max(took) * 1000:.0f} ms")
        assert max(took) < 1.0  # one FIFO behind 40 bcrypt checks would be ~3 s
        assert set(answers) <= {401, 503}  # 503: more than SLOW_QUEUE checks waiting
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_a_client_that_never_reads_its_answer_holds_nobody_and_is_dropped():
    from optitop.exporter import metrics_handler
    from optitop.httpserve import MetricsServer, PageCache

    page = b"optitop_x 1\n" * (2 << 20)  # 24 MiB: more than any socket buffer takes
    server = MetricsServer("127.0.0.1", 0, metrics_handler(PageCache(lambda: page, max_age_s=60)))
    server.send_timeout_s = 2.0
    server.start()
    port = server.server_address[1]
    try:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        status, body, took_s = raw_get(port)
        assert status == 200 and len(body) == len(page)
        print(f"24 MiB page read in {took_s:.2f} s while another client would not read its copy")
        wait_for(lambda: not server._conns, 10, what="the client that never reads was not dropped")
        stuck.close()
    finally:
        server.shutdown()
        server.server_close()


#: A bare exporter server in its own process, with few file descriptors allowed once it listens.
FEW_FDS_SERVER = """
import resource, sys, time
from optitop.exporter import metrics_handler
from optitop.httpserve import MetricsServer, PageCache
server = MetricsServer("127.0.0.1", 0, metrics_handler(PageCache(lambda: b"optitop_x 1\\n", 60)))
server.start()
resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
print(server.server_address[1], flush=True)
time.sleep(600)
"""


def test_out_of_file_descriptors_the_server_waits_instead_of_spinning():
    proc = subprocess.Popen([sys.executable, "-c", FEW_FDS_SERVER], stdout=subprocess.PIPE, text=True, cwd="/")
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(60)]  # past the 40 fds
        server = psutil.Process(proc.pid)
        wait_for(lambda: len(server.net_connections()) >= 25, 10, what="the server accepted nothing")
        cpu0 = sum(server.cpu_times()[:2])
        time.sleep(2.0)  # a span to measure CPU over, not a synchronisation
        spent_s = sum(server.cpu_times()[:2]) - cpu0
        print(f"CPU while out of file descriptors: {spent_s:.2f} s in 2 s")
        assert spent_s < 0.5  # accept() failing with EMFILE on a readable socket spun a core
        for sock in held:
            sock.close()
        held = []
        wait_for(lambda: _status_or_none(port) == 200, 20, what="no scrape answered once the fds were free")
    finally:
        for sock in held:
            sock.close()
        proc.kill()
        proc.wait(10)


def _status_or_none(port: int) -> int | None:
    try:
        return raw_get(port, timeout_s=2)[0]
    except OSError:
        return None
