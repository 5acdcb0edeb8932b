"""The one rule for names a peer supplies (Hello, invites), and when two names are the same.

Names end up on operators' terminals and in listings where they stand for a node. Pure:
the rule is applied by whoever takes a name from the network (docs/spec/30-sync.md, "Names").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from protocol import limits

# No control, format (bidi overrides, isolates, zero-width), surrogate, private-use,
# unassigned, line- or paragraph-separator characters.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Except the zero-width non-joiner and joiner between two letters: Persian, Urdu and Indic
# names are spelt with them, and there they neither reorder nor hide text.
_JOINERS = frozenset({"\u200c", "\u200d"})


def _letter(c: str) -> bool:
    return unicodedata.category(c)[0] in "LM"  # letters and combining marks (a virama)


def _forbidden(name: str, i: int) -> bool:
    c = name[i]
    if c in _JOINERS:
        inside = 0 < i < len(name) - 1
        return not (inside and _letter(name[i - 1]) and _letter(name[i + 1]))
    return unicodedata.category(c) in _FORBIDDEN_CATEGORIES


def check_name(name: object) -> str | None:
    """Why `name` is not an acceptable organisation name, or None if it is."""
    if not isinstance(name, str):
        return "name must be text"
    if len(name.encode("utf-8", "surrogatepass")) > limits.MAX_NAME_LEN:
        return "name too long"
    # Names are printed on operators' terminals: no control, format (bidi) or unassigned chars.
    if any(_forbidden(name, i) for i in range(len(name))):
        return "name contains control characters"
    return None


def name_key(name: str) -> str:
    """What two names are compared by: NFKC, case-folded, inner whitespace collapsed, so
    "ACME  Aid" and "acme aid" are the same name (look-alike scripts are not caught: a
    listing shows the short id of every name that is not unique)."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def name_taken(name: str, others: Iterable[str]) -> bool:
    """Whether `name` is the same name (by `name_key`) as one of `others`."""
    key = name_key(name)
    return bool(key) and any(name_key(other) == key for other in others if other)
