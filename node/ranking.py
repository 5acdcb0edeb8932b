"""The ranking walk of the know-who index: every match scored by the SPEC formula
(`protocol.contact.rank_score`), or, for a broad query, only the best few, walked in order
of upper bounds that only fall as time passes.

Owns the ranking state (each entry's cached trust, the bound order); never decides what
matches a query (`ContactIndex` does) and never changes the index it ranks.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from node.entries import Entry
from protocol import limits
from protocol.contact import UNKNOWN_DISTANCE, is_stale, rank_score


class Indexed(Protocol):
    """What the ranking reads of the index (`ContactIndex`)."""

    entries: dict[bytes, Entry]
    by_key: dict[tuple[bytes, bytes], set[bytes]]
    contact_vouches: dict[tuple[bytes, bytes], dict[bytes, int]]
    revoked: set[bytes]


@dataclass(slots=True)
class _Trust:
    """An entry's ranking inputs that change only with vouches and revocations."""

    vouchers: tuple[bytes, ...]  # sorted: the author and every organisation vouching for it
    trusted: tuple[bytes, ...]  # those whose keys are not revoked
    last_vouch: int  # newest vouch other than the author's original record; 0 if none

    @property
    def unverified(self) -> bool:
        return not self.trusted


@dataclass(slots=True)
class _Ranking:
    """Upper bounds of every entry's score, best first, for the trust distances `basis`.

    A score never rises as time passes (freshness only falls, a contact only becomes stale),
    so a score computed at `at` bounds the score at any later time. A broad query walks
    `order` and stops once `limit` results beat the bound of the next entry, instead of
    scoring thousands of matches. Entries added or re-vouched since are in `extra`, scored
    exactly on every walk until the next rebuild."""

    basis: frozenset[tuple[bytes, int]]
    at: int
    order: list[tuple[float, bytes]]  # (bound, rid), highest first
    extra: set[bytes] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Hit:
    entry: Entry
    vouchers: tuple[bytes, ...]
    distance: int
    stale: bool
    score: float
    unverified: bool = False  # every voucher's key (the author's included) is revoked


@dataclass(frozen=True, slots=True)
class Wanted:
    """One search: the candidate ids (None: every entry), which of them fit, when, from
    where (trust distances) and how many."""

    cands: set[bytes] | None
    fits: Callable[[Entry], bool]
    now_ms: int
    distances: dict[bytes, int]
    limit: int


# (score, rid, what a Hit needs): ordered by score, then record id
_Ranked = tuple[float, bytes, tuple[Entry, int, bool, _Trust]]


def _rank_key(ranked: _Ranked) -> tuple[float, bytes]:
    return (ranked[0], ranked[1])


