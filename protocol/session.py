"""The sync session between two authenticated peers (docs/SPEC.md, "Sync session").

Owns the order of application messages after the handshake and the bookkeeping that
bounds what a peer may send: nothing before Hello, no inventory after HaveDone, a Want
only for ids we offered, at most MAX_WANT_OUTSTANDING ids asked of a peer at once.
It never decides what is stored or offered: the node does, and feeds the answers back.

States and transitions (anything else -> FAILED with UnexpectedMessage):

    state          input              -> state         event
    AWAIT_HELLO    Hello(v=1)         -> OPEN          PeerHello
    OPEN           Have               -> OPEN          PeerHave(ids)
    OPEN           HaveDone           -> OPEN          PeerHaveDone (once)
    OPEN           Want               -> OPEN          PeerWant(ids)  (ids must have been offered)
    OPEN           Records            -> OPEN          RecordsReceived
    any            bad bytes          -> FAILED        (raises RemoteProtocolError)
    any            close()            -> CLOSED
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol import limits
from protocol.errors import LocalProtocolError, RemoteProtocolError, UnexpectedMessage
from protocol.messages import (
    PROTOCOL_VERSION,
    Have,
    HaveDone,
    Hello,
    Message,
    MessageReader,
    Want,
    encode_message,
    split_records,
)


class SessionState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    OPEN = "open"
    FAILED = "failed"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PeerHello:
    version: int
    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PeerHave:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PeerHaveDone:
    pass


@dataclass(frozen=True, slots=True)
class PeerWant:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RecordsReceived:
    """Record bytes from the peer; `solicited[i]` says whether we had asked for record i."""

    records: tuple[bytes, ...]
    solicited: tuple[bool, ...]


@dataclass(frozen=True, slots=True)
class SyncComplete:
    """The peer's inventory is done and every record we wanted has arrived."""


Event = PeerHello | PeerHave | PeerHaveDone | PeerWant | RecordsReceived | SyncComplete


def record_id(data: bytes) -> bytes:
    """A record's id: BLAKE2b-256 of its wire bytes (protocol.record computes the same)."""
    return hashlib.blake2b(data, digest_size=32).digest()


class SyncSession:
    """One side of a sync session. Feed decrypted stream bytes, drain events, send messages."""

    def __init__(self) -> None:
        self.state = SessionState.AWAIT_HELLO
        self._reader = MessageReader()
        # Ids both sides know the peer has or was offered: it may Want them, and we never
        # push them to it (no echo).
        self._offered: set[bytes] = set()
        self._wanted: set[bytes] = set()  # ids we asked for and have not received
        self._peer_done = False
        self._complete_sent = False
        self._hello_sent = False

    # -- outgoing ---------------------------------------------------------------------------

    def hello(self, name: str = "", addresses: Sequence[str] = ()) -> bytes:
        if self._hello_sent:
            raise LocalProtocolError("hello already sent")
        self._require_usable()
        self._hello_sent = True
        return encode_message(Hello(PROTOCOL_VERSION, name, tuple(addresses)))

    def have(self, ids: Sequence[bytes]) -> bytes:
        """Offer ids (any number; split into messages as needed)."""
        self._require_usable()
        self._offered.update(ids)
        out = bytearray()
        for start in range(0, len(ids), limits.MAX_IDS_PER_MESSAGE):
            out += encode_message(Have(tuple(ids[start : start + limits.MAX_IDS_PER_MESSAGE])))
        return bytes(out)

    def have_done(self) -> bytes:
        self._require_usable()
        return encode_message(HaveDone())

    def want_capacity(self) -> int:
        return max(0, limits.MAX_WANT_OUTSTANDING - len(self._wanted))

    def want(self, ids: Sequence[bytes]) -> bytes:
        """Ask for ids; at most want_capacity() of them may be outstanding."""
        self._require_usable()
        fresh = [i for i in dict.fromkeys(ids) if i not in self._wanted]
        if len(fresh) > self.want_capacity():
            raise LocalProtocolError("too many outstanding wants")
        self._wanted.update(fresh)
        out = bytearray()
        for start in range(0, len(fresh), limits.MAX_IDS_PER_MESSAGE):
            out += encode_message(Want(tuple(fresh[start : start + limits.MAX_IDS_PER_MESSAGE])))
        return bytes(out)

    def records(self, records: Sequence[bytes]) -> bytes:
        """Send record bytes (answers or pushes); the peer may ask for none of them again."""
        self._require_usable()
        self._offered.update(record_id(r) for r in records)
        return b"".join(encode_message(m) for m in split_records(records))

    # -- incoming ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed decrypted bytes; returns the events they complete. Raises RemoteProtocolError."""
        self._require_usable()
        self._reader.receive_data(data)
        events: list[Event] = []
        try:
            while True:
                message = self._reader.next_message()
                if message is None:
                    break
                events.extend(self._handle(message))
        except RemoteProtocolError:
            self.state = SessionState.FAILED
            raise
        return events

    def _handle(self, message: Message) -> list[Event]:
        if self.state is SessionState.AWAIT_HELLO:
            if not isinstance(message, Hello):
                raise UnexpectedMessage("expected hello")
            if message.version != PROTOCOL_VERSION:
                raise UnexpectedMessage("unsupported sync protocol version")
            self.state = SessionState.OPEN
            return [PeerHello(message.version, message.name, message.addresses)]
        if isinstance(message, Hello):
            raise UnexpectedMessage("second hello")
        if isinstance(message, Have):
            if self._peer_done:
                raise UnexpectedMessage("have after have-done")
            self._offered.update(message.ids)  # the peer has them: never push them back
            return [PeerHave(message.ids)]
        if isinstance(message, HaveDone):
            if self._peer_done:
                raise UnexpectedMessage("second have-done")
            self._peer_done = True
            return [PeerHaveDone(), *self._maybe_complete()]
        if isinstance(message, Want):
            if any(i not in self._offered for i in message.ids):
                raise UnexpectedMessage("want for an id that was never offered")
            return [PeerWant(message.ids)]
        solicited = []
        for data in message.records:
            rid = record_id(data)
            solicited.append(rid in self._wanted)
            self._wanted.discard(rid)
            self._offered.add(rid)  # the peer has it; never offer it back
        return [RecordsReceived(message.records, tuple(solicited)), *self._maybe_complete()]

    def _maybe_complete(self) -> list[Event]:
        if self._peer_done and not self._wanted and not self._complete_sent:
            self._complete_sent = True
            return [SyncComplete()]
        return []

    def forget_wants(self, ids: Iterable[bytes]) -> list[Event]:
        """The node decided not to wait for these (e.g. it got them from another peer)."""
        for i in ids:
            self._wanted.discard(i)
        return self._maybe_complete()

    def peer_knows(self, rid: bytes) -> bool:
        """Whether the peer offered, sent or was sent this id (so a push would be an echo)."""
        return rid in self._offered

    @property
    def outstanding_wants(self) -> int:
        return len(self._wanted)

    def close(self) -> None:
        self.state = SessionState.CLOSED

    def _require_usable(self) -> None:
        if self.state in (SessionState.FAILED, SessionState.CLOSED):
            raise LocalProtocolError(f"session is {self.state.value}")
