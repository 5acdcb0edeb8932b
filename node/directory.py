"""Know-who on a data directory: adding contacts and vouches, the in-memory search index,
introductions, reviews, and which records a node may reveal to whom.

Owns the mapping from sharing policies to records (docs/spec/70-contacts-and-queries.md):
peers -> scope peers sealed to our peers; network -> scope network sealed with the network
key; on-request -> a private details record plus a network-scoped teaser; private -> scope
private sealed to ourselves. The index lives in memory only: nothing readable of a contact
is ever written to disk or to a log line.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import hashlib
import heapq
import importlib.metadata
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgpack

from node.content import parse_audience, row_of, withdraw_records
from node.local import Local, random
from node.revocation import revoked_ids
from node.trust import match_peers, parse_node_id
from protocol import limits
from protocol.contact import (
    DAY_MS,
    UID_BYTES,
    UNKNOWN_DISTANCE,
    Contact,
    Filter,
    Share,
    Vouch,
    VouchAbout,
    is_stale,
    primary_lang,
    rank_score,
    region_matches,
    tokens,
    trust_distances,
)
from protocol.encoding import Value
from protocol.envelope import BODY_VERSION, Body, open_record, seal, seal_record, unseal
from protocol.errors import (
    CanopyError,
    ContactError,
    DecodeError,
    LocalProtocolError,
    NotForUs,
    RemoteProtocolError,
    VerificationError,
)
from protocol.identity import KEY_BYTES, SIGNATURE_BYTES, Identity, NodeId
from protocol.messages import IntroRequest
from protocol.record import ID_BYTES, RECORD_VERSION, Kind, Record, Scope, check_times

INTRODUCTIONS = "introductions"
_K = TypeVar("_K", bound=Hashable)


# -- the index -------------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One readable contact record, in memory only."""

    rid: bytes
    author: bytes
    scope: Scope
    created: int
    expires: int
    contact: Contact
    words: tuple[str, ...]

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.author, self.contact.uid)

    def answerable(self) -> bool:
        """May a node pass this record on to a peer that asks? (policy, SPEC "Sharing")."""
        if self.scope is not Scope.NETWORK:
            return False
        return self.contact.share is Share.NETWORK or self.contact.teaser


