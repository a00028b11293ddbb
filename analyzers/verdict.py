"""The verdict: one window judged by ``scoring.py``'s top-down walk, then explained in words a person acts on.

Scoring decides the class and its confidence (the walk's order, and why a missing source lowers confidence, are
in ``scoring.py``). This module turns that into the ``Diagnosis`` the screen, the JSON and the exporter show: the
evidence lines with their numbers, the fixes to try first (most specific first), what would change the verdict,
the sources that would sharpen it, and, through ``hysteresis.py``, a class that does not flicker on a live screen.
"""

from __future__ import annotations

from dataclasses import replace

from optitop.analyzers.hysteresis import CONSECUTIVE, HISTORY, NEEDED, HysteresisState, step
from optitop.analyzers.rules import (
    BUSY_CLASSES,
    HOST_BUSY_PCT,
    LEGACY_GPU_FACTOR,
    MAX_CONFIDENCE,
    OVERRIDE_MARGIN,
    SECONDARY_MIN,
    fmt_threshold,
)
from optitop.analyzers.scoring import COMPETING_MIN, SCORED, Assessment, Hit, Score, assess, none_why
from optitop.analyzers.signals import SIGNAL_NAMES, Signals
from optitop.analyzers.wording import CLASS_SUMMARY, MISSING_HINTS, SIGNAL_SOURCES, fix_text
from optitop.model import Diagnosis, Window

MAX_EVIDENCE = 5
MAX_FIXES = 4
MAX_COUNTER = 4
MAX_SECONDARY = 3


class Num(float):
    """A float that also formats as bytes: ``{v:B}`` -> ``17.0 GB`` (decimal units, as link speeds)."""

    def __format__(self, spec: str) -> str:
        """Format ``B`` as a byte size, anything else as a float."""
        if spec != "B":
            return float.__format__(self, spec)
        value = float(self)
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if abs(value) < 1000 or unit == "TB":
                return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
            value /= 1000
        return f"{value:.1f} TB"  # pragma: no cover


# -- explaining ----------------------------------------------------------------------------------------
def host_contended(s: Signals) -> bool:
    """The host's cores are all busy while the target uses little of them: others hold the CPU."""
    busy = s.host_cpu_busy_pct is not None and s.host_cpu_busy_pct >= HOST_BUSY_PCT
    return busy and (s.proc_cpu_of_allowed_pct or 0) < 60


def none_confidence(a: Assessment, best_other: float) -> float:
    """``none`` claims nothing saturates: only as sure as the least-covered saturation check allows.

    Without Python stacks a GIL-bound server cannot be told from a healthy one, so the host_cpu coverage
    caps the claim; a thread already halfway to a full core, or a host whose cores are all busy, lowers it.
    """
    checks = ("scheduling", *BUSY_CLASSES)
    least = min(a.scores[c].coverage for c in checks)
    s = a.signals
    load = max((v / 100.0 for v in (s.top_thread_cpu_pct, s.proc_cpu_of_allowed_pct, s.gpu_busy_pct) if v), default=0)
    headroom = max(0.5, 1.0 - 0.5 * min(1.0, load))
    conf = (0.3 + 0.6 * least) * (1.0 - 0.6 * best_other) * headroom
    if host_contended(s):
        conf *= 0.6  # "nothing saturates" is doubtful when the host's cores are all busy
    return round(min(MAX_CONFIDENCE, conf), 2)


def confidence(a: Assessment, category: str) -> float:
    """How sure the analyzer is of ``category`` on this window (0..MAX_CONFIDENCE)."""
    if category == "unknown":
        return 0.0
    others = [a.scores[c].score for c in SCORED if c != category]
    if category == "none":
        return none_confidence(a, max(others, default=0.0))
    s = a.scores[category]
    conf = s.score * (0.55 + 0.45 * s.coverage)
    if a.branch == "gpu" and category in BUSY_CLASSES and a.signals.gpu_util_source == "legacy":
        conf *= LEGACY_GPU_FACTOR
    if max(others, default=0.0) >= 0.8 * s.score:
        conf *= 0.8
    return round(min(MAX_CONFIDENCE, conf), 2)


