"""Data flows one way: collectors gather, the store keeps, analyzers judge, the TUI and the outputs present.

These tests are the layering contracts, checked on every product module's imports (lazy ones inside functions
too): what each layer may import of optitop (``CONTRACTS``), which vendors it must never import (``BANNED``), no
import circle among product modules, and who may import the commands and the entry point.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Checkout folder -> the package it installs as (pyproject's package-dir).
PACKAGES = {
    "optitop": "optitop",
    "collectors": "optitop.collectors",
    "analyzers": "optitop.analyzers",
    "tui": "optitop.tui",
    "demo": "optitop.demo",
}

#: Layer -> (the modules in it, the optitop modules they may import). A name matches a module and everything
#: under it; "=optitop" is the package itself only (its ``__version__``).
CONTRACTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # the data model: nothing of ours but itself (and no vendor: BANNED, test_model_loads_no_vendor_module)
    "model": (("optitop.model",), ("optitop.model",)),
    # analyzers judge a window of model types: pure, no collectors, no store, no UI
    "analyzers": (("optitop.analyzers",), ("optitop.analyzers", "optitop.model")),
    # collectors gather into model types; they never see the store, the session, the analyzers or the UI
    "collectors": (
        ("optitop.collectors",),
        ("optitop.collectors", "optitop.model", "optitop.config", "optitop.redact", "optitop.safetext"),
    ),
    "store": (("optitop.store",), ("optitop.model", "optitop.redact")),
    "session": (
        ("optitop.session", "optitop.policies", "optitop.follow"),
        (
            "optitop.session",
            "optitop.policies",
            "optitop.model",
            "optitop.store",
            "optitop.config",
            "optitop.osthread",
            "optitop.target",
        ),
    ),
    # recordings: model values to JSON and back, and a store replayed (re-judged by the analyzers)
    "recording": (
        ("optitop.recording",),
        (
            "=optitop",
            "optitop.recording",
            "optitop.model",
            "optitop.store",
            "optitop.analyzers",
            "optitop.config",
            "optitop.safetext",
            "optitop.safefile",
        ),
    ),
    # what the screen may ask of its handle: model types (the store only to type the StoreView it wraps)
    "handle": (("optitop.live",), ("optitop.model", "optitop.store")),
    # the composition root builds everything below the commands and the UI, and never reaches up into them
    "runtime": (
        ("optitop.runtime",),
        (
            "optitop.runtime",
            "optitop.model",
            "optitop.store",
            "optitop.session",
            "optitop.policies",
            "optitop.follow",
            "optitop.live",
            "optitop.collectors",
            "optitop.analyzers",
            "optitop.recording",
            "optitop.bundle",
            "optitop.config",
            "optitop.target",
            "optitop.safefile",
        ),
    ),
    # the outputs read windows of model types: no collector, no session, no UI
    "outputs": (
        ("optitop.exporter", "optitop.serialize"),
        (
            "=optitop",
            "optitop.model",
            "optitop.store",
            "optitop.redact",
            "optitop.httpserve",
            "optitop.webconfig",
            "optitop.recording.codec",
        ),
    ),
    # the UI draws model types through the runtime's handle (optitop.live): never a collector, a session, the
    # store, the recording code or the runtime that builds them
    "tui": (
        ("optitop.tui",),
        (
            "optitop.tui",
            "optitop.model",
            "optitop.live",
            "optitop.config",
            "optitop.safetext",
            "optitop.safefile",
            "optitop.osthread",
        ),
    ),
}

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
    "optitop/model": {"psutil", "pynvml", "textual", "rich", "prometheus_client", "plotext", "torch", "subprocess"},
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


def module_name(path: Path) -> str:
    """``collectors/gpu.py`` -> ``optitop.collectors.gpu``; a package's ``__init__.py`` -> the package."""
    rel = path.relative_to(ROOT)
    parts = [PACKAGES[rel.parts[0]], *rel.parts[1:]]
    parts[-1] = parts[-1].removesuffix(".py")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def product_modules() -> dict[str, Path]:
    return {module_name(p): p for folder in PACKAGES for p in sorted((ROOT / folder).rglob("*.py"))}


def optitop_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The product modules ``path`` imports: ``from pkg import sub`` counts as ``pkg.sub`` when that is a module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("optitop"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("optitop"):
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out.update(subs)
            if len(subs) < len(node.names):
                out.add(node.module)
    return out


def allowed(name: str, rules: tuple[str, ...]) -> bool:
    return any(name == r[1:] if r.startswith("=") else name == r or name.startswith(r + ".") for r in rules)


@pytest.mark.parametrize("layer", sorted(CONTRACTS))
def test_layer_imports_only_what_its_contract_allows(layer):
    members, rules = CONTRACTS[layer]
    modules = product_modules()
    bad = [
        f"{name} imports {imported}"
        for name, path in modules.items()
        if allowed(name, members)
        for imported in sorted(optitop_imports(path, modules))
        if not allowed(imported, rules)
    ]
    assert not bad, "\n".join(bad)


def test_no_import_circle_among_product_modules():
    """Tarjan's strongly connected components over every import (lazy ones too): none may hold two modules."""
    modules = product_modules()
    graph = {name: sorted(n for n in optitop_imports(path, modules) if n in modules) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    assert not circles, circles


def test_only_the_entry_point_dispatches_to_the_commands():
    """A command is reached through ``optitop.cli`` (or the demo, which runs the live screen on its own server);
    no library module reaches up into one."""
    modules = product_modules()
    callers = {"optitop.cli", "optitop.demo.cli"}
    bad = [
        f"{name} imports {imported}"
        for name, path in modules.items()
        if name not in callers and not name.startswith("optitop.commands")
        for imported in optitop_imports(path, modules)
        if imported.startswith("optitop.commands")
    ]
    assert not bad, bad


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


def test_model_loads_no_vendor_module():
    out = run_python(
        "import sys, optitop.model;"
        "print(sorted(m for m in ('psutil', 'pynvml', 'textual', 'rich', 'prometheus_client') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_analyzers_load_no_vendor_module():
    out = run_python(
        "import sys, optitop.analyzers;print(sorted(m for m in ('psutil', 'pynvml', 'textual') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_nothing_imports_the_entry_point():
    """The subcommands build their parsers from optitop.args: none reaches back into optitop.cli for a helper
    (that made an import circle of six modules). Only ``python -m optitop`` calls the entry point (the demo runs
    the live screen through ``optitop.commands.top``)."""
    allowed = {ROOT / "optitop" / "__main__.py", ROOT / "optitop" / "cli.py"}
    bad = []
    for folder in ("optitop", "collectors", "analyzers", "tui", "demo"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path not in allowed and "optitop.cli" in imported_names(path):
                bad.append(str(path.relative_to(ROOT)))
    assert not bad, f"these import optitop.cli: {bad}"


def test_no_product_module_imports_another_modules_private_name():
    """A leading underscore means "this module only": a name another module needs is made public where it lives
    (splitting a module is where such imports creep in)."""
    bad = []
    for name, path in product_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optitop"):
                bad += [
                    f"{name} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not bad, bad
