"""Application messages carried inside box-stream, and their length-prefixed framing.

Owns the message codec (docs/SPEC.md, "Sync messages"): u32 big-endian length, then one
canonical msgpack array whose first element is the message type. It never interprets a
record's contents; records travel as opaque bytes and are checked by protocol.record.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from protocol import labels, limits
from protocol.contact import Filter
from protocol.encoding import Value, as_bytes, as_int, as_list, as_str, pack, unpack
from protocol.errors import DecodeError, LocalProtocolError
from protocol.identity import SIGNATURE_BYTES, Identity, NodeId

PROTOCOL_VERSION = 1
_LENGTH = struct.Struct(">I")
ID_BYTES = 32


class MessageType(enum.IntEnum):
    HELLO = 1
    # 2 is reserved (an O(total) inventory message of pre-release drafts).
    SYNC_DONE = 3
    WANT = 4
    RECORDS = 5
    RECONCILE = 6
    MISSING = 7
    QUERY = 8
    ANSWER = 9
    INTRO_REQUEST = 10
    INTRO_REPLY = 11
    HAVE = 12


class AnswerStatus(enum.IntEnum):
    OK = 0
    REFUSED = 1  # rate limit exceeded: ask again later


class IntroStatus(enum.IntEnum):
    APPROVED = 1
    DECLINED = 2
    UNKNOWN = 3  # the broker does not hold that contact (withdrawn, or never its own)


@dataclass(frozen=True, slots=True)
class Hello:
    """First message each way: the protocol version, the sender's name and where to reach it."""

    version: int
    name: str = ""
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reconcile:
    """One step of set reconciliation (protocol.reconcile); the payload is its own message."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class SyncDone:
    """The initiator finished reconciling: what is missing either way has been asked or sent."""


@dataclass(frozen=True, slots=True)
class Want:
    """Ids the sender asks for."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Have:
    """Ids of records the sender just stored and offers instead of pushing them whole: the
    receiver asks (Want) for those it lacks."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Missing:
    """Ids that were asked for but will not be sent (gone, expired, or not for the asker)."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Records:
    """Record wire bytes: answers to a Want, or pushed as soon as they exist."""

    records: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Query:
    """A know-who query. It names no asker: a forwarding node asks on its own behalf."""

    query_id: bytes
    depth: int  # hops it may still travel, this one included (1 = answer, do not forward)
    filter: Filter


@dataclass(frozen=True, slots=True)
class Answer:
    """Signed records answering one Query (contacts, teasers, vouches), bounded in size."""

    query_id: bytes
    status: AnswerStatus
    records: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class IntroRequest:
    """`asker` asks `introducer` for the details behind the on-request teaser `teaser_id`.

    Signed by the asker (INTRO_REQUEST_SIGNATURE), so a relay cannot ask in someone's name;
    `hops` (how far it may still be forwarded) is not signed."""

    request_id: bytes
    teaser_id: bytes
    introducer: bytes
    asker: bytes
    note: str
    hops: int
    signature: bytes

    @staticmethod
    def signed_bytes_for(
        request_id: bytes, teaser_id: bytes, introducer: bytes, asker: bytes, note: str
    ) -> bytes:
        return labels.INTRO_REQUEST_SIGNATURE + pack(
            [request_id, teaser_id, introducer, asker, note]
        )

    @classmethod
    def create(
        cls,
        identity: Identity,
        request_id: bytes,
        teaser_id: bytes,
        introducer: bytes,
        note: str = "",
        hops: int = limits.MAX_INTRO_HOPS,
    ) -> IntroRequest:
        asker = identity.node_id.raw
        signed = cls.signed_bytes_for(request_id, teaser_id, introducer, asker, note)
        return cls(request_id, teaser_id, introducer, asker, note, hops, identity.sign(signed))

    def verify(self) -> None:
        """VerificationError unless the asker signed this request."""
        signed = self.signed_bytes_for(
            self.request_id, self.teaser_id, self.introducer, self.asker, self.note
        )
        NodeId(self.asker).verify(signed, self.signature)


