"""Record -> replay round trips, damaged files, gzip, file rights, schema mismatch, and `optitop record` for real."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import stat
import subprocess
import sys
import time

import pytest
import samplefactory
from conftest import wait_for

from optitop.model import (
    Diagnosis,
    GpuDevice,
    GpuSample,
    ProcessSample,
    ServingSample,
    ServingStats,
    SourceState,
    SourceStatus,
    SystemSample,
    TargetInfo,
    ThreadSample,
)
from optitop.recording.codec import SCHEMA_VERSION, ConversionError, from_jsonable, to_jsonable
from optitop.recording.reader import RecordingError
from optitop.recording.replayer import Replayer
from optitop.recording.scan import Recording, load
from optitop.recording.writer import Recorder
from optitop.safefile import RefusedPathError
from optitop.store import Store

T0 = 1000.0
WALL0 = 1_800_000_000.0


def target_info() -> TargetInfo:
    return TargetInfo(
        pid=4242,
        name="python",
        cmdline="python serve.py --api-key ***",
        username="me",
        create_time_s=WALL0 - 60,
        host="box-a",
    )


def process_sample(i: int, cpu: float = 87.5) -> ProcessSample:
    return samplefactory.process_sample(
        WALL0 + i,
        T0 + i,
        1.0 if i else None,
        cpu_pct=cpu,
        cpu_pct_of_allowed=cpu / 4,
        rss_bytes=123_456_789,
        minor_faults_per_s=1.5,
        threads=(ThreadSample(4243, 4242, "burner", "R", cpu), ThreadSample(4244, 4242, "[bold]x[/]", "S", 0.5)),
        denied=("io counters",),
    )


def system_sample(i: int) -> SystemSample:
    return samplefactory.system_sample(WALL0 + i + 0.1, T0 + i + 0.1, load_1m=float("nan"))


def gpu_device() -> GpuDevice:
    return samplefactory.gpu_device(
        dram_bw_util_pct=23.0, mem_used_bytes=40 << 30, mem_total_bytes=80 << 30, gpu_procs=1
    )


def gpu_sample(i: int) -> GpuSample:
    return samplefactory.gpu_sample(
        WALL0 + i + 0.2,
        T0 + i + 0.2,
        devices=(gpu_device(),),
        driver_version="580.1",
        host_dram_bw_note="host DRAM bandwidth: unavailable",
    )


def serving_sample(i: int) -> ServingSample:
    stats = ServingStats(
        requests_waiting=3.0,
        requests_running=8.0,
        request_rate_per_s=12.5,
        ttft_p50_s=0.25,
        provenance=(("requests_waiting", "vllm:num_requests_waiting"),),
    )
    return samplefactory.serving_sample(WALL0 + i + 0.3, T0 + i + 0.3, stats=stats)


def diagnosis(i: int) -> Diagnosis:
    return Diagnosis(
        "compute",
        0.8,
        evidence=("SM 78%",),
        fixes=("batch",),
        secondary=(("memory_io", 0.3),),
        ts_s=WALL0 + i + 0.5,
        mono_s=T0 + i + 0.5,
    )


class SyntheticClock:
    """The clock the test's samples are stamped with: the store (and so the recorder) reads the same one."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def fill(store: Store, n: int, clock: SyntheticClock | None = None) -> dict[str, list]:
    made: dict[str, list] = {"process": [], "system": [], "gpu": [], "queue": [], "diagnosis": []}
    for i in range(n):
        if clock is not None:
            clock.now_s = T0 + i
        for name, build in (
            ("process", process_sample),
            ("system", system_sample),
            ("gpu", gpu_sample),
            ("queue", serving_sample),
        ):
            sample = build(i)
            made[name].append(sample)
            store.add(name, sample)
        d = diagnosis(i)
        made["diagnosis"].append(d)
        store.add_diagnosis(d)
    return made


def record(path: str, n: int = 5, exit_target: bool = False) -> dict[str, list]:
    clock = SyntheticClock(T0 - 0.5)
    store = Store(target_info(), clock=clock)
    store.set_status(SourceStatus("gpu", SourceState.STARTING))
    recorder = Recorder(store, path)
    recorder.start()
    store.set_status(SourceStatus("gpu", SourceState.OK, latency_s=0.01))
    made = fill(store, n, clock)
    if exit_target:
        store.mark_target_exited("pid 4242 exited", at_s=WALL0 + n)
    wait_for(lambda: recorder.events >= n * 5, timeout_s=10)
    recorder.stop()
    return made


