"""Every option of every subcommand, given nan, inf, negatives, zero, huge, empty and garbage values: exit 2 with
one ``optitop:`` line naming the option and nothing else on stderr, never a traceback, and never
an absurd value taken (``--pid 4294967296`` overflowed psutil, ``--interval inf`` the store, ``--interval 1e9`` a
timer thread; ``--pyspy-duty 2``, ``--native-every nan`` and a ``file://`` metrics URL were accepted).

The table runs through ``optitop.cli.main`` in this process (the parse is the fast part); a guard argument after the
bad one makes an accepted value fail with an error that does not name the option, so acceptance never starts a
real session. ``test_every_option_is_in_the_table`` fails when a new option comes without bad values here.
A few of the issue's own cases also run through the installed ``optitop`` command.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from optitop.cli import main
from optitop.commands.doctor import doctor_parser
from optitop.commands.top import main_parser

OPTITOP = shutil.which("optitop", path=str(Path(sys.executable).parent)) or "optitop"

NUMBERS = ["nan", "inf", "-inf", "-1", "1e309", "1e12", "", "abc", "0x10"]
INTEGERS = ["-1", "0", "4294967296", "99999999999999999999", "1.5", "", "abc", "nan"]
URLS = [
    "",
    "file:///etc/passwd",
    "ftp://127.0.0.1/metrics",
    "unix:///run/x.sock",
    "http://",
    "http:///metrics",
    "https://127.0.0.1:99999/metrics",
    "http://127.0.0.1:0/metrics",
    "http://127.0.0.1:80\x1b[2J/metrics",
]

#: (subcommand, option, bad values, guard): the guard follows the bad option (see the module docstring);
#: ``--listen`` is checked after the parse, so its row relies on the missing target instead.
GUARD = ["--no-such-option-guard"]
SHARED: list[tuple[str, list[str]]] = [
    ("--pid", INTEGERS),
    ("--port", [*INTEGERS, "65536"]),
    ("--name", ["", "   ", "(", "[z-a]"]),
    ("--interval", [*NUMBERS, "0", "1e-9", "3601"]),
    ("--history", [*NUMBERS, "0", "86401"]),
    ("--window", [*NUMBERS, "0", "3601"]),
    ("--metrics-url", URLS),
    ("--log", [""]),
    ("--pyspy-rate", [*NUMBERS, "0", "0.5", "1001"]),
    ("--pyspy-duty", [*NUMBERS, "0", "2", "1.0001"]),
    ("--native-every", [*NUMBERS, "0.5"]),
]
COLLECTING = ["", "doctor", "record", "export", "bundle"]
ROWS: list[tuple[str, str, list[str], list[str]]] = [
    *((sub, opt, values, GUARD) for sub in COLLECTING for opt, values in SHARED),
    ("", "--duration", [*NUMBERS, "0", "604801"], GUARD),
    ("record", "--duration", [*NUMBERS, "0", "604801"], GUARD),
    ("bundle", "--minutes", [*NUMBERS, "0", "1441"], GUARD),
    ("bundle", "--sample", [*NUMBERS, "0", "3601"], GUARD),
    ("export", "--listen", ["", "garbage", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:abc"], []),
    ("replay", "--speed", [*NUMBERS, "0", "1001"], GUARD),
    ("demo", "--duration", [*NUMBERS, "0", "604801"], GUARD),
    ("demo", "--port", [*INTEGERS[:1], *INTEGERS[2:], "65536"], GUARD),
    ("demo", "--scenario", ["", "nope"], GUARD),
    ("demo", "--device", ["", "gpu"], GUARD),
]
#: Options whose bad values another suite covers (paths: tests/optitop/test_record_replay.py and friends).
ELSEWHERE = {("record", "--output"), ("bundle", "--output"), ("replay", "path"), ("compare", "before")}
ELSEWHERE |= {("compare", "after")}
ELSEWHERE |= {("export", "--web-config")}  # eleven bad web-config files: tests/optitop/test_exporter.py
#: What a subcommand needs besides the bad option to reach the option's check.
REQUIRED = {"record": ["-o", "/nonexistent/x.jsonl"], "bundle": ["-o", "/nonexistent/x.tgz"], "replay": ["x"]}


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from optitop.commands.bundle import bundle_parser
    from optitop.commands.compare import compare_parser
    from optitop.commands.export import export_parser
    from optitop.commands.record import record_parser
    from optitop.commands.replay import replay_parser
    from optitop.demo.cli import parser as demo_parser

    makers: dict[str, Callable[[], argparse.ArgumentParser]] = {
        "": main_parser,
        "doctor": doctor_parser,
        "record": record_parser,
        "replay": replay_parser,
        "compare": compare_parser,
        "export": export_parser,
        "bundle": bundle_parser,
        "demo": demo_parser,
    }
    return {sub: make() for sub, make in makers.items()}


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's error() exits
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def _cases() -> list[tuple[str, str, str, list[str]]]:
    return [(sub, opt, value, guard) for sub, opt, values, guard in ROWS for value in values]


@pytest.mark.parametrize(
    ("sub", "option", "value", "guard"), _cases(), ids=[f"{c[0] or 'live'} {c[1]} {c[2]!r}" for c in _cases()]
)
def test_bad_value_is_one_line_and_exit_2(sub, option, value, guard, capsys):
    argv = [*([sub] if sub else []), *REQUIRED.get(sub, []), f"{option}={value}", *guard]
    code, err = _run_main(argv, capsys)
    assert code == 2, f"{argv!r} was accepted: {err}"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("optitop"), f"not one line: {err}"
    assert option in err, f"the error does not name {option}: {err}"
    assert "\x1b" not in err, "the bad value reached the terminal raw"


@pytest.mark.parametrize("sub", ["", "doctor", "record", "replay", "compare", "export", "bundle", "demo"])
def test_an_unknown_argument_with_escapes_is_shown_escaped(sub, capsys):
    required = {**REQUIRED, "compare": ["a", "b"]}.get(sub, [])
    code, err = _run_main([*([sub] if sub else []), *required, "--bogus\x1b]0;PWN\x07\x1b[2J"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("optitop"), err
    assert "\x1b" not in err and "\x07" not in err and "PWN" in err, err


def test_every_option_is_in_the_table():
    covered = {(sub, opt) for sub, opt, _values, _guard in ROWS} | ELSEWHERE
    missing = []
    for sub, parser in _parsers().items():
        for action in parser._actions:  # noqa: SLF001 - argparse has no public list of its options
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):  # noqa: SLF001
                continue
            name = max(action.option_strings, key=len) if action.option_strings else action.dest
            if (sub, name) not in covered:
                missing.append(f"{sub or 'optitop'} {name}")
    assert not missing, f"options with no bad values tried: {missing}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--pid", "4294967296"],
        ["--pid", "4294967296", "--once"],
        ["doctor", "--pid", "4294967296"],
        ["record", "--pid", "4294967296", "-o", "/nonexistent/x.jsonl"],
        ["--once", "--pid", "1", "--interval", "inf"],
        ["--once", "--pid", "1", "--interval", "1e9"],
        ["--once", "--pid", "1", "--pyspy-duty", "2"],
        ["--once", "--pid", "1", "--native-every", "nan"],
        ["--once", "--pid", "1", "--metrics-url", "file:///etc/passwd"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_the_issues_cases_through_the_installed_command(argv):
    result = subprocess.run([OPTITOP, *argv], capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("optitop:"), result.stderr