class _Unknown:
    """Formats as ``?`` whatever the spec: a template may name a signal that this window lacks."""

    def __format__(self, spec: str) -> str:
        return "?"


def _fmt_value(value: object) -> object:
    if isinstance(value, bool) or value is None:
        return _Unknown() if value is None else value
    return Num(value) if isinstance(value, (int, float)) else value


class _EvidenceValues(dict[str, object]):
    """The numbers an evidence template names (``v``: the rule's own value), formatted only when asked for.

    Formatting all ~80 signals for every evidence line was a third of the analyzer's time (a judgement of the demo's
    compute window: 1.65 ms before, 1.10 ms after); a template names one to three.
    """

    def __init__(self, hit: Hit, signals: Signals) -> None:
        super().__init__()
        self._hit, self._signals = hit, signals

    def __missing__(self, name: str) -> object:
        if name == "v":
            return _fmt_value(self._hit.value)
        if name in SIGNAL_NAMES:
            return _fmt_value(self._signals.get(name))
        raise KeyError(name)


def render_evidence(hit: Hit, signals: Signals) -> str:
    """The rule's evidence line with the window's numbers."""
    try:
        return hit.rule.evidence.format_map(_EvidenceValues(hit, signals))
    except (KeyError, ValueError, TypeError):
        return f"{hit.rule.cond.words()} (now {hit.value})"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0f} %"


def _count(v: float | None) -> str:
    """A request count, ``?`` when the server does not report it (never 0: "0 running" would be a claim)."""
    return "?" if v is None else f"{v:.0f}"


def context_lines(a: Assessment, category: str) -> list[str]:
    """Always-useful numbers for the class's area, so every verdict carries the picture behind it."""
    s = a.signals
    lines: list[str] = []
    if category in ("compute", "memory_io", "host_cpu", "none", "idle", "unknown") and s.proc_cpu_pct is not None:
        line = f"process CPU {s.proc_cpu_pct:.0f} % of a core"
        if s.proc_cpu_of_allowed_pct is not None and s.allowed_cores:
            line += f" ({s.proc_cpu_of_allowed_pct:.0f} % of {s.allowed_cores} allowed cores)"
        if s.top_thread_cpu_pct is not None and s.top_thread_name:
            line += f"; busiest thread {s.top_thread_name!r} {s.top_thread_cpu_pct:.0f} %"
        lines.append(line)
    if (category in BUSY_CLASSES or category == "none") and host_contended(s):
        lines.append(
            f"host CPU {s.host_cpu_busy_pct:.0f} % busy: other processes compete for the cores, so the target "
            f"gets {s.proc_cpu_pct or 0:.0f} % of a core"
        )
    if a.branch == "gpu" and s.gpu_busy_pct is not None:
        src = s.gpu_util_source or "?"
        lines.append(
            f"GPU ({src}): SM {_pct(s.gpu_sm_pct)}, tensor {_pct(s.gpu_tensor_pct)}, DRAM {_pct(s.gpu_dram_pct)}"
            + (f", PCIe {Num(s.gpu_pcie_bytes_per_s):B}/s" if s.gpu_pcie_bytes_per_s is not None else "")
            + (f"; throttled: {', '.join(s.gpu_throttle)}" if s.gpu_throttle else "")
        )
    if category in ("scheduling", "memory_io", "idle", "none") and s.requests_in_system is not None:
        parts = [f"{_count(s.requests_waiting)} waiting", f"{_count(s.requests_running)} running"]
        if s.kv_cache_pct is not None:
            parts.append(f"KV {s.kv_cache_pct:.0f} %")
        if s.request_rate_per_s is not None:
            parts.append(f"{s.request_rate_per_s:.1f} req/s")
        lines.append(f"queue ({s.serving_profile or 'metrics'}): " + ", ".join(parts))
    if category == "network" and s.upstream_conns is not None:
        lines.append(f"sockets: {s.inbound_conns or 0:.0f} client and {s.upstream_conns:.0f} upstream connections")
    return lines


