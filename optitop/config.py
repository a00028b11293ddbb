"""Run-time options shared by the CLI, the session and the collectors."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Options:
    """Every knob the command line sets; collectors read the ones that concern them.

    Attributes:
        interval_s: the base sampling interval (``--interval``).
        history_s: seconds of history kept per series.
        analysis_window_s: the window the analyzer judges (the last N seconds).
        disabled: collector names turned off with ``--no-<name>``.
        metrics_urls: extra Prometheus endpoints (``--metrics-url``).
        scrape: whether to discover and scrape /metrics endpoints.
        log_paths: server logs to follow (``--log``).
        pyspy_rate_hz: py-spy sampling rate (``--pyspy-rate``).
        pyspy_duty: share of the time py-spy samples (``--pyspy-duty``): windows with pauses between them.
        native_every_s: period of a short native (blocking) py-spy burst; 0 turns it off.
        low_bandwidth: redraw less (charts slower) for slow SSH links.
        monochrome: no colour.
    """

    interval_s: float = 1.0
    history_s: float = 600.0
    analysis_window_s: float = 10.0
    disabled: frozenset[str] = field(default_factory=frozenset)
    metrics_urls: tuple[str, ...] = ()
    scrape: bool = True
    log_paths: tuple[str, ...] = ()
    pyspy_rate_hz: float = 20.0
    pyspy_duty: float = 1 / 3
    native_every_s: float = 0.0
    low_bandwidth: bool = False
    monochrome: bool = False


@dataclass(frozen=True, slots=True)
class CollectorContext:
    """What a collector is built from: the target pid and the options."""

    pid: int
    options: Options
