"""A deliberately pure-Python BPE-style tokeniser: the host_cpu scenario's frontend work.

Real servers that tokenise in Python (or pre-process images with PIL in the request path) hold the GIL for
milliseconds per request; this reproduces that with dictionary lookups and pair merges, no C extensions.
"""

from __future__ import annotations

import string
from functools import lru_cache

ALPHABET = string.ascii_lowercase


@lru_cache(maxsize=1)
def merges() -> dict[tuple[str, str], str]:
    """Pair merges (ab -> "ab") for every letter pair, then a second level for common 4-grams."""
    table: dict[tuple[str, str], str] = {}
    for a in ALPHABET:
        for b in ALPHABET:
            table[(a, b)] = a + b
    for a in ALPHABET[:8]:
        for b in ALPHABET[:8]:
            table[(a + b, b + a)] = a + b + b + a
    return table


def _merge_word(word: str, table: dict[tuple[str, str], str]) -> list[str]:
    """Merge adjacent symbols left to right until no pair merges (the costly pure-Python loop)."""
    symbols = list(word)
    changed = True
    while changed and len(symbols) > 1:
        changed = False
        out: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) in table:
                out.append(table[(symbols[i], symbols[i + 1])])
                i += 2
                changed = True
            else:
                out.append(symbols[i])
                i += 1
        symbols = out
    return symbols


def tokenise(text: str, passes: int) -> list[int]:
    """Token ids for ``text``, recomputed ``passes`` times (the knob that sets how long the GIL is held)."""
    table = merges()
    ids: list[int] = []
    for _ in range(max(1, passes)):
        ids = []
        for word in text.lower().split():
            for symbol in _merge_word(word, table):
                ids.append(hash(symbol) % 1000)
    return ids
