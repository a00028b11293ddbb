"""Scoring: every class's score over one window from the rules table, and the top-down walk that names one.

The order follows top-down analysis (Intel TMA, Meta HTA): first whether work arrives at all (idle),
then whether it waits while capacity is free (scheduling), then where the busy time goes (compute,
memory_io or host_cpu — judged on the GPU when the target uses one, on the CPU cores otherwise), then
whether time goes to sockets (network); ``none`` is the remainder. Every class is scored from the rules
table (``rules.py``), so the walk only decides precedence; what counts as evidence is data.

Confidence is the class's score scaled by how much of its evidence could be seen: a missing source lowers
it, so a verdict built on one counter is never shown as certain. ``verdict.py`` explains the result.
"""

from __future__ import annotations

from dataclasses import dataclass

from optitop.analyzers.rules import (
    BUSY_CLASSES,
    FALLBACK_MIN,
    HIERARCHY,
    MIN_PROCESS_SAMPLES,
    OVERRIDE_MARGIN,
    RULES,
    Rule,
)
from optitop.analyzers.signals import Signals, extract
from optitop.model import Window

#: Judged classes (``unknown`` is not scored; it is what too little data gives).
SCORED: tuple[str, ...] = ("idle", "scheduling", *BUSY_CLASSES, "network")


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule over one window: fired (True), not fired (False) or unknown (None: a signal is missing)."""

    rule: Rule
    fired: bool | None
    value: float | None


@dataclass(frozen=True, slots=True)
class Score:
    """One class over one window.

    Attributes:
        score: noisy-OR of the fired positive weights, damped by the fired negative ones (0..1).
        coverage: the share of the class's positive weight whose signals were known (0..1).
        hits: every applicable rule of the class with its outcome.
    """

    category: str
    score: float
    coverage: float
    hits: tuple[Hit, ...]

    def fired(self, positive: bool = True) -> tuple[Hit, ...]:
        """The fired rules for (or against) the class, strongest first."""
        chosen = [h for h in self.hits if h.fired and (h.rule.weight > 0) == positive]
        return tuple(sorted(chosen, key=lambda h: -abs(h.rule.weight)))


@dataclass(frozen=True, slots=True)
class Assessment:
    """Everything the analyzer concluded about one window, before hysteresis."""

    signals: Signals
    branch: str
    scores: dict[str, Score]
    leader: str
    why: str


# -- evaluating rules ----------------------------------------------------------------------------------
def evaluate(rule: Rule, signals: Signals) -> Hit:
    """Whether ``rule`` fires on ``signals``; a known-false ``when`` settles it even if the rest is unknown."""
    value = signals.get(rule.signal)
    outcomes = [c.holds(signals.get(c.signal)) for c in rule.when]
    outcomes.append(rule.cond.holds(value))
    if False in outcomes:
        return Hit(rule, False, value)
    if None in outcomes:
        return Hit(rule, None, value)
    return Hit(rule, True, value)


def choose_branch(signals: Signals) -> str:
    """``gpu`` when the target uses a GPU (or, attribution unknown, a GPU is active); else ``cpu``."""
    if not signals.gpu_devices or signals.gpu_used_by_target is False:
        return "cpu"
    if signals.gpu_used_by_target:
        return "gpu"
    activity = (signals.gpu_busy_pct, signals.gpu_graphics_pct, signals.gpu_pcie_link_pct)
    return "gpu" if any(a is not None and a >= 5 for a in activity) else "cpu"


def score_class(category: str, signals: Signals, branch: str) -> Score:
    """Combine the class's applicable rules into a score and a coverage."""
    hits = tuple(evaluate(r, signals) for r in RULES if r.category == category and r.branch in ("any", branch))
    support = 1.0
    against = 1.0
    for h in hits:
        if h.fired:
            if h.rule.weight > 0:
                support *= 1.0 - h.rule.weight
            else:
                against *= 1.0 + h.rule.weight
    total = sum(h.rule.weight for h in hits if h.rule.weight > 0)
    known = sum(h.rule.weight for h in hits if h.rule.weight > 0 and h.fired is not None)
    return Score(category, (1.0 - support) * against, known / total if total else 0.0, hits)


def work_flows(s: Signals) -> bool:
    """Whether anything shows work in progress (the precondition of ``none``)."""
    checks = (
        (s.proc_cpu_pct, 5.0),
        (s.gpu_busy_pct, 5.0),
        (s.requests_running, 0.5),
        (s.request_rate_per_s, 0.05),
    )
    return any(v is not None and v >= t for v, t in checks)


#: Scores from which classes below their gates are named as competing candidates (an unknown with words).
COMPETING_MIN = 0.15
#: ``none`` needs latency within this share of service demand (waiting share below it)...
NONE_MAX_WAITING_SHARE = 0.5
#: ...unless requests are this fast anyway (nothing to find in a 20 ms request)
NONE_FAST_S = 0.05
#: ...and no class scoring this much (with no latency to tell).
NONE_MAX_OTHER = 0.3


