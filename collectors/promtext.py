"""Prometheus exposition text: fetch it safely, parse it tolerantly, and do the windowed arithmetic.

Servers no one here wrote answer ``/metrics`` in every state: slowly, endlessly, with an HTML login page, or
with text copied from docs that elide lines with ``...``. So fetching has a short timeout, a total deadline and
a body cap, and parsing uses prometheus_client's parser line by line only when the whole text is rejected,
keeping the lines it accepts and counting the ones it drops. The arithmetic (counter deltas across resets,
histogram quantiles from bucket deltas) lives here because it is about exposition data, not about any server.
"""

from __future__ import annotations

import base64
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

#: Seconds to wait for a connection or for the next bytes of a response.
FETCH_TIMEOUT_S = 1.0
#: Bytes read at most from one response; the rest is never read (an endless body cannot pin a thread).
#: The largest real pages seen are ~1 MB (Ray Serve's ~700 KB); an endless stream read to the old 8 MiB cap
#: peaked at 278 MiB RSS and never answered (330 000 lines at the parser's ~40 µs each).
MAX_BODY_BYTES = 4 * 1024 * 1024
#: Lines read at most from one response: parsing costs time and memory per line, not per byte (100 000
#: series held 193 MiB). A vLLM page has ~1 500 lines; Ray Serve's ~700 KB page ~6 000.
MAX_LINES = 20_000
#: Read size; read1() returns what has arrived, so a trickling server cannot stall a read past the deadline.
_CHUNK = 64 * 1024
#: Ask for classic text: servers that can also speak OpenMetrics or protobuf then answer what we parse.
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"

#: A label set as a sorted tuple of (name, value): hashable and order-independent.
Labels = tuple[tuple[str, str], ...]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are reported, not followed: a probe of a loopback port must not end up on another host."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """Refuse (urllib then raises HTTPError with the 3xx status)."""
        return None


# No proxies (a loopback scrape must never go through $http_proxy) and no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


class NotExposition(ValueError):  # noqa: N818 - a verdict on a body, not a programming error
    """The body is not Prometheus exposition text; the message says what it looked like instead."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one GET returned.

    Attributes:
        url: the URL asked for.
        body: the decoded body (possibly cut at the cap), or None when nothing usable came back.
        status: the HTTP status, or None when no response arrived.
        content_type: the response's Content-Type ("" when absent).
        reason: "" on success, else what went wrong in words ("timed out after 1 s", "HTTP 404" …).
        capped: True when the body was longer than a cap and reading stopped there.
        elapsed_s: seconds the fetch took.
        cut: when capped, which cap in words ("page cut at 4 MiB", "page cut at 20000 lines").
    """

    url: str
    body: str | None
    status: int | None
    content_type: str
    reason: str
    capped: bool
    elapsed_s: float
    cut: str = ""

    @property
    def ok(self) -> bool:
        """True when a body arrived with a 2xx status."""
        return self.body is not None and not self.reason


def fetch(
    url: str, timeout_s: float = FETCH_TIMEOUT_S, max_bytes: int = MAX_BODY_BYTES, max_lines: int = MAX_LINES
) -> FetchResult:
    """GET ``url`` with a per-read timeout, a total deadline of twice that, and caps on bytes and lines.

    The body is streamed and reading stops at either cap: what one scrape costs is bounded whatever the
    server sends, and the result says where the page was cut.

    Never raises for network trouble: the reason is in the result, so one bad endpoint is one line of
    status rather than an exception in the collector.
    """
    start = time.monotonic()
    deadline = start + 2 * timeout_s
    try:
        request = _request(url)
    except ValueError as exc:  # a malformed URL (bad port, bad IPv6 literal)
        return _failed(url, start, f"{type(exc).__name__}: {exc}")
    try:
        with _OPENER.open(request, timeout=timeout_s) as resp:
            status = int(resp.status)
            ctype = resp.headers.get("Content-Type", "") or ""
            data, cut, late = _read_capped(resp, max_bytes, max_lines, deadline)
    except urllib.error.HTTPError as exc:
        exc.close()  # the error body is not wanted; release the connection now
        return _failed(url, start, f"HTTP {exc.code}", status=exc.code)
    except TimeoutError:
        return _failed(url, start, f"timed out after {timeout_s:g} s")
    except urllib.error.URLError as exc:
        return _failed(url, start, _url_error_reason(exc, timeout_s))
    except (OSError, ValueError) as exc:  # reset mid-body, bad chunking, malformed URL
        return _failed(url, start, f"{type(exc).__name__}: {exc}".rstrip(": "))
    if late:
        return _failed(url, start, f"body still arriving after {2 * timeout_s:g} s: timed out", status=status)
    body = data.decode("utf-8", errors="replace")
    if cut:
        body = body[: body.rfind("\n") + 1]  # the last line is cut mid-way: drop it
    return FetchResult(url, body, status, ctype, "", bool(cut), time.monotonic() - start, cut)


def _request(url: str) -> urllib.request.Request:
    """The GET for ``url``; its ``user:password@`` is sent as Basic authentication.

    urllib reads a URL's userinfo as part of the host name (the fetch then fails on a name lookup that
    carries the password); redirects are never followed, so the header goes to this host only.
    """
    headers = {"Accept": ACCEPT, "User-Agent": "optitop"}
    parts = urllib.parse.urlsplit(url)
    if "@" in parts.netloc:
        userinfo, _, hostport = parts.netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        url = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return urllib.request.Request(url, headers=headers)


class _Body(Protocol):
    def read1(self, n: int = -1, /) -> bytes: ...


def _read_capped(resp: _Body, max_bytes: int, max_lines: int, deadline: float) -> tuple[bytes, str, bool]:
    """Read until EOF, a cap or the deadline; returns (data, the cap hit in words or "", late).

    At the line cap the data ends with the last line kept (its newline included).
    """
    data = bytearray()
    lines = 0
    while True:
        if time.monotonic() > deadline:
            return bytes(data), "", True
        chunk = resp.read1(_CHUNK)
        if not chunk:
            return bytes(data), "", False
        newlines = chunk.count(b"\n")
        if lines + newlines > max_lines:
            end = -1
            for _ in range(max_lines - lines):
                end = chunk.index(b"\n", end + 1)
            data += chunk[: end + 1]
            if len(data) <= max_bytes:
                return bytes(data), f"page cut at {max_lines} lines", False
        else:
            data += chunk
            lines += newlines
        if len(data) > max_bytes:
            return bytes(data[:max_bytes]), f"page cut at {_size(max_bytes)}", False


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n / 1024:g} KiB"


def _url_error_reason(exc: urllib.error.URLError, timeout_s: float) -> str:
    inner = exc.reason
    if isinstance(inner, TimeoutError):
        return f"timed out after {timeout_s:g} s"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    return str(inner)


def _failed(url: str, start: float, reason: str, status: int | None = None) -> FetchResult:
    return FetchResult(url, None, status, "", reason, False, time.monotonic() - start)


# -- parsing ----------------------------------------------------------------------------------------------
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


# -- windowed arithmetic ----------------------------------------------------------------------------------
def label_match(labels: Labels, want: Mapping[str, str]) -> bool:
    """True when every wanted label's value fully matches its regular expression."""
    got = dict(labels)
    return all(k in got and re.fullmatch(pattern, got[k]) is not None for k, pattern in want.items())


