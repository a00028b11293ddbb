"""deploy/kubernetes: the example manifests parse and say what attaching needs, and the Prometheus config is valid.

No schema validator (kubeconform, a cluster for ``kubectl --dry-run=server``) can be had here, so this is a
structural check of the fields that make optitop work in a pod: the shared PID namespace or hostPID,
SYS_PTRACE, the exporter's command, and scrape annotations that point at the port it listens on.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
OPTITOP = os.path.join(os.path.dirname(sys.executable), "optitop")


def objects(name: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    for d in docs:
        assert d["apiVersion"] and d["kind"] and d["metadata"]["name"], d
    return docs


def workload(name: str, kind: str) -> dict:
    found = [d for d in objects(name) if d["kind"] == kind]
    assert len(found) == 1, f"{name}: one {kind}"
    spec = found[0]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    return spec["template"]


def exporter_argv(container: dict) -> list[str]:
    """The `optitop export ...` command inside the container's retry loop."""
    script = " ".join([*container.get("command", []), *container.get("args", [])])
    start = script.index("optitop export")
    return shlex.split(script[start:].split("&", 1)[0])


def check_optitop_container(template: dict) -> tuple[dict, list[str]]:
    spec = template["spec"]
    optitop = next(c for c in spec["containers"] if c["name"] == "optitop")
    assert "SYS_PTRACE" in optitop["securityContext"]["capabilities"]["add"]  # py-spy
    assert not optitop["securityContext"].get("privileged")
    assert optitop["resources"]["limits"]["cpu"]  # the exporter has a budget
    argv = exporter_argv(optitop)
    assert argv[:2] == ["optitop", "export"]
    listen = argv[argv.index("--listen") + 1]
    port = int(listen.rsplit(":", 1)[1])
    assert listen.startswith(":"), "scraped from another pod: listen on every interface"
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"
    assert {"name": "metrics", "containerPort": port} in optitop["ports"]  # what prometheus.yml keeps
    assert template["metadata"]["labels"]["service"]  # relabelled to `service` for the rules
    return spec, argv


def test_sidecar_shares_the_pod_pid_namespace_and_finds_the_server_by_port() -> None:
    template = workload("sidecar.yaml", "Deployment")
    spec, argv = check_optitop_container(template)
    assert spec["shareProcessNamespace"] is True
    assert not spec.get("hostPID")
    server = next(c for c in spec["containers"] if c["name"] != "optitop")
    server_port = int(argv[argv.index("--port") + 1])
    assert server_port in {p["containerPort"] for p in server["ports"]}  # same network namespace: --port works


def test_daemonset_uses_the_host_pid_namespace_and_finds_the_server_by_name() -> None:
    template = workload("daemonset.yaml", "DaemonSet")
    spec, argv = check_optitop_container(template)
    assert spec["hostPID"] is True  # host pids, as NVML reports them
    assert "--name" in argv and "--port" not in argv  # pods' sockets live in other network namespaces
    docs = objects("daemonset.yaml")
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    assert daemonset["metadata"]["namespace"] in namespaces


def test_the_in_cluster_prometheus_config_is_valid(tmp_path: Path) -> None:
    """promtool check config on deploy/kubernetes/prometheus.yml, with the pod discovery swapped for a static
    target: Debian's Prometheus is built without Kubernetes discovery (it rejects kubernetes_sd_configs), and
    the relabelling, the rule file and everything else are still checked as written."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is absent: apt-get install prometheus (Debian package; `make test-deps`)")
    config = yaml.safe_load((K8S / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": ["pod:9400"]}]
    config["rule_files"] = [str(ROOT / "deploy" / "prometheus" / "optitop-rules.yml")]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    relabelled = {r.get("target_label") for r in job["relabel_configs"]}
    assert {"service", "instance", "__metrics_path__"} <= relabelled


def test_the_sidecars_retry_loop_serves_follows_a_restarted_server_and_stops_on_sigterm(start_target) -> None:
    """The sidecar's own shell command, run here with the server's port and the listen address swapped for
    free ones: it serves the server found by --port, comes back on a new server after the first one exits
    (the exporter exits with its target), and stops cleanly on SIGTERM, as the kubelet sends it."""
    optitop = next(c for c in workload("sidecar.yaml", "Deployment")["spec"]["containers"] if c["name"] == "optitop")
    script = optitop["args"][0]
    server_code = """
        import socket
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", PORT))
        srv.listen()
        ready()
        time.sleep(600)
        """
    first = start_target(server_code.replace("PORT", "0"))
    port = wait_for(lambda: [c.laddr.port for c in psutil.Process(first.pid).net_connections("tcp")], 10)[0]
    metrics = free_port()
    script = script.replace("--port 8000", f"--port {port}").replace("--listen :9400", f"--listen 127.0.0.1:{metrics}")
    script = script.replace("optitop export", f"{OPTITOP} export").replace("--interval 2", "--interval 0.5")
    loop = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: watched_pid(metrics) == first.pid, 30, every_s=0.2, what="first server not served")
        first.kill()
        second = start_target(server_code.replace("PORT", str(port)))  # the restarted server, same port
        assert wait_for(lambda: watched_pid(metrics) == second.pid, 40, every_s=0.2, what="restarted server missed")
        exporter = psutil.Process(loop.pid).children()
    finally:
        loop.send_signal(signal.SIGTERM)
        rc = loop.wait(15)
    assert rc == 0
    assert [p.pid for p in exporter] and not [p for p in exporter if p.is_running() and p.status() != "zombie"]


def watched_pid(port: int) -> int | None:
    """The pid in optitop_target_info at http://127.0.0.1:PORT/metrics, or None while nothing serves."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    found = re.search(r'optitop_target_info\{[^}]*pid="(\d+)"', text)
    return int(found.group(1)) if found else None