def evidence_for(a: Assessment, category: str) -> tuple[str, ...]:
    """Fired rules first (strongest first), then the context numbers."""
    if category == "unknown":
        return (a.why, *candidate_lines(a), *context_lines(a, category))[:MAX_EVIDENCE]
    lines = [render_evidence(h, a.signals) for h in a.scores[category].fired()] if category in a.scores else []
    said_cpu = any(line.startswith("process CPU") for line in lines)
    lines += [line for line in context_lines(a, category) if not (said_cpu and line.startswith("process CPU"))]
    if category == "none":
        lines.insert(0, none_why(a.signals))
    for line in precedence_lines(a, category):
        lines.insert(min(1, len(lines)), line)
    lat = a.signals.latency
    if lat is not None and not lat.absent and category in ("scheduling", "network", "none", *BUSY_CLASSES):
        lines.insert(min(1, len(lines)), lat.line())
    return tuple(_without_repeats(lines))[:MAX_EVIDENCE]


def _without_repeats(lines: list[str]) -> list[str]:
    """``lines`` less duplicates and less a line that another one says in full ("3 requests waiting" beside "3
    requests waiting while none runs"): two rules on one signal would otherwise spend two of the few rows on it.
    The longer line takes the place of the first of the two."""

    def says(longer: str, shorter: str) -> bool:  # whole words: "SM 5 %" is not said by "SM 50 %"
        return longer == shorter or longer.startswith(shorter + " ")

    out: list[str] = []
    for line in lines:
        if any(says(kept, line) for kept in out):
            continue
        shorter = next((i for i, kept in enumerate(out) if says(line, kept)), None)
        if shorter is None:
            out.append(line)
        else:
            out[shorter] = line
    return out


def candidate_lines(a: Assessment) -> list[str]:
    """Classes competing below their gates: each with its strongest evidence and what would settle it."""
    ranked = sorted(SCORED, key=lambda c: -a.scores[c].score)
    out = []
    for c in ranked[:2]:
        sc = a.scores[c]
        if sc.score < COMPETING_MIN:
            continue
        fired = sc.fired()
        line = f"candidate {c} {sc.score:.2f}"
        if fired:
            line += ": " + render_evidence(fired[0], a.signals)
        quiet = [h for h in sc.hits if h.fired is not True and h.rule.weight > 0]
        if quiet:
            best = max(quiet, key=lambda h: h.rule.weight)
            line += f"; settled by {best.rule.cond.words()}" + ("" if best.value is not None else " (not measured)")
        out.append(line)
    return out


def precedence_lines(a: Assessment, category: str) -> list[str]:
    """A class scoring above the winner, said out loud: it lost on precedence, not on evidence."""
    if category not in a.scores:
        return []
    mine = a.scores[category].score
    out = []
    for c in SCORED:
        if c != category and a.scores[c].score > mine:
            out.append(
                f"{c} scores higher ({a.scores[c].score:.2f} vs {mine:.2f}) but a later level overrides an earlier one "
                f"only by {OVERRIDE_MARGIN:.2f}"
            )
    return out[:1]


def fixes_for(a: Assessment, category: str) -> tuple[str, ...]:
    """Fixes of the fired rules, worded for the server when it is known; most specific evidence first."""
    server = a.signals.framework
    keys: list[str] = []
    if category in a.scores:
        keys = [h.rule.fix for h in a.scores[category].fired() if h.rule.fix]
    if category == "compute" and a.signals.gpu_throttle:
        keys.insert(0, "compute_throttle")
    if category in ("none", "idle") and not keys:
        keys = [category]
    texts = [fix_text(k, server) for k in dict.fromkeys(keys)]
    return tuple(t for t in texts if t)[:MAX_FIXES]