@dataclass(frozen=True, slots=True)
class IntroReply:
    """The broker's decision, sent back along the path the request came."""

    request_id: bytes
    status: IntroStatus


Message = (
    Hello
    | Reconcile
    | SyncDone
    | Want
    | Have
    | Records
    | Missing
    | Query
    | Answer
    | IntroRequest
    | IntroReply
)


def _ids(value: Value, what: str) -> tuple[bytes, ...]:
    items = as_list(value, what=what)
    if not items or len(items) > limits.MAX_IDS_PER_MESSAGE:
        raise DecodeError(f"{what} must hold 1..{limits.MAX_IDS_PER_MESSAGE} ids")
    return tuple(as_bytes(i, ID_BYTES, "id") for i in items)


def encode_message(message: Message) -> bytes:
    """The framed bytes of `message` (length prefix included)."""
    body: list[Value]
    if isinstance(message, Hello):
        body = [MessageType.HELLO, message.version, message.name, list(message.addresses)]
    elif isinstance(message, Reconcile):
        body = [MessageType.RECONCILE, message.payload]
    elif isinstance(message, SyncDone):
        body = [MessageType.SYNC_DONE]
    elif isinstance(message, Want):
        body = [MessageType.WANT, list(message.ids)]
    elif isinstance(message, Missing):
        body = [MessageType.MISSING, list(message.ids)]
    elif isinstance(message, Have):
        body = [MessageType.HAVE, list(message.ids)]
    elif isinstance(message, Records):
        body = [MessageType.RECORDS, list(message.records)]
    elif isinstance(message, Query):
        if not 1 <= message.depth <= limits.MAX_QUERY_DEPTH:
            raise LocalProtocolError("query depth out of range")
        body = [MessageType.QUERY, message.query_id, message.depth, message.filter.to_value()]
    elif isinstance(message, Answer):
        if len(message.records) > limits.MAX_ANSWER_RECORDS or (
            sum(len(r) for r in message.records) > limits.MAX_ANSWER_BYTES
        ):
            raise LocalProtocolError("answer too large; trim it")
        body = [MessageType.ANSWER, message.query_id, int(message.status), list(message.records)]
    elif isinstance(message, IntroRequest):
        body = [
            MessageType.INTRO_REQUEST,
            message.request_id,
            message.teaser_id,
            message.introducer,
            message.asker,
            message.note,
            message.hops,
            message.signature,
        ]
    elif isinstance(message, IntroReply):
        body = [MessageType.INTRO_REPLY, message.request_id, int(message.status)]
    else:  # pragma: no cover - exhaustive over Message
        raise LocalProtocolError(f"not a message: {message!r}")
    if (
        isinstance(message, Want | Missing | Have)
        and not 0 < len(message.ids) <= limits.MAX_IDS_PER_MESSAGE
    ):
        raise LocalProtocolError("id lists hold 1..MAX_IDS_PER_MESSAGE ids")
    if isinstance(message, Records) and not message.records:
        raise LocalProtocolError("a Records message holds at least one record")
    data = pack(body)
    if len(data) > limits.MAX_MESSAGE_BYTES:
        raise LocalProtocolError("message too large; split it")
    return _LENGTH.pack(len(data)) + data


