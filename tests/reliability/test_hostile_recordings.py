"""Hostile recordings: escape sequences in what a file says, files that never end, and files too big to hold.

A recording is anyone's file. What it says (the host, the user, the target's cmdline, a source's reason) is
shown escaped, never obeyed: a crafted header must not set the terminal's title or clear its screen, in the
replay screen, in ``compare``'s table or in a bundle's stack dump. ``/dev/zero``, a FIFO and a directory are
refused at once with one line and exit 2. A large recording is read in bounded memory: nothing holds every
event, and a single endless "line" stops the reading instead of filling memory.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import samplefactory
from conftest import wait_for

from optitop.bundle import Bundle, stack_dump
from optitop.commands.compare import compare_main
from optitop.commands.progress import ProgressLine, quiet_keys
from optitop.config import Options
from optitop.model import Diagnosis, SelfCost, SourceState, SourceStatus, TargetInfo, ThreadSample
from optitop.recording.codec import sample_line, to_jsonable
from optitop.recording.reader import MAX_LINE_BYTES
from optitop.recording.replayer import Replayer
from optitop.recording.scan import load, scan
from optitop.recording.writer import LineWriter, Recorder, header, write_snapshot
from optitop.store import Store

OPTITOP = str(Path(sys.executable).parent / "optitop")
TMUX = shutil.which("tmux")
#: Set the terminal's title to PWN, then clear the screen.
EVIL = "\x1b]0;PWN\x07\x1b[2J"
SHOWN = "\\x1b]0;PWN\\x07\\x1b[2J"
T0 = 5000.0
WALL0 = 1_800_000_000.0


def evil_target() -> TargetInfo:
    return TargetInfo(
        pid=4242,
        name=f"py{EVIL}",
        cmdline=f"python serve.py {EVIL}",
        username=f"me{EVIL}",
        create_time_s=WALL0 - 60,
        host=f"box{EVIL}",
    )


def write_evil_recording(path: str, seconds: int = 30, history_s: float = 600.0) -> None:
    """A real recording (the Recorder writes it) whose host, user, target and a status reason hold escapes."""
    store = Store(evil_target())
    recorder = Recorder(store, path, options=Options(history_s=history_s))  # the history the replay keeps
    recorder.start()
    store.set_status(SourceStatus("gpu", SourceState.UNAVAILABLE, reason=f"no GPU {EVIL}"))
    t0 = time.monotonic() - seconds - 1  # the recorder stamps status lines with the real clock: samples just before
    for i in range(seconds):
        threads = (ThreadSample(4243, 4242, f"worker{EVIL}", "R", 90.0),)
        store.add("process", samplefactory.process_sample(WALL0 + i, t0 + i, 1.0, threads=threads))
        store.add("system", samplefactory.system_sample(WALL0 + i + 0.1, t0 + i + 0.1))
        store.add_diagnosis(Diagnosis("compute", 0.8, evidence=(f"because {EVIL}",), ts_s=WALL0 + i, mono_s=t0 + i))
    wait_for(lambda: recorder.events >= 3 * seconds, timeout_s=10)
    recorder.stop()


def optitop(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPTITOP, *args], capture_output=True, text=True, timeout=timeout, check=False, cwd="/")


# -- escapes --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reader", [load, scan])
def test_nothing_read_from_a_recording_holds_a_control_character(tmp_path, reader):
    path = str(tmp_path / "evil.jsonl")
    write_evil_recording(path)
    assert EVIL.encode("unicode_escape") in Path(path).read_bytes() or "\\u001b" in Path(path).read_text()
    rec = reader(path)
    try:
        everything = {
            "header": rec.header,
            "target": to_jsonable(rec.target),
            "statuses": {k: to_jsonable(v) for k, v in rec.initial_statuses.items()},
            "events": [to_jsonable(e.value) for e in rec.iter_events()],
            "diagnoses": [to_jsonable(d) for d in rec.diagnoses],
        }
        text = json.dumps(everything, ensure_ascii=False)
        assert "\x1b" not in text and "\x07" not in text
        assert f"box{SHOWN}" == rec.header["host"] and rec.target.username == f"me{SHOWN}"
        reasons = [e.value.reason for e in rec.iter_events() if e.kind == "status" and e.series == "gpu"]
        assert reasons == [f"no GPU {SHOWN}"]
    finally:
        rec.close()


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install tmux)")
def test_replay_of_a_crafted_recording_neither_retitles_nor_clears_the_terminal(tmp_path):
    path = str(tmp_path / "evil.jsonl")
    write_evil_recording(path, seconds=60)
    name = f"optitop-evil-{uuid.uuid4().hex[:8]}"

    def tmux(*args: str) -> str:
        return subprocess.run([TMUX, *args], capture_output=True, text=True, check=False).stdout

    tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "30", f"env TERM=xterm-256color {OPTITOP} replay {path}")
    try:
        tmux("set-option", "-t", name, "allow-rename", "on")
        screen = wait_for(lambda: (s := tmux("capture-pane", "-p", "-t", name)) and "REPLAY" in s and s, 30)
        wait_for(lambda: "\\x1b" in tmux("capture-pane", "-p", "-t", name), 10, what="the escaped host shown")
        screen = tmux("capture-pane", "-p", "-t", name)
        assert "me\\x1b]0;PWN" in screen and "box\\x1b]0;PWN" in screen  # the header shows the text
        title = tmux("display-message", "-p", "-t", name, "#{pane_title}").strip()
        assert "PWN" not in title, f"the recording set the terminal title to {title!r}"
        assert "optitop" in screen.splitlines()[1] or "optitop" in screen  # not cleared after drawing
    finally:
        tmux("kill-session", "-t", name)


def test_compare_prints_what_a_recording_says_escaped(tmp_path, capsys):
    path = str(tmp_path / "evil.jsonl")
    write_evil_recording(path)
    assert compare_main([path, path]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert f"box{SHOWN}" in out
    assert compare_main([path, path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["before"]["host"] == f"box{SHOWN}"


def test_a_bundle_stack_dump_keeps_no_escape_from_thread_or_file_names(start_target):
    if shutil.which("py-spy", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])) is None:
        pytest.skip("py-spy is not installed")
    code = f"""
        src = "def evil_frame():\\n    while True:\\n        time.sleep(0.05)\\n"
        exec(compile(src, {"/tmp/" + EVIL + ".py"!r}, "exec"))
        threading.Thread(target=evil_frame, name={"t" + EVIL!r}, daemon=True).start()
        ready()
        time.sleep(600)
        """
    target = start_target(code)
    raw = wait_for(lambda: (d := stack_dump(target.pid)) and "evil_frame" in d and d, 20, what="a py-spy dump")
    if "\x1b" not in raw:
        pytest.skip("this py-spy escapes names itself")
    bundle = Bundle()
    bundle.add_text("stacks.txt", raw)
    member = bundle.members["stacks.txt"]
    assert b"\x1b" not in member and b"\x07" not in member
    assert b"\\x1b]0;PWN" in member and member.count(b"\n") == raw.count("\n")  # the layout stays


# -- files that never end -------------------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return str(path)


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "/dev/zero"),
        ("compare", "/dev/zero", "/dev/zero"),
        ("compare", "FIFO", "FIFO"),
        ("replay", "FIFO"),
        ("replay", "DIR"),
        ("compare", "DIR", "DIR"),
    ],
)
def test_what_is_not_a_regular_file_is_refused_at_once(args, fifo, tmp_path):
    argv = [{"FIFO": fifo, "DIR": str(tmp_path)}.get(a, a) for a in args]
    try:
        got = optitop(*argv, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"optitop {' '.join(argv)} still had not answered after 20 s")
    assert got.returncode == 2, got.stderr
    assert got.stderr.count("\n") == 1 and "not a regular file" in got.stderr, got.stderr
    assert "Traceback" not in got.stderr


def test_an_endless_line_stops_the_reading_with_its_number(tmp_path):
    path = str(tmp_path / "long.jsonl")
    write_evil_recording(path, seconds=3)
    lines = Path(path).read_bytes().split(b"\n")
    with open(path, "wb") as fh:  # a header, two good lines, then one line longer than the cap
        fh.write(b"\n".join(lines[:3]) + b"\n")
        fh.write(b'{"type":"sample","series":"process","mono_s":1,"data":"' + b"x" * (MAX_LINE_BYTES + (1 << 20)))
        fh.write(b'"}\n')
    rec = load(path)
    assert rec.stopped_at is not None
    assert rec.stopped_at[0] == 4 and "line 4 is longer than 16 MiB" in rec.stopped_at[1]


# -- big files ------------------------------------------------------------------------------------------
def write_big_recording(path: str, megabytes: int) -> int:
    """A recording of ``megabytes`` MiB in the Recorder's line format: process samples with a 20 KB field."""
    store = Store(TargetInfo(4242, "python", "python serve.py", "me", WALL0 - 60, "box"))
    writer = LineWriter(path)
    writer.write(header(store, None, ("process",)))
    padding = "x" * 20_000  # a big line: what a py-spy sample of many threads looks like in bytes
    i = 0
    while os.path.getsize(writer.part_path) < megabytes << 20:
        sample = samplefactory.process_sample(WALL0 + i, T0 + i, 1.0, status=padding)
        writer.write(sample_line("process", sample))
        i += 1
    writer.close()
    return i


