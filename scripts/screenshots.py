"""Regenerate screenshots/: the live screen on each demo scenario, captured by Textual as SVG (no hand edits).

python scripts/screenshots.py                       # every scenario at 160x48, plus 80x24
python scripts/screenshots.py --scenarios compute --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from optitop.config import Options
from optitop.runtime import live_runtime
from optitop.tui.app import OptitopApp

ROOT = Path(__file__).resolve().parent.parent
OPTITOP = str(Path(sys.executable).parent / "optitop")
SCENARIOS = ("compute", "memory_io", "scheduling", "network", "host_cpu", "idle", "none")


def start_demo(scenario: str) -> tuple[subprocess.Popen[str], int, str | None]:
    proc = subprocess.Popen(
        [OPTITOP, "demo", "--scenario", scenario, "--serve-only"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    pid = int(proc.stdout.readline().strip())
    second = proc.stdout.readline().strip()
    return proc, pid, second if second.startswith("http") else None


async def capture(pid: int, url: str | None, size: tuple[int, int], seconds: float, path: Path) -> None:
    options = Options(interval_s=1.0, metrics_urls=(url,) if url else ())
    live = live_runtime(pid, options)
    app = OptitopApp(live, options)
    async with app.run_test(size=size) as pilot:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await pilot.pause(0.5)
        app.save_screenshot(filename=path.name, path=str(path.parent))
    live.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=20.0, help="how long each capture watches first")
    parser.add_argument("--out", default=str(ROOT / "screenshots"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for scenario in [s for s in args.scenarios.split(",") if s]:
        proc, pid, url = start_demo(scenario)
        try:
            time.sleep(5)  # let the load reach its steady state before the clock of the capture starts
            sizes = [((160, 48), f"{scenario}.svg")]
            if scenario == "compute":
                sizes.append(((80, 24), "compute-80x24.svg"))
            for size, name in sizes:
                asyncio.run(capture(pid, url, size, args.seconds, out / name))
                print(f"wrote {out / name}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
