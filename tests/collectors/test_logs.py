"""The logs collector on real files: tail start, appends, rotation, truncation, deletion, garbage, security."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from conftest import wait_for

from optitop.collectors import logs
from optitop.collectors.logs import MAX_LINE_BYTES, TAIL_BYTES, LogsCollector
from optitop.config import CollectorContext, Options
from optitop.model import ServingSample, SourceUnavailable

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "logs"


def v1_line(running: int, waiting: int = 0, kv: float = 10.0, engine: str = "000", extra: str = "") -> str:
    return (
        f"INFO 12-05 08:51:10 [loggers.py:127] Engine {engine}: Avg prompt throughput: 7.3 tokens/s, "
        f"Avg generation throughput: 1.6 tokens/s, Running: {running} reqs, Waiting: {waiting} reqs, "
        f"{extra}GPU KV cache usage: {kv}%, Prefix cache hit rate: 0.0%\n"
    )


def sglang_decode(running: int, queue: int) -> str:
    return (
        f"[2025-08-11 17:20:00 TP0] Decode batch. #running-req: {running}, #token: 370959, token usage: 0.82, "
        f"cuda graph: True, gen throughput (token/s): 4594.01, #queue-req: {queue}\n"
    )


def append(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(path, "ab") as fh:
        fh.write(data)


def collector(*paths: Path) -> LogsCollector:
    options = Options(interval_s=0.1, log_paths=tuple(str(p) for p in paths))
    return LogsCollector(CollectorContext(pid=os.getpid(), options=options))


def stats_of(col: LogsCollector) -> ServingSample | None:
    return col.sample()


def running_becomes(col: LogsCollector, value: float) -> ServingSample:
    """Sample until requests_running reads ``value`` (each poll reads what was appended meanwhile)."""
    got = wait_for(lambda: (s := col.sample()) is not None and s.stats.requests_running == value and s, timeout_s=5)
    assert isinstance(got, ServingSample)
    return got


def test_no_log_given_says_how_to_give_one():
    with pytest.raises(SourceUnavailable, match="--log PATH"):
        LogsCollector(CollectorContext(pid=os.getpid(), options=Options()))


def test_reads_the_fixture_logs_from_their_tail(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_bytes((FIXTURES / "vllm-v1-engine000-ascend-qwen3vl8b.log").read_bytes())
    sample = collector(log).sample()
    assert sample is not None
    assert sample.profile == "vllm" and sample.source == f"vllm log {log}" and sample.tried == ()
    # The newest of the two stats lines in the file.
    assert sample.stats.prompt_tokens_per_s == 0.0 and sample.stats.requests_waiting == 0.0
    assert dict(sample.stats.provenance)["requests_waiting"] == "vllm log: Waiting"


def test_starts_from_the_tail_not_the_beginning(tmp_path):
    log = tmp_path / "server.log"
    filler = "".join(f"INFO 12-05 08:51:00 [acl_graph.py:187] Replaying aclgraph {i}\n" for i in range(2000))
    assert len(filler) > 4 * TAIL_BYTES
    log.write_text(v1_line(running=111) + filler)
    col = collector(log)
    assert col.sample() is None  # the only stats line is far before the tail: never read
    assert "no vLLM/SGLang stats line yet" in col.describe()
    append(log, v1_line(running=7, waiting=3, kv=42.5))
    sample = running_becomes(col, 7.0)
    assert sample.stats.requests_waiting == 3.0 and sample.stats.kv_cache_usage_pct == 42.5
    assert sample.dt_s is not None


def test_appended_lines_are_picked_up(tmp_path):
    log = tmp_path / "sglang.log"
    log.write_text(sglang_decode(1, 0))
    col = collector(log)
    first = col.sample()
    assert first is not None and first.profile == "sglang" and first.stats.requests_running == 1.0
    for n in (2, 3, 4):
        append(log, sglang_decode(n, n * 10))
        sample = running_becomes(col, float(n))
        assert sample.stats.requests_waiting == n * 10.0
        assert sample.stats.kv_cache_usage_pct == pytest.approx(82.0)
    # A line written in two pieces is parsed once it is complete, not as two halves.
    line = sglang_decode(9, 90)
    append(log, line[:40])
    assert col.sample().stats.requests_running == 4.0
    append(log, line[40:])
    running_becomes(col, 9.0)


def test_rotation_by_rename_and_new_file(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=1))
    col = collector(log)
    assert col.sample().stats.requests_running == 1.0
    os.rename(log, tmp_path / "vllm.log.1")
    # The old writer's last line lands in the renamed file (with a preemption count); then the new file starts.
    append(tmp_path / "vllm.log.1", v1_line(running=50, extra="Preemptions: 4, "))
    log.write_text(v1_line(running=60))
    sample = running_becomes(col, 60.0)  # the new file is followed, from its beginning
    assert sample.source == f"vllm log {log}"
    # ... and the renamed file was drained before the switch: its preemptions were counted.
    assert wait_for(lambda: (col.sample().stats.preemptions_per_s or 0) > 0, timeout_s=5)
    append(log, v1_line(running=70))
    running_becomes(col, 70.0)


def test_truncation_restarts_at_zero(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=5) * 20)
    col = collector(log)
    assert col.sample().stats.requests_running == 5.0
    log.write_text(v1_line(running=6))  # truncate and write less than was there
    running_becomes(col, 6.0)
    append(log, v1_line(running=8))
    running_becomes(col, 8.0)


def test_deleted_file_is_tolerated_and_followed_when_it_returns(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=3))
    col = collector(log)
    assert col.sample().stats.requests_running == 3.0
    append(log, v1_line(running=33))
    log.unlink()  # a line written just before the deletion is still read
    sample = col.sample()  # no exception; the stats are fresh
    assert sample is not None and sample.stats.requests_running == 33.0
    assert "deleted" in col.describe()
    assert not col._followers[0].is_open  # the deleted file's space is not pinned by optitop
    log.write_text(v1_line(running=4))
    running_becomes(col, 4.0)


def test_renamed_away_file_keeps_being_read_until_a_new_one_appears(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=3))
    col = collector(log)
    col.sample()
    os.rename(log, tmp_path / "vllm.log.1")
    col.sample()
    append(tmp_path / "vllm.log.1", v1_line(running=31))  # the writer has not reopened yet
    running_becomes(col, 31.0)
    assert "renamed away" in col.describe()


def test_a_deleted_log_becomes_unavailable_once_its_stats_are_stale(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "STALE_AFTER_S", 0.2)
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=3))
    col = collector(log)
    assert col.sample() is not None
    log.unlink()

    def unavailable() -> bool:
        try:
            col.sample()
        except SourceUnavailable as exc:
            return "deleted" in str(exc)
        return False

    assert wait_for(unavailable, timeout_s=5)


def test_missing_at_start_then_created_is_read_from_its_beginning(tmp_path):
    log = tmp_path / "later.log"
    col = collector(log)
    with pytest.raises(SourceUnavailable, match="no such file"):
        col.sample()
    filler = "x" * 100 + "\n"
    log.write_text(v1_line(running=12) + filler * (TAIL_BYTES // 50))  # a new file: its start is new
    running_becomes(col, 12.0)


def test_binary_garbage_and_a_1mb_line_do_not_break_it(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=1))
    col = collector(log)
    col.sample()
    append(log, os.urandom(200_000) + b"\n" + b"\xff\xfe\x00" * 1000 + b"\n")
    append(log, b"y" * (1024 * 1024) + b"\n")
    append(log, v1_line(running=2))
    running_becomes(col, 2.0)
    # A 1 MB line that begins with a stats line: the cut head still parses, the rest is dropped.
    append(log, v1_line(running=3).rstrip("\n") + " " + "z" * (1024 * 1024) + "\n")
    running_becomes(col, 3.0)
    assert col._followers[0].lines_cut >= 2
    assert len(col._followers[0]._buf) <= MAX_LINE_BYTES
    append(log, v1_line(running=4))
    running_becomes(col, 4.0)


def test_a_writer_far_ahead_is_skipped_to_the_tail(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=1))
    col = collector(log)
    col.sample()
    noise = "noise line that is not stats\n" * (5 * 1024 * 1024 // 29)
    # Had the far line (another engine) been parsed, the engines would sum to 104 running.
    append(log, v1_line(running=99, engine="001") + noise + v1_line(running=5))
    started = time.monotonic()
    running_becomes(col, 5.0)
    assert time.monotonic() - started < 5


def test_newest_stats_across_files(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(v1_line(running=1))
    b.write_text("")
    col = collector(a, b)
    first = col.sample()
    assert first.source == f"vllm log {a}"
    append(b, sglang_decode(7, 2))
    sample = running_becomes(col, 7.0)
    assert sample.source == f"sglang log {b}" and sample.profile == "sglang"


def test_data_parallel_engines_are_combined(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=3, waiting=1, kv=20.0, engine="000") + v1_line(4, 2, 40.0, engine="001"))
    stats = collector(log).sample().stats
    assert stats.requests_running == 7.0 and stats.requests_waiting == 3.0
    assert stats.kv_cache_usage_pct == pytest.approx(30.0)  # mean across engines
    assert "sum of 2 engines" in dict(stats.provenance)["requests_running"]


def test_preemptions_are_counted_from_live_lines_only(tmp_path):
    log = tmp_path / "sglang.log"
    log.write_text(sglang_decode(5, 0) + "KV cache pool is full. Retract requests. #retracted_reqs: 40\n")
    col = collector(log)
    first = col.sample()
    assert first.stats.preemptions_per_s is None  # nothing read live yet; the tail's warning has no time
    append(log, "KV cache pool is full. Retract requests. #retracted_reqs: 5, #new_token_ratio: 0.9 -> 1.0\n")
    got = wait_for(lambda: (s := col.sample()) and s.stats.preemptions_per_s is not None and s, timeout_s=5)
    rate = got.stats.preemptions_per_s
    # 5 (not 45) preemptions over the live span so far (at least 1 s, so at most 5/s).
    assert 5 / logs.PREEMPT_WINDOW_S <= rate <= 5.0
    assert dict(got.stats.provenance)["preemptions_per_s"] == "sglang log: #retracted_reqs"


def test_vllm_v1_preemptions_are_unknown_until_the_format_shows_them(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=1))
    col = collector(log)
    col.sample()
    append(log, v1_line(running=2))
    wait_for(lambda: col.sample().stats.requests_running == 2.0, timeout_s=5)
    deadline = time.monotonic() + 1.2
    wait_for(lambda: time.monotonic() > deadline, timeout_s=5)
    assert col.sample().stats.preemptions_per_s is None  # an older V1 never prints it: not 0
    append(log, v1_line(running=2, extra="Preemptions: 4, "))
    assert wait_for(lambda: (col.sample().stats.preemptions_per_s or 0) > 0, timeout_s=5)


def test_vllm_v0_preemption_warning_uses_the_cumulative_count(tmp_path):
    warning = (FIXTURES / "vllm-v0-preemption-warning-optimization-doc.log").read_text().strip()
    log = tmp_path / "vllm.log"
    log.write_text((FIXTURES / "vllm-v0-metrics-py-ascend-multinode.log").read_text() + warning + "\n")
    col = collector(log)
    col.sample()
    append(log, warning.replace("cnt=1", "cnt=51") + "\n")  # vLLM V0 warns once per 50 preemptions
    got = wait_for(lambda: (s := col.sample()) and (s.stats.preemptions_per_s or 0) > 0 and s, timeout_s=5)
    assert got.stats.preemptions_per_s >= 50 / logs.PREEMPT_WINDOW_S


def test_stale_stats_are_not_resent(tmp_path, monkeypatch):
    monkeypatch.setattr(logs, "STALE_AFTER_S", 0.3)
    log = tmp_path / "vllm.log"
    log.write_text(v1_line(running=1))
    col = collector(log)
    assert col.sample() is not None
    assert wait_for(lambda: col.sample() is None, timeout_s=5)


def test_a_fifo_is_refused_not_blocked_on(tmp_path):
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    col = collector(fifo)
    with pytest.raises(SourceUnavailable, match="not a regular file"):
        col.sample()


# -- security: running as root must not read, through --log, what the invoking user could not -------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the root-only checks need root (CI runs as root)")
NOBODY = 65534


@needs_root
def test_under_sudo_a_file_the_user_cannot_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_UID", str(NOBODY))
    secret = tmp_path / "secret.log"
    secret.write_text(v1_line(running=1))
    secret.chmod(0o600)  # root's, unreadable for nobody
    link = tmp_path / "link.log"
    link.symlink_to(secret)
    for path in (secret, link):
        col = collector(path)
        with pytest.raises(SourceUnavailable, match="could not read"):
            col.sample()
    secret.chmod(0o644)
    assert collector(link).sample().stats.requests_running == 1.0


@needs_root
def test_as_root_a_planted_symlink_to_another_users_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SUDO_UID", raising=False)
    secret = tmp_path / "secret.log"
    secret.write_text(v1_line(running=1))
    secret.chmod(0o600)
    planted = tmp_path / "planted.log"
    planted.symlink_to(secret)
    os.lchown(planted, NOBODY, NOBODY)
    with pytest.raises(SourceUnavailable, match="symlink"):
        collector(planted).sample()
    own = tmp_path / "own.log"
    own.symlink_to(secret)  # root's own link to root's file: followed
    assert collector(own).sample().stats.requests_running == 1.0
