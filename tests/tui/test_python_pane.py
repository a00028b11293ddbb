"""The Python pane renders py-spy results literally and ranks what matters first."""

from __future__ import annotations

import time
from dataclasses import replace

from optitop.model import HotFunction, PyStacksSample, PyThread, SourceState, SourceStatus, TargetInfo, Window
from optitop.tui.panes.python import PythonPane


def window(sample: PyStacksSample | None, state: SourceState = SourceState.OK, reason: str = "") -> Window:
    return Window(
        samples={"pystacks": (sample,)} if sample else {},
        statuses={"pystacks": SourceStatus("pystacks", state, reason)},
        target=TargetInfo(1, "t", "t", "u", 0.0, "h"),
        now_mono_s=time.monotonic(),
        span_s=10.0,
    )


def sample() -> PyStacksSample:
    now = time.monotonic()
    return PyStacksSample(
        ts_s=time.time(),
        mono_s=now,
        dt_s=2.0,
        mode="record",
        window_s=2.0,
        samples=120,
        threads=(
            PyThread(11, "[bold]net[/]", 40, 5.0, 2.0, "recv (server.py:11)", "network", (("network", 0.95),)),
            PyThread(12, "model-worker", 40, 97.0, 95.0, "forward (model.py:3)", "", (("active", 0.97),)),
        ),
        gil_pct=95.0,
        active_pct=97.0,
        waits=(("active", 0.5), ("network", 0.45), ("sleep", 0.05)),
        hot=(HotFunction("forward", "model.py:3", 60.0, 97.0, False),),
        native_mix=None,
        native_age_s=None,
        trigger="",
    )


def test_threads_waits_and_hot_functions_are_shown_literally():
    text = PythonPane().build(window(sample()), 100).plain
    assert "[bold]net[/]" in text  # a name with markup is text
    assert "model-worker" in text and "network" in text
    assert "forward" in text and "model.py:3" in text


def test_pane_is_not_rebuilt_while_only_the_sources_timing_moves():
    """A stacks window arrives every few seconds; the pane must not be rebuilt on every tick meanwhile."""
    pane, got = PythonPane(), sample()
    first, later = window(got), window(got)
    later.statuses["pystacks"] = replace(later.statuses["pystacks"], latency_s=0.01, last_ok_mono_s=time.monotonic())
    assert pane.inputs(first) == pane.inputs(later)
    failing = window(got, SourceState.ERROR, "py-spy exited")
    assert pane.inputs(failing) != pane.inputs(first)
    newer = window(replace(got, mono_s=got.mono_s + 6.0))
    assert pane.inputs(newer) != pane.inputs(first)


def test_unavailable_source_says_why_in_one_line():
    text = PythonPane().build(window(None, SourceState.UNAVAILABLE, "no Python stacks: not a Python process"), 80).plain
    assert "not a Python process" in text
    assert len(text.splitlines()) <= 2


def test_stacks_of_a_python_child_say_whose_they_are():
    own = PythonPane().build(window(sample()), 100).plain
    assert "Python child" not in own  # the target's own stacks need no note (target pid 1, stacks_pid None)
    child = PythonPane().build(window(replace(sample(), stacks_pid=4321)), 100).plain
    assert "stacks of its busiest Python child, pid 4321" in child
