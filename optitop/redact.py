"""Secret redaction for everything optitop shows or writes: cmdlines, URLs, status reasons, bundle members.

Targets are untrusted input and their command lines, URLs and logs often carry credentials. One function,
:func:`redact_text`, knows every shape optitop redacts; the others apply it to an argv, a cmdline or a JSON
value. Redaction happens where text enters optitop (the collectors keep a display form of each metrics
URL, the session redacts status reasons), so no later stage (screen, JSON, recording, bundle, exporter)
can leak it; the bundle redacts its members once more as they are written.

What is hidden, and only that (flag names, hosts, ports, paths and user names stay readable)::

    --api-key X  --api-key=X  --token:X  --pass X        the value of a flag whose name ends in a secret word
    HF_TOKEN=X  password=X  "api_key": "X"  apiKey: X     the value of a key (env, JSON, YAML, header, label)
    http://user:X@host  redis://:X@host                  the password in a URL (any scheme)
    http://h/m?token=X&sig=X  #access_token=X            query or fragment parameters with secret names
    Authorization: Bearer X   Bearer X                   the credential after the scheme word
    sk-…  hf_…  ghp_…  github_pat_…  AKIA…  xoxb-…  eyJ….eyJ….…  well-known key shapes anywhere
    sh -c "vllm --api-key X"                             a shell command inside one argument is split

A name is secret when its last word (split at ``-``, ``_``, ``.`` and camelCase) is one of ``_SECRET_WORDS``:
``--max-num-batched-tokens`` and ``--tokenizer`` stay readable, ``--hf-token`` does not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

REDACTED = "***"

#: Last words of a name whose value is a secret (compared lower-case).
_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "pass",
        "pwd",
        "passphrase",
        "key",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "creds",
        "sig",
        "signature",
        "cookie",
        "bearer",
        "jwt",
        "pat",
        "dsn",
    }
)
#: Words after ``Authorization:`` that name the scheme: kept, the credential after them is hidden.
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "negotiate", "apikey"})

# A shell-ish word: unquoted runs and quoted spans glued together ("--cmd='a b'" is one word).
_WORD = re.compile(r"""(?:[^\s"']+|"[^"\n]*"|'[^'\n]*')+""")
_QUOTED = re.compile(r""""([^"\n]*)"|'([^'\n]*)'""")
# --api-key / -p / API_KEY (a word that is only a name, its value is the next word)
_FLAG = re.compile(r"^-{1,2}([A-Za-z][\w.-]*)$")
# --token=X, --token:X, HF_TOKEN=X, password: (the value may be empty: then it is the next word)
_ASSIGN = re.compile(r"""^(["']?)(-{0,2}[A-Za-z][\w.-]*)\1([=:])(.*)$""", re.DOTALL)
# A name and its separator inside free text: "api_key": , api_key=, ?token=, ["API_KEY"]=, Authorization:
# (the value is matched only after a secret name, so a harmless key never swallows the text after it)
_NAME_SEP = re.compile(r"""(?<![\w/.%-])(["']?)(-{0,2}[A-Za-z][\w.-]*)\1\]?\s*[:=](?!//)\s*""")
_VALUE = re.compile(
    r"""((?i:(?:bearer|basic|token|digest|negotiate|apikey)\s+)?)("[^"\n]*"|'[^'\n]*'|[^\s"',;&#}\]]+)"""
)
# scheme://userinfo@ (greedy: up to the authority's last @)
_URL_USERINFO = re.compile(r"""(?i)\b([a-z][a-z0-9+.-]*://)([^\s/?#"'<>]*)@""")
# user:password@host without a scheme (a proxy setting, a DSN); not an e-mail address (no colon)
_BARE_USERINFO = re.compile(r"""(?<![\w/:.%@-])([\w.%+-]+):([^\s/@:"']+)@(?=[\w\[])""")
_BEARER = re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{8,})")
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_-]{16,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
)
_KEY_PREFIXES = re.compile(r"sk-|hf_|gh[pousr]_|github_pat_|glpat-|xox[abprs]-|AKIA|ASIA|AIza|eyJ")
_SPACE = re.compile(r"\s")
_NAME_SPLIT = re.compile(r"[-_.\s]+|(?<=[a-z0-9])(?=[A-Z])")
#: A userinfo with no password is a user name, kept unless it is this long (a token used as the user).
_TOKEN_USER_LEN = 20


@functools.lru_cache(maxsize=1024)
def is_secret_name(name: str) -> bool:
    """True when a value named ``name`` (a flag, env variable, JSON key, query parameter) is a secret."""
    words = [w for w in _NAME_SPLIT.split(name.strip("-\"' ")) if w]
    return bool(words) and words[-1].lower() in _SECRET_WORDS


