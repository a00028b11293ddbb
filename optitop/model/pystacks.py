"""What the target's Python threads did over a window: what the py-spy collector produces."""

from __future__ import annotations

from dataclasses import dataclass

from optitop.model.core import Sample


@dataclass(frozen=True, slots=True)
class PyThread:
    """One Python thread over the sample's window.

    Attributes:
        tid: the OS thread id.
        name: the Python thread name (``threading.Thread(name=...)``), shown literally.
        samples: stack samples of this thread in the window.
        active_pct: % of samples on CPU.
        gil_pct: % of samples holding the GIL.
        top_frame: the most frequent leaf frame, ``func (file:line)``.
        wait: the dominant wait class when the thread is mostly idle, "" when mostly active.
        waits: the fraction of this thread's samples per class (``active``, wait classes, ``other``).
    """

    tid: int
    name: str
    samples: int
    active_pct: float
    gil_pct: float
    top_frame: str
    wait: str
    waits: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class HotFunction:
    """A function where samples land: ``self_pct`` as the leaf, ``total_pct`` anywhere in the stack."""

    name: str
    location: str
    self_pct: float
    total_pct: float
    native: bool


@dataclass(frozen=True, slots=True)
class PyStacksSample(Sample):
    """What the target's Python threads did since the previous sample.

    Attributes:
        mode: "record" (sampling windows) or "dump" (one instant, e.g. a trigger).
        window_s: seconds of sampling behind this sample (0 for a dump).
        samples: sample instants.
        threads: every Python thread seen, busiest first.
        gil_pct: % of instants in which some thread held the GIL; None when unknown.
        active_pct: mean active % over the threads that were ever active.
        waits: process-wide fractions of thread wall time per class (BREAKDOWN_CLASSES order).
        hot: hot functions (Python; native ones from the latest native burst when it is new).
        native_mix: fractions of native samples per op class (math, memory, alloc, interpreter, other),
            from the latest native burst; None when none ran.
        native_age_s: seconds since that native burst ended; None when none ran.
        trigger: why this sample was taken out of turn ("" for the regular windows).
        stacks_pid: the process py-spy read: the target, or its busiest Python child when the target itself is
            not Python (a Java or C++ frontend with Python workers, e.g. TorchServe) or idles while the child
            works (a pre-fork master); None in old recordings.
        py_op_mix: fractions of the on-CPU Python samples per op class (math, memory, interpreter) read from the
            Python frames (the leaf line's tensor op, else the nearest nn.Module forward): the arithmetic-intensity
            view without a native burst; None when no sample was on CPU (and in old recordings).
    """

    mode: str
    window_s: float
    samples: int
    threads: tuple[PyThread, ...]
    gil_pct: float | None
    active_pct: float
    waits: tuple[tuple[str, float], ...]
    hot: tuple[HotFunction, ...]
    native_mix: tuple[tuple[str, float], ...] | None
    native_age_s: float | None
    trigger: str
    stacks_pid: int | None = None
    py_op_mix: tuple[tuple[str, float], ...] | None = None
