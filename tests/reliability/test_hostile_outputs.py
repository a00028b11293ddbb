"""Hostile output paths and a full disk for ``optitop record`` and ``optitop bundle`` (issue 20, items 1 and 9).

optitop runs as root; its ``-o`` used to be opened with O_CREAT|O_TRUNC and then fchmodded, so a symlink planted
at the name replaced (and chmodded) what it pointed at, ``-o /dev/null`` made /dev/null 0600, a FIFO blocked
for ever, and on a full disk an existing recording became a cut file. Every test here runs the real command
against a real target and looks at the real files afterwards: content, mode and inode.

Inputs tried, and what each gets now:
- ``-o LINK`` (a symlink to a file, record and bundle): exit 2, one line, the link's target untouched.
- ``-o /dev/null``, a character device, a FIFO, a directory: exit 2, one line, nothing opened or chmodded.
- ``-o EXISTING``: exit 2 without ``--force``; with it a new 0600 inode replaces the name, and the old inode
  (kept alive by a second link) still has its bytes and its mode.
- a full disk (a 64 KiB tmpfs, or RLIMIT_FSIZE where mounting is not allowed), ``record --force`` over a
  3,000-byte recording: exit 1, the old file byte for byte as it was, what was recorded kept in ``NAME.part``.
- a full disk, ``bundle``: exit 1, no file at the final name (new or ``--force``), no ``.part`` left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from optitop.recording.scan import load

TARGET = """
named_thread(nap, "napper")
ready()
time.sleep(600)
"""

#: Quiet, fast collection: these tests are about the output file, not the sources.
QUIET = ("--interval", "0.1", "--no-pystacks", "--no-scrape", "--no-gpu")


def optitop(
    *args: str, timeout: float = 90, preexec: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optitop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        preexec_fn=preexec,
    )


def command(kind: str, pid: int, path: Path | str, *extra: str) -> list[str]:
    """``record`` for 1 s or ``bundle`` after 1 s of sampling, of ``pid`` into ``path``."""
    if kind == "record":
        return ["record", "--pid", str(pid), "-o", str(path), "--duration", "1", *QUIET, *extra]
    return ["bundle", "--pid", str(pid), "-o", str(path), "--sample", "1", *QUIET, *extra]


def one_line_error(got: subprocess.CompletedProcess[str], code: int) -> str:
    assert got.returncode == code, (got.returncode, got.stderr)
    err = got.stderr.strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    return err


def snapshot(path: Path) -> tuple[bytes, int, int]:
    """(bytes, mode, inode) of a file, looked at through the name given (links followed)."""
    st = path.stat()
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_ino


@pytest.mark.parametrize("kind", ["record", "bundle"])
def test_a_symlink_at_the_output_is_refused_and_its_target_untouched(start_target, tmp_path, kind):
    target = start_target(TARGET)
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    victim.chmod(0o644)
    before = snapshot(victim)
    link = tmp_path / "p.out"
    link.symlink_to(victim)
    err = one_line_error(optitop(*command(kind, target.pid, link)), 2)
    assert "symbolic link" in err
    assert snapshot(victim) == before  # same bytes, same 0644, same inode
    assert link.is_symlink() and os.readlink(link) == str(victim)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.out", "passwd"]  # no .part left either


@pytest.fixture
def device_node(tmp_path: Path) -> Path:
    """A private character device equal to /dev/null (so a regression cannot chmod the machine's own)."""
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"cannot create a device node here: {exc.strerror}")
    node.chmod(0o666)
    return node


def test_dev_null_is_refused_and_keeps_its_mode(start_target):
    target = start_target(TARGET)
    before = os.stat("/dev/null")
    try:
        err = one_line_error(optitop(*command("record", target.pid, "/dev/null")), 2)
    finally:
        if stat.S_IMODE(os.stat("/dev/null").st_mode) != stat.S_IMODE(before.st_mode):
            os.chmod("/dev/null", stat.S_IMODE(before.st_mode))  # never leave the machine broken
            pytest.fail("optitop changed the mode of /dev/null")
    assert "not a regular file" in err
    assert not os.path.lexists("/dev/null.part")


@pytest.mark.parametrize("what", ["device", "fifo", "directory"])
def test_special_files_are_refused_without_being_opened(start_target, tmp_path, device_node, what):
    target = start_target(TARGET)
    if what == "device":
        path = device_node
    elif what == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path, 0o644)  # an open for writing would block for ever with no reader
    else:
        path = tmp_path / "dir"
        path.mkdir(mode=0o755)
    mode = stat.S_IMODE(path.stat().st_mode)
    err = one_line_error(optitop(*command("record", target.pid, path), timeout=60), 2)
    assert ("not a regular file" in err) if what != "directory" else ("is a directory" in err)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert not any(p.name.endswith(".part") for p in tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["record", "bundle"])
