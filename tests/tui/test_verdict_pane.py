"""The verdict pane: the class in large type with its confidence, evidence, fixes, runners-up and the strip."""

from __future__ import annotations

from rich.style import Style
from tuiscreen import wait_for_screen

from optitop.config import Options
from optitop.live import StoreView
from optitop.model import Diagnosis, TargetInfo, Window
from optitop.store import Store
from optitop.tui.app import OptitopApp
from optitop.tui.panes.verdict import STRIP_CHARS, VerdictPane

TARGET = TargetInfo(pid=4242, name="server", cmdline="python server.py", username="u", create_time_s=0.0, host="h")

COMPUTE = Diagnosis(
    category="compute",
    confidence=0.72,
    evidence=("tensor cores active 75 %", "SMs active 78 % with DRAM at 23 % of peak", "GPU (gpm): SM 78 %"),
    fixes=("Use bf16/fp16 (torch.autocast) and torch.compile", "more GPUs", "a third fix"),
    secondary=(("memory_io", 0.31), ("host_cpu", 0.22)),
    missing=("no queue metrics: pass --metrics-url",),
    counter=("memory_io if GPU DRAM bandwidth % of peak >= 60 (now 23)",),
    mono_s=10.0,
)
IDLE = Diagnosis(category="idle", confidence=0.8, evidence=("process CPU 1.0 % of a core",), mono_s=1.0)


def _window(*diagnoses: Diagnosis) -> Window:
    return Window(samples={}, statuses={}, target=TARGET, now_mono_s=20.0, span_s=10.0, diagnoses=diagnoses)


def test_gathering_before_the_first_verdict():
    text = VerdictPane().build(_window(), 78)
    assert text.plain == "verdict: gathering data…"


def test_verdict_block_confidence_evidence_fixes_and_runners_up():
    pane = VerdictPane()
    text = pane.build(_window(IDLE, IDLE, COMPUTE), 78)
    lines = text.plain.splitlines()
    assert lines[0].startswith(" COMPUTE-BOUND  72% ")
    assert "confident" in lines[0]
    assert lines[0].endswith("··C")  # the strip: one cell per verdict, newest right
    assert lines[1:4] == [
        "  · tensor cores active 75 %",
        "  · SMs active 78 % with DRAM at 23 % of peak",
        "  · GPU (gpm): SM 78 %",
    ]
    assert lines[4:6] == ["  1. Use bf16/fp16 (torch.autocast) and torch.compile", "  2. more GPUs"]
    assert not any("a third fix" in line for line in lines)  # top fixes only
    assert lines[6] == "runners-up: memory i/o 31%, host cpu 22%"
    assert lines[7].startswith("would change it: memory_io if")
    assert lines[-1] == "missing: no queue metrics: pass --metrics-url"
    assert all(len(line) <= 78 for line in lines)


def test_few_rows_keep_the_most_important_lines_in_reading_order():
    pane = VerdictPane()
    pane.max_lines = 4
    lines = pane.build(_window(COMPUTE), 78).plain.splitlines()
    assert [line[:12] for line in lines] == [" COMPUTE-BOU", "  · tensor c", "  1. Use bf1", "runners-up: "]
    pane.max_lines = 6
    lines = pane.build(_window(COMPUTE), 78).plain.splitlines()
    assert len(lines) == 6 and "  2. more GPUs" in lines and "  · SMs active 78 % with DRAM at 23 % of peak" in lines
    assert lines[-1].startswith("runners-up")


def test_zoomed_shows_everything():
    pane = VerdictPane()
    pane.max_lines = 4
    pane.zoomed = True
    plain = pane.build(_window(COMPUTE), 78).plain
    assert "  3. a third fix" in plain and "GPU (gpm): SM 78 %" in plain and "would change it" in plain


def test_headline_is_bold_reverse_video():
    text = VerdictPane().build(_window(COMPUTE), 78)
    head = next(span for span in text.spans if span.start == 0)
    style = head.style if isinstance(head.style, Style) else Style.parse(str(head.style))
    assert style.bold and style.reverse


def test_narrow_terminal_drops_the_strip_and_clips_lines():
    text = VerdictPane().build(_window(*([IDLE] * 30), COMPUTE), 40)
    lines = text.plain.splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert "··" not in lines[0]  # no room for a strip worth drawing
    assert lines[2] == "  · SMs active 78 % with DRAM at 23 % o…"  # clipped, not wrapped


def test_long_label_fits_a_narrow_terminal():
    host = Diagnosis(category="host_cpu", confidence=0.61, evidence=("x",))
    for width in (20, 30, 34, 40):
        first = VerdictPane().build(_window(host), width).plain.splitlines()[0]
        assert len(first) <= width
    assert VerdictPane().build(_window(host), 30).plain.startswith(" HOST CPU / PYTHON-BOUND  61% ")


def test_strip_is_bounded_and_shows_the_latest():
    history = [IDLE] * 100 + [COMPUTE] * 3
    first = VerdictPane().build(_window(*history), 160).plain.splitlines()[0]
    strip = first.rstrip().split(" ")[-1]
    assert len(strip) == 40 and strip.endswith("CCC") and set(strip) <= set(STRIP_CHARS.values())


def test_unknown_shows_no_confidence():
    unknown = Diagnosis(category="unknown", confidence=0.0, evidence=("1 process sample(s) so far",))
    first = VerdictPane().build(_window(unknown), 78).plain.splitlines()[0]
    assert first.startswith(" NOT JUDGED YET ") and "%" not in first


def test_evidence_from_the_target_is_shown_literally():
    sneaky = Diagnosis(category="host_cpu", confidence=0.5, evidence=("busiest thread '[bold red]x[/]' 99 %",))
    text = VerdictPane().build(_window(sneaky), 78)
    assert "'[bold red]x[/]'" in text.plain


async def test_pane_in_the_app_colours_each_class():
    store = Store(TARGET)
    for d in (IDLE, IDLE, COMPUTE):
        store.add_diagnosis(d)
    app = OptitopApp(StoreView(store), Options(interval_s=0.2))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await wait_for_screen(pilot, lambda t: "COMPUTE-BOUND" in t)
        assert "72%" in screen and "tensor cores active 75 %" in screen
        pane = app.query_one(VerdictPane)
        text = pane.build(store.window(), pane.content_width())
        styles = {text.plain[s.start : s.end]: s.style for s in text.spans}
        compute_cell = styles["C"]
        idle_cell = styles["··"]  # a run of one class is one span (one escape sequence on the wire)
        assert isinstance(compute_cell, Style) and compute_cell.color is not None
        assert compute_cell != idle_cell  # one colour per class
        assert pane.region.height <= 12  # leaves room for the other panes at 80x24
