"""Building a session for a target: collectors from the registry, the store, the analyzer."""

from __future__ import annotations

from optitop.analyzers import judge
from optitop.collectors import REGISTRY, available_specs
from optitop.config import CollectorContext, Options
from optitop.model import Collector, SourceState, SourceStatus, SourceUnavailable
from optitop.session import Session
from optitop.store import Store
from optitop.target import describe


def build_collectors(ctx: CollectorContext) -> tuple[list[Collector], list[SourceStatus]]:
    """Every enabled collector, plus a status for each one that is off or could not be built."""
    built: list[Collector] = []
    statuses: list[SourceStatus] = []
    present = {s.name for s in available_specs()}
    for spec in REGISTRY:
        if spec.name not in present:
            continue
        if spec.name in ctx.options.disabled:
            statuses.append(SourceStatus(spec.name, SourceState.DISABLED, f"turned off with --no-{spec.name}"))
            continue
        if spec.needs is not None and not getattr(ctx.options, spec.needs[0]):
            statuses.append(SourceStatus(spec.name, SourceState.DISABLED, spec.needs[1]))
            continue
        try:
            built.append(spec.build(ctx))
        except SourceUnavailable as exc:
            statuses.append(SourceStatus(spec.name, SourceState.UNAVAILABLE, str(exc)))
        except Exception as exc:  # a broken collector must not stop the others
            statuses.append(SourceStatus(spec.name, SourceState.ERROR, f"{type(exc).__name__}: {exc}"))
    return built, statuses


def make_session(pid: int, options: Options, store: Store | None = None) -> Session:
    """A ready-to-start session watching ``pid`` (into ``store`` when given: history carries over)."""
    target = describe(pid)
    if store is None:
        store = Store(target, history_s=options.history_s)
    collectors, unavailable = build_collectors(CollectorContext(pid=pid, options=options))
    return Session(store, collectors, options, analyzer=judge, unavailable=unavailable)