#: Runs argv and prints its exit code and peak RSS. A small process in between: on Linux a child's ru_maxrss
#: starts at its parent's RSS at fork time, and the pytest process is far bigger than what is measured.
_MEASURE = """
import resource, subprocess, sys
got = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
sys.stderr.write(got.stderr)
print(got.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_measured(argv: list[str], timeout_s: float) -> tuple[int, float, str]:
    """Run ``argv``: (exit code, its peak RSS in MiB, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-I", "-c", _MEASURE, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{argv} ran past {timeout_s} s")
    code, maxrss_kib = out.split()
    return int(code), int(maxrss_kib) / 1024, err


def test_a_big_recording_is_read_in_bounded_memory(tmp_path):
    path = str(tmp_path / "big.jsonl")
    write_big_recording(path, 48)
    # replay reads the whole file before it finds there is no terminal; compare reads it twice
    code, replay_mib, err = run_measured([OPTITOP, "replay", path], 60)
    assert code == 2 and "needs a terminal" in err, err
    code, compare_mib, err = run_measured([OPTITOP, "compare", path, path, "--json"], 60)
    assert code == 0, err
    baseline_code, baseline_mib, _ = run_measured([OPTITOP, "replay", "/dev/null"], 60)
    assert baseline_code == 2
    # holding the events would cost at least the file's 48 MiB (96 for compare): allow a third of it
    assert replay_mib < baseline_mib + 16, (replay_mib, baseline_mib)
    assert compare_mib < baseline_mib + 16, (compare_mib, baseline_mib)


