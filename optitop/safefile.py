"""The one way optitop creates an output file: recordings, incident bundles, and the ``r`` and ``b`` keys.

Why it exists: optitop often runs as root, and its files land where other users can write (the current
directory of the ``r`` and ``b`` keys, /tmp). Opening the final name with ``O_CREAT|O_TRUNC`` followed a link
planted there and overwrote what it pointed at (/etc/passwd), chmodded devices (``-o /dev/null``), and on a
full disk left a cut file where a good one had been. So every output goes through :class:`SafeFile`:

- The data is written to a **new** file next to the destination, ``NAME.part`` (``NAME.<random>.part`` when
  that name is taken: a leftover of a killed run is never reused), created with ``O_CREAT|O_EXCL|O_NOFOLLOW``
  and mode 0600. It is private from its first byte, it is never a file that existed before, and it is never
  reached through a link. Nothing is ever chmodded.
- Only a **complete** file reaches ``NAME``: ``commit()`` flushes and fsyncs it (a full disk shows up here, not
  after the rename) and renames it into place. Without ``force`` the rename cannot replace anything (a hard
  link, which fails when ``NAME`` exists, then the temporary name is removed). With ``force`` an existing
  regular file is replaced by the rename: its inode is never opened, written or chmodded, so a failure at any
  point leaves it byte for byte as it was.
- ``NAME`` must not be a symbolic link, a directory, a device, a FIFO or a socket, with or without ``force``;
  this is checked before anything is written (so a command fails before it samples) and again at the rename.
- When writing fails, the caller decides what happens to the temporary file: ``discard()`` removes it (half an
  archive is of no use), ``keep()`` leaves it (half a recording replays up to its last complete line, so a
  recording killed or cut by a full disk is never lost: it stays as ``NAME.part``).

Symlinks in the directories along the path are not checked (the same rule as ``--log``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

#: The suffix of the file being written; it becomes the destination's name only when complete.
PART_SUFFIX = ".part"
#: Errors of ``link()`` that mean "this file system has no hard links" (then a checked rename is used).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})


class RefusedPathError(OSError):
    """The destination is not a place optitop writes to (a link, a special file, or an existing file).

    An ``OSError`` so that code catching write errors catches it too; ``strerror`` is the sentence for the user.
    """

    def __init__(self, path: str, code: int, why: str) -> None:
        super().__init__(code, why, path)


def check_destination(path: str, *, force: bool = False) -> None:
    """Raise :class:`RefusedPathError` unless ``path`` is free, or (with ``force``) an existing regular file.

    ``lstat`` looks at the name itself, so a link is refused rather than followed.
    """
    if not os.path.basename(path):
        raise RefusedPathError(path, errno.EISDIR, "is a directory name, not a file name")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise RefusedPathError(path, errno.ELOOP, "is a symbolic link; optitop does not write through links")
    if stat.S_ISDIR(st.st_mode):
        raise RefusedPathError(path, errno.EISDIR, "is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise RefusedPathError(path, errno.EINVAL, "is not a regular file (a device, FIFO or socket)")
    if not force:
        raise RefusedPathError(path, errno.EEXIST, "already exists (pass --force to replace it)")


def _create_part(path: str) -> tuple[int, str]:
    """A new 0600 file next to ``path``: ``path.part``, or ``path.<random>.part`` when that name is taken."""
    part = path + PART_SUFFIX
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(part, flags, 0o600), part
    except FileExistsError:
        pass  # a leftover recording (or a planted link): never reused, never followed
    # mkstemp opens with O_CREAT|O_EXCL|O_NOFOLLOW and mode 0600 too, under an unpredictable name.
    directory, base = os.path.split(path)
    return tempfile.mkstemp(prefix=base + ".", suffix=PART_SUFFIX, dir=directory or ".")


class SafeFile:
    """A new private file written under a temporary name and renamed onto ``path`` when complete.

    ``file`` is the open binary stream to write to; ``part_path`` is where the bytes are until ``commit()``.
    Exactly one of ``commit()``, ``discard()`` or ``keep()`` ends it.
    """

    def __init__(self, path: str, *, force: bool = False) -> None:
        """Check ``path`` (:class:`RefusedPathError`) and create the temporary file (``OSError`` when it cannot)."""
        check_destination(path, force=force)
        self.path = path
        self.force = force
        fd, self.part_path = _create_part(path)
        try:
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(self.part_path)
            raise
        self.committed = False

    def commit(self) -> None:
        """Make the bytes durable and rename them onto ``path``; on ``OSError`` the file is still at ``part_path``.

        The caller then chooses ``discard()`` or ``keep()``.
        """
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
        check_destination(self.path, force=self.force)  # something may have appeared there meanwhile
        if self.force:
            os.replace(self.part_path, self.path)  # replaces the name; never writes through the old inode
        else:
            _rename_no_replace(self.part_path, self.path)
        self.committed = True
        _sync_directory(self.path)

    def discard(self) -> None:
        """Close and remove the temporary file (a failed archive leaves nothing behind)."""
        self._close_quietly()
        if not self.committed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.part_path)

    def keep(self) -> str:
        """Close the temporary file and leave it where it is; returns its name (for the user)."""
        self._close_quietly()
        return self.part_path

    def _close_quietly(self) -> None:
        with contextlib.suppress(OSError):  # the buffer's flush may fail on a full disk; the fd is closed anyway
            self.file.close()


def numbered_names(path: str, suffix: str, count: int = 20) -> Iterator[str]:
    """``path``, then ``<stem>-2<suffix>`` … ``<stem>-<count><suffix>``: the names the ``r`` and ``b`` keys try.

    Their names are predictable (pid and time), so one may be taken, by chance or by a link planted there; the
    key moves on to the next name rather than write through it or over it.
    """
    stem = path[: -len(suffix)] if suffix and path.endswith(suffix) else path
    yield path
    for n in range(2, count + 1):
        yield f"{stem}-{n}{suffix}"


def create_numbered(path: str, suffix: str, count: int = 20) -> tuple[SafeFile, list[RefusedPathError]]:
    """A :class:`SafeFile` at the first free name of :func:`numbered_names`, and the refusals of the names skipped.

    Raises the first refusal when every name is taken (and any other ``OSError`` at once).
    """
    skipped: list[RefusedPathError] = []
    for name in numbered_names(path, suffix, count):
        try:
            return SafeFile(name), skipped
        except RefusedPathError as exc:
            skipped.append(exc)
    raise skipped[0]


def _rename_no_replace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist (``link`` never replaces; then drop ``src``)."""
    try:
        os.link(src, dst, follow_symlinks=False)
    except FileExistsError as exc:
        raise RefusedPathError(dst, errno.EEXIST, "appeared while optitop was writing; not replaced") from exc
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        check_destination(dst)  # no hard links here: a checked rename (a narrow race, never a write-through)
        os.rename(src, dst)
        return
    os.unlink(src)


def _sync_directory(path: str) -> None:
    """fsync the directory so the rename survives a crash (best effort: not every file system allows it)."""
    try:
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
