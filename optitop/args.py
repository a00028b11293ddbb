"""What every subcommand's parser shares: exit codes, option bounds, value types, the shared options, and a parser
whose errors are one line.

Every command module (``optitop.commands.*``: the live/``--once`` mode, ``record``, ``replay``, ``compare``,
``export``, ``bundle``, ``doctor``; the demo) builds its parser from here; none imports another command's module or
the entry point (``optitop.cli``) for them (what two commands share otherwise lives in ``commands/waiting.py`` and
``commands/progress.py``).

Exit codes: 0 success, 1 a failure while running (a full disk included), 2 bad usage or a target that cannot be
resolved, 130 interrupted. Every user error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import re
import sys
import urllib.parse
from collections.abc import Callable

from optitop.collectors import REGISTRY
from optitop.config import Options

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
#: Ctrl-C outside a command's own stop handling (the shell's 128 + SIGINT).
EXIT_INTERRUPTED = 130

#: Errors that say the machine ran out of something, not that the place the user named is wrong: a full disk or
#: quota, an I/O error, no descriptors or buffers left. They are failures while running (1), whenever they show up.
RESOURCE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)


class UsageError(Exception):
    """A bad argument; the message is printed as ``optitop: …``."""


def os_error_exit(exc: OSError) -> int:
    """The exit code of an ``OSError`` met while opening what the user named (an output file, a listen address).

    A refused path, a missing directory, a port in use is bad usage (2): another argument fixes it. A full disk or
    an I/O error is a failure while running (1) even before anything was sampled: the argument was fine.
    """
    return EXIT_FAILURE if exc.errno in RESOURCE_ERRNOS else EXIT_USAGE


#: Bounds of the options, checked at parse time (--help shows them). An interval past an hour is no longer a
#: live view; a day of history is what the store is sized for; a run or a recording past a week is a mistake.
INTERVAL_S = (0.05, 3600.0)
HISTORY_S = (1.0, 86400.0)
WINDOW_S = (1.0, 3600.0)
DURATION_S = (0.1, 7 * 86400.0)
PYSPY_RATE_HZ = (1.0, 1000.0)
PYSPY_DUTY = (0.05, 1.0)
NATIVE_EVERY_S = (1.0, 86400.0)
BUNDLE_MINUTES = (0.1, 1440.0)
BUNDLE_SAMPLE_S = (0.5, 3600.0)
REPLAY_SPEED = (0.01, 1000.0)
#: Where /proc/sys/kernel/pid_max cannot be read: the largest pid Linux can ever hand out.
PID_MAX_FALLBACK = 2**22


def _number(text: str) -> float:
    """A finite float: nan and inf are never a sensible duration, rate or share."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def bounded(low: float, high: float, unit: str = "", off: float | None = None) -> Callable[[str], float]:
    """An argparse type for a finite number in [low, high] (``off``, e.g. 0, is also taken: "turned off")."""

    def parse(text: str) -> float:
        value = _number(text)
        if off is not None and value == off:
            return value
        if not low <= value <= high:
            alt = f" (or {off:g} for off)" if off is not None else ""
            raise argparse.ArgumentTypeError(f"must be {low:g}-{high:g}{unit}{alt}: {text!r}")
        return value

    return parse


def pid_max() -> int:
    """The largest pid the kernel hands out (pids run 1..pid_max-1)."""
    try:
        with open("/proc/sys/kernel/pid_max") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return PID_MAX_FALLBACK


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a pid: {text!r}") from exc
    # psutil raises OverflowError past a C int: a pid the kernel can never hand out is a usage error.
    if not 0 < value < max(pid_max(), 2):
        raise argparse.ArgumentTypeError(f"not a pid: {text!r} (pids run 1-{pid_max() - 1} here)")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from exc
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return value