def counter_delta(
    cur: Mapping[Labels, float], prev: Mapping[Labels, float], want: Mapping[str, str] | None = None
) -> float:
    """The increase of a counter summed over its label sets, across resets.

    A series that went down was restarted (the server restarted or the child was recreated), so its
    increase since then is its current value, as Prometheus' ``rate()`` assumes. A label set that appeared
    since the previous scrape was created from zero in between, so all of its value is new.
    """
    total = 0.0
    for labels, now in cur.items():
        if want and not label_match(labels, want):
            continue
        before = prev.get(labels)
        if before is None or now < before:
            total += now
        else:
            total += now - before
    return total


def le_value(raw: str) -> float | None:
    """A bucket bound as a float (``+Inf`` is infinity), or None when it does not parse."""
    try:
        return float(raw)
    except ValueError:
        return None


Buckets = dict[float, float]


def histogram_buckets(expo: Exposition, base: str) -> dict[Labels, Buckets]:
    """Cumulative bucket counts of one histogram, per label set without ``le``.

    Accepts ``base_bucket{le=…}`` (the format) and also ``base{le=…}`` (seen in Triton's docs).
    """
    out: dict[Labels, Buckets] = {}
    for name in (base + "_bucket", base):
        for labels, value in expo.samples.get(name, {}).items():
            le_raw = dict(labels).get("le")
            if le_raw is None:
                continue
            le = le_value(le_raw)
            if le is None:
                continue
            rest = tuple((k, v) for k, v in labels if k != "le")
            out.setdefault(rest, {})[le] = value
        if out:
            return out
    return out


def buckets_delta(cur: Mapping[Labels, Buckets], prev: Mapping[Labels, Buckets]) -> Buckets:
    """Bucket counts observed between two scrapes, summed over label sets; a reset series counts whole."""
    total: Buckets = {}
    for labels, now in cur.items():
        before = prev.get(labels)
        reset = before is None or _bucket_total(now) < _bucket_total(before)
        for le, count in now.items():
            inc = count if reset or before is None else count - before.get(le, 0.0)
            total[le] = total.get(le, 0.0) + max(0.0, inc)
    return total


def _bucket_total(buckets: Buckets) -> float:
    return buckets[max(buckets)] if buckets else 0.0


def quantile(buckets: Buckets, q: float) -> float | None:
    """The q-quantile of cumulative buckets, interpolated linearly inside a bucket as Prometheus does.

    None when no observation fell in the buckets. When the quantile lies in the +Inf bucket the answer is the
    largest finite bound (the true value is somewhere above it).
    """
    if not buckets:
        return None
    bounds = sorted(buckets)
    cum: list[float] = []
    running = 0.0
    for le in bounds:
        running = max(running, buckets[le])  # a non-monotonic exposition: as Prometheus, never go down
        cum.append(running)
    total = cum[-1]
    if total <= 0:
        return None
    rank = q * total
    idx = next(i for i, c in enumerate(cum) if c >= rank)
    upper = bounds[idx]
    if math.isinf(upper):
        finite = [b for b in bounds if not math.isinf(b)]
        return finite[-1] if finite else None
    if idx == 0 and upper <= 0:
        return upper
    lower = bounds[idx - 1] if idx > 0 else 0.0
    below = cum[idx - 1] if idx > 0 else 0.0
    in_bucket = cum[idx] - below
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket
