"""Signals: window averages read from the model's typed samples, None (never 0) for what no source measured."""

from __future__ import annotations

import dataclasses

import pytest
from analyzer_fakes import (
    TARGET,
    gpu,
    gpu_device,
    gpu_sample,
    listen_queue,
    proc,
    py_thread,
    pystacks,
    serving,
    socket_sample,
    sockets,
    system,
    window,
)

from optitop.analyzers.signals import SIGNAL_NAMES, Signals, extract
from optitop.model import PyThread, ServingSample, ServingStats, Window


def test_empty_window_knows_nothing():
    s = extract(window())
    assert s.process_samples == 0
    assert s.sources == frozenset()
    numeric = [f.name for f in dataclasses.fields(Signals) if f.type in ("float | None", "int | None")]
    assert numeric, "Signals should carry numeric fields"
    assert all(getattr(s, name) is None for name in numeric)
    # statuses still say why each source is missing
    assert ("pystacks", "unavailable", "py-spy needs ptrace: run as root or set kernel.yama.ptrace_scope=0") in (
        s.statuses
    )


def test_process_averages_skip_the_first_rateless_sample():
    s = extract(window(proc(cpu=150, cores=2, threads=(("main", 95), ("worker", 55), ("idle", 0)), minor=3000)))
    assert s.process_samples == 6
    assert s.proc_cpu_pct == pytest.approx(150)  # the first sample's None is not averaged in as 0
    assert s.proc_cpu_of_allowed_pct == pytest.approx(75)
    assert s.allowed_cores == 2
    assert s.top_thread_cpu_pct == pytest.approx(95) and s.top_thread_name == "main"
    assert s.busy_threads == 2
    assert s.other_threads_cpu_pct == pytest.approx(55)
    assert s.minor_faults_per_s == pytest.approx(3000)
    assert s.minor_faults_per_cpu_s == pytest.approx(2000)  # per CPU-second: 3000 / 1.5
    assert s.major_faults_per_s == 0.0  # measured zero stays zero


def with_thread_counts(w: Window, runnable: int, busy: int) -> Window:
    """The window with the process collector's counts over every thread (the thread list keeps only some)."""
    samples = tuple(
        dataclasses.replace(s, runnable_threads=runnable, busy_threads=None if s.dt_s is None else busy)
        for s in w.samples["process"]
    )
    return dataclasses.replace(w, samples={**w.samples, "process": samples})


def test_thread_counts_come_from_every_thread_not_the_kept_list():
    # Kept list: one thread at 60 % (R), the rest idle; the collector counted 30 runnable, 3 busy over all.
    w = with_thread_counts(window(proc(cpu=190, threads=(("main", 60), ("idle", 0)))), runnable=30, busy=3)
    s = extract(w)
    assert s.runnable_threads == pytest.approx(30)
    assert s.busy_threads == 3


def test_thread_counts_fall_back_to_the_kept_list_for_old_recordings():
    s = extract(window(proc(cpu=190, threads=(("a", 60), ("b", 70), ("idle", 0)))))
    assert s.runnable_threads == pytest.approx(2)
    assert s.busy_threads == 2


def test_system_swap_adds_both_directions():
    s = extract(window(proc(), system(busy=40, swap_in=2e6, iowait=7)))
    assert s.host_cpu_busy_pct == pytest.approx(40)
    assert s.iowait_pct == pytest.approx(7)
    assert s.swap_bytes_per_s == pytest.approx(2e6)


def test_gpu_reads_only_the_targets_device():
    busy = gpu_device(index=0, sm_util_pct=95, tensor_util_pct=80, dram_bw_util_pct=20, target_mem_bytes=0)
    ours = gpu_device(
        index=1,
        sm_util_pct=10,
        tensor_util_pct=0,
        dram_bw_util_pct=5,
        graphics_util_pct=30,
        pcie_rx_bytes_per_s=17e9,
        pcie_tx_bytes_per_s=16e9,
        pcie_link_bytes_per_s=63e9,
        throttle_reasons=("power cap", "idle"),
    )
    samples = tuple(gpu_sample(1.0 + i, float(i), 1.0, devices=(busy, ours), target_gpu_indices=(1,)) for i in range(3))
    w = Window(samples={"gpu": samples}, statuses={}, target=TARGET, now_mono_s=3.0, span_s=3.0)
    s = extract(w)
    assert s.gpu_used_by_target is True and s.gpu_devices == 1
    assert s.gpu_sm_pct == pytest.approx(10)  # device 1, not the neighbour's 95
    assert s.gpu_busy_pct == pytest.approx(10)
    assert s.gpu_pcie_bytes_per_s == pytest.approx(17e9)  # the busier direction
    assert s.gpu_pcie_link_pct == pytest.approx(100 * 17 / 63)
    assert s.gpu_throttle == ("power cap",)  # the collector's words; idle does not limit
    assert s.gpu_util_source == "gpm"
    assert s.gpu_legacy_util_pct is None  # legacy numbers are not trusted on GPM devices


