"""Secret redaction for anything optitop shows or writes (cmdlines, env-style tokens, URLs).

Targets are untrusted input; their command lines often carry API keys. Redaction happens where a cmdline
enters optitop (the collectors), so no later stage can leak it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

REDACTED = "***"

_SECRET_WORDS = (
    r"(?:api[-_]?key|apikey|token|secret|password|passwd|pwd|auth|credential|access[-_]?key|private[-_]?key)"
)
# --api-key=X, --token=X, password=X, HF_TOKEN=X, OPENAI_API_KEY=X
_ASSIGN = re.compile(rf"(?i)^(-{{0,2}}[\w.-]*{_SECRET_WORDS}[\w.-]*=)(.+)$")
# --api-key X, --token X (the value is the next argument)
_FLAG = re.compile(rf"(?i)^-{{1,2}}[\w.-]*{_SECRET_WORDS}[\w.-]*$")
# user:password@host in URLs
_URL_CRED = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)")
# Bearer tokens and well-known key shapes anywhere in a string
_BEARER = re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")
_KEY_SHAPES = re.compile(r"\b(sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{16,}|ghp_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16})\b")


def redact_arg_list(args: Sequence[str]) -> list[str]:
    """Redact secrets in an argv list, keeping its shape."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
            continue
        m = _ASSIGN.match(arg)
        if m:
            out.append(m.group(1) + REDACTED)
            continue
        if _FLAG.match(arg):
            out.append(arg)
            hide_next = True
            continue
        out.append(redact_text(arg))
    return out


def redact_text(text: str) -> str:
    """Redact secrets inside free text (URLs with credentials, bearer tokens, known key shapes)."""
    text = _URL_CRED.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)
    text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    text = _KEY_SHAPES.sub(REDACTED, text)
    return text


def redact_cmdline(args: Sequence[str]) -> str:
    """The argv joined for display, with secrets replaced by ``***``."""
    return _redacted_joined(tuple(args))


@functools.lru_cache(maxsize=512)
def _redacted_joined(args: tuple[str, ...]) -> str:
    # Cached: the process collector redacts the same cmdlines every tick.
    return " ".join(redact_arg_list(args))
