"""The process collector against real targets: named threads, CPU, the tree, exits."""

from __future__ import annotations

import os
import signal

import pytest
from conftest import wait_for

from optitop.collectors.process import ProcessCollector
from optitop.collectors.procfs import list_tids, read_stat
from optitop.config import CollectorContext, Options
from optitop.model import ProcessSample, SourceUnavailable, TargetGone

TWO_THREADS = """
named_thread(spin, "burner")
named_thread(nap, "sleeper")
ready()
time.sleep(600)
"""


def collector(pid: int, interval_s: float = 0.5) -> ProcessCollector:
    return ProcessCollector(CollectorContext(pid=pid, options=Options(interval_s=interval_s)))


def thread_name(pid: int, tid: int) -> str | None:
    stat = read_stat(f"/proc/{pid}/task/{tid}/stat")
    return None if stat is None else stat.comm


def second_sample(c: ProcessCollector) -> ProcessSample:
    """Two readings a measured interval apart (rates need two)."""
    first = c.sample()
    wait_for(lambda: __import__("time").monotonic() - first.mono_s >= 1.0, timeout_s=5)
    return c.sample()


def test_burning_thread_is_named_and_busy(start_target):
    target = start_target(TWO_THREADS)
    sample = second_sample(collector(target.pid))
    names = {t.name: t for t in sample.threads}
    assert "burner" in names and "sleeper" in names
    assert names["burner"].cpu_pct > 50.0, names["burner"]
    assert names["sleeper"].cpu_pct < 20.0
    assert sample.threads[0].name == "burner"  # busiest first
    assert sample.cpu_pct is not None and sample.cpu_pct > 50.0
    assert sample.dt_s is not None and sample.dt_s >= 0.5  # rates over the measured interval
    assert sample.num_threads >= 3
    assert sample.allowed_cores >= 1


def test_first_sample_has_no_rates(start_target):
    target = start_target(TWO_THREADS)
    first = collector(target.pid).sample()
    assert first.dt_s is None and first.cpu_pct is None
    assert first.rss_bytes > 0


def test_children_are_followed_as_they_appear_and_exit(start_target):
    target = start_target(
        """
        import subprocess
        ready()
        line = sys.stdin.readline() if False else None
        child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(600)
        """
    )
    c = collector(target.pid)

    def child_seen() -> ProcessSample | None:
        s = c.sample()
        return s if s.num_procs >= 2 else None

    sample = wait_for(child_seen, timeout_s=10)
    child = next(p for p in sample.procs if p.pid != target.pid)
    assert child.ppid == target.pid and child.depth == 1
    # the busy child counts in the tree's CPU
    sample = wait_for(lambda: (s := c.sample()).cpu_pct and s.cpu_pct > 50 and s, timeout_s=10)
    assert sample.cpu_pct > 50
    os.kill(child.pid, signal.SIGKILL)
    wait_for(lambda: c.sample().num_procs == 1, timeout_s=10)


def test_exit_is_noticed(start_target):
    target = start_target("ready()\ntime.sleep(600)\n")
    c = collector(target.pid)
    c.sample()
    target.kill()
    with pytest.raises(TargetGone):
        c.sample()


def test_missing_pid_is_unavailable():
    with pytest.raises(SourceUnavailable, match="no process with pid"):
        collector(2**22 + 12345)


def test_markup_in_thread_name_is_kept_literally(start_target):
    target = start_target(
        """
        named_thread(spin, "[bold red]x[/]")
        ready()
        time.sleep(600)
        """
    )
    sample = second_sample(collector(target.pid))
    assert any(t.name == "[bold red]x[/]" for t in sample.threads)


