"""deploy/grafana: the dashboard JSON is what Grafana's file provisioning loads, templated by service/instance/GPU.

Grafana itself cannot be installed here; tests/deploy/test_fleet_e2e.py runs every panel's query against a real
Prometheus on the demo, and this test checks the structure Grafana relies on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from optitop.model import CATEGORIES

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "optitop-dashboard.json").read_text())
PANEL_TYPES = {"row", "timeseries", "state-timeline", "bargauge", "text"}


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = DASHBOARD["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    taken: set[tuple[int, int]] = set()
    for p in panels:
        assert p["type"] in PANEL_TYPES, p["type"]
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {(g["y"] + dy, g["x"] + dx) for dy in range(g["h"]) for dx in range(g["w"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_every_query_uses_the_datasource_variable_and_the_filters() -> None:
    queries = 0
    for p in DASHBOARD["panels"]:
        for t in p.get("targets", []):
            queries += 1
            assert t["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
            assert re.fullmatch(r"[A-Z]", t["refId"])
            assert 'service=~"$service"' in t["expr"], p["title"]
            if t["expr"].startswith("service:"):  # a recording rule: per service only
                continue
            assert 'instance=~"$instance"' in t["expr"], p["title"]
            if "optitop_gpu_" in t["expr"]:
                assert 'gpu=~"$gpu"' in t["expr"], p["title"]
    assert queries >= 15
    names = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert set(names) == {"datasource", "service", "instance", "gpu"}
    for name in ("service", "instance", "gpu"):
        assert names[name]["includeAll"] and names[name]["allValue"] == ".*"


def test_the_verdict_timeline_names_every_class() -> None:
    verdict = next(p for p in DASHBOARD["panels"] if p["type"] == "state-timeline" and p["title"].startswith("Verdict"))
    expr = verdict["targets"][0]["expr"]
    mapping = verdict["fieldConfig"]["defaults"]["mappings"][0]["options"]
    for category in CATEGORIES:
        code = re.search(rf'category="{category}"\}} > 0\) \* 0 \+ (\d+)', expr)
        assert code, category
        assert mapping[code.group(1)]["text"] == category


def test_provisioning_points_at_a_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "optitop.yml").read_text())
    assert provider["apiVersion"] == 1
    assert provider["providers"][0]["type"] == "file" and provider["providers"][0]["options"]["path"]
    source = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert source["datasources"][0]["type"] == "prometheus"