def _pattern(text: str) -> str:
    """A --name regex that compiles and is not empty (an empty one matches every process)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty pattern matches every process")
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"bad pattern {text!r}: {exc}") from exc
    return text


def _path(text: str) -> str:
    if not text or "\x00" in text:
        raise argparse.ArgumentTypeError(f"not a path: {text!r}")
    return text


def metrics_url(text: str) -> str:
    """A --metrics-url: ``PORT``, ``:PORT``, ``HOST:PORT`` or an http(s) URL with a host (never file:// etc.).

    The messages do not repeat the URL: it may hold a password or a token.
    """
    from optitop.collectors.discovery import normalise_url

    if not text.strip() or any(ord(c) < 32 or c == "\x7f" for c in text):
        raise argparse.ArgumentTypeError("not a URL (empty, or control characters in it)")
    url = normalise_url(text)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError(f"only http:// and https:// are scraped, not {parts.scheme[:16]}://")
    try:
        port = parts.port
    except ValueError as exc:
        raise argparse.ArgumentTypeError("not a port in the URL (1-65535)") from exc
    if not parts.hostname:
        raise argparse.ArgumentTypeError("no host in the URL")
    if port == 0:
        raise argparse.ArgumentTypeError("port 0 in the URL (1-65535)")
    return text


def add_target_args(parser: argparse.ArgumentParser) -> None:
    """--pid/--port/--name (one of them)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--pid", type=_pid, help="the process to watch (1 up to the kernel's pid_max)")
    group.add_argument("--port", type=_port, help="watch the process listening on this TCP port (1-65535)")
    group.add_argument(
        "--name", type=_pattern, metavar="PATTERN", help="watch the process whose cmdline matches this regex"
    )


def add_collection_args(parser: argparse.ArgumentParser) -> None:
    """Sampling and collector options shared by every mode that collects."""
    parser.add_argument(
        "--interval",
        type=bounded(*INTERVAL_S, " s"),
        default=1.0,
        metavar="S",
        help=f"seconds between samples, {INTERVAL_S[0]:g}-{INTERVAL_S[1]:g} (default 1)",
    )
    parser.add_argument(
        "--history",
        type=bounded(*HISTORY_S, " s"),
        default=600.0,
        metavar="S",
        help=f"seconds of history kept, {HISTORY_S[0]:g}-{HISTORY_S[1]:g} (default 600)",
    )
    parser.add_argument(
        "--window",
        type=bounded(*WINDOW_S, " s"),
        default=10.0,
        metavar="S",
        help=f"seconds the analyzer judges, {WINDOW_S[0]:g}-{WINDOW_S[1]:g} (default 10)",
    )
    for spec in REGISTRY:
        parser.add_argument(
            f"--no-{spec.name}", dest=f"no_{spec.name}", action="store_true", help=f"turn off: {spec.help}"
        )
    parser.add_argument(
        "--metrics-url",
        type=metrics_url,
        action="append",
        default=[],
        metavar="URL",
        help="a Prometheus endpoint: http(s)://HOST[:PORT][/PATH], HOST:PORT or PORT (repeatable)",
    )
    parser.add_argument("--no-scrape", action="store_true", help="do not discover or scrape /metrics endpoints")
    parser.add_argument(
        "--log", type=_path, action="append", default=[], metavar="PATH", help="a server log to follow (repeatable)"
    )
    parser.add_argument(
        "--pyspy-rate",
        type=bounded(*PYSPY_RATE_HZ, " Hz"),
        default=20.0,
        metavar="HZ",
        help=f"py-spy samples per second, {PYSPY_RATE_HZ[0]:g}-{PYSPY_RATE_HZ[1]:g} (default 20)",
    )
    parser.add_argument(
        "--pyspy-duty",
        type=bounded(*PYSPY_DUTY),
        default=1 / 3,
        metavar="F",
        help=f"share of the time py-spy samples, {PYSPY_DUTY[0]:g}-{PYSPY_DUTY[1]:g} "
        "(default 0.33: a 2 s window every 6 s)",
    )
    parser.add_argument(
        "--native-every",
        type=bounded(*NATIVE_EVERY_S, " s", off=0.0),
        default=0.0,
        metavar="S",
        help=f"a 1 s native (blocking) stack burst every S seconds, {NATIVE_EVERY_S[0]:g}-{NATIVE_EVERY_S[1]:g};"
        " it pauses the target (default 0: off, the n key takes one on demand)",
    )


def options_from(args: argparse.Namespace) -> Options:
    """Options from parsed arguments."""
    disabled = frozenset(spec.name for spec in REGISTRY if getattr(args, f"no_{spec.name}", False))
    return Options(
        interval_s=args.interval,
        history_s=max(args.history, args.interval * 4),
        analysis_window_s=args.window,
        disabled=disabled,
        metrics_urls=tuple(args.metrics_url),
        scrape=not args.no_scrape,
        log_paths=tuple(args.log),
        pyspy_rate_hz=args.pyspy_rate,
        pyspy_duty=args.pyspy_duty,
        native_every_s=args.native_every,
        low_bandwidth=getattr(args, "low_bandwidth", False),
        monochrome=getattr(args, "mono", False),
    )


class Parser(argparse.ArgumentParser):
    """argparse that exits 2 with a one-line message: the usage block argparse prints first is eight lines of
    every option (the README promises one line per user error), so it points at --help instead."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # argparse quotes some values with repr() but not "unrecognized arguments": escape what is not printable
        shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)
        print(f"optitop: error: {shown} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)
