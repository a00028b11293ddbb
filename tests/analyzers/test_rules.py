"""The rules table: well-formed data, every rule fires on its side of the threshold only, fixes name the knobs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from optitop.analyzers.rules import HIERARCHY, OPS, ORIGINS, RULES, Cond, Rule
from optitop.analyzers.scoring import SCORED, evaluate, score_class
from optitop.analyzers.signals import SIGNAL_NAMES, Signals
from optitop.analyzers.verdict import render_evidence
from optitop.analyzers.wording import FIXES, SIGNAL_LABELS, SIGNAL_SOURCES, fix_text

ROOT = Path(__file__).resolve().parents[2]
IDS = [r.id for r in RULES]


def _satisfy(cond: Cond) -> float:
    """A value on the firing side of ``cond``."""
    step = max(abs(cond.threshold) * 0.01, 0.01)
    return {">=": cond.threshold, ">": cond.threshold + step, "<=": cond.threshold, "<": cond.threshold - step}[cond.op]


def _violate(cond: Cond) -> float:
    """A value just on the other side of ``cond``."""
    step = max(abs(cond.threshold) * 0.01, 0.01)
    return {">=": cond.threshold - step, ">": cond.threshold, "<=": cond.threshold + step, "<": cond.threshold}[cond.op]


def _firing(rule: Rule) -> dict[str, float]:
    values = {c.signal: _satisfy(c) for c in rule.when}
    values[rule.signal] = _satisfy(rule.cond)
    return values


def test_rule_ids_are_unique():
    assert len(IDS) == len(set(IDS))


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_rule_is_well_formed(rule: Rule):
    assert rule.category in SCORED
    assert rule.branch in ("any", "gpu", "cpu")
    assert rule.op in OPS and all(c.op in OPS for c in rule.when)
    assert rule.origin in ORIGINS and rule.source
    assert -1.0 <= rule.weight <= 1.0 and rule.weight != 0
    for name in rule.signals:
        assert name in SIGNAL_NAMES, f"{rule.id}: {name} is not a Signals field"
        assert name in SIGNAL_LABELS and name in SIGNAL_SOURCES, f"{rule.id}: {name} needs a label and a source"
    if rule.weight > 0:
        assert rule.fix in FIXES, f"{rule.id}: evidence for a class must name a fix"
    else:
        assert rule.fix == ""


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_rule_fires_only_on_its_side_of_the_threshold(rule: Rule):
    fire = Signals(**_firing(rule))
    assert evaluate(rule, fire).fired is True
    miss = Signals(**{**_firing(rule), rule.signal: _violate(rule.cond)})
    assert evaluate(rule, miss).fired is False
    unknown = Signals(**{k: v for k, v in _firing(rule).items() if k != rule.signal})
    assert evaluate(rule, unknown).fired is None  # a missing signal is never read as a threshold crossing
    for cond in rule.when:
        gated = Signals(**{**_firing(rule), cond.signal: _violate(cond)})
        assert evaluate(rule, gated).fired is False, f"{rule.id}: its condition on {cond.signal} must gate it"


@pytest.mark.parametrize("rule", RULES, ids=IDS)
def test_evidence_renders_with_numbers(rule: Rule):
    signals = Signals(**_firing(rule))
    line = render_evidence(evaluate(rule, signals), signals)
    assert "{" not in line and "(now" not in line  # the template formatted, no fallback
    if "{v" in rule.evidence:
        assert any(ch.isdigit() for ch in line)


def test_guard_that_may_be_unknown_is_assumed_to_hold():
    launch = next(r for r in RULES if r.id == "host.launch")
    assert any(c.if_unknown for c in launch.when)
    hit = evaluate(launch, Signals(gpu_graphics_pct=26, gpu_sm_pct=0.03))  # no PCIe numbers
    assert hit.fired is True
    assert evaluate(launch, Signals(gpu_graphics_pct=26, gpu_sm_pct=0.03, gpu_pcie_link_pct=27)).fired is False


# The H100 measurements in ARCHITECTURE.md, as the GPU signals they produce.
H100 = {
    "matmul": {"gpu_busy_pct": 78, "gpu_sm_pct": 78, "gpu_tensor_pct": 75, "gpu_dram_pct": 23, "gpu_graphics_pct": 99},
    "copy": {"gpu_busy_pct": 99.5, "gpu_sm_pct": 99.5, "gpu_tensor_pct": 0, "gpu_dram_pct": 90},
    "pcie": {"gpu_busy_pct": 0, "gpu_sm_pct": 0, "gpu_tensor_pct": 0, "gpu_dram_pct": 1, "gpu_graphics_pct": 40,
             "gpu_pcie_bytes_per_s": 17e9, "gpu_pcie_link_pct": 27},
    "tiny": {"gpu_busy_pct": 0.03, "gpu_sm_pct": 0.03, "gpu_tensor_pct": 0, "gpu_dram_pct": 0, "gpu_graphics_pct": 26,
             "gpu_pcie_link_pct": 0.1},
}  # fmt: skip


@pytest.mark.parametrize(
    ("workload", "expected"),
    [("matmul", "compute"), ("copy", "memory_io"), ("pcie", "memory_io"), ("tiny", "host_cpu")],
)
def test_measured_gpu_workloads_score_their_class_highest(workload, expected):
    signals = Signals(gpu_devices=1, gpu_used_by_target=True, **H100[workload])
    scores = {c: score_class(c, signals, "gpu").score for c in ("compute", "memory_io", "host_cpu")}
    assert max(scores, key=lambda c: scores[c]) == expected, scores
    assert scores[expected] >= 0.5


def test_hierarchy_order_is_top_down():
    assert [level for level, _ in HIERARCHY] == ["idle", "scheduling", "busy", "network"]
    assert all(0 < gate < 1 for _, gate in HIERARCHY)


def test_every_fix_has_generic_text():
    for key, table in FIXES.items():
        assert table.get("*"), f"{key} needs a generic text for unknown servers"


@pytest.mark.parametrize(
    ("server", "key", "knobs"),
    [
        ("vllm", "sched_admission", ("--max-num-seqs", "--max-num-batched-tokens")),
        ("vllm", "mem_kv", ("--gpu-memory-utilization", "--kv-cache-dtype")),
        ("vllm", "compute_precision", ("--enable-chunked-prefill",)),
        ("tgi", "sched_admission", ("--max-batch-prefill-tokens",)),
        ("tgi", "mem_kv", ("--max-concurrent-requests",)),
        ("triton", "sched_admission", ("max_queue_delay_microseconds",)),
        ("triton", "sched_workers", ("instance_group", "count")),
        ("sglang", "sched_admission", ("--schedule-conservativeness",)),
        ("pytorch", "compute_precision", ("torch.compile", "bf16")),
        ("pytorch", "mem_pcie", ("pin_memory", "non_blocking", "DataLoader")),
        ("pytorch", "host_gil", ("tokenisation", "GIL")),
        ("pytorch", "sched_admission", ("batch",)),
    ],
)
def test_server_fixes_name_the_knob(server, key, knobs):
    text = fix_text(key, server)
    assert text != FIXES[key]["*"]
    for knob in knobs:
        assert knob in text


def test_unknown_server_gets_generic_advice():
    assert fix_text("sched_admission", "some-home-grown-server") == FIXES["sched_admission"]["*"]
    assert fix_text("sched_admission", None) == FIXES["sched_admission"]["*"]
    assert fix_text("no-such-fix", "vllm") == ""


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_analyzer_doc", ROOT / "scripts" / "gen_analyzer_doc.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_doc_matches_the_generator():
    gen = _load_generator()
    committed = (ROOT / "docs" / "ANALYZER.md").read_text(encoding="utf-8")
    assert committed == gen.render(), "docs/ANALYZER.md is stale: run .venv/bin/python scripts/gen_analyzer_doc.py"


def test_doc_lists_every_rule_and_its_origin():
    text = _load_generator().render()
    for rule in RULES:
        assert f"`{rule.id}`" in text
    assert "measured: H100 bf16 matmul loop: SM 78 %, tensor 75 %, DRAM 23 %" in text
