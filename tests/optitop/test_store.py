"""The store: bounded ring buffers, windows, exit marking."""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model import Diagnosis, Sample, SourceState, SourceStatus, TargetInfo
from optitop.store import Store


@dataclass(frozen=True, slots=True)
class Tick(Sample):
    value: float


def target() -> TargetInfo:
    return TargetInfo(pid=1, name="x", cmdline="x", username="u", create_time_s=0.0, host="h")


def test_series_are_bounded_by_history():
    store = Store(target(), history_s=10.0)
    store.register("c", interval_s=1.0)
    for i in range(10_000):
        store.add("c", Tick(ts_s=i, mono_s=float(i), dt_s=1.0, value=i))
    window = store.window(now_mono_s=10_000.0)
    assert 8 <= len(window.series("c")) <= 12  # history / interval, not 10 000
    assert window.latest("c").value == 9_999


def test_window_cuts_by_monotonic_time():
    store = Store(target(), history_s=100.0)
    for i in range(50):
        store.add("c", Tick(ts_s=0, mono_s=float(i), dt_s=1.0, value=i))
    window = store.window(span_s=5.0, now_mono_s=49.0)
    assert [s.value for s in window.series("c")] == [44, 45, 46, 47, 48, 49]
    assert [s.value for s in window.recent("c", 2.0)] == [47, 48, 49]
    assert window.series("missing") == () and window.latest("missing") is None


def test_history_can_shrink_and_grow():
    store = Store(target(), history_s=100.0)
    store.register("c", 1.0)
    for i in range(100):
        store.add("c", Tick(ts_s=0, mono_s=float(i), dt_s=1.0, value=i))
    store.set_history(20.0)
    assert len(store.window().series("c")) <= 22
    store.set_history(200.0)
    for i in range(100, 200):
        store.add("c", Tick(ts_s=0, mono_s=float(i), dt_s=1.0, value=i))
    assert len(store.window().series("c")) > 100


def test_listeners_hear_changes_and_exit_is_marked_once():
    store = Store(target())
    heard: list[str] = []
    store.subscribe(heard.append)
    store.set_status(SourceStatus("c", SourceState.OK))
    store.set_status(SourceStatus("c", SourceState.OK))  # unchanged: no second notification
    store.add_diagnosis(Diagnosis("unknown", 0.0))
    store.mark_target_exited("gone", at_s=5.0)
    store.mark_target_exited("again", at_s=9.0)
    assert heard == ["c", "diagnosis", "target"]
    assert store.target.exited and store.target.exited_at_s == 5.0 and store.target.exit_reason == "gone"


def test_since_returns_only_what_arrived_after_a_point():
    store = Store(target(), history_s=100.0)
    for i in range(50):
        store.add("c", Tick(ts_s=0, mono_s=float(i), dt_s=1.0, value=i))
    assert [s.value for s in store.since("c", 46.0)] == [47, 48, 49]
    assert [s.value for s in store.since("c", None, limit=2)] == [48, 49]
    assert store.since("c", 49.0) == () and store.since("missing", None) == ()
