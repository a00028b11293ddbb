"""The Prometheus exporter: exposition parsed back with prometheus_client, and scraped by a real Prometheus."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import replace

import pytest
import samplefactory
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families

from optitop.collectors.serving import ServingStats
from optitop.exporter import export_main, parse_listen, prom_name, serve
from optitop.store import Store
from optitop.types import Diagnosis, Latency, SourceState, SourceStatus, TargetInfo


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
    server, _ = serve(store, "127.0.0.1", 0)
    try:
        got = scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
        store.add_diagnosis(
            Diagnosis("unknown", 0.0, latency=Latency(absent="no request metrics"), mono_s=time.monotonic())
        )
        absent = scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert value(got, "optitop_latency_residence_seconds") == 0.63
    assert value(got, "optitop_latency_cpu_demand_seconds") == 0.003
    assert value(got, "optitop_latency_waiting_seconds") == 0.627
    assert "optitop_latency_gpu_demand_seconds" not in got  # no GPU demand known: absent, never 0
    assert not any(name.startswith("optitop_latency_") for name in absent)


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
    assert export_main(["--pid", "999999999"]) == 2
    assert "no process with pid 999999999" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    code = "import sys; from optitop.exporter import export_main; sys.exit(export_main(sys.argv[1:]))"
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
