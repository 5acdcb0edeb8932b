"""How the guide index (node/guide_index.py) finds the guides that match every field of a
listing: posting lists of slots (a small int per indexed guide: sets, and for search words
sorted arrays), intersected smallest first, and for large ones bitsets (a Python int, bit s
set for slot s) kept made per posting list.

A field is a list of posting sets of which a guide must be in one: a language, a topic, an
author of --from (one set each), a search word (its set), the last search word (the sets
of every word it starts). The smallest field gives the candidates; when it is small, each
next field only filters them (set intersection, or each candidate's own words for a prefix
of many words); when it is large, every field's bitset is ANDed (a few microseconds per
field at 100,000 guides, against milliseconds for sets of thousands of members) and only
the matches are read out of the result. Bitsets are cached per posting set (dropped when
the set changes, made again at the next search that needs them, bounded in bytes). Pure:
no I/O, nothing of a guide beyond what the index holds in memory.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Collection, Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from itertools import chain
from typing import TypeAlias, TypeVar

from protocol import limits

_K = TypeVar("_K", bound=Hashable)
Key = Hashable  # what a posting set's bitset is cached under: a word, ("l", lang)…
# A posting list: a set of slots, or (a search word's, compact) a sorted array of them.
Posting: TypeAlias = "AbstractSet[int] | array[int]"
EMPTY: frozenset[int] = frozenset()


@dataclass(slots=True)
class Field:
    """Posting sets of which a matching guide is in one; `prefix`: the search word they
    are the words of (a guide's own words can be checked instead)."""

    sets: Sequence[tuple[Key, Posting]]
    prefix: str = ""
    size: int = 0  # members of every set, counted once each set

    def __post_init__(self) -> None:
        self.size = sum(len(s) for _, s in self.sets)


def post_sorted(index: dict[str, array[int]], key: str, slot: int) -> bool:
    """Add slot to the sorted array index[key]; True if the key is new."""
    slots = index.get(key)
    if slots is None:
        index[key] = array("I", (slot,))
        return True
    if slots[-1] < slot:
        slots.append(slot)  # as a build posts them: in order
    else:
        bisect.insort(slots, slot)
    return False


def discard_sorted(index: dict[str, array[int]], key: str, slot: int) -> bool:
    """Remove slot from the sorted array index[key]; True if the key is gone."""
    slots = index.get(key)
    if slots is None:
        return False
    at = bisect.bisect_left(slots, slot)
    if at < len(slots) and slots[at] == slot:
        del slots[at]
    if not slots:
        del index[key]
        return True
    return False


def bits_of(slots: Iterable[int], size: int) -> int:
    """The bitset of `slots` (every one below `size`)."""
    buf = bytearray((size >> 3) + 1)
    for s in slots:
        buf[s >> 3] |= 1 << (s & 7)
    return int.from_bytes(buf, "little")


def _bytes(bits: int) -> int:
    return (bits.bit_length() >> 3) + 1


def slots_in(bits: int) -> list[int]:
    """The slots set in a bitset, lowest first."""
    text = format(bits, "b")[::-1]  # character i: bit i
    out = []
    at = text.find("1")
    while at >= 0:
        out.append(at)
        at = text.find("1", at + 1)
    return out


@dataclass(slots=True)
class BitCache:
    """Bitsets of the larger posting sets, made on first use and dropped when the set
    changes (`drop`); at most `limits.GUIDE_BITS_CACHE_BYTES` in all."""

    bits: dict[Key, int] = field(default_factory=dict)
    held: int = 0  # bytes of the bitsets held

    def of(self, key: Key, slots: Collection[int], size: int) -> int:
        got = self.bits.get(key)
        if got is not None:
            return got
        made = bits_of(slots, size)
        if len(slots) >= limits.GUIDE_BITS_MIN_POSTINGS:  # a handful: cheaper made again
            cost = _bytes(made)
            if self.held + cost > limits.GUIDE_BITS_CACHE_BYTES:
                self.bits.clear()
                self.held = 0
            self.bits[key] = made
            self.held += cost
        return made

    def drop(self, key: Key) -> None:
        gone = self.bits.pop(key, None)
        if gone is not None:
            self.held -= _bytes(gone)

    def clear(self) -> None:
        self.bits.clear()
        self.held = 0


def matching_slots(
    fields: Sequence[Field], size: int, cache: BitCache, words_of: Sequence[str | None]
) -> Iterable[int]:
    """The slots in (one set of) every field. `size`: slots in use (an upper bound);
    `words_of[slot]`: that guide's search words (for a prefix's own-words check)."""
    if not fields:
        return ()
    order = sorted(fields, key=lambda f: f.size)
    first = order[0]
    if first.size == 0:
        return ()
    if first.size <= limits.GUIDE_SET_PATH_MAX or len(first.sets) > limits.GUIDE_BITS_MAX_SETS:
        return _filtered(order, words_of, cache, size)
    bits = -1
    later: list[Field] = []  # prefixes of too many words to OR: each candidate checked
    for f in order:
        if len(f.sets) > limits.GUIDE_BITS_MAX_SETS:
            later.append(f)
            continue
        one = 0
        for key, slots in f.sets:
            one |= cache.of(key, slots, size)
        bits &= one
        if not bits:
            return ()
    found = slots_in(bits)
    for f in later:
        found = list(_narrowed(set(found), f, words_of, cache, size))
    return found


def _filtered(
    order: Sequence[Field], words_of: Sequence[str | None], cache: BitCache, size: int
) -> set[int]:
    """Candidates from the smallest field, each next field filtering them."""
    first = order[0]
    found: set[int]
    if len(first.sets) == 1:
        found = set(first.sets[0][1])
    else:
        found = set().union(*(s for _, s in first.sets))
    for f in order[1:]:
        if not found:
            break
        found = _narrowed(found, f, words_of, cache, size)
    return found


def _narrowed(
    found: set[int], f: Field, words_of: Sequence[str | None], cache: BitCache, size: int
) -> set[int]:
    """The members of `found` in one of the sets of `f`."""
    if len(f.sets) == 1:
        only = f.sets[0][1]
        if isinstance(only, AbstractSet):
            return found & only
        if len(only) <= 8 * len(found):
            return found.intersection(only)
        # A long sorted array: each candidate looked up in it.
        out = set()
        for s in found:
            at = bisect.bisect_left(only, s)
            if at < len(only) and only[at] == s:
                out.add(s)
        return out
    if f.prefix and f.size >= limits.GUIDE_WORDS_CHECK_COST * len(found):
        # Each candidate's own words: cheaper than the many sets of a short prefix.
        prefix = f.prefix
        spaced = " " + prefix
        out = set()
        for s in found:
            text = words_of[s]
            if text is not None and (text.startswith(prefix) or spaced in text):
                out.add(s)
        return out
    if not all(isinstance(s, AbstractSet) for _, s in f.sets):
        # The arrays of a prefix's words, fewer members than own words would cost to read.
        return found.intersection(chain.from_iterable(s for _, s in f.sets))
    sets = [s for _, s in f.sets]
    if f.size < 2 * len(found) * len(sets):  # a union is cheaper
        return found & set().union(*sets)
    return {s for s in found if any(s in ids for ids in sets)}