def same(a: object, b: object) -> bool:
    """Equality that treats NaN as equal to NaN (a NaN field round-trips as NaN)."""
    return json.dumps(to_jsonable(a), sort_keys=True) == json.dumps(to_jsonable(b), sort_keys=True)


def test_round_trip_gives_back_the_same_sample_objects(tmp_path):
    path = str(tmp_path / "run.jsonl")
    made = record(path, n=5, exit_target=True)
    rec = load(path)
    assert rec.stopped_at is None and rec.complete and not rec.skipped
    assert rec.target == target_info()
    for series in ("process", "queue", "gpu"):
        assert rec.samples(series) == made[series]  # real dataclasses, nested tuples included
    assert isinstance(rec.samples("gpu")[0].devices[0], GpuDevice)
    assert rec.samples("queue")[0].stats.provenance == (("requests_waiting", "vllm:num_requests_waiting"),)
    assert all(same(a, b) for a, b in zip(rec.samples("system"), made["system"], strict=True))
    assert rec.diagnoses == made["diagnosis"]
    assert [e.value.state for e in rec.events if e.kind == "status"] == [SourceState.OK]  # one change, not per sample
    exits = [e.value for e in rec.events if e.kind == "target"]
    assert exits and exits[0].exited and exits[0].exit_reason == "pid 4242 exited"


def test_a_just_booted_machine_replays_from_the_first_sample(tmp_path, monkeypatch):
    """The machine's monotonic clock reads a few seconds (it booted just now) while the samples carry T0: every
    line the recorder writes is on the store's clock, so the replay starts at the samples, not 995 s early."""
    real = time.monotonic
    shift_s = real() - 5.0
    monkeypatch.setattr(time, "monotonic", lambda: real() - shift_s)
    path = str(tmp_path / "run.jsonl")
    record(path, n=5)
    rec = load(path)
    assert [e.mono_s for e in rec.events if e.kind == "status"] != []
    assert all(T0 - 1.0 <= e.mono_s <= T0 + 5.0 for e in rec.events), [e.mono_s for e in rec.events]
    assert T0 - 1.0 <= rec.start_mono_s <= T0 < rec.end_mono_s <= T0 + 5.0


def test_wall_times_after_a_suspend_carry_the_suspend(tmp_path):
    """CLOCK_MONOTONIC stops while the machine is suspended and the wall clock does not: a recording made across
    a suspend has samples whose two clocks moved apart by its length, and wall times after it must say so."""
    clock = SyntheticClock(T0)
    store = Store(target_info(), clock=clock)
    path = str(tmp_path / "suspended.jsonl")
    recorder = Recorder(store, path)
    recorder.start()
    suspended_s = 3600.0
    for i in range(20):
        clock.now_s = T0 + i
        wall = WALL0 + i + (suspended_s if i >= 10 else 0.0)  # an hour asleep between samples 9 and 10
        store.add("process", dataclasses.replace(process_sample(i), ts_s=wall))
    wait_for(lambda: recorder.events >= 20, timeout_s=10)
    recorder.stop()
    rec = load(path)
    assert rec.wall_time(T0 + 5) == pytest.approx(WALL0 + 5)
    assert rec.wall_time(T0 + 15) == pytest.approx(WALL0 + 15 + suspended_s)
    replayer = Replayer(rec, analyzer=lambda window, state: (Diagnosis("idle", 0.5), state))
    replayer.advance_to(T0 + 12)
    assert replayer.wall_time() == pytest.approx(WALL0 + 12 + suspended_s)  # the replay bar's clock
    assert replayer.store.window().diagnoses[-1].ts_s == pytest.approx(WALL0 + 12 + suspended_s)


