"""Naming threads in the kernel, for optitop's own threads and the demo's.

Python before 3.14 names threads only inside ``threading``; ``top -H``, py-spy, htop and optitop itself read thread
names from the kernel (``/proc/<pid>/task/<tid>/comm``). Naming them there shows which thread costs what.
"""

from __future__ import annotations

import contextlib
import threading


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` in the kernel too (15 characters at most); best effort."""
    with (
        contextlib.suppress(OSError, AttributeError),
        open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as fh,
    ):
        fh.write(name[:15])