@dataclass(slots=True)
class VouchEntry:
    rid: bytes
    voucher: bytes
    scope: Scope
    created: int
    expires: int
    vouch: Vouch


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
    _trusts: dict[bytes, _Trust] = field(default_factory=dict)  # by rid, filled lazily
    _ranking: _Ranking | None = None
    _edges: list[tuple[bytes, bytes]] | None = None  # peer vouches, rebuilt when they change

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
        _post(self.by_key, (entry.author, contact.uid), rid)
        # The same as _post, inline: an index build does this for every contact.
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
            _post(self.by_lang, primary_lang(lang), rid)
        by_token = self.by_token
        for word in entry.words:
            ids = by_token.get(word)
            if ids is None:
                by_token[word] = {rid}
                self._vocab_dirty = True
            else:
                ids.add(rid)
        self._trusts.pop(rid, None)
        if self._ranking is not None:
            self._ranking.extra.add(rid)

    def _add_vouch(self, entry: VouchEntry) -> None:
        vouch = entry.vouch
        self.vouches[entry.rid] = entry
        if vouch.about is VouchAbout.CONTACT:
            key = (vouch.subject, vouch.uid)
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
                _discard(self.by_key, entry.key, rid)
                _discard(self.by_kind, entry.contact.kind, rid)
                _discard(self.by_country, entry.contact.region[:2], rid)
                for lang in entry.contact.langs:
                    _discard(self.by_lang, primary_lang(lang), rid)
                for word in entry.words:
                    if _discard(self.by_token, word, rid):
                        self._vocab_dirty = True
                self._trusts.pop(rid, None)
                if self._ranking is not None:
                    self._ranking.extra.discard(rid)  # its place in the order is skipped
            vouch = self.vouches.pop(rid, None)
            if vouch is not None:
                removed += 1
                if vouch.vouch.about is VouchAbout.CONTACT:
                    key = (vouch.vouch.subject, vouch.vouch.uid)
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
            self._trusts.pop(rid, None)
            if self._ranking is not None:
                self._ranking.extra.add(rid)

    def expired(self, now_ms: int) -> list[bytes]:
        return [r for r, e in self.entries.items() if e.expires <= now_ms] + [
            r for r, v in self.vouches.items() if v.expires <= now_ms
        ]

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
        self._trusts.clear()
        self._ranking = None

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
        ranked best first (score, then record id).

        `answerable`: only what this node may pass on to a peer that asks."""
        if limit <= 0:
            return []
        cands = self._candidate_set(flt)
        # A country filter is exactly its posting list; a subdivision also needs this check.
        sub_region = flt.region if "-" in flt.region else ""

        def fits(entry: Entry) -> bool:
            return (
                entry.expires > now_ms
                and (not answerable or entry.answerable())
                and (not sub_region or region_matches(sub_region, entry.contact.region))
            )

        found = len(self.entries) if cands is None else len(cands)
        if found * found * limits.RANKING_WALK_COST_RATIO > limit * len(self.entries):
            top = self._walk(cands, fits, now_ms, distances, limit)
        else:
            top = self._score_all(cands, fits, now_ms, distances, limit)
        return [
            Hit(entry, trust.vouchers, distance, stale, score, trust.unverified)
            for score, _, (entry, distance, stale, trust) in top
        ]

    def _score_all(
        self,
        cands: set[bytes] | None,
        fits: Callable[[Entry], bool],
        now_ms: int,
        distances: dict[bytes, int],
        limit: int,
    ) -> list[_Ranked]:
        """Few matches: score each, keep the chosen one of each key, take the best."""
        chosen: dict[tuple[bytes, bytes], tuple[bool, _Ranked]] = {}
        entries = self.entries
        for rid in entries if cands is None else cands:
            entry = entries[rid]
            if not fits(entry):
                continue
            ranked = self._rank(entry, now_ms, distances)
            item = (not entry.contact.teaser, ranked)
            key = entry.key
            have = chosen.get(key)
            if have is None or (item[0], item[1][:2]) > (have[0], have[1][:2]):
                chosen[key] = item
        return heapq.nlargest(limit, (r for _, r in chosen.values()), key=_rank_key)

    def _walk(
        self,
        cands: set[bytes] | None,
        fits: Callable[[Entry], bool],
        now_ms: int,
        distances: dict[bytes, int],
        limit: int,
    ) -> list[_Ranked]:
        """Many matches: walk the entries best bound first; stop once `limit` results beat
        the next bound (no later entry can score above its bound)."""
        ranking = self._ranking_for(now_ms, distances)
        entries = self.entries
        best: list[_Ranked] = []  # a min-heap on (score, rid)
        seen: set[tuple[bytes, bytes]] = set()

        def consider(entry: Entry) -> None:
            key = entry.key
            if key in seen:
                return
            seen.add(key)
            ranked = self._choose(key, entry, cands, fits, now_ms, distances)
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

    def _choose(
        self,
        key: tuple[bytes, bytes],
        entry: Entry,
        cands: set[bytes] | None,
        fits: Callable[[Entry], bool],
        now_ms: int,
        distances: dict[bytes, int],
    ) -> _Ranked:
        """The entry a key is answered with: details over a teaser, then the best-ranked."""
        rids = self.by_key.get(key, ())
        if len(rids) <= 1:
            return self._rank(entry, now_ms, distances)
        best: tuple[bool, _Ranked] | None = None
        for rid in rids:
            other = self.entries[rid]
            if (cands is not None and rid not in cands) or not fits(other):
                continue
            item = (not other.contact.teaser, self._rank(other, now_ms, distances))
            if best is None or (item[0], item[1][:2]) > (best[0], best[1][:2]):
                best = item
        assert best is not None  # `entry` itself fits
        return best[1]

    def _ranking_for(self, now_ms: int, distances: dict[bytes, int]) -> _Ranking:
        basis = frozenset(distances.items())
        ranking = self._ranking
        if (
            ranking is None
            or ranking.basis != basis
            or not ranking.at <= now_ms < ranking.at + limits.RANKING_REFRESH_MS
            or len(ranking.extra) > limits.RANKING_MAX_EXTRA + len(self.entries) // 64
        ):
            order = [
                (self._bound(entry, now_ms, distances), rid) for rid, entry in self.entries.items()
            ]
            order.sort(reverse=True)
            ranking = self._ranking = _Ranking(basis, now_ms, order)
        return ranking

    def _bound(self, entry: Entry, now_ms: int, distances: dict[bytes, int]) -> float:
        """`_rank(...)[0]`, with a shortcut for the common case (no vouch, author not
        revoked: `_trust` gives trusted = (author,), last_vouch = 0)."""
        author = entry.author
        if author in self.revoked or (author, entry.contact.uid) in self.contact_vouches:
            return self._rank(entry, now_ms, distances)[0]
        stale = now_ms > entry.contact.review  # is_stale(review, 0, now_ms)
        distance = distances.get(author, UNKNOWN_DISTANCE)
        return rank_score(distance, 1, entry.created, now_ms, stale)

    def _trust(self, entry: Entry) -> _Trust:
        author = entry.author
        held = self.contact_vouches.get((author, entry.contact.uid))
        if not held and author not in self.revoked:
            return _Trust((author,), (author,), 0)  # the common case: the author alone
        trust = self._trusts.get(entry.rid)
        if trust is None:
            vouchers = dict(held) if held else {}
            vouchers[author] = max(vouchers.get(author, 0), entry.created)
            trusted = {v: at for v, at in vouchers.items() if v not in self.revoked}
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


# (score, rid, what a Hit needs): ordered by score, then record id
_Ranked = tuple[float, bytes, tuple[Entry, int, bool, _Trust]]


def _rank_key(ranked: _Ranked) -> tuple[float, bytes]:
    return (ranked[0], ranked[1])


@dataclass(frozen=True, slots=True)
class Hit:
    entry: Entry
    vouchers: tuple[bytes, ...]
    distance: int
    stale: bool
    score: float
    unverified: bool = False  # every voucher's key (the author's included) is revoked


def _post(index: dict[_K, set[bytes]], key: _K, rid: bytes) -> None:
    ids = index.get(key)
    if ids is None:
        index[key] = {rid}
    else:
        ids.add(rid)


def _discard(
    index: dict[str, set[bytes]] | dict[tuple[bytes, bytes], set[bytes]], key: object, rid: bytes
) -> bool:
    """Remove rid from index[key]; True if the key is gone."""
    ids = index.get(key)  # type: ignore[call-overload]
    if ids is None:
        return False
    ids.discard(rid)
    if not ids:
        del index[key]  # type: ignore[arg-type]
        return True
    return False


@dataclass(frozen=True, slots=True)
class Opened:
    """What the index needs of an opened contact or vouch record."""

    rid: bytes
    kind: Kind
    author: bytes
    scope: Scope
    created: int
    expires: int
    content: dict[str, Value]


_SCOPES = {int(s): s for s in Scope}


def open_stored(
    data: bytes, kind: Kind, identity: Identity, network_key: bytes | None
) -> Opened | None:
    """Open one record of `kind` from our own store, for the index; None if we cannot read it.

    The store holds only records whose signature was checked when they were stored (or that
    we wrote), so this skips the canonical re-encoding check and builds no Record or Body:
    at start a node opens every stored contact, and those objects cost more than the
    decryption. The security checks stay: the Body's kind, author and created must be the
    record's. Anything unexpected takes the strict path (`_open_strictly`), which decides."""
    try:
        value = msgpack.unpackb(data)
        version, k, author, created, expires, scope, payload, signature = value
        if not (
            version == RECORD_VERSION
            and k == kind.value
            and type(author) is bytes
            and len(author) == KEY_BYTES
            and type(created) is int
            and type(expires) is int
            and type(scope) is int
            and scope in _SCOPES
            and type(payload) is bytes
            and type(signature) is bytes
            and len(signature) == SIGNATURE_BYTES
        ):
            raise ValueError
        check_times(created, expires, DecodeError)
    except (ValueError, TypeError, msgpack.UnpackException, RemoteProtocolError):
        return _open_strictly(data, kind, identity, network_key)
    try:
        plain = unseal(payload, identity, network_key, network_first=True)
    except (NotForUs, RemoteProtocolError):
        return None
    try:
        body_version, body_kind, body_author, body_created, content, body_signature = (
            msgpack.unpackb(plain)
        )
        if not (
            body_version == BODY_VERSION
            and type(content) is dict
            and type(body_signature) is bytes
            and len(body_signature) == SIGNATURE_BYTES
        ):
            raise ValueError
    except (ValueError, TypeError, msgpack.UnpackException):
        return _open_strictly(data, kind, identity, network_key)
    if (body_kind, body_author, body_created) != (k, author, created):
        return None  # VerificationError: the body does not match its record
    rid = hashlib.blake2b(data, digest_size=ID_BYTES).digest()
    return Opened(rid, kind, author, _SCOPES[scope], created, expires, content)


