"""``optitop export``: serve the target's metrics and verdict to Prometheus until stopped or the target exits.

What is served and how (metric names, the cached page, TLS and basic auth) is ``optitop.exporter``; this module
is the command: its options, the one-line errors and the run until a signal.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from optitop.args import (
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_collection_args,
    add_target_args,
    options_from,
    os_error_exit,
)
from optitop.commands.waiting import StopReason, stop_signals, wait_for_stop
from optitop.exporter import parse_listen, serve
from optitop.httpserve import MetricsServer
from optitop.session import Session
from optitop.target import TargetError, resolve
from optitop.webconfig import WebConfig, load_web_config

#: Seconds between looks at the target while serving (a signal ends the wait at once).
EXPORT_POLL_S = 0.2


def export_parser() -> argparse.ArgumentParser:
    """The parser of ``optitop export``."""
    parser = Parser(
        prog="optitop export",
        description="Serve the target's metrics and the bottleneck verdict to Prometheus (see docs/prometheus.md).",
    )
    add_target_args(parser)
    add_collection_args(parser)
    parser.add_argument(
        "--listen",
        default="127.0.0.1:9400",
        metavar="HOST:PORT",
        help="where to serve /metrics (default 127.0.0.1:9400; :9400 listens on every interface)",
    )
    parser.add_argument(
        "--web-config",
        metavar="FILE",
        help="TLS and basic auth in Prometheus's web-config format (needs the 'web' extra; see docs/prometheus.md)",
    )
    return parser


def export_main(argv: Sequence[str]) -> int:
    """``optitop export --pid PID --listen 127.0.0.1:9400``: serve until SIGTERM/SIGINT or the target exits.

    Bad options, a bad web config or a target that cannot be resolved are bad usage (2); so is an address that
    cannot be listened on (in use, not local), unless the machine ran out of something (1, see ``os_error_exit``).
    """
    from optitop.runtime import make_session

    args = export_parser().parse_args(argv)
    try:
        host, port = parse_listen(args.listen)
        web = load_web_config(args.web_config) if args.web_config else WebConfig()
        pid = resolve(args.pid, args.port, args.name)
        session = make_session(pid, options_from(args))
    except (ValueError, TargetError, UsageError) as exc:  # WebConfigError is a ValueError
        print(f"optitop: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        server, _thread = serve(session.store, host, port, session.options.interval_s, web)
    except OSError as exc:
        print(f"optitop: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return os_error_exit(exc)
    bound = server.server_address[1]
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if web.ssl_context is not None else "http"
    auth = f", basic auth for {len(web.users)} user(s)" if web.users else ""
    print(f"optitop: serving pid {pid} on {scheme}://{shown}:{bound}/metrics{auth}", file=sys.stderr, flush=True)
    if web.users and web.ssl_context is None:
        print("optitop: basic auth without TLS sends passwords in clear text", file=sys.stderr, flush=True)
    return serve_until_stopped(session, server)


def serve_until_stopped(session: Session, server: MetricsServer) -> int:
    """Sample and serve until SIGTERM/SIGINT/SIGHUP or the target's exit; then close the socket and the session."""
    with stop_signals() as stopped:
        session.start()
        try:
            why = wait_for_stop(stopped, lambda: session.store.target.exited, poll_s=EXPORT_POLL_S)
            if why is StopReason.TARGET_EXITED:
                # A stale exporter helps nobody: exit so the supervisor restarts it on the new process.
                print(f"optitop: target pid {session.store.target.pid} exited; stopping", file=sys.stderr)
        finally:
            server.shutdown()
            server.server_close()
            session.stop()
    return EXIT_OK