def none_why(s: Signals) -> str:
    """The evidence ``none`` stands on, in words (the first evidence line)."""
    share, residence = s.lat_waiting_share, s.lat_residence_s
    if share is not None and residence is not None:
        if share < NONE_MAX_WAITING_SHARE:
            return "work flows freely: no queue anywhere, capacity free, latency close to service demand"
        return f"work flows freely: no queue anywhere, capacity free, requests fast ({residence * 1000:.0f} ms)"
    return "work flows freely: no queue anywhere, capacity free, no class scores"


def none_lacks(s: Signals, best_other: float | None = None) -> str:
    """Why ``none`` cannot be claimed on this window, or "" when the evidence shows work flowing freely.

    ``none`` is a finding ("nothing saturates, nothing queues"), so it needs positive evidence: no queue anywhere
    (requests waiting, queue time, the accept queue), capacity free (CPU and GPU), and a latency close to its
    service demand — or, with no latency to tell, no class scoring even weakly.
    """
    if (
        s.requests_waiting is not None
        and s.requests_waiting >= 1
        and not (s.queue_time_p50_s is not None and s.queue_time_p50_s < 0.02)
    ):
        return f"{s.requests_waiting:.1f} requests waiting"
    if s.queue_time_p50_s is not None and s.queue_time_p50_s >= 0.1:
        return f"median queue time {s.queue_time_p50_s:.2f} s"
    if s.accept_queue is not None and s.accept_queue >= 1:
        return f"{s.accept_queue:.0f} connections in the accept queue"
    if s.proc_cpu_of_allowed_pct is not None and s.proc_cpu_of_allowed_pct >= 80:
        return f"CPU {s.proc_cpu_of_allowed_pct:.0f} % of the allowed cores"
    if s.gpu_busy_pct is not None and s.gpu_busy_pct >= 80:
        return f"GPU busy {s.gpu_busy_pct:.0f} %"
    share, residence = s.lat_waiting_share, s.lat_residence_s
    if share is not None and residence is not None:
        if share >= NONE_MAX_WAITING_SHARE and residence >= NONE_FAST_S:
            return f"{share:.0%} of each request's {residence:.2f} s is waiting"
        return ""
    if best_other is not None and best_other >= NONE_MAX_OTHER:
        return "another class scores and no latency says requests flow"
    return ""


def _level_score(level: str, scores: dict[str, Score]) -> tuple[str, float]:
    if level == "busy":
        best = max(BUSY_CLASSES, key=lambda c: scores[c].score)
        return best, scores[best].score
    return level, scores[level].score


def pick_leader(scores: dict[str, Score], signals: Signals) -> tuple[str, str]:
    """Walk the hierarchy: the first level past its gate wins unless a later one is far stronger."""
    levels = [(*_level_score(level, scores), gate) for level, gate in HIERARCHY]
    for i, (category, score, gate) in enumerate(levels):
        if score < gate:
            continue
        stronger = [(c, s) for c, s, g in levels[i + 1 :] if s >= g and s >= score + OVERRIDE_MARGIN]
        if stronger:
            c, s = max(stronger, key=lambda cs: cs[1])
            return c, f"{c} ({s:.2f}) outweighs {category} ({score:.2f})"
        return category, f"{category} passed its gate ({score:.2f} >= {gate:.2f})"
    if work_flows(signals):
        missing_evidence = none_lacks(signals, max(scores[c].score for c in SCORED))
        if not missing_evidence:
            return "none", none_why(signals)
        ranked = sorted(SCORED, key=lambda c: -scores[c].score)
        leading = [c for c in ranked[:2] if scores[c].score >= COMPETING_MIN]
        if leading:
            names = " and ".join(f"{c} {scores[c].score:.2f}" for c in leading)
            why = f"work flows but no class passed its gate: {names} compete below them"
            return "unknown", f"{why} (not none: {missing_evidence})"
        return "unknown", f"work flows but nothing shows it flows freely (not none: {missing_evidence})"
    best = max(SCORED, key=lambda c: scores[c].score)
    if scores[best].score >= FALLBACK_MIN:
        return best, f"nothing passed its gate; {best} scored highest ({scores[best].score:.2f})"
    return "unknown", f"no class passed its gate and no work is visible (best: {best} {scores[best].score:.2f})"


def assess(window: Window) -> Assessment:
    """Extract the signals, score every class and pick the raw leader (no hysteresis)."""
    signals = extract(window)
    branch = choose_branch(signals)
    scores = {c: score_class(c, signals, branch) for c in SCORED}
    if signals.process_samples < MIN_PROCESS_SAMPLES:
        why = f"{signals.process_samples} process sample(s) so far; {MIN_PROCESS_SAMPLES} needed to judge"
        return Assessment(signals, branch, scores, "unknown", why)
    leader, why = pick_leader(scores, signals)
    return Assessment(signals, branch, scores, leader, why)
