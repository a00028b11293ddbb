"""deploy/prometheus: the rules pass `promtool check rules`, their unit tests pass, and the alerts carry the fixes.

promtool comes with Debian's ``prometheus`` package (``make test-deps`` installs it); without it these skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from optitop.analyzers.rules import rules_for
from optitop.analyzers.wording import FIXES

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "optitop-rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))
#: The busy classes a host can be stuck in (idle/none/unknown are not incidents), and their alert names.
STUCK_ALERTS = {
    "compute": "OptitopStuckCompute",
    "memory_io": "OptitopStuckMemoryIo",
    "scheduling": "OptitopStuckScheduling",
    "network": "OptitopStuckNetwork",
    "host_cpu": "OptitopStuckHostCpu",
}


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool is absent: apt-get install prometheus (Debian package; `make test-deps`)")
    return binary


def alerts() -> dict[str, dict]:
    doc = yaml.safe_load(RULES.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_promtool_checks_the_rules() -> None:
    out = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_rule_unit_tests_pass() -> None:
    assert RULE_TESTS, "no deploy/prometheus/tests/*.test.yml"
    out = subprocess.run(
        [promtool(), "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_for_and_a_runbook_naming_optitop() -> None:
    found = alerts()
    others = {"OptitopSourceDown", "OptitopExporterCpuOverBudget", "OptitopTargetExited"}
    assert set(STUCK_ALERTS.values()) | others <= set(found)
    for name, rule in found.items():
        assert rule.get("for"), f"{name} has no for:"
        assert "optitop" in rule["annotations"]["runbook"], name
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, name
    for category, name in STUCK_ALERTS.items():
        assert f'category="{category}"' in found[name]["expr"]
        assert "optitop --pid {{ $labels.pid }}" in found[name]["annotations"]["runbook"]


def test_stuck_alerts_carry_the_analyzers_fixes() -> None:
    """The fixes in each alert are the analyzer's own generic wording: a change to FIXES must reach the rules."""
    found = alerts()
    for category, name in STUCK_ALERTS.items():
        keys = dict.fromkeys(r.fix for r in rules_for(category) if r.fix)
        assert keys, category
        lines = found[name]["annotations"]["fixes"].splitlines()
        assert lines == [f"- {FIXES[key]['*']}" for key in keys], name
