"""deploy/kubernetes: the example manifests parse and say what attaching needs, and the Prometheus config is valid.

No schema validator (kubeconform, a cluster for ``kubectl --dry-run=server``) can be had here, so this is a
structural check of the fields that make optitop work in a pod: the shared PID namespace or hostPID,
SYS_PTRACE, the exporter's command, and scrape annotations that point at the port it listens on.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"


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
