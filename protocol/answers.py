"""Answers to know-who queries: which records one may carry, how many and how large, and
how long a node that forwards a query waits for the hops below it
(docs/spec/70-contacts-and-queries.md, "Network queries").

Pure: time comes in as an argument; never sends, stores or ranks (node.query_network does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from protocol import limits
from protocol.contact import Contact, Share, Vouch
from protocol.envelope import Body, open_record
from protocol.errors import NotForUs, RecordRejected
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope
from protocol.session import record_id


def check_answer_record(
    data: bytes, identity: Identity, network_key: bytes | Sequence[bytes] | None, now_ms: int
) -> tuple[Record, Body]:
    """A record from an Answer: signed, current, readable with a network key, and one the
    contact's policy lets travel this way. RemoteProtocolError otherwise."""
    record = Record.from_bytes(data)
    record.verify()
    record.check_time(now_ms)
    if record.scope is not Scope.NETWORK or record.kind not in (Kind.CONTACT, Kind.VOUCH):
        raise RecordRejected("an answer carries only network-scoped contacts and vouches")
    try:
        body = open_record(record, identity, network_key)
    except NotForUs:
        raise RecordRejected("an answer record the network cannot read") from None
    if record.kind is Kind.CONTACT:
        contact = Contact.from_content(body.content)
        if not (contact.share is Share.NETWORK or contact.teaser):
            raise RecordRejected("a contact whose policy forbids passing it on")
    else:
        Vouch.from_content(body.content)
    return record, body


def bounded_answer(records: Iterable[bytes]) -> list[bytes]:
    """What one Answer carries of `records`: deduplicated by id, in order, at most
    MAX_ANSWER_RECORDS records and MAX_ANSWER_BYTES bytes."""
    out: list[bytes] = []
    seen: set[bytes] = set()
    size = 0
    for data in records:
        rid = record_id(data)
        if rid in seen:
            continue
        if len(out) >= limits.MAX_ANSWER_RECORDS or size + len(data) > limits.MAX_ANSWER_BYTES:
            break
        seen.add(rid)
        out.append(data)
        size += len(data)
    return out


def forward_timeout(depth: int) -> float:
    """Seconds a node that received a query of `depth` waits for the peers it forwards to.

    Grows with the hops still to go, so that every node along the way waits longer than
    the next one does: QUERY_FORWARD_TIMEOUT_MS per hop below it. The asker's
    QUERY_TIMEOUT_MS exceeds the longest of these (tests/test_knowwho_timing.py)."""
    return limits.QUERY_FORWARD_TIMEOUT_MS * (depth - 1) / 1000
