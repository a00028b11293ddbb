"""The picker: shown when optitop starts without a target; type to filter, Enter attaches."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from optitop.model import Candidate
from optitop.tui.format import clip, fmt_bytes


def candidate_label(c: Candidate, width: int = 110) -> Text:
    """One row: pid, CPU, RSS, why it is offered, the cmdline (literal)."""
    why = ", ".join(
        x for x in (c.known, "torch" if c.torch else "", ":" + ",".join(map(str, c.ports)) if c.ports else "") if x
    )
    text = Text()
    text.append(f"{c.pid:>8} {c.cpu_pct:5.0f}% {fmt_bytes(c.rss_bytes):>9}  ")
    text.append(clip(why, 22).ljust(22), style="bold")
    text.append(" " + clip(c.cmdline, max(10, width - 50)))
    return text


class PickerApp(App[int]):
    """Returns the chosen pid (or None when the user quits)."""

    CSS = """
    #filter { dock: top; }
    #hint { dock: top; height: 1; color: $text-muted; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,ctrl+c", "quit", "quit")]

    def __init__(self, candidates: list[Candidate]) -> None:
        """Offer ``candidates`` (already ranked)."""
        super().__init__()
        self.candidates = candidates

    def compose(self) -> ComposeResult:
        """Filter box, hint, list."""
        yield Input(placeholder="type to filter (pid, name, cmdline); Enter attaches", id="filter")
        yield Static("likely inference servers first: known servers, torch loaded, listening ports, CPU", id="hint")
        yield OptionList(id="choices")
        yield Footer()

    def on_mount(self) -> None:
        """Fill the list."""
        self._fill("")

    def _fill(self, needle: str) -> None:
        options = self.query_one(OptionList)
        options.clear_options()
        needle = needle.lower()
        width = max(60, self.size.width - 4)
        for c in self.candidates:
            if needle and needle not in f"{c.pid} {c.name} {c.cmdline} {c.known}".lower():
                continue
            options.add_option(Option(candidate_label(c, width), id=str(c.pid)))
        if options.option_count:
            options.highlighted = 0

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the user types."""
        self._fill(event.value)

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        """Enter in the filter box attaches to the highlighted process."""
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            self._choose(options.get_option_at_index(options.highlighted).id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        """Enter or click on a row attaches."""
        self._choose(event.option.id)

    def on_key(self, event: object) -> None:
        """Up/down move the highlight while typing in the filter box."""
        key = getattr(event, "key", "")
        if key in ("up", "down"):
            options = self.query_one(OptionList)
            options.action_cursor_up() if key == "up" else options.action_cursor_down()

    def _choose(self, option_id: str | None) -> None:
        if option_id is not None:
            self.exit(int(option_id))
