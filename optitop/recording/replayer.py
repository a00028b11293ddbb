"""Replaying a recording: a store whose clock is the replay position, fed in time order, re-judged as it goes.

The analyzer re-runs on the replayed data, so a newer analyzer can re-judge an old recording (the verdicts
stored in the file are ``compare``'s). The store holds what the live store would hold at that recorded time,
no more: samples a backward seek passes are kept as unread lines, and only those the store would still hold
are rebuilt.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import deque
from collections.abc import Callable

from optitop.model import Diagnosis, TargetInfo, Window
from optitop.recording.codec import SAMPLE, SELF, STATUS, TARGET, Event
from optitop.recording.reader import UNREAD_SAMPLE, UNREAD_STATE, read_unread
from optitop.recording.scan import Recording
from optitop.store import Store

#: Seconds a seek or step re-judges at most (the analyzer runs once per interval of recorded time).
REJUDGE_SPAN_S = 12.0


class ReplayStore(Store):
    """A store whose clock is the replay position, so windows cut at recorded time, not at now."""

    def __init__(self, target: TargetInfo, history_s: float, clock_mono_s: float) -> None:
        """An empty store at ``clock_mono_s`` of recorded time."""
        super().__init__(target, history_s=history_s)
        self.clock_mono_s = clock_mono_s

    def now_mono_s(self) -> float:
        """The replay position: windows are cut, and events stamped, at recorded time."""
        return self.clock_mono_s

    def bound(self, name: str) -> int:
        """How many samples of ``name`` the store keeps at most."""
        return self._maxlen(self._intervals.get(name, 1.0))

    def hold(self, held: deque[Event], event: Event) -> None:
        """Append ``event`` to ``held`` and drop what the store would drop from a series (same rules)."""
        held.append(event)
        self._drop_older_than_history(held, event.mono_s)  # type: ignore[arg-type]  # events have mono_s too


Judge = Callable[[Window, object], tuple[Diagnosis, object]]


def _default_judge() -> Judge:
    from optitop.analyzers import judge

    return judge


class Replayer:
    """Feeds a recording into a fresh store in time order: play at a speed, pause, step and seek.

    Positions are recorded monotonic seconds. The analyzer runs once per recorded interval, over the
    analysis window, exactly as the live session's housekeeping does.
    """

    def __init__(
        self,
        recording: Recording,
        speed: float = 1.0,
        analyzer: Judge | None = None,
        analysis_window_s: float | None = None,
    ) -> None:
        """Prepare to replay ``recording`` from its start (paused until ``play``/``tick``)."""
        self.recording = recording
        self.speed = speed
        self.paused = False
        self._judge = analyzer if analyzer is not None else _default_judge()
        opts = recording.header.get("options", {})
        self.analysis_window_s = analysis_window_s or float(opts.get("analysis_window_s", 10.0) or 10.0)
        self.history_s = float(opts.get("history_s", 600.0) or 600.0)
        self.interval_s = recording.interval_s
        self.start_mono_s = recording.start_mono_s
        self.end_mono_s = recording.end_mono_s
        self._last_tick_wall: float | None = None
        self.store: ReplayStore = self._fresh_store()
        self._rewind()

    def _reset(self, unread_before_s: float = -math.inf) -> None:
        """Back to the start: the same store object (the app holds it), emptied and seeded again."""
        self._refill(self.store)
        self._rewind(unread_before_s)

    def _rewind(self, unread_before_s: float = -math.inf) -> None:
        # A streamed recording is read again from its start: backward seeks cost a pass over the file, but
        # memory stays what the store holds, and the store ends up exactly as a replay from the start. Samples
        # before the seek's target stay unread lines in ring buffers sized as the store's (``_hold``): only
        # those the store would still hold are rebuilt (``_flush``).
        self._events = self.recording.iter_events(unread_before_s)
        self._unread: dict[str, deque[Event]] = {}
        self._unread_state: dict[str, Event] = {}
        self._pending: Event | None = next(self._events, None)
        self._state: object = None
        self.position_mono_s = self.start_mono_s
        self._next_judge = self.start_mono_s + self.interval_s
        self.diagnoses_made = 0

    def _fresh_store(self) -> ReplayStore:
        store = ReplayStore(self.recording.target, self.history_s, self.start_mono_s)
        self._seed(store)
        return store

    def _refill(self, old: ReplayStore) -> ReplayStore:
        """Empty the same store object (the app holds a reference to it) and seed it again; the history the user
        chose with +/- is kept."""
        old.clear(self.recording.target)
        old.clock_mono_s = self.start_mono_s
        self._seed(old)
        return old

    def _seed(self, store: ReplayStore) -> None:
        for series in self.recording.series_names():
            store.register(series, self.interval_s)
        for status in self.recording.initial_statuses.values():
            store.set_status(status)

    # -- position --------------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The recording's file."""
        return self.recording.path

    @property
    def at_end(self) -> bool:
        """True when every event has been replayed."""
        return self.position_mono_s >= self.end_mono_s

    @property
    def elapsed_s(self) -> float:
        """Recorded seconds since the start of the recording."""
        return self.position_mono_s - self.start_mono_s

    @property
    def duration_s(self) -> float:
        """The recording's length in seconds."""
        return self.end_mono_s - self.start_mono_s

    def wall_time(self) -> float:
        """The wall-clock time of the current position, as it was when recorded."""
        return self.recording.wall_time(self.position_mono_s)

    def advance_to(self, mono_s: float) -> None:
        """Replay forward to ``mono_s`` (clamped to the end); the analyzer runs at each interval crossed."""
        target = min(mono_s, self.end_mono_s)
        if target < self.position_mono_s:
            self.seek(target)
            return
        # After a long jump only the last REJUDGE_SPAN_S are judged: enough for hysteresis to settle.
        first_judged = target - REJUDGE_SPAN_S
        while self._next_judge <= target:
            self._apply_until(self._next_judge)
            if self._next_judge >= first_judged:
                self._judge_at(self._next_judge)
            self._next_judge += self.interval_s
        self._apply_until(target)
        self.position_mono_s = target
        self.store.clock_mono_s = target

    def seek(self, mono_s: float) -> None:
        """Jump to ``mono_s`` (backwards replays from the start into an emptied store)."""
        target = max(self.start_mono_s, min(mono_s, self.end_mono_s))
        if target < self.position_mono_s:
            self._reset(unread_before_s=target)
        self.advance_to(target)
        if self._unread or self._unread_state:
            self._flush()

    def seek_by(self, seconds: float) -> None:
        """Jump ``seconds`` of recorded time forward (or back when negative)."""
        self.seek(self.position_mono_s + seconds)

    def step(self) -> None:
        """Pause and move one sampling interval forward."""
        self.paused = True
        self.advance_to(self.position_mono_s + self.interval_s)

    def toggle_pause(self) -> None:
        """Pause or resume playback."""
        self.paused = not self.paused
        self._last_tick_wall = None

    def tick(self, now_s: float | None = None) -> bool:
        """Advance by the wall time since the previous tick times the speed; True when the position moved."""
        now = time.monotonic() if now_s is None else now_s
        last, self._last_tick_wall = self._last_tick_wall, now
        if self.paused or last is None or self.at_end:
            return False
        before = self.position_mono_s
        self.advance_to(before + (now - last) * self.speed)
        return self.position_mono_s != before

    def run_to_end(self) -> None:
        """Replay everything (tests, compare)."""
        self.advance_to(self.end_mono_s)

    # -- feeding the store -----------------------------------------------------------------------------
    def _apply_until(self, mono_s: float) -> None:
        while self._pending is not None and self._pending.mono_s <= mono_s:
            self._apply(self._pending)
            self._pending = next(self._events, None)
        self.store.clock_mono_s = max(self.store.clock_mono_s, mono_s)

    def _apply(self, event: Event) -> None:
        if event.kind == UNREAD_SAMPLE:
            self._hold(event)
            return
        if event.kind == UNREAD_STATE:
            self._unread_state[event.series] = event  # only the latest status (target, cost) counts
            return
        if self._unread or self._unread_state:
            self._flush()
        if event.kind == SAMPLE:
            self.store.add(event.series, event.value)
        elif event.kind == STATUS:
            self.store.set_status(event.value)
        elif event.kind == TARGET:
            self.store.set_target(event.value)
        elif event.kind == SELF:
            self.store.set_self_cost(event.value)

    def _hold(self, event: Event) -> None:
        """Keep an unread sample line as the store would keep its sample (the same count and time bounds)."""
        held = self._unread.get(event.series)
        if held is None:
            held = self._unread[event.series] = deque(maxlen=self.store.bound(event.series))
        self.store.hold(held, event)

    def _flush(self) -> None:
        """Rebuild the held lines: samples into the store oldest first, then the latest of each status."""
        unread, self._unread = self._unread, {}
        states, self._unread_state = self._unread_state, {}
        for held in unread.values():
            for event in held:
                got = read_unread(event)
                if got is not None:
                    self._apply(got)
        for event in states.values():
            got = read_unread(event)
            if got is not None:
                self._apply(got)

    def _judge_at(self, mono_s: float) -> None:
        if self._unread or self._unread_state:
            self._flush()
        window = self.store.window(self.analysis_window_s, now_mono_s=mono_s)
        try:
            diagnosis, self._state = self._judge(window, self._state)
        except Exception as exc:  # an analyzer bug: the replay goes on, and the verdict says why there is none
            from optitop.analyzers import analyzer_failed

            diagnosis, self._state = analyzer_failed(window, exc), None
        if diagnosis.mono_s != mono_s:
            diagnosis = dataclasses.replace(diagnosis, mono_s=mono_s, ts_s=self.recording.wall_time(mono_s))
        self.store.add_diagnosis(diagnosis)
        self.diagnoses_made += 1