def secondary_for(a: Assessment, category: str) -> tuple[tuple[str, float], ...]:
    """Other classes with evidence, most likely first."""
    out = [(c, confidence(a, c)) for c in SCORED if c != category and a.scores[c].score >= SECONDARY_MIN]
    out = [(c, p) for c, p in out if p > 0]
    return tuple(sorted(out, key=lambda cp: -cp[1]))[:MAX_SECONDARY]


def _short(value: float) -> str:
    """A number for a counter line: 0.97, 12, 3.4e+09."""
    v = float(value)
    if abs(v) >= 1e6:
        return f"{v:.2g}"
    return f"{v:.2f}" if abs(v) < 1 else f"{v:.0f}"


def _condition_line(hit: Hit, prefix: str) -> str:
    now = "" if hit.value is None else f" (now {_short(hit.value)})"
    when = "".join(f" and {c.words()}" for c in hit.rule.when)
    return f"{prefix} {hit.rule.cond.words()}{when}{now}"


def _nearest_classes(a: Assessment, category: str, limit: int = 2) -> list[str]:
    """When no other class has any evidence: the strongest known test of each, in hierarchy order."""
    out = []
    for c in ("scheduling", *BUSY_CLASSES, "network"):
        if c == category:
            continue
        quiet = [h for h in a.scores[c].hits if h.fired is False and h.rule.weight > 0 and not h.rule.when]
        if quiet:
            best = max(quiet, key=lambda h: h.rule.weight)
            out.append(_condition_line(best, f"{c} if"))
    return out[:limit]


def counter_for(a: Assessment, category: str) -> tuple[str, ...]:
    """What would change the verdict: evidence against it now, what would tip it, what a source could add."""
    lines: list[str] = []
    if category in a.scores:
        lines += ["against: " + render_evidence(h, a.signals) for h in a.scores[category].fired(positive=False)]
        quiet = [h for h in a.scores[category].hits if h.fired is False and h.rule.weight < 0]
        for h in sorted(quiet, key=lambda h: h.rule.weight)[:1]:
            lines.append(_condition_line(h, f"not {category} if"))
    runners = [c for c in SCORED if c != category]
    runner = max(runners, key=lambda c: a.scores[c].score)
    candidates = [h for h in a.scores[runner].hits if h.fired is False and h.rule.weight > 0]
    if a.scores[runner].score > 0:
        for h in sorted(candidates, key=lambda h: -h.rule.weight)[:1]:
            lines.append(_condition_line(h, f"{runner} if"))
    elif category in ("none", "idle"):
        lines += _nearest_classes(a, category)
    have = set(a.signals.sources) | ({"queue"} if "logs" in a.signals.sources else set())
    unknown = {SIGNAL_SOURCES.get(h.rule.signal, "") for s in a.scores.values() for h in s.hits if h.fired is None}
    if a.branch == "cpu":
        unknown.discard("gpu")  # GPU counters cannot change a verdict on a target that uses no GPU
    unseen = sorted(u for u in unknown if u and u not in have)
    if unseen:
        lines.append("data from " + ", ".join(unseen) + " could change it")
    return tuple(dict.fromkeys(lines))[:MAX_COUNTER]


def rules_for(a: Assessment, category: str) -> tuple[str, ...]:
    """Every fired rule of the shown class and of the classes that scored, strongest class first.

    ``scheduling 0.71 · +0.45 sched.waiting: requests_waiting 3.2 >= 1``: the class and its score, the
    rule's weight (negative: evidence against) and id, and the number that made it fire.
    """
    ranked = sorted(a.scores.values(), key=lambda sc: (sc.category != category, -sc.score))
    lines = []
    for sc in ranked:
        if sc.category != category and sc.score <= 0:
            continue
        for hit in (*sc.fired(), *sc.fired(positive=False)):
            rule = hit.rule
            now = "?" if hit.value is None else _short(hit.value)
            when = "".join(f", {c.signal} {c.op} {fmt_threshold(c.threshold)}" for c in rule.when)
            lines.append(
                f"{sc.category} {sc.score:.2f} · {rule.weight:+.2f} {rule.id}: "
                f"{rule.signal} {now} {rule.op} {fmt_threshold(rule.threshold)}{when}"
            )
    return tuple(lines)