def decode_message(data: bytes) -> Message:
    """Decode one message body (without its length prefix)."""
    value = as_list(unpack(data, max_bytes=limits.MAX_MESSAGE_BYTES), what="message")
    if not value:
        raise DecodeError("empty message")
    kind = as_int(value[0], "message type", 0, 255)
    if kind == MessageType.HELLO:
        as_list(value, 4, "hello")
        addresses = as_list(value[3], what="addresses")
        if len(addresses) > limits.MAX_INVITE_ADDRESSES:
            raise DecodeError("too many addresses")
        return Hello(
            as_int(value[1], "version", 0, 2**32 - 1),
            as_str(value[2], "name", limits.MAX_NAME_LEN),
            tuple(as_str(a, "address", limits.MAX_ADDRESS_LEN) for a in addresses),
        )
    if kind == MessageType.RECONCILE:
        as_list(value, 2, "reconcile")
        return Reconcile(as_bytes(value[1], None, "reconcile", limits.MAX_RECONCILE_MESSAGE_BYTES))
    if kind == MessageType.SYNC_DONE:
        as_list(value, 1, "sync-done")
        return SyncDone()
    if kind == MessageType.WANT:
        as_list(value, 2, "want")
        return Want(_ids(value[1], "want"))
    if kind == MessageType.MISSING:
        as_list(value, 2, "missing")
        return Missing(_ids(value[1], "missing"))
    if kind == MessageType.HAVE:
        as_list(value, 2, "have")
        return Have(_ids(value[1], "have"))
    if kind == MessageType.RECORDS:
        as_list(value, 2, "records")
        items = as_list(value[1], what="records")
        if not items:
            raise DecodeError("records must not be empty")
        return Records(tuple(as_bytes(r, None, "record", limits.MAX_RECORD_BYTES) for r in items))
    if kind == MessageType.QUERY:
        as_list(value, 4, "query")
        return Query(
            as_bytes(value[1], limits.QUERY_ID_BYTES, "query id"),
            as_int(value[2], "depth", 1, limits.MAX_QUERY_DEPTH),
            Filter.from_value(value[3]),
        )
    if kind == MessageType.ANSWER:
        as_list(value, 4, "answer")
        query_id = as_bytes(value[1], limits.QUERY_ID_BYTES, "query id")
        status = AnswerStatus(as_int(value[2], "answer status", 0, max(AnswerStatus)))
        items = as_list(value[3], what="answer records")
        if len(items) > limits.MAX_ANSWER_RECORDS:
            raise DecodeError("answer holds too many records")
        records = tuple(as_bytes(r, None, "record", limits.MAX_RECORD_BYTES) for r in items)
        if sum(len(r) for r in records) > limits.MAX_ANSWER_BYTES:
            raise DecodeError("answer too large")
        return Answer(query_id, status, records)
    if kind == MessageType.INTRO_REQUEST:
        as_list(value, 8, "intro-request")
        return IntroRequest(
            as_bytes(value[1], limits.QUERY_ID_BYTES, "request id"),
            as_bytes(value[2], ID_BYTES, "teaser id"),
            as_bytes(value[3], 32, "introducer"),
            as_bytes(value[4], 32, "asker"),
            as_str(value[5], "note", limits.MAX_INTRO_NOTE_BYTES),
            as_int(value[6], "hops", 0, limits.MAX_INTRO_HOPS),
            as_bytes(value[7], SIGNATURE_BYTES, "signature"),
        )
    if kind == MessageType.INTRO_REPLY:
        as_list(value, 3, "intro-reply")
        return IntroReply(
            as_bytes(value[1], limits.QUERY_ID_BYTES, "request id"),
            IntroStatus(as_int(value[2], "intro status", 1, max(IntroStatus))),
        )
    raise DecodeError("unknown message type")


class MessageReader:
    """Reassembles framed messages from decrypted box-stream bytes (frames do not align)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def next_message(self) -> Message | None:
        """The next complete message, or None when more bytes are needed."""
        if len(self._buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        if length == 0 or length > limits.MAX_MESSAGE_BYTES:
            raise DecodeError("message length out of bounds")
        end = _LENGTH.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_LENGTH.size : end])
        del self._buffer[:end]
        return decode_message(body)

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def split_records(
    records: Sequence[bytes], budget: int = limits.MAX_MESSAGE_BYTES - 64
) -> list[Records]:
    """Group record bytes into as few Records messages as fit the size bound."""
    out: list[Records] = []
    batch: list[bytes] = []
    size = 0
    for record in records:
        cost = len(record) + 5
        if batch and size + cost > budget:
            out.append(Records(tuple(batch)))
            batch, size = [], 0
        batch.append(record)
        size += cost
    if batch:
        out.append(Records(tuple(batch)))
    return out
