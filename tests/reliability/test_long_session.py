"""Long sessions: every series holds about the history, whatever its source's real pace, so memory is flat
after warm-up; and the target's name follows an exec() (the store side of it)."""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model import Sample, TargetInfo
from optitop.store import Store


@dataclass(frozen=True, slots=True)
class Tick(Sample):
    value: int


def _target() -> TargetInfo:
    return TargetInfo(pid=7, name="python", cmdline="python serve.py", username="u", create_time_s=1.0, host="h")


def test_a_source_slower_than_it_registered_holds_only_the_history():
    """py-spy windows come every few seconds though the session interval is 0.05 s: the count bound (sized
    from the interval) would keep 100 samples, i.e. minutes of history; the time bound keeps ~5 s."""
    store = Store(_target(), history_s=5.0)
    store.register("pystacks", 0.05)
    for i in range(1_000):
        store.add("pystacks", Tick(ts_s=float(i), mono_s=6.0 * i, dt_s=6.0, value=i))
    held = store.window(None).series("pystacks")
    assert [s.value for s in held] == [998, 999], "at least the last two stay: rates and panes need them"
    store.register("fast", 0.05)
    for i in range(10_000):
        store.add("fast", Tick(ts_s=0.0, mono_s=0.05 * i, dt_s=0.05, value=i))
    fast = store.window(None).series("fast")
    assert 95 <= len(fast) <= 112, len(fast)
    assert fast[-1].mono_s - fast[0].mono_s <= 5.5


def test_history_is_kept_in_full_for_sources_at_their_registered_pace():
    store = Store(_target(), history_s=10.0)
    store.register("c", 1.0)
    for i in range(100):
        store.add("c", Tick(ts_s=0.0, mono_s=float(i), dt_s=1.0, value=i))
    held = [s.value for s in store.window(None).series("c")]
    assert held[-1] == 99 and held[0] <= 89, "the whole history window must stay available"


def test_rename_target_updates_name_and_cmdline_once():
    store = Store(_target())
    heard: list[str] = []
    store.subscribe(heard.append)
    assert store.rename_target("sleep", "sleep 30") is True
    assert store.rename_target("sleep", "sleep 30") is False
    assert (store.target.name, store.target.cmdline, store.target.pid) == ("sleep", "sleep 30", 7)
    assert heard == ["target"]
    assert store.latest("missing") is None
    store.add("x", Tick(ts_s=0.0, mono_s=1.0, dt_s=None, value=3))
    latest = store.latest("x")
    assert isinstance(latest, Tick) and latest.value == 3