def _open_strictly(
    data: bytes, kind: Kind, identity: Identity, network_key: bytes | None
) -> Opened | None:
    try:
        record = Record.from_bytes(data)
        if record.kind is not kind:
            return None
        body = open_record(record, identity, network_key, verify_body=False, network_first=True)
    except (NotForUs, RemoteProtocolError):
        return None
    return Opened(
        record.id,
        record.kind,
        record.author.raw,
        record.scope,
        record.created,
        record.expires,
        body.content,
    )


def _stored_record(data: bytes) -> Record:
    """A record from our own store: strictly decoded and verified when it was stored, so the
    canonical-encoding re-check is skipped (it costs more than the decryption)."""
    value = msgpack.unpackb(data)
    try:
        _, kind, author, created, expires, scope, payload, signature = value
        record = Record(
            Kind(kind), NodeId(author), created, expires, Scope(scope), payload, signature
        )
    except (ValueError, TypeError, LocalProtocolError):
        return Record.from_bytes(data)  # raises the precise DecodeError
    object.__setattr__(record, "_encoded", data)
    return record


def _stored_body(record: Record, identity: Identity, network_key: bytes) -> Body:
    plain = unseal(record.payload, identity, network_key, network_first=True)
    value = msgpack.unpackb(plain)
    try:
        _, kind, author, created, content, signature = value
        body = Body(Kind(kind), NodeId(author), created, content, signature)
    except (ValueError, TypeError, LocalProtocolError):
        body = Body.from_bytes(plain)
    if (body.kind, body.author, body.created) != (record.kind, record.author, record.created):
        raise VerificationError("body does not match its record")
    return body