def missing_for(a: Assessment) -> tuple[str, ...]:
    """Sources that would have sharpened the verdict, with the reason the session gave."""
    statuses = {name: (state, reason) for name, state, reason in a.signals.statuses}
    have = set(a.signals.sources)
    out = []
    for source, (hint, _classes) in MISSING_HINTS.items():
        if source in have or (source == "queue" and "logs" in have):
            continue
        state, reason = statuses.get(source, ("", ""))
        line = hint
        if reason and state not in ("ok", "starting"):
            what = hint.split(":")[0]
            line = reason if reason.startswith(what) else f"{what}: {reason}"  # a reason may already say what
        elif state in ("ok", "starting"):
            # running, but its first sample has not arrived (py-spy's first window takes seconds): the hint's
            # remedy ("needs ptrace …") would send the user after a problem they do not have
            line = f"{hint.split(':')[0]} yet (starting)"
        out.append(line)
    return tuple(out)


def _wall_ts(window: Window) -> float:
    stamps = [s.ts_s for series in window.samples.values() for s in series[-1:]]
    return max(stamps, default=0.0)


def diagnosis_for(a: Assessment, category: str, window: Window) -> Diagnosis:
    """The full, explained Diagnosis of ``category`` on this assessment."""
    return Diagnosis(
        category=category,
        confidence=confidence(a, category),
        evidence=evidence_for(a, category),
        fixes=fixes_for(a, category),
        secondary=secondary_for(a, category),
        missing=missing_for(a),
        counter=counter_for(a, category) if category != "unknown" else (),
        ts_s=_wall_ts(window),
        mono_s=window.now_mono_s,
        rules=rules_for(a, category),
        latency=a.signals.latency,
    )


# -- the contract --------------------------------------------------------------------------------------
def analyze(window: Window) -> Diagnosis:
    """Judge one window (pure): the raw verdict, without hysteresis."""
    a = assess(window)
    return diagnosis_for(a, a.leader, window)


def judge(window: Window, state: object) -> tuple[Diagnosis, object]:
    """Judge with hysteresis: the state goes in and comes out as a value (None starts afresh)."""
    a = assess(window)
    previous = state if isinstance(state, HysteresisState) else None
    new_state = step(previous, a.leader)
    shown = new_state.shown or a.leader
    d = diagnosis_for(a, shown, window)
    if shown != a.leader:
        led = new_state.leads(a.leader)
        note = (
            f"this window leans {a.leader} ({led} of the last {HISTORY}; the verdict switches at {NEEDED}, "
            f"{CONSECUTIVE} in a row)"
        )
        lead_conf = confidence(a, a.leader)
        secondary = ((a.leader, lead_conf), *((c, p) for c, p in d.secondary if c != a.leader))
        d = replace(
            d,
            evidence=(note, *d.evidence[: MAX_EVIDENCE - 1]),
            secondary=secondary[:MAX_SECONDARY],
            leading=a.leader,
            leading_confidence=lead_conf,
        )
    return d, new_state


def summary(category: str) -> str:
    """One line saying what a class means."""
    return CLASS_SUMMARY.get(category, category)


__all__ = ["Assessment", "Hit", "Num", "Score", "analyze", "assess", "judge"]


def analyzer_failed(window: Window, exc: Exception) -> Diagnosis:
    """The verdict to show when judging ``window`` raised: "unknown", saying why, never the previous verdict.

    The analyzer is pure and should not raise; when a bug makes it, every caller that is not the live session (which
    also shows an ``analyzer`` status) stores this instead: a replay, compare, ``--once`` and a bundle go on, and the
    reason is on screen and in the file rather than a traceback or a stale verdict.
    """
    why = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    return Diagnosis(
        "unknown",
        0.0,
        evidence=(f"the analyzer failed on this window ({why}): no verdict",),
        fixes=("report it with a recording of the run (optitop record): a fixed analyzer re-judges it",),
        mono_s=window.now_mono_s,
    )
