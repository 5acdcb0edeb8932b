"""What the running node lets in from one peer, before and around `ingest.accept_records`.

A negative cache of records that failed decoding or verification (refused again by id,
with no second signature check), the check itself through `ingest.check_parallel`, and the
storage caps per sending peer and per unknown author. It never stores a record: that is
`ingest.accept_records`, the one path into the store.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import KW_ONLY, dataclass, field

from node.clock import now_ms
from node.ingest import check_parallel
from node.peer_book import PeerBook
from node.store import Store
from protocol import limits
from protocol.errors import DecodeError, RemoteProtocolError, VerificationError
from protocol.identity import NodeId
from protocol.record import Kind, Record

_RECORD_BOUNDS = (limits.MAX_UNKNOWN_AUTHOR_RECORDS, limits.MAX_UNKNOWN_AUTHOR_BYTES)
_CHUNK_BOUNDS = (limits.MAX_UNKNOWN_AUTHOR_CHUNKS, limits.MAX_UNKNOWN_AUTHOR_CHUNK_BYTES)
_OVER_SOURCE = "reached its storage cap (sync.max_source_records): %d record(s) refused"
_OVER_AUTHOR = "relayed records of an unknown author over its storage cap: %d refused"


@dataclass(eq=False, repr=False)
class Intake:
    store: Store
    book: PeerBook
    _: KW_ONLY
    us: NodeId
    max_source_records: int
    trusted: Callable[[], Collection[NodeId]]
    # the negative cache: id -> error name
    _bad: OrderedDict[bytes, str] = field(default_factory=OrderedDict, init=False)
    # records, bytes stored from a peer
    _source_usage: dict[NodeId, list[int]] = field(default_factory=dict, init=False)

    async def check(
        self, sender: NodeId, datas: Sequence[bytes], ids: Sequence[bytes]
    ) -> tuple[list[Record], list[RemoteProtocolError]]:
        """Decode and verify records from `sender` (on worker threads for a large batch):
        the good ones, and an error for each bad one (each costs the sender its penalty;
        only the sender: until a signature verified, the author named inside is a claim).
        `ids`: record_id of each, as the session computed them."""
        now = now_ms()
        # A copy repeated within the batch (messages are coalesced) is checked once, then
        # treated like a later arrival: refused as known bad, or dropped as a duplicate.
        fresh: dict[bytes, bytes] = {}
        repeats: list[bytes] = []
        errors: list[RemoteProtocolError] = []
        for data, rid in zip(datas, ids, strict=True):
            if rid in fresh:
                repeats.append(rid)
            elif rid in self._bad:
                errors.append(self._known_bad(rid))
            else:
                fresh[rid] = data
        fresh_ids = list(fresh)
        # A copy of a record held here (a relayed record comes from several peers) is the
        # same bytes as the one stored: every rule is checked again but its signature.
        held = await self.store.has(fresh_ids) if fresh_ids else set()
        checked = await check_parallel(list(fresh.values()), fresh_ids, now, sender, held)
        good: list[Record] = []
        for rid, outcome in zip(fresh_ids, checked, strict=True):
            if isinstance(outcome, RemoteProtocolError):
                if isinstance(outcome, DecodeError | VerificationError):
                    self._remember_bad(rid, type(outcome).__name__)
                errors.append(outcome)
            else:
                good.append(outcome)
        errors += [self._known_bad(rid) for rid in repeats if rid in self._bad]
        return good, errors

    def _known_bad(self, rid: bytes) -> RemoteProtocolError:
        known_bad = self._bad[rid]
        self._bad.move_to_end(rid)
        self.book.count("record_known_bad")
        error = DecodeError if known_bad == "DecodeError" else VerificationError
        return error("known bad record")

    def _remember_bad(self, rid: bytes, error: str) -> None:
        self._bad[rid] = "DecodeError" if error == "DecodeError" else "VerificationError"
        self._bad.move_to_end(rid)
        while len(self._bad) > limits.NEGATIVE_CACHE_SIZE:
            self._bad.popitem(last=False)

    async def within_caps(self, records: Sequence[Record], source: NodeId) -> list[Record]:
        """The records we still have room for from `source`: at most max_source_records
        (and MAX_SOURCE_BYTES) stored from one peer, and at most MAX_UNKNOWN_AUTHOR_RECORDS
        (and _BYTES) held of an author that is neither us nor a trusted peer, its attachment
        chunks apart (MAX_UNKNOWN_AUTHOR_CHUNKS and _CHUNK_BYTES). Revocations always have
        room. The rest is refused, counted, and found again by a later round.

        A copy of a record already held, or repeated in the batch, takes no room: the store
        keeps one. Counting copies (a relayed record arrives from every peer that pushes it)
        refused records that fitted, and they waited for the next round to come back."""
        usage = self._source_usage.get(source, [0, 0])
        n, size = usage[0], usage[1]
        trusted = self.trusted()
        unknown = {r.author.raw for r in records if r.author != self.us and r.author not in trusted}
        chunk_authors = {r.author.raw for r in records if r.kind is Kind.CHUNK} & unknown
        other_authors = {r.author.raw for r in records if r.kind is not Kind.CHUNK} & unknown
        authors = await self._unknown_usage(other_authors, chunks=False)
        chunk_usage = await self._unknown_usage(chunk_authors, chunks=True)
        # Read after the usage: a copy another connection stored in between is then both
        # counted there and skipped here, never counted twice.
        held: set[bytes] = set()
        if (
            unknown
            or n + len(records) > self.max_source_records
            or size + sum(len(r.to_bytes()) for r in records) > limits.MAX_SOURCE_BYTES
        ):
            held = set(await self.store.has([r.id for r in records]))
        keep: list[Record] = []
        over_source = over_author = 0
        for record in records:
            length = len(record.to_bytes())
            if record.kind is Kind.REVOCATION or record.id in held:
                keep.append(record)
                continue
            if n + 1 > self.max_source_records or size + length > limits.MAX_SOURCE_BYTES:
                over_source += 1
                continue
            if record.kind is Kind.CHUNK:
                author = chunk_usage.get(record.author.raw)
                most, most_bytes = _CHUNK_BOUNDS
            else:
                author = authors.get(record.author.raw)
                most, most_bytes = _RECORD_BOUNDS
            if author is not None:
                if author[0] + 1 > most or author[1] + length > most_bytes:
                    over_author += 1
                    continue
                author[0] += 1
                author[1] += length
            n += 1
            size += length
            keep.append(record)
            held.add(record.id)  # a later copy in this batch takes no more room
        for reason, over, message in (
            ("quota_source_storage", over_source, _OVER_SOURCE),
            ("quota_author_storage", over_author, _OVER_AUTHOR),
        ):
            if over:
                self.book.count(reason, over)
                self.book.warn(source, message, over)
        return keep

    async def _unknown_usage(self, authors: set[bytes], *, chunks: bool) -> dict[bytes, list[int]]:
        """[records, bytes] held of each unknown author: their attachment chunks, which have
        a bound of their own (one largest attachment, docs/spec/60), or all their others."""
        if not authors:
            return {}
        held = await self.store.author_usage(sorted(authors), chunks=chunks)
        return {a: list(held.get(a, (0, 0))) for a in authors}

    def stored_from(self, source: NodeId, fresh: Sequence[Record]) -> None:
        """Count what was stored from `source` against its caps."""
        usage = self._source_usage.setdefault(source, [0, 0])
        usage[0] += len(fresh)
        usage[1] += sum(len(r.to_bytes()) for r in fresh)