def open_quietly(local: Local, network_key: bytes, data: bytes) -> tuple[Record, Body] | None:
    """Open one stored record (its record signature was checked when it was stored)."""
    try:
        record = _stored_record(data)
        return record, _stored_body(record, local.identity, network_key)
    except (NotForUs, RemoteProtocolError):
        return None


def entry_of(opened: Opened) -> Entry | VouchEntry:
    """The index entry of an opened contact or vouch; RemoteProtocolError if malformed."""
    if opened.kind is Kind.CONTACT:
        contact = Contact.from_content(opened.content)
        return Entry(
            opened.rid,
            opened.author,
            opened.scope,
            opened.created,
            opened.expires,
            contact,
            contact.search_words(),
        )
    if opened.kind is Kind.VOUCH:
        return VouchEntry(
            opened.rid,
            opened.author,
            opened.scope,
            opened.created,
            opened.expires,
            Vouch.from_content(opened.content),
        )
    raise DecodeError(f"{opened.kind} records are not indexed")


# -- the opened-record cache -----------------------------------------------------------------
#
# Opening a stored contact (its record, its sealed payload, the checks of every field) costs
# ~60 us; at start a node opens every one. What the index made of each record is kept next
# to it instead, sealed under the storage key like the record itself and padded to its size
# (Store.put_opened), and read back at the next start in a few microseconds. Also kept: that
# a record is unreadable to us or malformed, so a relay does not retry every record it
# cannot read at every start. The value holds the checked fields, and the search words
# when they fit (they are recomputed otherwise).
# Changing how a contact is checked, or this layout, means bumping OPENED_VERSION: cached
# values of another version are ignored and the records opened again.

OPENED_VERSION = 1
UNREADABLE = 0  # no key of ours opens the record
MALFORMED = 3  # it opens, but its content breaks the rules
_CONTACT = 1
_VOUCH = 2
_SHARES = {s.value: s for s in Share}
_ABOUTS = {a.value: a for a in VouchAbout}


def pack_opened(item: Entry | VouchEntry | int, room: int) -> bytes:
    """What to cache for a record: its index entry, or UNREADABLE / MALFORMED. A contact's
    search words go along when they fit in `room` bytes (see `Store.opened_room`); else
    they are recomputed when the value is read."""
    if isinstance(item, Entry):
        c = item.contact
        fields: list[Value] = [
            c.uid,
            c.share.value,
            c.kind,
            c.region,
            list(c.langs),
            list(c.specialties),
            c.name,
            [[t, v] for t, v in c.channels],
            c.notes,
            c.review,
            c.teaser,
            c.introducer,
        ]
        value: list[Value] = [OPENED_VERSION, _CONTACT, item.author, item.scope.value]
        value += [item.created, item.expires, fields, list(item.words)]
        packed: bytes = msgpack.packb(value)
        if len(packed) <= room:
            return packed
        return msgpack.packb(value[:-1])
    if isinstance(item, VouchEntry):
        v = item.vouch
        head = [OPENED_VERSION, _VOUCH, item.voucher, item.scope.value]
        return msgpack.packb([*head, item.created, item.expires, [v.about.value, v.subject, v.uid]])
    if item not in (UNREADABLE, MALFORMED):
        raise LocalProtocolError("pack_opened takes an entry, UNREADABLE or MALFORMED")
    return msgpack.packb([OPENED_VERSION, item])


def unpack_opened(
    rid: bytes, data: bytes, shared: dict[object, object] | None = None
) -> Entry | VouchEntry | int | None:
    """What `pack_opened` made (rid: the record's id, which the store checked the value is
    bound to); None if it is of another version or does not parse (open the record again).
    The values were checked when they were cached, by this version of the code.

    `shared`: one copy of each author, kind, region, languages and specialties for a whole
    build (they repeat across thousands of contacts): less memory, less to allocate."""
    one = (shared if shared is not None else {}).setdefault
    try:
        value = msgpack.unpackb(data, use_list=False)  # tuples: what Contact and Entry hold
        if value[0] != OPENED_VERSION:
            return None
        what = value[1]
        if what == _CONTACT:
            author, scope, created, expires, f = value[2:7]
            contact = Contact(
                uid=f[0],
                share=_SHARES[f[1]],
                kind=one(f[2], f[2]),
                region=one(f[3], f[3]),
                langs=one(f[4], f[4]),
                specialties=one(f[5], f[5]),
                name=f[6],
                channels=f[7],
                notes=f[8],
                review=f[9],
                teaser=f[10],
                introducer=f[11],
            )
            words = value[7] if len(value) == 8 else contact.search_words()
            author = one(author, author)
            return Entry(rid, author, _SCOPES[scope], created, expires, contact, words)
        if what == _VOUCH:
            _, _, voucher, scope, created, expires, (about, subject, uid) = value
            vouch = Vouch(_ABOUTS[about], subject, uid)
            return VouchEntry(rid, voucher, _SCOPES[scope], created, expires, vouch)
        if what in (UNREADABLE, MALFORMED) and len(value) == 2:
            return int(what)
    except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException):
        pass
    return None