class Ranker:
    """Ranks the entries of one index. The index tells it what changed: `changed` (an
    entry added, or its vouches changed), `removed`, `reset` (the revoked keys changed)."""

    def __init__(self, index: Indexed) -> None:
        self._index = index
        self._trusts: dict[bytes, _Trust] = {}  # by rid, filled lazily
        self._ranking: _Ranking | None = None

    def changed(self, rid: bytes) -> None:
        """`rid`'s score is no longer bounded: it is scored exactly until the next rebuild."""
        self._trusts.pop(rid, None)
        if self._ranking is not None:
            self._ranking.extra.add(rid)

    def removed(self, rid: bytes) -> None:
        self._trusts.pop(rid, None)
        if self._ranking is not None:
            self._ranking.extra.discard(rid)  # its place in the order is skipped

    def reset(self) -> None:
        self._trusts.clear()
        self._ranking = None

    def top(self, wanted: Wanted) -> list[Hit]:
        """The best `limit` fitting entries, one per author+uid (details over teasers, then
        the best-ranked), best first (score, then record id)."""
        entries = self._index.entries
        found = len(entries) if wanted.cands is None else len(wanted.cands)
        if found * found * limits.RANKING_WALK_COST_RATIO > wanted.limit * len(entries):
            top = self._walk(wanted)
        else:
            top = self._score_all(wanted)
        return [
            Hit(entry, trust.vouchers, distance, stale, score, trust.unverified)
            for score, _, (entry, distance, stale, trust) in top
        ]

    def _score_all(self, wanted: Wanted) -> list[_Ranked]:
        """Few matches: score each, keep the chosen one of each key, take the best."""
        chosen: dict[tuple[bytes, bytes], tuple[bool, _Ranked]] = {}
        entries = self._index.entries
        for rid in entries if wanted.cands is None else wanted.cands:
            entry = entries[rid]
            if not wanted.fits(entry):
                continue
            ranked = self._rank(entry, wanted.now_ms, wanted.distances)
            item = (not entry.contact.teaser, ranked)
            key = entry.key
            have = chosen.get(key)
            if have is None or (item[0], item[1][:2]) > (have[0], have[1][:2]):
                chosen[key] = item
        return heapq.nlargest(wanted.limit, (r for _, r in chosen.values()), key=_rank_key)

    def _walk(self, wanted: Wanted) -> list[_Ranked]:
        """Many matches: walk the entries best bound first; stop once `limit` results beat
        the next bound (no later entry can score above its bound)."""
        cands, fits, limit = wanted.cands, wanted.fits, wanted.limit
        ranking = self._ranking_for(wanted.now_ms, wanted.distances)
        entries = self._index.entries
        best: list[_Ranked] = []  # a min-heap on (score, rid)
        seen: set[tuple[bytes, bytes]] = set()

        def consider(entry: Entry) -> None:
            key = entry.key
            if key in seen:
                return
            seen.add(key)
            ranked = self._choose(key, entry, wanted)
            if len(best) < limit:
                heapq.heappush(best, ranked)
            elif ranked[:2] > best[0][:2]:
                heapq.heapreplace(best, ranked)

        extra = ranking.extra
        for rid in extra:
            entry = entries.get(rid)
            if entry is not None and (cands is None or rid in cands) and fits(entry):
                consider(entry)
        for bound, rid in ranking.order:
            if len(best) >= limit and best[0][:2] > (bound, rid):
                break
            if (cands is not None and rid not in cands) or rid in extra:
                continue
            entry = entries.get(rid)
            if entry is not None and fits(entry):
                consider(entry)
        return sorted(best, key=_rank_key, reverse=True)

    def _choose(self, key: tuple[bytes, bytes], entry: Entry, wanted: Wanted) -> _Ranked:
        """The entry a key is answered with: details over a teaser, then the best-ranked."""
        rids = self._index.by_key.get(key, ())
        if len(rids) <= 1:
            return self._rank(entry, wanted.now_ms, wanted.distances)
        best: tuple[bool, _Ranked] | None = None
        for rid in rids:
            other = self._index.entries[rid]
            if (wanted.cands is not None and rid not in wanted.cands) or not wanted.fits(other):
                continue
            item = (not other.contact.teaser, self._rank(other, wanted.now_ms, wanted.distances))
            if best is None or (item[0], item[1][:2]) > (best[0], best[1][:2]):
                best = item
        assert best is not None  # `entry` itself fits
        return best[1]

    def _ranking_for(self, now_ms: int, distances: dict[bytes, int]) -> _Ranking:
        basis = frozenset(distances.items())
        ranking = self._ranking
        entries = self._index.entries
        if (
            ranking is None
            or ranking.basis != basis
            or not ranking.at <= now_ms < ranking.at + limits.RANKING_REFRESH_MS
            or len(ranking.extra) > limits.RANKING_MAX_EXTRA + len(entries) // 64
        ):
            order = [(self._bound(entry, now_ms, distances), rid) for rid, entry in entries.items()]
            order.sort(reverse=True)
            ranking = self._ranking = _Ranking(basis, now_ms, order)
        return ranking

    def _bound(self, entry: Entry, now_ms: int, distances: dict[bytes, int]) -> float:
        """`_rank(...)[0]`, with a shortcut for the common case (no vouch, author not
        revoked: `_trust` gives trusted = (author,), last_vouch = 0)."""
        author = entry.author
        index = self._index
        if author in index.revoked or (author, entry.contact.uid) in index.contact_vouches:
            return self._rank(entry, now_ms, distances)[0]
        stale = now_ms > entry.contact.review  # is_stale(review, 0, now_ms)
        distance = distances.get(author, UNKNOWN_DISTANCE)
        return rank_score(distance, 1, entry.created, now_ms, stale)

    def _trust(self, entry: Entry) -> _Trust:
        author = entry.author
        revoked = self._index.revoked
        held = self._index.contact_vouches.get((author, entry.contact.uid))
        if not held and author not in revoked:
            return _Trust((author,), (author,), 0)  # the common case: the author alone
        trust = self._trusts.get(entry.rid)
        if trust is None:
            vouchers = dict(held) if held else {}
            vouchers[author] = max(vouchers.get(author, 0), entry.created)
            trusted = {v: at for v, at in vouchers.items() if v not in revoked}
            counted = trusted or vouchers  # unverified: every voucher's key is revoked
            others = [at for v, at in counted.items() if v != author or at > entry.created]
            trust = _Trust(tuple(sorted(vouchers)), tuple(trusted), max(others, default=0))
            self._trusts[entry.rid] = trust
        return trust

    def _rank(self, entry: Entry, now_ms: int, distances: dict[bytes, int]) -> _Ranked:
        trust = self._trust(entry)
        trusted = trust.trusted
        if not trusted:
            distance = UNKNOWN_DISTANCE
        elif len(trusted) == 1:
            distance = distances.get(trusted[0], UNKNOWN_DISTANCE)
        else:
            distance = min(distances.get(v, UNKNOWN_DISTANCE) for v in trusted)
        stale = is_stale(entry.contact.review, trust.last_vouch, now_ms)
        freshest = max(entry.created, trust.last_vouch)
        score = rank_score(distance, len(trusted), freshest, now_ms, stale)
        if not trusted:
            score /= 10  # below every verified answer
        return (score, entry.rid, (entry, distance, stale, trust))