# -- the streamed replay is the replay ------------------------------------------------------------------
def _store_state(replayer: Replayer) -> str:
    window = replayer.store.window()
    return json.dumps(
        {
            "samples": {k: [to_jsonable(s) for s in v] for k, v in sorted(window.samples.items())},
            "statuses": {k: to_jsonable(v) for k, v in sorted(window.statuses.items())},
            "target": to_jsonable(window.target),
            "diagnoses": [to_jsonable(d) for d in window.diagnoses],
            "position": replayer.position_mono_s,
        },
        sort_keys=True,
    )


def _bundle_like_recording(path: str) -> None:
    """A snapshot (as the bundle writes): each series' whole history in turn, so lines are far out of order.

    A 12 s history: seeks land where the store has dropped older samples; the system series stops early
    (the store keeps its last two samples however old).
    """
    store = Store(evil_target(), history_s=120)
    for i in range(100):
        store.add("process", samplefactory.process_sample(WALL0 + i, T0 + i, 1.0))
        if i < 30:
            store.add("system", samplefactory.system_sample(WALL0 + i + 0.1, T0 + i + 0.1))
        if i == 40:
            store.set_status(SourceStatus("gpu", SourceState.ERROR, reason="lost"))
        store.add_diagnosis(Diagnosis("compute", 0.8, ts_s=WALL0 + i, mono_s=T0 + i))
    write_snapshot(store, path, Options(history_s=12.0))


def _interleaved_recording(path: str) -> None:
    """Status, target and cost lines among the samples, a little out of order, as a sweep writes them."""
    store = Store(evil_target(), history_s=12.0)
    writer = LineWriter(path)
    writer.write(header(store, Options(history_s=12.0), ("process",)))
    for i in range(60):
        writer.write(sample_line("process", samplefactory.process_sample(WALL0 + i, T0 + i + 0.5, 1.0)))
        if i % 7 == 3:  # stamped after the sample that follows it in time
            state = SourceState.OK if i % 2 else SourceState.ERROR
            status = to_jsonable(SourceStatus("gpu", state, reason=f"turn {i}"))
            writer.write({"type": "status", "series": "gpu", "mono_s": T0 + i + 0.7, "data": status})
            again = to_jsonable(SourceStatus("gpu", SourceState.OK, reason=f"turn {i} again"))
            writer.write({"type": "status", "series": "gpu", "mono_s": T0 + i + 0.75, "data": again})
            cost = to_jsonable(SelfCost(float(i), 1000 + i))
            writer.write({"type": "self", "mono_s": T0 + i + 0.7, "data": cost})
        writer.write(sample_line("system", samplefactory.system_sample(WALL0 + i, T0 + i + 0.6, 1.0)))
        if i == 45:
            target = to_jsonable(dataclasses.replace(evil_target(), exited=True, exit_reason="gone"))
            writer.write({"type": "target", "mono_s": T0 + i + 0.8, "data": target})
    writer.close()