async def build_index(local: Local, now_ms: int, *, yield_every: int = 0) -> ContactIndex:
    """Every stored contact and vouch we can read, in a fresh in-memory index.

    Reads what was cached of each record (see `pack_opened`); opens the records that have
    nothing (valid) cached, then caches what it made of them for the next start.
    `yield_every`: give the event loop a turn after that many records, so that a running
    node's connections and API keep working, more slowly, while it builds (0: never)."""
    index = ContactIndex(local.node_id.raw)
    network_key = await local.network_key()
    stamp = opened_stamp()
    if await local.store.get_setting("opened_stamp") != stamp:
        await local.store.forget_opened()
        await local.store.set_setting("opened_stamp", stamp)
    fresh: list[tuple[bytes, bytes, int]] = []  # (id, value, record size) to cache
    shared: dict[object, object] = {}
    room = local.store.opened_room
    # Building allocates ~10 objects per contact and frees none: the cyclic collector would
    # rescan the growing heap again and again for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for kind in (Kind.CONTACT, Kind.VOUCH):
            spoilt: list[bytes] = []  # a cached value that did not open or parse
            n = 0
            async for rows in local.store.opened_of_kind(str(kind)):
                for rid, plain, data in rows:
                    n += 1
                    if yield_every and n % yield_every == 0:
                        await asyncio.sleep(0)
                    if plain is not None:
                        item = unpack_opened(rid, plain, shared)
                        if item is None:
                            spoilt.append(rid)
                            continue
                    elif data is not None:
                        item = _open_to_cache(data, kind, local.identity, network_key)
                        fresh.append((rid, pack_opened(item, room(len(data))), len(data)))
                    else:
                        spoilt.append(rid)
                        continue
                    _index_item(index, item, now_ms)
            for start in range(0, len(spoilt), limits.OPENED_REPAIR_CHUNK):
                datas = await local.store.get_records(
                    spoilt[start : start + limits.OPENED_REPAIR_CHUNK]
                )
                for rid, data in datas.items():
                    item = _open_to_cache(data, kind, local.identity, network_key)
                    fresh.append((rid, pack_opened(item, room(len(data))), len(data)))
                    _index_item(index, item, now_ms)
    finally:
        if collecting:
            gc.enable()
    for start in range(0, len(fresh), limits.OPENED_WRITE_CHUNK):
        await local.store.put_opened(fresh[start : start + limits.OPENED_WRITE_CHUNK])
    return index


def _open_to_cache(
    data: bytes, kind: Kind, identity: Identity, network_key: bytes
) -> Entry | VouchEntry | int:
    opened = open_stored(data, kind, identity, network_key)
    return UNREADABLE if opened is None else _entry_or_malformed(opened)


def _entry_or_malformed(opened: Opened) -> Entry | VouchEntry | int:
    try:
        return entry_of(opened)
    except RemoteProtocolError:
        return MALFORMED


def _index_item(index: ContactIndex, item: Entry | VouchEntry | int, now_ms: int) -> None:
    if isinstance(item, int):
        if item == UNREADABLE:
            index.unreadable += 1
        else:
            index.malformed += 1
    elif item.expires > now_ms:
        index.put(item)


