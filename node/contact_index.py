"""The in-memory know-who index: posting lists over readable contacts (kind, country,
language, search words) and the vouches among them (docs/spec/70-contacts-and-queries.md).

Owns what matches a query and the web of trust; `node.ranking` orders the matches. Lives
in memory only: nothing readable of a contact is ever written to disk or to a log line.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from node.entries import Entry, Opened, VouchEntry, entry_of
from node.index_common import discard, post
from node.ranking import Hit, Ranker, Wanted
from protocol import limits
from protocol.contact import (
    Filter,
    VouchAbout,
    primary_lang,
    region_matches,
    tokens,
    trust_distances,
)
from protocol.envelope import Body
from protocol.errors import RemoteProtocolError
from protocol.record import Record, Scope


@dataclass(slots=True)
class ContactIndex:
    """Inverted indexes over readable contacts and vouches (kind, country, language, words)."""

    me: bytes
    entries: dict[bytes, Entry] = field(default_factory=dict)
    vouches: dict[bytes, VouchEntry] = field(default_factory=dict)
    by_key: dict[tuple[bytes, bytes], set[bytes]] = field(default_factory=dict)
    by_kind: dict[str, set[bytes]] = field(default_factory=dict)
    by_country: dict[str, set[bytes]] = field(default_factory=dict)
    by_lang: dict[str, set[bytes]] = field(default_factory=dict)
    by_token: dict[str, set[bytes]] = field(default_factory=dict)
    contact_vouches: dict[tuple[bytes, bytes], dict[bytes, int]] = field(default_factory=dict)
    unreadable: int = 0
    malformed: int = 0
    revoked: set[bytes] = field(default_factory=set)  # keys declared compromised
    _vocab: list[str] = field(default_factory=list)
    _vocab_dirty: bool = False
    _ranker: Ranker = field(init=False)
    _edges: list[tuple[bytes, bytes]] | None = None  # peer vouches, rebuilt when they change
    # What the review queue starts from, kept as records come and go (see `own`): the
    # contacts this node wrote, and the contacts it vouched for with those vouches' ids.
    _own: set[bytes] = field(default_factory=set)
    _own_vouched: dict[tuple[bytes, bytes], set[bytes]] = field(default_factory=dict)
    # (expires, id) of every record indexed, a min-heap once `expired` first runs: the
    # expiry pass pops what is due instead of walking every entry on the event loop. A
    # record's id fixes its expiry, so an item whose record is gone is just dropped.
    _expiry: list[tuple[int, bytes]] = field(default_factory=list)
    _heaped: bool = False

    def __post_init__(self) -> None:
        self._ranker = Ranker(self)

    # -- building ----------------------------------------------------------------------------

    def add(self, record: Record, body: Body) -> Entry | VouchEntry | None:
        """Index one opened record; None (and counted) if its content is malformed."""
        return self.add_opened(
            Opened(
                record.id,
                record.kind,
                record.author.raw,
                record.scope,
                record.created,
                record.expires,
                body.content,
            )
        )

    def add_opened(self, opened: Opened) -> Entry | VouchEntry | None:
        """Index one opened record (see `open_stored`); None (and counted) if malformed."""
        try:
            item = entry_of(opened)
        except RemoteProtocolError:
            self.malformed += 1
            return None
        self.put(item)
        return item

    def put(self, item: Entry | VouchEntry) -> None:
        """Index a checked contact or vouch (from `entry_of` or the opened-record cache)."""
        if isinstance(item, VouchEntry):
            self._add_vouch(item)
        elif item.rid not in self.entries:
            self.insert(item)

    def insert(self, entry: Entry) -> None:
        rid = entry.rid
        contact = entry.contact
        self.entries[rid] = entry
        self._expire_at(entry.expires, rid)
        post(self.by_key, (entry.author, contact.uid), rid)
        if entry.author == self.me:
            self._own.add(rid)
        # The same as post, inline: an index build does this for every contact.
        ids = self.by_kind.get(contact.kind)
        if ids is None:
            self.by_kind[contact.kind] = {rid}
        else:
            ids.add(rid)
        country = contact.region[:2]
        ids = self.by_country.get(country)
        if ids is None:
            self.by_country[country] = {rid}
        else:
            ids.add(rid)
        for lang in contact.langs:
            post(self.by_lang, primary_lang(lang), rid)
        by_token = self.by_token
        for word in entry.words:
            ids = by_token.get(word)
            if ids is None:
                by_token[word] = {rid}
                self._vocab_dirty = True
            else:
                ids.add(rid)
        self._ranker.changed(rid)

    def _add_vouch(self, entry: VouchEntry) -> None:
        vouch = entry.vouch
        self.vouches[entry.rid] = entry
        self._expire_at(entry.expires, entry.rid)
        if vouch.about is VouchAbout.CONTACT:
            key = (vouch.subject, vouch.uid)
            if entry.voucher == self.me:
                post(self._own_vouched, key, entry.rid)
            held = self.contact_vouches.setdefault(key, {})
            held[entry.voucher] = max(held.get(entry.voucher, 0), entry.created)
            self._retrust(key)
        else:
            self._edges = None

    def remove(self, ids: Iterable[bytes]) -> int:
        """Forget withdrawn or expired records; returns how many were indexed."""
        removed = 0
        for rid in ids:
            entry = self.entries.pop(rid, None)
            if entry is not None:
                removed += 1
                discard(self.by_key, entry.key, rid)
                self._own.discard(rid)
                discard(self.by_kind, entry.contact.kind, rid)
                discard(self.by_country, entry.contact.region[:2], rid)
                for lang in entry.contact.langs:
                    discard(self.by_lang, primary_lang(lang), rid)
                for word in entry.words:
                    if discard(self.by_token, word, rid):
                        self._vocab_dirty = True
                self._ranker.removed(rid)
            vouch = self.vouches.pop(rid, None)
            if vouch is not None:
                removed += 1
                if vouch.vouch.about is VouchAbout.CONTACT:
                    key = (vouch.vouch.subject, vouch.vouch.uid)
                    discard(self._own_vouched, key, rid)
                    self._recount(key)
                    self._retrust(key)
                else:
                    self._edges = None
        return removed

    def _recount(self, key: tuple[bytes, bytes]) -> None:
        held: dict[bytes, int] = {}
        for v in self.vouches.values():
            if v.vouch.about is VouchAbout.CONTACT and (v.vouch.subject, v.vouch.uid) == key:
                held[v.voucher] = max(held.get(v.voucher, 0), v.created)
        if held:
            self.contact_vouches[key] = held
        else:
            self.contact_vouches.pop(key, None)

    def _retrust(self, key: tuple[bytes, bytes]) -> None:
        """The vouches for `key` changed: its entries' scores are no longer bounded."""
        for rid in self.by_key.get(key, ()):
            self._ranker.changed(rid)

    def own(self) -> list[Entry]:
        """The contacts this node wrote or vouched for (what the review queue looks at),
        without a pass over every entry: a page shows it on each view."""
        rids = set(self._own)
        for key in self._own_vouched:
            rids.update(self.by_key.get(key, ()))
        return [self.entries[rid] for rid in rids]

    def expired(self, now_ms: int) -> list[bytes]:
        """The ids of indexed records expired by `now_ms`, for `remove`: taken off the
        expiry heap (no pass over every entry), so each is given once."""
        heap = self._expiry
        if not self._heaped:  # built by appending: one heapify, at the first expiry pass
            heapq.heapify(heap)
            self._heaped = True
        out: dict[bytes, None] = {}
        while heap and heap[0][0] <= now_ms:
            _, rid = heapq.heappop(heap)
            if rid in self.entries or rid in self.vouches:
                out[rid] = None
        if len(heap) > 2 * (len(self.entries) + len(self.vouches)) + limits.EXPIRY_HEAP_SLACK:
            # Mostly records withdrawn before they expired: keep the heap to what is indexed.
            self._expiry = [(e.expires, r) for r, e in self.entries.items()]
            self._expiry += [(v.expires, r) for r, v in self.vouches.items()]
            heapq.heapify(self._expiry)
        return list(out)

    def _expire_at(self, expires: int, rid: bytes) -> None:
        if self._heaped:
            heapq.heappush(self._expiry, (expires, rid))
        else:
            self._expiry.append((expires, rid))

    # -- web of trust ------------------------------------------------------------------------

    def vouch_ids_for(self, keys: set[tuple[bytes, bytes]], people: set[bytes]) -> list[bytes]:
        """Network-scoped vouches that endorse these contacts or these organisations."""
        out = []
        for v in self.vouches.values():
            if v.scope is not Scope.NETWORK:
                continue
            about = (v.vouch.subject, v.vouch.uid)
            if (v.vouch.about is VouchAbout.CONTACT and about in keys) or (
                v.vouch.about is VouchAbout.PEER and v.vouch.subject in people
            ):
                out.append(v.rid)
        return out

    def overlay(self, flt: Filter, now_ms: int) -> ContactIndex:
        """A scratch index: our matching contacts and all our vouches, to merge answers into."""
        scratch = ContactIndex(self.me)
        for entry in self.matching(flt, now_ms):
            scratch.insert(entry)
        scratch.vouches = dict(self.vouches)
        scratch.contact_vouches = {k: dict(v) for k, v in self.contact_vouches.items()}
        scratch.revoked = set(self.revoked)  # network answers are marked unverified too
        return scratch

    def peer_edges(self) -> list[tuple[bytes, bytes]]:
        if self._edges is None:
            self._edges = [
                (v.voucher, v.vouch.subject)
                for v in self.vouches.values()
                if v.vouch.about is VouchAbout.PEER
            ]
        return list(self._edges)

    def distances(self, peers: Iterable[bytes]) -> dict[bytes, int]:
        return trust_distances(self.me, peers, self.peer_edges())

    def set_revoked(self, keys: Iterable[bytes]) -> None:
        """Keys declared compromised: their vouches no longer count, and a contact vouched
        for only by such keys is unverified (anyone holding the key may have written it)."""
        self.revoked = set(keys)
        self._ranker.reset()

    # -- searching ---------------------------------------------------------------------------

    def _prefixed(self, token: str) -> set[bytes]:
        if self._vocab_dirty:
            self._vocab = sorted(self.by_token)
            self._vocab_dirty = False
        out: set[bytes] = set()
        at = bisect.bisect_left(self._vocab, token)
        while at < len(self._vocab) and self._vocab[at].startswith(token):
            out |= self.by_token[self._vocab[at]]
            at += 1
        return out

    def _candidate_set(self, flt: Filter) -> set[bytes] | None:
        """Ids that match every posting list of `flt` (None: no field, so every entry).

        May be one of the index's own sets: read it, never change it."""
        sets: list[set[bytes]] = []
        if flt.kind:
            sets.append(self.by_kind.get(flt.kind, set()))
        if flt.region:
            sets.append(self.by_country.get(flt.region[:2], set()))
        if flt.lang:
            sets.append(self.by_lang.get(primary_lang(flt.lang), set()))
        for token in dict.fromkeys(tokens(flt.text)):
            sets.append(self._prefixed(token))
        if not sets:
            return None
        sets.sort(key=len)  # smallest first: each intersection costs its left side
        result = sets[0]
        for other in sets[1:]:
            if not result:
                break
            result = result & other
        return result

    def candidates(self, flt: Filter) -> Iterable[bytes]:
        found = self._candidate_set(flt)
        return self.entries.keys() if found is None else found

    def matching(self, flt: Filter, now_ms: int, answerable: bool = False) -> list[Entry]:
        out = []
        for rid in self.candidates(flt):
            entry = self.entries[rid]
            if entry.expires <= now_ms or (answerable and not entry.answerable()):
                continue
            if flt.region and not region_matches(flt.region, entry.contact.region):
                continue
            out.append(entry)
        return out

    def search(
        self,
        flt: Filter,
        now_ms: int,
        distances: dict[bytes, int],
        limit: int = limits.DEFAULT_RESULTS,
        answerable: bool = False,
    ) -> list[Hit]:
        """Deduplicated (one per author+uid: details over teasers, then the best-ranked),
        ranked best first (score, then record id); see `node.ranking`.

        `answerable`: only what this node may pass on to a peer that asks."""
        if limit <= 0:
            return []
        # A country filter is exactly its posting list; a subdivision also needs this check.
        sub_region = flt.region if "-" in flt.region else ""

        def fits(entry: Entry) -> bool:
            return (
                entry.expires > now_ms
                and (not answerable or entry.answerable())
                and (not sub_region or region_matches(sub_region, entry.contact.region))
            )

        return self._ranker.top(Wanted(self._candidate_set(flt), fits, now_ms, distances, limit))