def test_page_faults_of_a_child_touching_fresh_memory(start_target):
    target = start_target(
        """
        import mmap
        ready()
        while True:  # fresh anonymous pages each pass (malloc would recycle them)
            buf = mmap.mmap(-1, 64 * 1024 * 1024)
            for i in range(0, len(buf), 4096):
                buf[i] = 1
            buf.close()
        """
    )
    c = collector(target.pid)
    sample = wait_for(lambda: (s := c.sample()).minor_faults_per_s and s, timeout_s=10)
    # 64 MiB in 4 KiB pages is 16k faults per pass; even a slow machine does several passes a second
    assert sample.minor_faults_per_s > 1000


def test_thread_born_during_the_tick_is_charged_its_cpu(start_target):
    # A server that starts a thread per request (Ray Serve does): the worker exists only between two samples.
    target = start_target(
        """
        import signal
        signal.signal(signal.SIGUSR1, lambda *_: threading.Thread(target=spin, args=("newborn",), daemon=True).start())
        ready()
        time.sleep(600)
        """
    )
    c = collector(target.pid)
    first = c.sample()
    assert not any(t.name == "newborn" for t in first.threads)
    os.kill(target.pid, signal.SIGUSR1)
    wait_for(lambda: any(thread_name(target.pid, tid) == "newborn" for tid in list_tids(target.pid)), timeout_s=5)
    wait_for(lambda: __import__("time").monotonic() - first.mono_s >= 1.0, timeout_s=5)
    second = c.sample()
    newborn = next(t for t in second.threads if t.name == "newborn")
    assert newborn.cpu_pct > 30.0, newborn  # spun for most of the tick; without the fix it read 0
    assert second.threads[0].name == "newborn"
    assert second.busy_threads is not None and second.busy_threads >= 1


def test_cpu_of_threads_that_end_between_two_ticks_is_reported(start_target):
    # A pool that runs each job on a fresh thread of ~30 ms: no sample ever sees the thread that did the work.
    target = start_target(
        """
        def job():
            end = time.monotonic() + 0.03
            while time.monotonic() < end:
                pass
        def churn():
            while True:
                t = threading.Thread(target=job)
                t.start()
                t.join()
        threading.Thread(target=churn, daemon=True).start()
        ready()
        time.sleep(600)
        """
    )
    c = collector(target.pid)
    first = c.sample()
    assert first.exited_threads_cpu_pct is None  # no interval yet
    wait_for(lambda: __import__("time").monotonic() - first.mono_s >= 1.0, timeout_s=5)
    second = c.sample()
    assert second.cpu_pct is not None and second.cpu_pct > 40, second.cpu_pct
    assert second.exited_threads_cpu_pct is not None and second.exited_threads_cpu_pct > 30, second
    assert second.threads[0].cpu_pct < second.exited_threads_cpu_pct  # the live rows cannot show where it went


def test_old_thread_of_a_process_that_just_joined_reads_zero(start_target):
    # No baseline and born long before the tick: its lifetime CPU must not be charged to one tick.
    target = start_target(TWO_THREADS)
    c = collector(target.pid)
    c.sample()
    wait_for(lambda: __import__("time").monotonic() - c._prev_mono >= 0.5, timeout_s=5)
    c._prev_threads = {}  # as if the process had just joined the tree
    sample = c.sample()
    assert all(t.cpu_pct == 0.0 for t in sample.threads), sample.threads


def test_runnable_threads_are_counted_over_every_thread(start_target):
    # More runnable threads than the sample keeps: the count must still see all of them.
    from optitop.collectors.process import TOP_THREADS

    many = TOP_THREADS + 4
    target = start_target(
        f"""
        import signal
        kids = []
        for _ in range({many}):
            pid = os.fork()
            if pid == 0:
                signal.alarm(60)  # never outlive a broken test
                while True:
                    pass
            kids.append(pid)
        ready()
        time.sleep(600)
        """
    )
    c = collector(target.pid)
    sample = wait_for(
        lambda: (s := c.sample()).runnable_threads is not None and s.runnable_threads >= many and s, timeout_s=15
    )
    assert len(sample.threads) == TOP_THREADS < sample.runnable_threads
