"""Data flows one way: collectors gather, analyzers judge, the TUI renders. These tests keep the layers apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# folder -> modules it must never import (top-level names)
BANNED = {
    "analyzers": {
        "textual",
        "psutil",
        "pynvml",
        "subprocess",
        "socket",
        "urllib",
        "http",
        "threading",
        "time",
        "optitop.collectors",
        "optitop.tui",
        "optitop.session",
    },
    "tui": {"psutil", "pynvml", "subprocess", "urllib", "http", "optitop.collectors.procfs"},
    "collectors": {"textual", "optitop.tui", "optitop.analyzers"},
    "optitop": {"textual_plotext", "plotext", "torch"},
}


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def violates(name: str, banned: set[str]) -> str | None:
    for ban in banned:
        if name == ban or name.startswith(ban + "."):
            return ban
    return None


@pytest.mark.parametrize("folder", sorted(BANNED))
def test_folder_imports_stay_in_their_layer(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for name in imported_names(path):
            ban = violates(name, BANNED[folder])
            if ban:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_tui_panes_only_render():
    """Panes start no threads and read no data sources (the session does that)."""
    for path in sorted((ROOT / "tui" / "panes").glob("*.py")):
        names = imported_names(path)
        assert "threading" not in names, path
        assert "psutil" not in names, path


def run_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/").stdout


def test_headless_core_does_not_load_the_ui_or_torch():
    out = run_python(
        "import sys, optitop.cli, optitop.runtime, optitop.analyzers, optitop.collectors.process;"
        "print(sorted(m for m in ('textual', 'torch', 'plotext', 'pynvml') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_analyzers_load_no_vendor_module():
    out = run_python(
        "import sys, optitop.analyzers;print(sorted(m for m in ('psutil', 'pynvml', 'textual') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_nothing_imports_the_entry_point():
    """The subcommands build their parsers from optitop.args: none reaches back into optitop.cli for a helper
    (that made an import circle of six modules). Only ``python -m optitop`` and the demo, which runs the live
    screen on its own server, call the entry point."""
    allowed = {ROOT / "optitop" / "__main__.py", ROOT / "optitop" / "cli.py", ROOT / "demo" / "cli.py"}
    bad = []
    for folder in ("optitop", "collectors", "analyzers", "tui", "demo"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path not in allowed and "optitop.cli" in imported_names(path):
                bad.append(str(path.relative_to(ROOT)))
    assert not bad, f"these import optitop.cli: {bad}"