def test_gpu_legacy_device_uses_legacy_utilisation():
    s = extract(window(proc(), gpu(util_source="legacy", legacy_gpu_util_pct=97, legacy_mem_util_pct=40)))
    assert s.gpu_util_source == "legacy"
    assert s.gpu_busy_pct == pytest.approx(97)
    assert s.gpu_legacy_util_pct == pytest.approx(97) and s.gpu_legacy_mem_pct == pytest.approx(40)
    assert s.gpu_sm_pct is None


@pytest.mark.parametrize(
    ("indices", "target_mem", "expected"),
    [
        ((0,), None, True),  # NVML lists the target on device 0
        ((), 0, False),  # attributed, and the target holds no GPU memory
        ((), None, None),  # attribution impossible (PID namespace): judge all devices, unknown
    ],
)
def test_gpu_attribution(indices, target_mem, expected):
    s = extract(window(proc(), gpu(indices=indices, sm_util_pct=50, target_mem_bytes=target_mem)))
    assert s.gpu_used_by_target is expected
    assert s.gpu_sm_pct == pytest.approx(50)


def test_serving_prefers_metrics_and_fills_gaps_from_logs():
    metrics = serving(profile="vllm", requests_waiting=4, requests_running=6, max_running=64, preemptions_per_s=0.1)
    w = window(proc(), metrics)
    logs = tuple(
        ServingSample(s.ts_s, s.mono_s, s.dt_s, source="log", profile="vllm",
                      stats=ServingStats(requests_waiting=99, kv_cache_usage_pct=91))
        for s in w.series("queue")
    )  # fmt: skip
    w = dataclasses.replace(w, samples={**w.samples, "logs": logs})
    s = extract(w)
    assert s.requests_waiting == pytest.approx(4)  # the metrics win over the log's 99
    assert s.kv_cache_pct == pytest.approx(91)  # the log fills what the metrics lack
    assert s.requests_in_system == pytest.approx(10)
    assert s.batch_fill_pct == pytest.approx(100 * 6 / 64)
    assert s.preemptions_per_min == pytest.approx(6)
    assert s.serving_profile == "vllm" and s.framework == "vllm"
    assert {"queue", "logs"} <= s.sources


def test_sockets_sum_listeners_and_keep_queues():
    specs = sockets(inbound_conns=8, upstream_conns=3, upstream_send_q_bytes=70000, retrans_pct=2.5)
    w = window(proc(), specs)
    extra = listen_queue(port=9000, accept_queue=5)
    series = tuple(dataclasses.replace(x, listeners=(*x.listeners, extra)) for x in w.series("sockets"))
    s = extract(dataclasses.replace(w, samples={**w.samples, "sockets": series}))
    assert s.accept_queue == pytest.approx(5)
    assert s.inbound_conns == pytest.approx(8) and s.upstream_conns == pytest.approx(3)
    assert s.upstream_send_q_bytes == pytest.approx(70000)
    assert s.retrans_pct == pytest.approx(2.5)


def test_sockets_with_no_listeners_read_zero_accept_queue():
    w = window(proc(), sockets())
    series = tuple(dataclasses.replace(x, listeners=()) for x in w.series("sockets"))
    s = extract(dataclasses.replace(w, samples={**w.samples, "sockets": series}))
    assert s.accept_queue == 0.0


