"""What the live screen may ask of whatever feeds it: the handle the UI receives instead of a session and a store.

The screen draws windows, follows changes, steps the history, and asks for actions (record, incident bundle,
native stack sample) whose answers it shows as notifications. How the data are collected, recorded or bundled is
the runtime's business (``optitop.runtime.LiveRuntime``); a replay or a test feeds the same screen with a
``StoreView``, whose actions say they are not available. The UI imports this module and the model, nothing that
builds a store or a session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from optitop.model import Window

if TYPE_CHECKING:
    from optitop.store import Store

#: Textual's notification severities.
Severity = Literal["information", "warning", "error"]
Listener = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Notice:
    """What an action has to tell the user (one notification)."""

    text: str
    severity: Severity = "information"


class LiveHandle(Protocol):
    """The live screen's view of the runtime: data to draw, and the actions its keys ask for."""

    @property
    def history_s(self) -> float:
        """Seconds of history kept per series."""
        ...

    @property
    def recording(self) -> str:
        """The name of the file being recorded ("" when none): the header shows it."""
        ...

    @property
    def live(self) -> bool:
        """True when a live process is behind the screen (a bundle can be gathered, a native sample taken)."""
        ...

    def window(self, span_s: float | None = None) -> Window:
        """The last ``span_s`` seconds (all history when None), cut now."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(series_name)`` after every change (from a collector's thread: keep it to a flag)."""
        ...

    def unsubscribe(self, listener: Listener) -> None:
        """Stop calling ``listener``."""
        ...

    def set_history(self, history_s: float) -> None:
        """Keep ``history_s`` seconds of history."""
        ...

    def start(self) -> None:
        """Build and start collecting. Slow (imports, probes): the screen calls it on a thread after its first
        frame. Raises with a reason the user can read when nothing can be collected."""
        ...

    def stop(self, timeout_s: float = 3.0) -> None:
        """Stop recording and collecting (idempotent); a start still under way then starts nothing."""
        ...

    def toggle_record(self) -> tuple[Notice, ...]:
        """Start or stop recording everything collected; what to tell the user (``recording`` says the file)."""
        ...

    def write_bundle(self) -> Notice:
        """Write an incident bundle (takes seconds: call it off the UI thread); what to tell the user."""
        ...

    def request_native(self) -> Notice:
        """Start a short native stack sample (returns at once); what to tell the user."""
        ...

    def set_stacks_watched(self, watched: bool) -> None:
        """The user looks at the stacks (the Python pane zoomed), or no longer: sample them at full duty while so."""
        ...


class Playback(Protocol):
    """What the replay screen drives: a position in a recording that plays, pauses, steps and seeks
    (``optitop.recording.replayer.Replayer`` is one). The replay screen imports this, never the recording code."""

    speed: float
    paused: bool

    @property
    def path(self) -> str:
        """The recording's file."""
        ...

    @property
    def at_end(self) -> bool:
        """True when every event has been replayed."""
        ...

    @property
    def start_mono_s(self) -> float:
        """The recording's first instant."""
        ...

    @property
    def elapsed_s(self) -> float:
        """Recorded seconds since the start."""
        ...

    @property
    def duration_s(self) -> float:
        """The recording's length in seconds."""
        ...

    def wall_time(self) -> float:
        """The wall-clock time of the position, as it was when recorded."""
        ...

    def tick(self) -> bool:
        """Advance by the wall time since the previous tick times the speed; True when the position moved."""
        ...

    def seek(self, mono_s: float) -> None:
        """Jump to ``mono_s``."""
        ...

    def seek_by(self, seconds: float) -> None:
        """Jump ``seconds`` of recorded time forward (back when negative)."""
        ...

    def step(self) -> None:
        """Pause and move one sampling interval forward."""
        ...

    def toggle_pause(self) -> None:
        """Pause or resume."""
        ...


class StoreView:
    """A handle over a store that nothing here collects into: a replay, or a test's data.

    It reads the store and steps its history; start and stop do nothing; the actions answer that they are not
    available. ``optitop.runtime.LiveRuntime`` builds on it for a live target.
    """

    #: What record, bundle and native say on a screen with nothing live behind it.
    NO_RECORD = "recording is off while replaying: the file is already a recording"
    NO_BUNDLE = "incident bundle: not available in a replay (there is no live process to gather from)"
    NO_NATIVE = "native stacks: not available in a replay (there is no live process to sample)"

    def __init__(self, store: Store) -> None:
        """Show ``store``."""
        self.store = store

    @property
    def history_s(self) -> float:
        """Seconds of history kept per series."""
        return self.store.history_s

    @property
    def recording(self) -> str:
        """Nothing is recorded from here."""
        return ""

    @property
    def live(self) -> bool:
        """No live process here."""
        return False

    def window(self, span_s: float | None = None) -> Window:
        """The store's window."""
        return self.store.window(span_s)

    def subscribe(self, listener: Listener) -> None:
        """Follow the store's changes."""
        self.store.subscribe(listener)

    def unsubscribe(self, listener: Listener) -> None:
        """Stop following the store's changes."""
        self.store.unsubscribe(listener)

    def set_history(self, history_s: float) -> None:
        """Change how much history the store keeps."""
        self.store.set_history(history_s)

    def start(self) -> None:
        """Nothing to start."""

    def stop(self, timeout_s: float = 3.0) -> None:
        """Nothing to stop."""

    def toggle_record(self) -> tuple[Notice, ...]:
        """Not available."""
        return (Notice(self.NO_RECORD),)

    def write_bundle(self) -> Notice:
        """Not available."""
        return Notice(self.NO_BUNDLE, "warning")

    def request_native(self) -> Notice:
        """Not available."""
        return Notice(self.NO_NATIVE, "warning")

    def set_stacks_watched(self, watched: bool) -> None:
        """Nothing samples stacks here."""