def test_replayer_feeds_the_store_in_time_order_and_rejudges(tmp_path):
    path = str(tmp_path / "run.jsonl")
    made = record(path, n=20)
    judged = []

    def judge(window, state):
        judged.append(window.now_mono_s)
        latest = window.latest("process")
        return Diagnosis("host_cpu", 0.5, evidence=(f"cpu {latest.cpu_pct if latest else None}",)), state

    replayer = Replayer(load(path), analyzer=judge)
    replayer.advance_to(T0 + 5.05)
    window = replayer.store.window()
    assert window.now_mono_s == pytest.approx(T0 + 5.05)  # the window is cut at recorded time
    assert list(window.series("process")) == made["process"][:6]
    assert window.latest("gpu") == made["gpu"][4]  # gpu sample 5 is at +5.2 s: not yet
    assert window.diagnoses and window.diagnoses[-1].category == "host_cpu"  # re-judged, not the recorded verdict
    assert judged == sorted(judged) and len(judged) == 5
    replayer.seek(T0 + 2.0)  # backwards: the store is emptied and refilled
    assert list(replayer.store.window().series("process")) == made["process"][:3]
    replayer.seek_by(10)
    assert replayer.store.window().latest("process") == made["process"][12]
    replayer.step()
    assert replayer.paused and replayer.store.window().latest("process") == made["process"][13]
    replayer.run_to_end()
    assert replayer.at_end and list(replayer.store.window().series("process")) == made["process"]


def test_replayer_tick_follows_wall_time_times_speed(tmp_path):
    path = str(tmp_path / "run.jsonl")
    record(path, n=20)
    replayer = Replayer(load(path), speed=4.0)
    replayer.tick(now_s=50.0)
    assert replayer.tick(now_s=51.0)  # one wall second at x4 = four recorded seconds
    assert replayer.elapsed_s == pytest.approx(4.0)
    replayer.toggle_pause()
    replayer.tick(now_s=52.0)
    assert not replayer.tick(now_s=60.0)
    assert replayer.elapsed_s == pytest.approx(4.0)


def test_real_analyzer_rejudges_replayed_data(tmp_path):
    path = str(tmp_path / "run.jsonl")
    record(path, n=15)
    replayer = Replayer(load(path))
    replayer.run_to_end()
    diags = replayer.store.window().diagnoses
    assert len(diags) >= 10 and all(
        d.category in ("compute", "memory_io", "scheduling", "network", "host_cpu", "idle", "none", "unknown")
        for d in diags
    )


def test_truncated_file_replays_up_to_the_last_complete_line(tmp_path):
    path = tmp_path / "run.jsonl"
    made = record(str(path), n=10)
    data = path.read_bytes()
    lines = data.split(b"\n")
    cut = len(b"\n".join(lines[:30])) + 1 + len(lines[30]) // 2  # half of line 31
    path.write_bytes(data[:cut])
    rec = load(str(path))
    assert rec.stopped_at is not None and rec.stopped_at[0] == 31
    assert "cut short" in rec.stopped_at[1]
    assert "stopped at line 31" in rec.problems()[0]
    got = rec.samples("process")
    assert got == made["process"][: len(got)] and len(got) >= 5
    assert not rec.complete


def test_corrupt_line_stops_there_and_says_why(tmp_path):
    path = tmp_path / "run.jsonl"
    made = record(str(path), n=10)
    lines = path.read_bytes().split(b"\n")
    lines[12] = b'{"type": "sample", "series": "process", "mono_s": 1, "data": {"ts_s": "oops"'  # broken JSON
    path.write_bytes(b"\n".join(lines))
    rec = load(str(path))
    assert rec.stopped_at is not None and rec.stopped_at[0] == 13 and "not valid JSON" in rec.stopped_at[1]
    assert 0 < len(rec.samples("process")) < len(made["process"])
    # valid JSON that does not fit the sample class stops too, naming the field
    good = path.read_bytes().split(b"\n")
    at = next(i for i, raw in enumerate(good) if b'"series":"process"' in raw)
    bad = json.loads(good[at])
    bad["data"]["cpu_pct"] = "lots"
    good[at] = json.dumps(bad).encode()
    path.write_bytes(b"\n".join(good))
    rec = load(str(path))
    assert rec.stopped_at is not None and rec.stopped_at[0] == at + 1 and "cpu_pct" in rec.stopped_at[1]
    assert rec.samples("process") == []


