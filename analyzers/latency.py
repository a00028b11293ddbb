"""Where one request's time goes, from outside: residence, service demands, and the waiting left over.

Queueing theory's oldest identity does the work. Little's law (L = λW) gives the time a request spends in the
server from what any server exposes — requests in flight and completions per second — when it exports no latency
of its own; a request-duration histogram gives it directly. The utilisation law (U = X·D) gives the service
demand per request from counters every process has: the tree's CPU-seconds per second divided by completions per
second is the CPU time one request costs (the same for GPU busy-seconds). What residence leaves after the demands
is waiting, and where the threads wait (upstream sockets, the accept queue, busy cores, the GIL, or inside the
server: queues, timers, an idle event loop) says what it waits for.

A server whose requests spend 630 ms inside while each costs 3 ms of CPU is not busy: it holds them (a batch
timer, an admission limit). One whose latency is nearly all service demand is busy, whatever it looks like.
That is true of every server, whoever wrote it, which is why the rules lean on it.

Pure: reads only the window's signals (no clock, no I/O).
"""

from __future__ import annotations

from typing import Any

from optitop.model import Latency

#: Fewer completions per second than this and per-request figures are noise (one request in 20 s).
MIN_RATE_PER_S = 0.05
#: Shares of thread time from which a wait names where requests wait.
UPSTREAM_WAIT_SHARE = 0.3
GIL_WAIT_SHARE = 0.2
#: CPU % of the allowed cores (or runnable threads per core) from which waiting is waiting for a core.
CORES_BUSY_PCT = 80.0


def _n(values: dict[str, Any], name: str) -> float | None:
    v = values.get(name)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def where_waiting(values: dict[str, Any]) -> str:
    """Where the threads wait, in words, from the strongest outside evidence first."""
    upstreams = _n(values, "upstream_conns")
    net = _n(values, "py_wait_network")
    if upstreams and upstreams >= 1 and net is not None and net >= UPSTREAM_WAIT_SHARE:
        return f"on {upstreams:.0f} upstream connection{'s' if upstreams >= 1.5 else ''}"
    accept = _n(values, "accept_queue")
    if accept is not None and accept >= 1:
        return f"in the accept queue ({accept:.0f} connections waiting for a worker)"
    cpu = _n(values, "proc_cpu_of_allowed_pct")
    per_core = _n(values, "runnable_per_core")
    if (cpu is not None and cpu >= CORES_BUSY_PCT) or (per_core is not None and per_core >= 1.0):
        return "for a CPU core (the allowed cores are busy)"
    runnable = _n(values, "runnable_threads")
    top = _n(values, "top_thread_cpu_pct")
    if (runnable is not None and runnable >= 0.8) or (top is not None and top >= 80):
        name = values.get("top_thread_name") or "one thread"
        return f"behind a busy thread ({name!r} wants a core all the time)"
    gil = _n(values, "py_wait_gil")
    if gil is not None and gil >= GIL_WAIT_SHARE:
        return "for the GIL"
    shares = {
        "an idle event loop or its timers": _n(values, "py_wait_loop") or 0.0,
        "a queue or lock": _n(values, "py_wait_queue") or 0.0,
        "a timer (sleep)": _n(values, "py_wait_sleep") or 0.0,
    }
    best = max(shares, key=lambda k: shares[k])
    inside = "inside the server" + (f" ({best})" if shares[best] >= 0.3 else "")
    if upstreams is not None and upstreams < 1:
        inside += ", no upstream"
    return inside


def decompose(values: dict[str, Any]) -> Latency:
    """The decomposition of one window's signals (a dict of Signals fields); ``absent`` says why when it fails."""
    rate = _n(values, "request_rate_per_s")
    e2e = _n(values, "e2e_p50_s")
    in_flight = _n(values, "requests_in_system")
    if e2e is None and in_flight is None and rate is None:
        accept = _n(values, "accept_queue")
        queued = f"; the kernel shows {accept:.0f} connections in the accept queue" if accept and accept >= 1 else ""
        return Latency(absent="no request metrics (pass --metrics-url): no latency or completion rate" + queued)
    if rate is not None and rate < MIN_RATE_PER_S:
        return Latency(completions_per_s=rate, absent=f"{rate:.2f} requests/s: too few completions to divide by")
    if e2e is not None:
        residence, origin = e2e, "p50 of the server's request-duration histogram"
    elif in_flight is not None and rate:
        residence, origin = in_flight / rate, f"Little's law: {in_flight:.1f} in flight ÷ {rate:.1f} req/s"
    else:
        return Latency(completions_per_s=rate, absent="no request latency and no completion rate to apply Little's law")
    if residence <= 0:
        return Latency(residence_s=residence, residence_from=origin, absent="requests take no measurable time")
    if rate is None:
        return Latency(
            residence_s=residence, residence_from=origin,
            absent="no completion rate: the server exports no request counter, so service demand is unknown",
        )  # fmt: skip
    cpu = _n(values, "proc_cpu_pct")
    cpu_demand = cpu / 100.0 / rate if cpu is not None else None
    gpu = _n(values, "gpu_busy_pct") if values.get("gpu_used_by_target") else None
    gpu_demand = gpu / 100.0 / rate if gpu is not None else None
    demand = (cpu_demand or 0.0) + (gpu_demand or 0.0)
    waiting = max(0.0, residence - demand) if cpu_demand is not None else None
    return Latency(
        residence_s=residence,
        residence_from=origin,
        completions_per_s=rate,
        cpu_demand_s=cpu_demand,
        gpu_demand_s=gpu_demand,
        waiting_s=waiting,
        waiting_share=waiting / residence if waiting is not None else None,
        waiting_where=where_waiting(values) if waiting is not None and waiting > 0 else "",
    )


def latency_signals(lat: Latency) -> dict[str, Any]:
    """The decomposition as flat signals the rules table can read."""
    service = None
    if lat.residence_s and lat.cpu_demand_s is not None:
        service = min(1.0, (lat.cpu_demand_s + (lat.gpu_demand_s or 0.0)) / lat.residence_s)
    return {
        "latency": lat,
        "lat_residence_s": lat.residence_s if not lat.absent else None,
        "lat_waiting_share": lat.waiting_share,
        "lat_service_share": service,
    }
