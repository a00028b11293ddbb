"""Keep the strict editable install's link tree in step with the checkout, without re-running pip.

setuptools' strict editable mode links the files that existed at install time; a module added later is
invisible until it is linked. This adds links for new source files and removes dangling ones. Idempotent.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {".py", ".tcss", ".typed"}


def link_tree() -> Path:
    site = Path(sysconfig.get_paths()["purelib"])
    for pth in site.glob("__editable__.optitop-*.pth"):
        target = Path(pth.read_text().strip().splitlines()[0])
        if target.is_dir():
            return target
    sys.exit("relink: no strict editable install of optitop in this environment (run make setup)")


def main() -> int:
    tree = link_tree()
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = conf["tool"]["setuptools"]["package-dir"]
    added = removed = 0
    for package, folder in mapping.items():
        dest = tree / package.replace(".", "/")
        dest.mkdir(parents=True, exist_ok=True)
        for src in sorted((ROOT / folder).iterdir()):
            if src.is_file() and (src.suffix in SUFFIXES or src.name == "py.typed"):
                link = dest / src.name
                if not link.exists() and not link.is_symlink():
                    os.symlink(src, link)
                    added += 1
        for link in dest.iterdir():
            if link.is_symlink() and not link.exists():
                link.unlink()
                removed += 1
    print(f"relink: {added} added, {removed} removed in {tree}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