def test_gzip_round_trip_and_a_truncated_gzip_keeps_its_complete_lines(tmp_path):
    path = tmp_path / "run.jsonl.gz"
    made = record(str(path), n=40)
    data = path.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert gzip.decompress(data).count(b"\n") > 150  # a valid gzip file for other tools too
    rec = load(str(path))
    assert rec.samples("process") == made["process"] and rec.complete
    path.write_bytes(data[: len(data) * 2 // 3])  # killed mid-write: no trailer, a partial block
    rec = load(str(path))
    kept = 0
    for series in ("process", "gpu", "queue"):
        got = rec.samples(series)
        assert got == made[series][: len(got)]  # each series is a prefix of what was recorded
        kept += len(got)
    assert 40 <= kept < 120  # most of the complete lines survive the cut, the cut ones do not
    assert rec.stopped_at is not None and not rec.complete


def test_files_are_created_0600_and_never_over_an_existing_file(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "run.jsonl"
        path.write_text("old")
        path.chmod(0o644)
        with pytest.raises(RefusedPathError, match="already exists"):
            record(str(path), n=2)
        assert path.read_text() == "old" and stat.S_IMODE(path.stat().st_mode) == 0o644  # never chmodded
        gz = tmp_path / "run.jsonl.gz"
        record(str(gz), n=2)
        assert stat.S_IMODE(gz.stat().st_mode) == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.jsonl", "run.jsonl.gz"]  # no .part left
    finally:
        os.umask(old)


def test_a_recording_is_written_as_part_and_renamed_when_it_stops(tmp_path):
    path = tmp_path / "run.jsonl.gz"
    store = Store(target_info())
    recorder = Recorder(store, str(path))
    recorder.start()
    fill(store, 3)
    part = tmp_path / "run.jsonl.gz.part"
    assert recorder.part_path == str(part) and not path.exists()
    assert stat.S_IMODE(part.stat().st_mode) == 0o600
    wait_for(lambda: len(load(str(part)).samples("process")) == 3, timeout_s=10)  # a kill now loses nothing
    recorder.stop()
    assert not part.exists() and recorder.saved_path == str(path)
    assert load(str(path)).complete


def test_another_schema_version_is_a_clear_error(tmp_path):
    path = tmp_path / "run.jsonl"
    record(str(path), n=2)
    lines = path.read_text().splitlines()
    head = json.loads(lines[0])
    head["schema_version"] = SCHEMA_VERSION + 1
    head["optitop_version"] = "9.9.9"
    path.write_text("\n".join([json.dumps(head), *lines[1:]]) + "\n")
    with pytest.raises(RecordingError, match=r"schema version .*9\.9\.9"):
        load(str(path))
    path.write_text("hello\n")
    with pytest.raises(RecordingError, match="not an optitop recording"):
        load(str(path))
    path.write_text("")
    with pytest.raises(RecordingError, match="empty"):
        load(str(path))


def test_from_jsonable_tolerates_new_fields_defaults_missing_ones_and_rejects_wrong_types():
    data = to_jsonable(serving_sample(0))
    data["brand_new_field"] = 1
    data["stats"]["also_new"] = "x"
    del data["tried"]  # has a default
    del data["stats"]["ttft_p95_s"]
    got = from_jsonable(ServingSample, data)
    assert got == serving_sample(0)
    del data["profile"]  # no default
    with pytest.raises(ConversionError, match="profile"):
        from_jsonable(ServingSample, data)
    assert from_jsonable(tuple[tuple[str, float], ...], [["a", 1], ["b", 2.5]]) == (("a", 1.0), ("b", 2.5))
    assert from_jsonable(int | None, None) is None


def test_process_sample_recorded_before_the_thread_counts_loads_with_them_unknown():
    full = dataclasses.replace(process_sample(1), runnable_threads=3, busy_threads=1)
    data = to_jsonable(full)
    assert from_jsonable(ProcessSample, data) == full
    del data["runnable_threads"], data["busy_threads"]  # a file written before the counts existed
    old = from_jsonable(ProcessSample, data)
    assert old.runnable_threads is None and old.busy_threads is None
    assert old.threads == full.threads


def test_unknown_series_is_skipped_with_a_reason(tmp_path):
    path = tmp_path / "run.jsonl"
    record(str(path), n=3)
    with path.open("a") as fh:
        fh.write(json.dumps({"type": "sample", "series": "quantum", "mono_s": T0 + 9, "data": {}}) + "\n")
    rec = load(str(path))
    assert "quantum" in rec.skipped and rec.stopped_at is None
    assert any("series 'quantum' skipped" in p for p in rec.problems())


def optitop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optitop", *args], capture_output=True, text=True, timeout=timeout, cwd="/"
    )


def test_optitop_record_cli_records_a_real_target(start_target, tmp_path):
    target = start_target(
        """
        threading.Thread(target=spin, args=("burner",), daemon=True).start()
        ready()
        time.sleep(600)
        """
    )
    path = tmp_path / "real.jsonl.gz"
    started = time.monotonic()
    got = optitop(
        "record",
        "--pid",
        str(target.pid),
        "-o",
        str(path),
        "--duration",
        "3",
        "--interval",
        "0.3",
        "--no-pystacks",
        "--no-scrape",
    )
    assert got.returncode == 0, got.stderr
    assert time.monotonic() - started < 30
    assert "recorded" in got.stderr and str(path) in got.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rec: Recording = load(str(path))
    assert rec.stopped_at is None and rec.complete
    assert rec.target.pid == target.pid
    samples = rec.samples("process")
    assert len(samples) >= 5
    # The spinning thread: > 50 % of a core on a quiet machine; a loaded CI box still gives it a good share.
    assert max(s.cpu_pct or 0 for s in samples) > 25
    assert samples[-1].threads[0].name == "burner"  # the busiest thread, by its OS name
    assert "process" in rec.header["collectors"] and rec.header["options"]["interval_s"] == 0.3
    assert rec.diagnoses  # the analyzer's verdicts were recorded


def test_optitop_record_cli_errors_are_one_line(tmp_path):
    got = optitop("record", "--pid", "999999999", "-o", str(tmp_path / "x.jsonl"))  # past pid_max: a usage error
    assert got.returncode == 2 and got.stderr.strip().count("\n") == 0 and "not a pid" in got.stderr
    got = optitop("record", "--pid", str(os.getpid()), "-o", str(tmp_path / "missing" / "x.jsonl"), "--duration", "1")
    assert got.returncode == 2 and "cannot write" in got.stderr and "Traceback" not in got.stderr


SECRET = "hf_" + "Zq9" * 8  # a Hugging Face token shape the redaction knows


def test_optitop_bundle_cli_writes_a_private_redacted_archive_that_replays(start_target, tmp_path):
    import tarfile

    target = start_target(
        f"""
        # {SECRET}
        threading.Thread(target=spin, args=("burner",), daemon=True).start()
        ready()
        time.sleep(600)
        """
    )
    path = tmp_path / "incident.tar.gz"
    got = optitop(
        "bundle",
        "--pid",
        str(target.pid),
        "-o",
        str(path),
        "--sample",
        "2",
        "--interval",
        "0.3",
        "--no-scrape",
        timeout=90,
    )
    assert got.returncode == 0, got.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with tarfile.open(path) as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()}
    assert {
        "metrics.jsonl",
        "report.json",
        "stacks.txt",
        "devices.json",
        "endpoints.txt",
        "doctor.txt",
        "manifest.json",
    } <= set(members)
    for name, data in members.items():
        assert SECRET.encode() not in data, f"{name} leaks the token"
    assert b"burner" in members["stacks.txt"] or b"no stack dump" in members["stacks.txt"]
    assert b"optitop doctor" in members["doctor.txt"]
    devices = json.loads(members["devices.json"])
    assert devices["gpu"] is not None or devices["note"].startswith("no GPU")
    replayable = tmp_path / "metrics.jsonl"
    replayable.write_bytes(members["metrics.jsonl"])
    rec = load(str(replayable))
    assert rec.stopped_at is None and len(rec.samples("process")) >= 3 and rec.diagnoses
    assert json.loads(members["report.json"])["target"]["pid"] == target.pid


def test_replay_main_reports_damage_and_refuses_without_a_terminal(tmp_path, capsys):
    from optitop.commands.replay import replay_main

    path = tmp_path / "run.jsonl"
    record(str(path), n=5)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    assert replay_main([str(path)]) == 2  # captured stdout is not a terminal
    err = capsys.readouterr().err
    assert "stopped at line" in err and "cut short" in err and "needs a terminal" in err
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"type": "optitop-record", "schema_version": 99, "optitop_version": "7.0"}) + "\n")
    assert replay_main([str(other)]) == 2
    err = capsys.readouterr().err
    assert "schema version 99" in err and err.count("\n") == 1