def test_pystacks_waits_are_shares_of_explained_time():
    spec = pystacks(
        threads=(("MainThread", 90, 85), ("worker", 20, 2)),
        waits=(("network", 0.3), ("queue", 0.1), ("sleep", 0.1), ("other", 0.5)),
        native=(("math", 0.2), ("memory", 0.3), ("alloc", 0.1), ("interpreter", 0.4)),
        frame="forward (torch/nn/modules/module.py:1751)",
    )
    s = extract(window(proc(), spec))
    assert s.py_wait_network == pytest.approx(0.6)  # 0.3 of the 0.5 whose cause is known
    assert s.py_parked == pytest.approx(0.4)
    assert s.py_top_active_pct == pytest.approx(90) and s.py_top_thread == "MainThread"
    assert s.py_top_gil_share == pytest.approx(85 / 90)
    assert s.native_memory == pytest.approx(0.4)  # memory + alloc
    assert s.native_interpreter == pytest.approx(0.4)
    assert s.framework == "pytorch"  # no serving profile; torch is in the stacks


def with_py_threads(w: Window, threads: tuple[PyThread, ...], waits: tuple[tuple[str, float], ...]) -> Window:
    samples = tuple(dataclasses.replace(x, threads=threads, waits=waits) for x in w.samples["pystacks"])
    return dataclasses.replace(w, samples={**w.samples, "pystacks": samples})


def test_bystander_threads_that_never_ran_do_not_count_as_parked():
    # Ray Serve computing flat out: two workers always active, executor and GC threads parked all window.
    workers = tuple(py_thread(tid=10 + i, name="worker", active_pct=100, waits=(("active", 1.0),)) for i in range(2))
    bystanders = tuple(py_thread(tid=20 + i, name="bystander", samples=20, waits=(("queue", 1.0),)) for i in range(3))
    # the process-wide waits count every thread: 3 of 5 parked
    w = with_py_threads(window(proc(cpu=190), pystacks()), workers + bystanders, (("active", 0.4), ("queue", 0.6)))
    s = extract(w)
    assert s.py_parked == pytest.approx(0.0)
    assert s.py_wait_queue == pytest.approx(0.6)  # the raw queue share is still reported as it is


def test_worker_that_ran_between_timers_still_counts_as_parked():
    # A batch worker parked on its timer 90 % of the time but running in between, beside a bystander.
    worker = py_thread(tid=10, name="batcher", active_pct=10, waits=(("active", 0.1), ("sleep", 0.9)))
    bystander = py_thread(tid=20, name="gc", waits=(("other", 1.0),))
    s = extract(with_py_threads(window(proc(cpu=5), pystacks()), (worker, bystander), (("other", 1.0),)))
    assert s.py_parked == pytest.approx(0.9)


def test_pystacks_without_native_mix_leave_it_unknown():
    s = extract(window(proc(), pystacks(threads=(("MainThread", 5, 1),), waits=(("other", 1.0),))))
    assert s.native_math is None and s.native_memory is None
    assert s.py_wait_network is None  # nothing explained: unknown, not 0
    assert s.py_active_pct == pytest.approx(5)


def test_samples_of_another_type_are_skipped_not_misread():
    """A series holding something other than its model type (an odd recording, a test) is not read at all."""

    @dataclasses.dataclass(frozen=True)
    class Sparse:
        ts_s: float
        mono_s: float
        dt_s: float | None
        threads: tuple = ()

    samples = tuple(Sparse(1.0 + i, float(i), 1.0, threads=(py_thread(1, "t", active_pct=50),)) for i in range(3))
    w = Window(samples={"pystacks": samples, "sockets": (socket_sample(1.0, 1.0, 1.0),)}, statuses={},
               target=TARGET, now_mono_s=3.0, span_s=3.0)  # fmt: skip
    s = extract(w)
    assert s.py_gil_pct is None and s.py_top_active_pct is None
    assert s.sources == frozenset({"sockets"})
    assert s.inbound_conns == 0.0


def test_every_field_is_readable_by_name():
    s = extract(window(proc(), system(), gpu(sm_util_pct=1), serving(), sockets(), pystacks()))
    for name in SIGNAL_NAMES:
        s.get(name)  # raises AttributeError if a name were wrong
    assert s.gpu_sm_pct == pytest.approx(1) and s.sources >= {"process", "system", "gpu", "queue", "sockets"}
