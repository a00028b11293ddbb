"""Seeking back in a replay refills the store the screen holds: same object, same listeners, and the history the
user chose with +/- (the refill used to rebuild the buffers at the recording's history while the store still said
the user's)."""

from __future__ import annotations

import samplefactory

from optitop.model import ProcessSample, TargetInfo
from optitop.recording.replayer import Replayer
from optitop.recording.scan import load
from optitop.recording.writer import write_snapshot
from optitop.store import Store

WALL0 = 1_800_000_000.0


def test_a_backward_seek_keeps_the_store_its_listeners_and_the_chosen_history(tmp_path):
    source = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"), clock=lambda: 400.0)
    for i in range(300):
        source.add("process", samplefactory.process_sample(WALL0 + i, 100.0 + i, 1.0 if i else None, cpu_pct=float(i)))
    path = str(tmp_path / "run.jsonl")
    write_snapshot(source, path)
    replayer = Replayer(load(path))
    store = replayer.store
    heard: list[str] = []
    store.subscribe(heard.append)
    store.set_history(60.0)  # the user pressed -
    replayer.run_to_end()
    replayer.seek(replayer.start_mono_s + 250)  # backwards: the store is emptied and refilled
    assert replayer.store is store and store.history_s == 60.0
    kept = store.window().of("process", ProcessSample)
    assert kept[-1].cpu_pct == 250.0
    assert kept[-1].mono_s - kept[0].mono_s <= 1.1 * 60.0 + 1  # the chosen history, not the recording's 600 s
    heard.clear()
    replayer.seek(replayer.start_mono_s + 260)
    assert "process" in heard  # the screen still hears the refilled store