@pytest.mark.parametrize("kind", ["live", "snapshot", "interleaved"])
def test_a_streamed_replay_feeds_the_store_exactly_as_a_loaded_one(tmp_path, kind):
    path = str(tmp_path / "run.jsonl.gz")
    if kind == "live":
        write_evil_recording(path, seconds=40, history_s=12.0)
    elif kind == "snapshot":
        _bundle_like_recording(path)
    else:
        _interleaved_recording(path)
    loaded, streamed = load(path), scan(path)
    try:
        assert streamed.streamed and not streamed.events  # nothing held
        assert (streamed.start_mono_s, streamed.end_mono_s) == (loaded.start_mono_s, loaded.end_mono_s)
        assert list(streamed.iter_events()) == loaded.events
        a, b = Replayer(loaded, analyzer=_count_judge), Replayer(streamed, analyzer=_count_judge)
        for seek in (15.0, 33.0, 8.0, 60.0, 2.0, 1e9, 38.0, 25.0, 50.0, 47.0):  # forward and back, the end
            a.seek(loaded.start_mono_s + seek)
            b.seek(streamed.start_mono_s + seek)
            assert _store_state(a) == _store_state(b), seek
    finally:
        streamed.close()


def _count_judge(window, state):
    n = (state or 0) + 1
    return Diagnosis("compute", 0.5, evidence=(f"{len(window.samples.get('process', ()))} samples", str(n))), n


# -- a long read on a terminal --------------------------------------------------------------------------
def test_a_long_read_shows_its_progress_on_a_terminal_and_keeps_keys_quiet(tmp_path):
    import termios

    path = str(tmp_path / "run.jsonl")
    write_big_recording(path, 2)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as term:
        progress = ProgressLine(path, stream=term, every_s=0)
        assert progress.on
        with quiet_keys(term):
            assert not termios.tcgetattr(slave)[3] & termios.ECHO  # a key pressed now is not drawn
            scan(path, progress=progress).close()
            progress.done()
        assert termios.tcgetattr(slave)[3] & termios.ECHO  # the terminal is as it was
        shown = os.read(master, 1 << 16).decode()
    os.close(master)
    assert "reading" in shown and "100%" in shown and shown.endswith("\r")
    with open(os.devnull, "w") as not_a_terminal:
        assert not ProgressLine(path, stream=not_a_terminal).on  # nothing written where nobody watches


def test_a_gzip_bomb_stops_at_the_line_cap_in_bounded_memory(tmp_path):
    path = tmp_path / "bomb.jsonl.gz"
    write_evil_recording(str(tmp_path / "seed.jsonl"), seconds=2)
    head = (tmp_path / "seed.jsonl").read_bytes().split(b"\n")[0] + b"\n"
    zeros = b"0" * (1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as fh:  # ~200 KB on disk, a 256 MiB line once inflated
        fh.write(head)
        for _ in range(256):
            fh.write(zeros)
    rec = load(str(path))
    assert rec.stopped_at is not None and "line 2 is longer than 16 MiB" in rec.stopped_at[1]
    code, bomb_mib, err = run_measured([OPTITOP, "replay", str(path)], 60)
    _, baseline_mib, _ = run_measured([OPTITOP, "replay", "/dev/null"], 60)
    assert code == 2 and "longer than 16 MiB" in err, err
    assert bomb_mib < baseline_mib + 48, (bomb_mib, baseline_mib)  # the cap and one piece, never the line


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ({"options": {"history_s": "x"}}, "option history_s is not a positive number"),
        ({"options": "oops"}, "options are not an object"),
        ({"options": {"analysis_window_s": "10s"}}, "option analysis_window_s is not a positive number"),
        ({"options": {"interval_s": -1}}, "option interval_s is not a positive number"),
        ({"created_mono_s": "soon"}, "created_mono_s is not a number"),
        ({"host": {"a": 1}}, "host is not text"),
    ],
)
@pytest.mark.parametrize("command", ["replay", "compare"])
def test_a_damaged_header_is_one_line_not_a_traceback(tmp_path, damage, said, command):
    """Every line of a recording is untrusted, the header too: its options feed the replayer and its host compare."""
    path = tmp_path / "damaged.jsonl"
    write_evil_recording(str(path))
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    head.update(damage)
    path.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    args = [command, str(path)] + ([str(path)] if command == "compare" else [])
    got = optitop(*args)
    assert got.returncode == 2, got.stderr
    assert got.stderr.count("\n") == 1 and said in got.stderr, got.stderr
    assert "Traceback" not in got.stderr