def test_an_existing_file_is_refused_and_replaced_by_a_new_inode_only_with_force(start_target, tmp_path, kind):
    target = start_target(TARGET)
    path = tmp_path / "out"
    path.write_bytes(b"an earlier run, 3000 bytes\n" * 100)
    path.chmod(0o644)
    before = snapshot(path)
    err = one_line_error(optitop(*command(kind, target.pid, path)), 2)
    assert "already exists" in err and "--force" in err
    assert snapshot(path) == before
    old = tmp_path / "old-inode"
    os.link(path, old)  # keeps the old inode reachable: was it ever written or chmodded?
    got = optitop(*command(kind, target.pid, path, "--force"))
    assert got.returncode == 0, got.stderr
    data, mode, inode = snapshot(path)
    assert inode != before[2] and mode == 0o600 and data != before[0]
    assert snapshot(old) == before  # the replaced file: its bytes and its 0644, never written through
    if kind == "record":
        assert load(str(path)).complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-inode", "out"]


@contextlib.contextmanager
def small_tmpfs(directory: Path, size_kib: int = 64) -> Iterator[Path]:
    """A tmpfs of ``size_kib`` mounted on ``directory`` (skips with the reason where mounting is not allowed)."""
    directory.mkdir()
    got = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if got.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {got.stderr.strip() or got.returncode}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path, leave_bytes: int) -> None:
    """Fill the file system of ``directory`` until about ``leave_bytes`` are free."""
    with open(directory / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    if leave_bytes:
        size = (directory / "filler").stat().st_size
        os.truncate(directory / "filler", max(0, size - 4096 - leave_bytes))
    free = os.statvfs(directory)
    assert free.f_bavail * free.f_frsize <= leave_bytes + 8192


def limit_file_size(max_bytes: int) -> Callable[[], None]:
    """A preexec_fn that caps any file the child writes (EFBIG: the disk-full path without a mount)."""

    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return set_limit


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
def test_a_full_disk_while_recording_keeps_the_old_file_and_what_was_recorded(start_target, tmp_path, how):
    target = start_target(TARGET)
    preexec = None
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            where = stack.enter_context(small_tmpfs(tmp_path / "disk"))
        else:
            where = tmp_path
            preexec = limit_file_size(12_000)
        path = where / "run.jsonl"
        path.write_bytes(b'{"type": "an earlier recording"}\n' * 90 + b"x" * 30)  # 3,000 bytes
        assert path.stat().st_size == 3000
        before = snapshot(path)
        if how == "tmpfs":
            fill(where, leave_bytes=12_000)  # the header fits, a few seconds of samples do not
        argv = ["record", "--pid", str(target.pid), "-o", str(path), "--duration", "20", *QUIET, "--force"]
        got = optitop(*argv, preexec=preexec)
        assert got.returncode == 1, got.stderr  # a failure while running, as the README says
        assert "Traceback" not in got.stderr and "stopped early" in got.stderr
        assert snapshot(path) == before  # byte for byte, same inode, same mode
        part = where / "run.jsonl.part"
        assert str(part) in got.stderr  # the user is told where the recording is
        kept = load(str(part))  # what was recorded replays up to its last complete line
        assert kept.target.pid == target.pid and not kept.complete


@pytest.mark.parametrize("force", [False, True], ids=["new", "force"])
def test_a_full_disk_leaves_no_bundle_and_keeps_an_existing_one(start_target, tmp_path, force):
    target = start_target(TARGET)
    with small_tmpfs(tmp_path / "disk") as where:
        path = where / "incident.tar.gz"
        before = None
        if force:
            path.write_bytes(b"\x1f\x8b an earlier bundle" + b"." * 2980)
            before = snapshot(path)
        fill(where, leave_bytes=0)
        extra = ("--force",) if force else ()
        got = optitop(*command("bundle", target.pid, path, *extra))
        err = one_line_error(got, 1)
        assert "No space left on device" in err
        if before is None:
            assert not path.exists()  # no 0-byte or cut archive at the name
        else:
            assert snapshot(path) == before
        assert sorted(p.name for p in where.iterdir()) == (["filler", "incident.tar.gz"] if force else ["filler"])
