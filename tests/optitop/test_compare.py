"""`optitop compare` on two recordings with known differences: deltas, better sides, fairness warnings."""

from __future__ import annotations

import json
import time

import pytest
import samplefactory
from conftest import wait_for

from optitop.commands.compare import compare_main, fmt_value
from optitop.model import Diagnosis, GpuDevice, GpuSample, ProcessSample, ServingSample, ServingStats, TargetInfo
from optitop.recording.compare import compare
from optitop.recording.scan import load
from optitop.recording.writer import Recorder
from optitop.store import Store

GIB = 1 << 30
N = 30


def device(name: str, sm: float, mem_gib: float) -> GpuDevice:
    values: dict = samplefactory.required_none(GpuDevice)
    values.update(
        index=0,
        uuid="GPU-1",
        name=name,
        util_source="gpm",
        sm_util_pct=sm,
        pcie_source="gpm",
        dram_bytes_per_s=1e12,
        pcie_rx_bytes_per_s=1e9,
        pcie_tx_bytes_per_s=2e9,
        throttle_reasons=(),
        target_pids=(1,),
        proc_util_note="",
        mem_used_bytes=int(mem_gib * GIB),
        pci_bus_id="",
        note="",
        missing=(),
    )
    return GpuDevice(**values)


def make_run(
    path: str,
    *,
    host: str = "gpu-box",
    gpu: str = "NVIDIA H100 80GB HBM3",
    rate: float,
    ttft: float,
    cpu: float,
    sm: float,
    mem_gib: float,
    compute_share: float,
) -> str:
    store = Store(TargetInfo(1, "python", "python serve.py", "me", 0.0, host))
    recorder = Recorder(store, path)
    recorder.start()
    t0 = time.monotonic() + 1.0
    for i in range(N):
        mono, wall = t0 + i, 1_800_000_000.0 + i
        stats = ServingStats(
            request_rate_per_s=rate,
            ttft_p50_s=ttft,
            ttft_p95_s=ttft * 3,
            requests_waiting=2.0,
            generation_tokens_per_s=rate * 50,
        )
        store.add("queue", ServingSample(wall, mono, 1.0, source="vllm @ http://x", profile="vllm", stats=stats))
        store.add(
            "process",
            ProcessSample(
                wall,
                mono,
                1.0,
                pid=1,
                cpu_pct=cpu,
                cpu_pct_of_allowed=None,
                allowed_cores=4,
                rss_bytes=1,
                vol_ctx_switches_per_s=None,
                invol_ctx_switches_per_s=None,
                minor_faults_per_s=None,
                major_faults_per_s=None,
                read_bytes_per_s=None,
                write_bytes_per_s=None,
                num_threads=1,
                num_fds=None,
                num_procs=1,
                status="running",
                threads=(),
                procs=(),
            ),
        )
        # the peak GPU memory is at the middle of the run
        used = mem_gib if i == N // 2 else mem_gib / 2
        store.add(
            "gpu",
            GpuSample(
                wall,
                mono,
                1.0,
                devices=(device(gpu, sm, used),),
                driver_version="580",
                nvml_version="13",
                target_gpu_indices=(0,),
                attribution_note="",
                host_dram_bw_note="",
            ),
        )
        category = "compute" if i < compute_share * N else "scheduling"
        store.add_diagnosis(Diagnosis(category, 0.8, ts_s=wall, mono_s=mono + 0.5))
    wait_for(lambda: recorder.events >= N * 4)
    recorder.stop()
    return path


@pytest.fixture
def runs(tmp_path):
    before = make_run(
        str(tmp_path / "before.jsonl"), rate=10.0, ttft=0.5, cpu=80.0, sm=60.0, mem_gib=40, compute_share=0.7
    )
    after = make_run(
        str(tmp_path / "after.jsonl.gz"), rate=12.0, ttft=0.3, cpu=60.0, sm=75.0, mem_gib=50, compute_share=1.0
    )
    return before, after


def by_metric(rows):
    return {r.metric: r for r in rows}


def test_rows_have_the_right_deltas_and_better_sides(runs):
    rows, warnings = compare(load(runs[0]), load(runs[1]))
    got = by_metric(rows)
    assert got["requests/s"].before == pytest.approx(10.0) and got["requests/s"].after == pytest.approx(12.0)
    assert got["requests/s"].delta == pytest.approx(2.0) and got["requests/s"].delta_pct == pytest.approx(20.0)
    assert got["requests/s"].better == "after"  # more throughput
    assert got["generated tokens/s"].better == "after"
    assert got["TTFT p50"].delta == pytest.approx(-0.2) and got["TTFT p50"].better == "after"  # lower latency
    assert got["TTFT p95"].before == pytest.approx(1.5)
    assert got["target CPU (of one core)"].better == "after"  # less CPU
    assert got["GPU busy (target)"].better == "after"
    assert got["GPU memory used (peak)"].before == pytest.approx(40 * GIB)  # the peak, not the mean
    assert got["GPU memory used (peak)"].better == "before"  # more memory is worse
    assert got["queue: waiting"].better == "same"
    assert got["GPU DRAM bandwidth"].better == "same"
    assert got["ITL p50"].better == "n/a"  # neither run had it
    assert got["time judged compute"].before == pytest.approx(70.0) and got["time judged compute"].after == 100.0
    assert got["time judged scheduling"].after == 0.0 and got["time judged scheduling"].better == ""
    assert warnings == []  # same host, same GPU, similar load, long enough


def test_unfair_comparisons_are_flagged(tmp_path):
    before = make_run(str(tmp_path / "a.jsonl"), rate=10.0, ttft=0.5, cpu=80, sm=60, mem_gib=40, compute_share=1)
    after = make_run(
        str(tmp_path / "b.jsonl"),
        host="other-box",
        gpu="NVIDIA A100-SXM4-40GB",
        rate=30.0,
        ttft=0.5,
        cpu=80,
        sm=60,
        mem_gib=40,
        compute_share=1,
    )
    _, warnings = compare(load(before), load(after))
    text = "\n".join(warnings)
    assert "different hosts: gpu-box vs other-box" in text
    assert "different GPUs: NVIDIA H100 80GB HBM3 vs NVIDIA A100-SXM4-40GB" in text
    assert "very different load: 10 vs 30 requests/s" in text


def test_compare_main_prints_a_table_and_json(runs, capsys):
    assert compare_main([runs[0], runs[1]]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("TTFT p50"))
    assert "500 ms" in line and "300 ms" in line and "-200 ms (-40%)" in line and line.endswith("after")
    assert compare_main([runs[0], runs[1], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["metric"]: r for r in doc["rows"]}
    assert rows["requests/s"]["better"] == "after" and doc["warnings"] == []
    assert doc["before"]["host"] == "gpu-box" and doc["after"]["gpus"] == ["NVIDIA H100 80GB HBM3"]


def test_compare_main_errors_are_one_line(tmp_path, capsys):
    assert compare_main([str(tmp_path / "nope.jsonl"), str(tmp_path / "nope2.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert compare_main([str(bad), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not an optitop recording" in err and err.count("\n") == 1


def test_bandwidth_reads_in_the_gpu_panes_units_and_sizes_in_binary():
    """16e9 B/s of PCIe is "16 GB/s" in the GPU pane and the specs: compare says the same, not "14.9 GiB/s"."""
    assert fmt_value(16e9, "B/s") == "16 GB/s"
    assert fmt_value(-3.35e12, "B/s") == "-3.35 TB/s"
    assert fmt_value(80 * 1024**3, "B") == "80.0 GiB"