def opened_stamp() -> bytes:
    """What cached openings depend on besides the record: this layout and the data packages
    that check regions and languages and name them for search. When it changes, every
    record is opened again (see `build_index`)."""
    versions = [str(OPENED_VERSION)]
    for package in ("pycountry", "langcodes"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=-")
    return " ".join(versions).encode()


# -- presenting ------------------------------------------------------------------------------


def hit_row(
    hit: Hit, me: bytes, labels: dict[bytes, str], distances: dict[bytes, int]
) -> dict[str, object]:
    """A result as the CLI prints it (and as --json shows it)."""
    e = hit.entry
    c = e.contact
    row: dict[str, object] = {
        "id": e.rid.hex(),
        "kind": c.kind,
        "region": c.region,
        "langs": list(c.langs),
        "specialties": list(c.specialties),
        "share": c.share.value,
        "author": str(NodeId(e.author)),
        "from": labels.get(e.author, NodeId(e.author).short) if e.author != me else "you",
        "vouchers": [
            {
                "id": str(NodeId(v)),
                "label": "you" if v == me else labels.get(v, NodeId(v).short),
                "distance": distances.get(v),
            }
            for v in hit.vouchers
        ],
        "distance": hit.distance,
        "score": round(hit.score, 2),
        "stale": hit.stale,
        "unverified": hit.unverified,
        "review": c.review,
        "created": e.created,
    }
    if c.teaser:
        row["teaser"] = True
        row["introducer"] = str(NodeId(c.introducer))
        row["name"] = ""
    else:
        row["teaser"] = False
        row["name"] = c.name
        row["channels"] = [f"{k}:{v}" for k, v in c.channels]
        if c.notes:
            row["notes"] = c.notes
    return row


async def peer_labels(local: Local) -> dict[bytes, str]:
    return {n.raw: p.label for n, p in (await local.peers()).items()}


async def local_query(
    local: Local, flt: Filter, now_ms: int, limit: int = limits.DEFAULT_RESULTS
) -> list[dict[str, object]]:
    """The offline query: build the index from the store in this process and search it."""
    index = await build_index(local, now_ms)
    index.set_revoked(n.raw for n in await revoked_ids(local))
    peers = await local.peers()
    distances = index.distances(n.raw for n in peers)
    labels = {n.raw: p.label for n, p in peers.items()}
    hits = index.search(flt, now_ms, distances, limit)
    return [hit_row(h, index.me, labels, distances) for h in hits]


# -- adding contacts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Added:
    record: Record  # what the policy lets others see (the details, or the teaser)
    details: Record | None  # on-request: the private details record
    share: Share


async def add_contact(
    local: Local,
    *,
    kind: str,
    name: str,
    region: str,
    langs: Sequence[str],
    channels: Sequence[str],
    specialties: Sequence[str],
    notes: str,
    share: str,
    to: str | None,
    review_days: int,
    now_ms: int,
) -> Added:
    from protocol.contact import check_review_days

    policy_review = now_ms + check_review_days(review_days) * DAY_MS
    contact = Contact.build(
        uid=random(UID_BYTES),
        share=share,
        kind=kind,
        name=name,
        region=region,
        langs=langs,
        channels=channels,
        specialties=specialties,
        notes=notes,
        review=policy_review,
    )
    if to is not None and contact.share is not Share.PEERS:
        raise ContactError("--to narrows --share peers to some of your peers; not with this share")
    expires = now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS
    network_key = await local.network_key()
    rows: list[Record] = []
    details: Record | None = None
    if contact.share is Share.PEERS:
        audience = await parse_audience(local, to or "peers")
        if audience.network:
            raise ContactError("--to for --share peers names peers, not the network")
        record = _seal(
            local, contact.to_content(), Scope.PEERS, audience.recipients, None, now_ms, expires
        )
    elif contact.share is Share.NETWORK:
        record = _seal(local, contact.to_content(), Scope.NETWORK, (), network_key, now_ms, expires)
    elif contact.share is Share.PRIVATE:
        record = _seal(local, contact.to_content(), Scope.PRIVATE, (), None, now_ms, expires)
    else:
        details = _seal(local, contact.to_content(), Scope.PRIVATE, (), None, now_ms, expires)
        teaser = contact.teaser_of(local.node_id.raw)
        record = _seal(local, teaser.to_content(), Scope.NETWORK, (), network_key, now_ms, expires)
        rows.append(details)
    rows.append(record)
    await local.store.put_records([row_of(r, local=True) for r in rows], now_ms)
    return Added(record, details, contact.share)


def _seal(
    local: Local,
    content: dict[str, Value],
    scope: Scope,
    recipients: Sequence[NodeId],
    network_key: bytes | None,
    now_ms: int,
    expires: int,
) -> Record:
    return seal_record(
        local.identity,
        Kind.CONTACT,
        content,
        created=now_ms,
        expires=expires,
        scope=scope,
        recipients=recipients,
        network_key=network_key,
        random=random,
    )


# -- looking records up ----------------------------------------------------------------------


async def _resolve(local: Local, ref: str) -> bytes:
    from node.content import _resolve_id

    return await _resolve_id(local, ref)


async def readable_contact(local: Local, ref: str) -> tuple[Record, Body, Contact]:
    rid = await _resolve(local, ref)
    data = (await local.store.get_records([rid]))[rid]
    record = Record.from_bytes(data)
    if record.kind is not Kind.CONTACT:
        raise CanopyError(f"{ref} is a {record.kind}, not a contact")
    try:
        body = open_record(record, local.identity, await local.network_key())
        return record, body, Contact.from_content(body.content)
    except (NotForUs, RemoteProtocolError):
        raise CanopyError(f"contact {ref} is held here but this node cannot read it") from None


async def _own_contacts(local: Local, uid: bytes) -> list[Record]:
    network_key = await local.network_key()
    out = []
    for data in await local.store.records_of_kind(str(Kind.CONTACT)):
        record = Record.from_bytes(data)
        if record.author != local.node_id:
            continue
        opened = open_quietly(local, network_key, data)
        if opened is None:
            continue
        try:
            if Contact.from_content(opened[1].content).uid == uid:
                out.append(record)
        except RemoteProtocolError:
            continue
    return out


# -- vouching --------------------------------------------------------------------------------


async def vouch(local: Local, ref: str, now_ms: int) -> tuple[Record, str]:
    """Vouch for a contact (a record id) or for an organisation (a node id or peer name)."""
    network_key = await local.network_key()
    recipients: tuple[NodeId, ...] = ()
    if re.fullmatch(r"[0-9a-fA-F]{8,64}", ref.strip()):
        record, _, contact = await readable_contact(local, ref)
        subject = Vouch(VouchAbout.CONTACT, record.author.raw, contact.uid)
        # A vouch never travels further than the contact it endorses may.
        if record.scope is Scope.NETWORK and (contact.share is Share.NETWORK or contact.teaser):
            scope, key, recipients = Scope.NETWORK, network_key, ()
        elif contact.share is Share.PRIVATE or record.scope is Scope.PRIVATE:
            scope, key, recipients = Scope.PRIVATE, None, ()
        else:
            scope, key = Scope.PEERS, None
            recipients = tuple(await local.peers())
        what = f"contact {record.id.hex()[:12]}"
    else:
        peers = list((await local.peers()).values())
        named = match_peers(peers, ref)
        if len(named) > 1:
            raise CanopyError(f"{ref!r} matches several peers; give more of the id")
        node = named[0].node_id if named else parse_node_id(ref)
        if node == local.node_id:
            raise CanopyError("vouching for yourself adds nothing")
        subject = Vouch(VouchAbout.PEER, node.raw)
        scope, key, recipients = Scope.NETWORK, network_key, ()
        what = f"organisation {node.short}"
    vouch_record = seal_record(
        local.identity,
        Kind.VOUCH,
        subject.to_content(),
        created=now_ms,
        expires=now_ms + limits.DEFAULT_CONTACT_LIFETIME_MS,
        scope=scope,
        recipients=recipients,
        network_key=key,
        random=random,
    )
    await local.store.put_records([row_of(vouch_record, local=True)], now_ms)
    return vouch_record, what


# -- withdrawing -----------------------------------------------------------------------------


async def withdraw(local: Local, ref: str, now_ms: int) -> Record:
    """Withdraw one of our records; for a contact, every record of it (details, teaser,
    introduced copies) goes with it."""
    rid = await _resolve(local, ref)
    record = Record.from_bytes((await local.store.get_records([rid]))[rid])
    if record.author != local.node_id:
        raise CanopyError(
            f"record {ref} was written by another node; only its author can withdraw it"
        )
    targets = [record]
    if record.kind is Kind.CONTACT:
        opened = open_quietly(local, await local.network_key(), record.to_bytes())
        if opened is not None:
            uid = Contact.from_content(opened[1].content).uid
            targets += [r for r in await _own_contacts(local, uid) if r.id != record.id]
    return await withdraw_records(local, targets[: limits.MAX_WITHDRAW_TARGETS], now_ms)


# -- reviews ---------------------------------------------------------------------------------


async def review(local: Local, now_ms: int) -> list[dict[str, object]]:
    """Contacts we wrote or vouched for that are due (or nearly due) for re-verification."""
    index = await build_index(local, now_ms)
    me = index.me
    mine_vouched = {
        (v.vouch.subject, v.vouch.uid)
        for v in index.vouches.values()
        if v.voucher == me and v.vouch.about is VouchAbout.CONTACT
    }
    soon = now_ms + limits.REVIEW_SOON_DAYS * DAY_MS
    rows: list[dict[str, object]] = []
    seen: set[tuple[bytes, bytes]] = set()
    for entry in sorted(index.entries.values(), key=lambda e: e.contact.teaser):
        if entry.key in seen or not (entry.author == me or entry.key in mine_vouched):
            continue
        seen.add(entry.key)
        held = index.contact_vouches.get(entry.key, {})
        last = max(held.values(), default=0)
        due = max(entry.contact.review, last + limits.DEFAULT_REVIEW_DAYS * DAY_MS if last else 0)
        if due > soon:
            continue
        rows.append(
            {
                "id": entry.rid.hex(),
                "kind": entry.contact.kind,
                "name": entry.contact.name,
                "region": entry.contact.region,
                "share": entry.contact.share.value,
                "due": due,
                "state": "overdue" if due <= now_ms else "due soon",
                "yours": entry.author == me,
            }
        )
    return sorted(rows, key=lambda r: int(str(r["due"])))


# -- introductions ---------------------------------------------------------------------------


async def request_introduction(local: Local, ref: str, note: str, now_ms: int) -> dict[str, Value]:
    """Queue a signed request for the details behind a teaser; the running node sends it."""
    if len(note.encode("utf-8")) > limits.MAX_INTRO_NOTE_BYTES:
        raise CanopyError(f"--note is limited to {limits.MAX_INTRO_NOTE_BYTES} bytes")
    record, _, contact = await readable_contact(local, ref)
    if not contact.teaser:
        raise CanopyError(f"{ref} is not an on-request contact: its details are already here")
    if contact.introducer == local.node_id.raw:
        raise CanopyError("that contact is yours")
    for held in (await local.store.rows(INTRODUCTIONS)).values():
        if (
            held.get("dir") == "out"
            and held.get("teaser") == record.id
            and held.get("status") in ("queued", "sent")
        ):
            raise CanopyError("an introduction to that contact is already requested")
    request = IntroRequest.create(
        local.identity, random(limits.QUERY_ID_BYTES), record.id, contact.introducer, note
    )
    row: dict[str, Value] = {
        "dir": "out",
        "teaser": record.id,
        "introducer": contact.introducer,
        "asker": request.asker,
        "note": note,
        "signature": request.signature,
        "status": "queued",
        "created": now_ms,
        "kind": contact.kind,
        "region": contact.region,
    }
    await local.store.put_row(INTRODUCTIONS, request.request_id, row)
    return {"request_id": request.request_id, **row}


def request_of(request_id: bytes, row: dict[str, Value], hops: int) -> IntroRequest:
    return IntroRequest(
        request_id,
        _b(row["teaser"]),
        _b(row["introducer"]),
        _b(row["asker"]),
        str(row.get("note") or ""),
        hops,
        _b(row["signature"]),
    )


def _b(value: Value) -> bytes:
    assert isinstance(value, bytes)
    return value


async def introductions(local: Local) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for rid, row in (await local.store.rows(INTRODUCTIONS)).items():
        rows.append(
            {
                "id": rid.hex(),
                "direction": "incoming" if row.get("dir") == "in" else "outgoing",
                "contact": _b(row["teaser"]).hex(),
                "asker": str(NodeId(_b(row["asker"]))),
                "introducer": str(NodeId(_b(row["introducer"]))),
                "note": row.get("note", ""),
                "status": row.get("status", ""),
                "created": row.get("created", 0),
                "kind": row.get("kind", ""),
                "region": row.get("region", ""),
            }
        )
    return sorted(rows, key=lambda r: -int(str(r["created"])))


async def decide(local: Local, ref: str, approve: bool, now_ms: int) -> dict[str, Value]:
    """Approve (seal the details to the asker, which gossip delivers) or decline a request."""
    ref = ref.strip().lower()
    rows = await local.store.rows(INTRODUCTIONS)
    matches = [k for k, r in rows.items() if k.hex().startswith(ref) and r.get("dir") == "in"]
    if len(ref) < 6 or not matches:
        raise CanopyError(f"no incoming introduction request {ref!r}")
    if len(matches) > 1:
        raise CanopyError(f"{ref} matches several requests; give more of the id")
    rid = matches[0]
    row = rows[rid]
    if row.get("status") != "pending":
        raise CanopyError(f"that request is already {row.get('status')!s}")
    if approve:
        teaser_id = _b(row["teaser"])
        found = (await local.store.get_records([teaser_id])).get(teaser_id)
        if found is None:
            raise CanopyError("that contact was withdrawn; decline the request instead")
        opened = open_quietly(local, await local.network_key(), found)
        if opened is None:
            raise CanopyError("that contact cannot be read here")
        uid = Contact.from_content(opened[1].content).uid
        details = [r for r in await _own_contacts(local, uid) if r.scope is Scope.PRIVATE]
        if not details:
            raise CanopyError("the details of that contact are no longer here")
        original = details[0]
        body = open_record(original, local.identity, None)
        # The same author-signed Body, sealed to the asker alone: it proves who vouched.
        asker = NodeId(_b(row["asker"]))
        copy = Record.create(
            local.identity,
            Kind.CONTACT,
            created=original.created,
            expires=original.expires,
            scope=Scope.NETWORK,
            payload=seal(body.to_bytes(), [asker, local.node_id], None, random),
        )
        await local.store.put_records([row_of(copy, local=True)], now_ms)
    row = {**row, "status": "approved" if approve else "declined", "decided": now_ms}
    await local.store.put_row(INTRODUCTIONS, rid, row)
    return {"request_id": rid, **row}
