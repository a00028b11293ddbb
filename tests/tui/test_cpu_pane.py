"""The CPU pane's text, built from samples: what it adds to the per-thread rows."""

from __future__ import annotations

import time

from samplefactory import process_sample

from optitop.model import SourceState, SourceStatus, TargetInfo, ThreadSample, Window
from optitop.tui.panes.cpu import CpuPane


def window(**fields: object) -> Window:
    now = time.monotonic()
    threads = (ThreadSample(11, 4242, "pool-thread", "S", 4.0),)
    return Window(
        samples={"process": (process_sample(time.time(), now, threads=threads, **fields),)},
        statuses={"process": SourceStatus("process", SourceState.OK)},
        target=TargetInfo(4242, "t", "t", "u", 0.0, "h"),
        now_mono_s=now,
        span_s=10.0,
    )


def test_cpu_of_threads_that_ended_between_samples_is_named():
    text = CpuPane().build(window(cpu_pct=150.0, exited_threads_cpu_pct=146.0), 100).plain
    assert "146% in exited threads" in text  # the rows show 4 %: the line says where the rest went
    quiet = CpuPane().build(window(cpu_pct=12.0, exited_threads_cpu_pct=3.0), 100).plain
    assert "exited threads" not in quiet  # tick rounding is not news