def redact_text(text: str) -> str:
    """Redact every secret shape in free text, keeping its layout (lines, spaces, quotes).

    Words are read like an argv (``--token X`` hides ``X``), line by line, quoted spans with spaces are
    redacted as commands of their own (``sh -c "… --api-key X"``), then the in-text shapes are replaced.
    """
    if not text:
        return text
    out: list[str] = []
    pos = 0
    hide_next = False
    for m in _WORD.finditer(text):
        gap = text[pos : m.start()]
        if "\n" in gap:
            hide_next = False
        out.append(gap)
        word, hide_next = _redact_word(m.group(), hide_next)
        out.append(word)
        pos = m.end()
    out.append(text[pos:])
    return _redact_shapes("".join(out))


def redact_arg_list(args: Sequence[str]) -> list[str]:
    """Redact secrets in an argv list, keeping its shape (one element per argument)."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        word, hide_next = _redact_word(arg, hide_next)
        out.append(_redact_shapes(word))
    return out


def redact_cmdline(args: Sequence[str]) -> str:
    """The argv joined for display, with secrets replaced by ``***``."""
    return _redacted_joined(tuple(args))


def redact_json(obj: Any) -> Any:
    """Redact a JSON value: a secret-named key's value is hidden whole, strings as text, string lists as an argv."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, list):
        if obj and all(isinstance(x, str) for x in obj):
            return redact_arg_list(obj)
        return [redact_json(x) for x in obj]
    if isinstance(obj, dict):
        return {
            k: REDACTED if is_secret_name(str(k)) and isinstance(v, (str, int, float)) else redact_json(v)
            for k, v in obj.items()
        }
    return obj


@functools.lru_cache(maxsize=512)
def _redacted_joined(args: tuple[str, ...]) -> str:
    # Cached: the process collector redacts the same cmdlines every tick.
    return " ".join(redact_arg_list(args))


def _looks_like_flag(word: str) -> bool:
    return len(word) > 1 and word[0] == "-" and (word[1].isalpha() or word[1] == "-")


def _redact_word(word: str, hide_next: bool) -> tuple[str, bool]:
    """One argv word: (its redacted form, whether the word after it is a secret value)."""
    if hide_next and not _looks_like_flag(word):
        if word.lower() in _AUTH_SCHEMES:
            return word, True  # Authorization: Bearer X -> keep "Bearer", hide X
        return REDACTED, False
    m = _ASSIGN.match(word)
    if m and is_secret_name(m.group(2)) and not m.group(4)[:1].isspace():  # "Name: value" is read as text
        if not m.group(4):
            return word, True  # "password:" then the value
        return word[: m.start(4)] + REDACTED, False
    m = _FLAG.match(word)
    if m and is_secret_name(m.group(1)):
        return word, True
    if not _SPACE.search(word):
        return word, False
    if _SPACE.search(_QUOTED.sub("", word)):
        return redact_text(word), False  # one argv element holding a whole command (sh -c "…")
    return _QUOTED.sub(_redact_quoted, word), False


def _redact_quoted(m: re.Match[str]) -> str:
    quote = m.group(0)[0]
    inner = m.group(1) if m.group(1) is not None else m.group(2)
    if not _SPACE.search(inner):
        return m.group(0)
    return quote + redact_text(inner) + quote


def _redact_shapes(text: str) -> str:
    """The shapes found anywhere in a text: URL userinfo, key/value pairs, bearer tokens, known key formats.

    Each pattern runs only when a character it needs is present: most words of a cmdline need none.
    """
    if "@" in text:
        text = _URL_USERINFO.sub(_hide_userinfo, text)
        text = _BARE_USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    if "=" in text or ":" in text:
        text = _hide_values(text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    if _KEY_PREFIXES.search(text):
        text = _KEY_SHAPES.sub(REDACTED, text)
    return text


def _hide_userinfo(m: re.Match[str]) -> str:
    scheme, userinfo = m.group(1), m.group(2)
    user, colon, _password = userinfo.partition(":")
    if colon:
        return f"{scheme}{user}:{REDACTED}@"
    if len(userinfo) >= _TOKEN_USER_LEN:
        return f"{scheme}{REDACTED}@"
    return m.group(0)


def _hide_values(text: str) -> str:
    """Hide the value after every secret name (``"api_key": "X"``, ``token=X``, ``Authorization: Bearer X``)."""
    out: list[str] = []
    pos = 0
    while (m := _NAME_SEP.search(text, pos)) is not None:
        value = _VALUE.match(text, m.end()) if is_secret_name(m.group(2)) else None
        if value is None:
            out.append(text[pos : m.end()])
            pos = m.end()
            continue
        quoted = value.group(2)
        hidden = quoted[0] + REDACTED + quoted[0] if quoted[:1] in "\"'" else REDACTED
        out.append(text[pos : value.start(2)] + hidden)
        pos = value.end()
    out.append(text[pos:])
    return "".join(out)
