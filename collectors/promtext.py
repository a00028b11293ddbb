"""Prometheus exposition text: parse it tolerantly, and fast when a page repeats itself.

Servers answer ``/metrics`` with text copied from docs that elide lines with ``...``, with an HTML login page,
or with JSON. So parsing uses prometheus_client's parser line by line only when the whole text is rejected,
keeping the lines it accepts and counting the ones it drops, and names a body that is something else for what
it is. Families seen before are not parsed again (see ``_FAMILY_CACHE``). Fetching the text is promfetch's
job; the arithmetic over two parses (rates, quantiles) is promwindow's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

#: A label set as a sorted tuple of (name, value): hashable and order-independent.
Labels = tuple[tuple[str, str], ...]


class NotExposition(ValueError):  # noqa: N818 - a verdict on a body, not a programming error
    """The body is not Prometheus exposition text; the message says what it looked like instead."""


@dataclass(frozen=True, slots=True)
class Exposition:
    """One parsed scrape: every sample by name and label set, plus what had to be dropped to get it.

    Attributes:
        samples: sample name as exposed -> label set -> value (finite values only).
        types: sample name -> the family type the parser gave it (counter, gauge, histogram, summary, untyped).
        has_metadata: True when at least one HELP/TYPE line parsed (an exposition with no samples yet).
        dropped_lines: lines the strict parser rejected and that were left out.
        repaired_lines: lines whose elided label sets (``{...,``) were cut so the rest could be read.
        duplicates: samples that repeated a name and label set already seen (the first one is kept).
        nonfinite: samples with NaN or ±Inf values (left out: they are unknown, not numbers).
        first_dropped: the first dropped line, for the reason shown to a person.
    """

    samples: Mapping[str, Mapping[Labels, float]]
    types: Mapping[str, str] = field(default_factory=dict)
    has_metadata: bool = False
    dropped_lines: int = 0
    repaired_lines: int = 0
    duplicates: int = 0
    nonfinite: int = 0
    first_dropped: str = ""

    def names(self) -> frozenset[str]:
        """Every sample name present."""
        return frozenset(self.samples)

    def resolve(self, name: str) -> str | None:
        """The exposed name for ``name``, tolerating the ``_total`` suffix some exporters add and some omit."""
        for candidate in _name_variants(name):
            if candidate in self.samples:
                return candidate
        return None

    def series(self, name: str) -> Mapping[Labels, float]:
        """Every label set of one metric (empty when absent)."""
        exposed = self.resolve(name)
        return self.samples[exposed] if exposed is not None else {}

    def notes(self) -> tuple[str, ...]:
        """Short lines on what the tolerant parse had to do (empty when the text was clean)."""
        out = []
        if self.dropped_lines:
            out.append(f"{self.dropped_lines} line(s) rejected by the parser and skipped")
        if self.repaired_lines:
            out.append(f"{self.repaired_lines} elided label set(s) repaired")
        if self.duplicates:
            out.append(f"{self.duplicates} duplicate series ignored")
        if self.nonfinite:
            out.append(f"{self.nonfinite} NaN/Inf value(s) treated as unknown")
        return tuple(out)


def _name_variants(name: str) -> tuple[str, ...]:
    if name.endswith("_total"):
        return (name, name[: -len("_total")])
    return (name, name + "_total")


_ELIDED = re.compile(r"(?<=[{,])\s*\.\.\.\s*,|,\s*\.\.\.\s*(?=})|(?<={)\s*\.\.\.\s*(?=})")


def _parses(line: str) -> bool:
    try:
        _parse_lines([line])
    except Exception:  # noqa: BLE001 - the parser raises ValueError, IndexError … on foreign text
        return False
    return True


def _clean_lines(lines: list[str]) -> tuple[list[str], int, int, str]:
    """Keep the lines the parser accepts one by one; returns (lines, dropped, repaired, first dropped)."""
    kept: list[str] = []
    dropped = repaired = 0
    first = ""
    for line in lines:
        if _parses(line):
            kept.append(line)
            continue
        if "..." in line and "{" in line:
            fixed = _ELIDED.sub("", line)
            if fixed != line and _parses(fixed):
                kept.append(fixed)
                repaired += 1
                continue
        dropped += 1
        first = first or line[:120]
    return kept, dropped, repaired, first


def _chunks(lines: list[str]) -> list[list[str]]:
    """Lines grouped by metric family: a new group at each HELP, or at a TYPE that does not follow one."""
    out: list[list[str]] = []
    after_help = False
    for line in lines:
        is_help = line.startswith("# HELP ")
        if not out or is_help or (line.startswith("# TYPE ") and not after_help):
            out.append([])
        out[-1].append(line)
        after_help = is_help
    return out


def _parse_lines(lines: list[str]) -> list[Metric]:
    return list(text_string_to_metric_families("\n".join(lines) + "\n"))


#: Parsed families by the text of their block of lines. Between two scrapes of a live server much of the
#: page comes back unchanged (info metrics, constant gauges, histograms of idle routes): those blocks are not
#: parsed again. A block whose lines differ only in their values (a histogram that moved) is keyed by its
#: text without the values (see ``_template``): the parser's families for that shape are reused with the new
#: numbers. The parser costs ~40 µs a line and splitting off a value ~1 µs; the demo's page changes 60 of
#: its 84 lines every scrape. The parser's families are only read afterwards, so sharing them is safe.
_FAMILY_CACHE: dict[str, list[Metric]] = {}
#: Blocks kept in ``_FAMILY_CACHE`` before it is emptied (a few endpoints' worth of families).
FAMILY_CACHE_MAX = 4096
#: Starts the keys of blocks cached by shape; no line of text starts with it.
_SHAPE = "\x00shape\n"


def _split_value(line: str) -> tuple[str, str] | None:
    """A sample line as (its text before the value, the value); None for a line of any other shape."""
    close = line.rfind("}")
    if close >= 0:
        head, tail = line[: close + 1], line[close + 1 :].split()
    else:
        parts = line.split()
        head, tail = (parts[0] if parts else ""), parts[1:]
    # A value and an optional timestamp, as the parser reads them ("_" is a digit separator it rejects).
    if not 1 <= len(tail) <= 2 or "_" in tail[0] or "#" in tail[-1]:
        return None
    return head, tail[0]


def _template(chunk: list[str]) -> tuple[str, list[str]] | None:
    """The block's shape (its lines without their values) and the values in line order; None: not all
    sample lines look like ``name{labels} value [timestamp]``."""
    heads: list[str] = []
    values: list[str] = []
    for line in chunk:
        if line.startswith("#"):
            heads.append(line)
            continue
        split = _split_value(line)
        if split is None:
            return None
        heads.append(split[0])
        values.append(split[1])
    return _SHAPE + "\n".join(heads), values


def _with_values(families: list[Metric], values: list[str]) -> list[Metric] | None:
    """``families`` (kept by shape, so one sample per value line: see ``_aligned``) with the samples' values
    replaced, in order; None when a value does not parse."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return None
    out: list[Metric] = []
    it = iter(numbers)
    for fam in families:
        copy = Metric(fam.name, fam.documentation, fam.type, fam.unit)
        copy.samples = [sample._replace(value=next(it)) for sample in fam.samples]
        out.append(copy)
    return out


def _aligned(families: list[Metric], values: list[str]) -> bool:
    """True when the parser made one sample of each value line, in line order (so a shape can be reused)."""
    samples = [sample for fam in families for sample in fam.samples]
    if len(samples) != len(values):
        return False
    try:
        return all(_same(float(sample.value), float(value)) for sample, value in zip(samples, values, strict=True))
    except ValueError:
        return False


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def _remember(key: str, families: list[Metric]) -> None:
    if len(_FAMILY_CACHE) >= FAMILY_CACHE_MAX:
        _FAMILY_CACHE.clear()
    _FAMILY_CACHE[key] = families


def _parse_blocks(lines: list[str]) -> list[Metric]:
    """Parse family by family, reusing the result for a block seen before (whole, or with other values);
    raises like the parser."""
    families: list[Metric] = []
    for chunk in _chunks(lines):
        key = "\n".join(chunk)
        parsed = _FAMILY_CACHE.get(key)
        if parsed is None:
            shape = _template(chunk)
            seen = _FAMILY_CACHE.get(shape[0]) if shape is not None else None
            if shape is not None and seen is not None:
                parsed = _with_values(seen, shape[1])
            if parsed is None:
                parsed = _parse_lines(chunk)
                if shape is not None and _aligned(parsed, shape[1]):
                    _remember(shape[0], parsed)
                # Only parsed text is kept whole: a block that moved once will likely move again, and its
                # shape already answers for it (a key per scrape of every counter would only churn the cache).
                _remember(key, parsed)
        families.extend(parsed)
    return families


def _tolerant(lines: list[str]) -> tuple[list[Metric], int, int, str]:
    """Parse family by family; only a family the parser rejects is read line by line (the slow path)."""
    families: list[Metric] = []
    dropped = repaired = 0
    first = ""
    for chunk in _chunks(lines):
        try:
            families.extend(_parse_lines(chunk))
            continue
        except Exception:  # noqa: BLE001 - the parser raises ValueError, IndexError … on foreign text
            pass
        kept, lost, fixed, bad = _clean_lines(chunk)
        dropped, repaired, first = dropped + lost, repaired + fixed, first or bad
        try:
            families.extend(_parse_lines(kept))
        except Exception:  # noqa: BLE001 - lines valid alone but not together: drop the family
            dropped += len(kept)
            first = first or (kept[0][:120] if kept else "")
    return families, dropped, repaired, first


def _line_name(line: str) -> str:
    """The metric name a line is about (a sample, or a HELP/TYPE comment); "" for other comments."""
    if line.startswith("#"):
        parts = line.split(None, 3)
        return parts[2] if len(parts) >= 3 and parts[1] in ("HELP", "TYPE") else ""
    head = line.split("{", 1)[0].split(None, 1)
    return head[0] if head else ""  # a line that starts with "{" (UTF-8 names) or is junk


def _unescape_markdown(text: str) -> str:
    r"""Docs escape comment lines as ``\#``; a server never does, so the backslash is safe to drop."""
    if "\\#" not in text:
        return text
    return "\n".join(line[1:] if line.lstrip().startswith("\\#") else line for line in text.splitlines())


def _sniff_foreign(text: str, content_type: str) -> str | None:
    """A reason when the body is plainly something else (HTML, JSON), else None."""
    ctype = content_type.lower()
    head = text.lstrip()[:64].lower()
    if "html" in ctype or head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")):
        return "HTML page, not Prometheus text"
    if "json" in ctype or head.startswith(("{", "[")):
        return "JSON, not Prometheus text"
    if "\x00" in text[:4096]:
        return "binary data, not Prometheus text"
    return None


def parse_exposition(text: str, content_type: str = "", keep: frozenset[str] | None = None) -> Exposition:
    """Parse exposition text, dropping only the lines the strict parser rejects.

    Args:
        text: the body.
        content_type: the response's Content-Type, to name HTML or JSON for what they are.
        keep: when given, only lines about these metric names are parsed. The parser costs ~0.1 ms a
            line, so a large endpoint read every second is parsed in full once and then only for the series
            its profile uses.

    Raises:
        NotExposition: with a reason a person can read, when the body is HTML, JSON, binary, empty or
            mostly lines the parser rejects.
    """
    foreign = _sniff_foreign(text, content_type)
    if foreign:
        raise NotExposition(foreign)
    if not text.strip():
        raise NotExposition("empty body")
    lines = [line.strip() for line in _unescape_markdown(text).splitlines()]
    lines = [line for line in lines if line]
    if keep is not None:
        lines = [line for line in lines if _line_name(line) in keep]
    dropped = repaired = 0
    first = ""
    try:
        families = _parse_blocks(lines)
    except Exception:  # noqa: BLE001 - any parser failure sends us to the tolerant path
        families, dropped, repaired, first = _tolerant(lines)
    expo = _collect(families, dropped, repaired, first)
    if keep is None:
        _judge(expo)
    return expo


def _judge(expo: Exposition) -> None:
    """Reject bodies that parsed to nothing, or to less than what was thrown away."""
    kept = sum(len(v) for v in expo.samples.values()) + expo.duplicates + expo.nonfinite
    first = f" (first: {expo.first_dropped!r})" if expo.first_dropped else ""
    if kept == 0 and not expo.has_metadata:
        if expo.dropped_lines:
            raise NotExposition(f"not Prometheus text: all {expo.dropped_lines} line(s) rejected{first}")
        raise NotExposition("no Prometheus samples")
    if expo.dropped_lines > max(3, kept + expo.repaired_lines):
        raise NotExposition(f"mostly not Prometheus text: {expo.dropped_lines} line(s) rejected, {kept} kept{first}")


def _collect(families: Sequence[Metric], dropped: int, repaired: int, first: str) -> Exposition:
    samples: dict[str, dict[Labels, float]] = {}
    types: dict[str, str] = {}
    duplicates = nonfinite = 0
    has_meta = False
    for fam in families:
        typ = str(fam.type)
        if typ != "untyped" or fam.documentation:
            has_meta = True
        for sample in fam.samples:
            value = float(sample.value)
            if not math.isfinite(value):
                nonfinite += 1
                continue
            key: Labels = tuple(sorted(sample.labels.items()))
            per_name = samples.setdefault(sample.name, {})
            if key in per_name:
                duplicates += 1
                continue
            per_name[key] = value
            types.setdefault(sample.name, typ)
    return Exposition(samples, types, has_meta, dropped, repaired, duplicates, nonfinite, first)
