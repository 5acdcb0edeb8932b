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

from protocol import limits
from protocol.encoding import Value, as_bytes, as_int, as_list, as_str, pack, unpack
from protocol.errors import DecodeError, LocalProtocolError

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
class Missing:
    """Ids that were asked for but will not be sent (gone, expired, or not for the asker)."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Records:
    """Record wire bytes: answers to a Want, or pushed as soon as they exist."""

    records: tuple[bytes, ...]


Message = Hello | Reconcile | SyncDone | Want | Records | Missing


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
    elif isinstance(message, Records):
        body = [MessageType.RECORDS, list(message.records)]
    else:  # pragma: no cover - exhaustive over Message
        raise LocalProtocolError(f"not a message: {message!r}")
    if (
        isinstance(message, Want | Missing)
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
    if kind == MessageType.RECORDS:
        as_list(value, 2, "records")
        items = as_list(value[1], what="records")
        if not items:
            raise DecodeError("records must not be empty")
        return Records(tuple(as_bytes(r, None, "record", limits.MAX_RECORD_BYTES) for r in items))
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
