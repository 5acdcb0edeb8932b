"""The sync session between two authenticated peers (docs/SPEC.md, "Sync session").

Owns the order of application messages after the handshake and the bookkeeping that
bounds what a peer may send: nothing before Hello, reconciliation replies only when one
was asked for, Missing only for ids we asked for, at most MAX_WANT_OUTSTANDING ids asked
of a peer at once. It never decides what is stored, offered or reconciled: the node
does (it runs protocol.reconcile over the records it may exchange with this peer).

The client of the connection is the reconciliation initiator, the server the responder.

    state        input                      -> state    event
    AWAIT_HELLO  Hello(v=1)                 -> OPEN     PeerHello
    OPEN         Reconcile (responder)      -> OPEN     PeerReconcile   (opens a round)
    OPEN         Reconcile (initiator)      -> OPEN     PeerReconcile   (only as a reply)
    OPEN         SyncDone (responder)       -> OPEN     PeerSyncDone    (closes the round)
    OPEN         Want                       -> OPEN     PeerWant
    OPEN         Have                       -> OPEN     PeerHave        (the peer holds them)
    OPEN         Records                    -> OPEN     RecordsReceived
    OPEN         Missing (ids we wanted)    -> OPEN     PeerMissing
    OPEN         Query (< 8 open from peer) -> OPEN     PeerQuery       (answer it once)
    OPEN         Answer (to a query of ours)-> OPEN     PeerAnswer      (closes that query)
    OPEN         IntroRequest (bounded)     -> OPEN     PeerIntroRequest
    OPEN         IntroReply (to ours)       -> OPEN     PeerIntroReply
    any          anything else / bad bytes  -> FAILED   (raises RemoteProtocolError)
    any          close()                    -> CLOSED
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocol import limits
from protocol.contact import Filter
from protocol.errors import LocalProtocolError, RemoteProtocolError, UnexpectedMessage
from protocol.messages import (
    PROTOCOL_VERSION,
    Answer,
    AnswerStatus,
    Have,
    Hello,
    IntroReply,
    IntroRequest,
    IntroStatus,
    Message,
    MessageReader,
    Missing,
    Query,
    Reconcile,
    SyncDone,
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
class PeerReconcile:
    payload: bytes


@dataclass(frozen=True, slots=True)
class PeerSyncDone:
    pass


@dataclass(frozen=True, slots=True)
class PeerWant:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PeerHave:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PeerMissing:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class RecordsReceived:
    """Record bytes from the peer; `solicited[i]` says whether we had asked for record i."""

    records: tuple[bytes, ...]
    solicited: tuple[bool, ...]
    ids: tuple[bytes, ...]  # record_id of each, computed once here


@dataclass(frozen=True, slots=True)
class PeerQuery:
    query_id: bytes
    depth: int
    filter: Filter


@dataclass(frozen=True, slots=True)
class PeerAnswer:
    query_id: bytes
    status: AnswerStatus
    records: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PeerIntroRequest:
    request: IntroRequest


@dataclass(frozen=True, slots=True)
class PeerIntroReply:
    request_id: bytes
    status: IntroStatus


Event = (
    PeerHello
    | PeerReconcile
    | PeerSyncDone
    | PeerWant
    | PeerHave
    | PeerMissing
    | RecordsReceived
    | PeerQuery
    | PeerAnswer
    | PeerIntroRequest
    | PeerIntroReply
)

_INTROS_REMEMBERED = 256


def record_id(data: bytes) -> bytes:
    """A record's id: BLAKE2b-256 of its wire bytes (protocol.record computes the same)."""
    return hashlib.blake2b(data, digest_size=32).digest()


class SyncSession:
    """One side of a sync session. Feed decrypted stream bytes, drain events, send messages."""

    def __init__(self, *, initiator: bool) -> None:
        self.initiator = initiator
        self.state = SessionState.AWAIT_HELLO
        self._reader = MessageReader()
        self._known: set[bytes] = set()  # ids the peer sent us or we sent it: never push them
        self._wanted: set[bytes] = (
            set()
        )  # ids we asked for and have neither received nor been denied
        self._hello_sent = False
        self._awaiting_reply = False  # initiator: a Reconcile of ours is unanswered
        self._round_open = False  # a reconciliation round has started and not ended
        # Ours, unanswered. Every query gets exactly one Answer, so this is exact: we never
        # have more open than the peer accepts (MAX_QUERIES_IN_FLIGHT; past it, it cuts us off).
        self._queries_out: set[bytes] = set()
        self._queries_in: set[bytes] = set()  # the peer's, not yet answered by us
        self._intros_out: OrderedDict[bytes, None] = OrderedDict()  # requests we sent
        self._intros_in: OrderedDict[bytes, None] = OrderedDict()  # requests the peer sent

    # -- outgoing ------------------------------------------------------------------------

    def hello(self, name: str = "", addresses: Sequence[str] = ()) -> bytes:
        if self._hello_sent:
            raise LocalProtocolError("hello already sent")
        self._require_usable()
        self._hello_sent = True
        return encode_message(Hello(PROTOCOL_VERSION, name, tuple(addresses)))

    def reconcile(self, payload: bytes) -> bytes:
        """Send a reconciliation message: the initiator's next step or the responder's reply."""
        self._require_usable()
        if self.initiator:
            if self._awaiting_reply:
                raise LocalProtocolError("a reconcile message is already in flight")
            self._awaiting_reply = True
            self._round_open = True
        return encode_message(Reconcile(payload))

    def sync_done(self) -> bytes:
        """Initiator: the round is over (asked for what it lacks, sent what the peer lacks)."""
        self._require_usable()
        if not self.initiator or not self._round_open or self._awaiting_reply:
            raise LocalProtocolError("only the initiator ends a round it started")
        self._round_open = False
        return encode_message(SyncDone())

    def want_capacity(self) -> int:
        return max(0, limits.MAX_WANT_OUTSTANDING - len(self._wanted))

    def want(self, ids: Sequence[bytes]) -> bytes:
        """Ask for ids; at most want_capacity() of them may be outstanding."""
        self._require_usable()
        fresh = [i for i in dict.fromkeys(ids) if i not in self._wanted]
        if len(fresh) > self.want_capacity():
            raise LocalProtocolError("too many outstanding wants")
        self._wanted.update(fresh)
        return _chunked(Want, fresh)

    def missing(self, ids: Sequence[bytes]) -> bytes:
        """Tell the peer we will not send these (it asked; we lack them or may not send them)."""
        self._require_usable()
        return _chunked(Missing, list(ids))

    def have(self, ids: Sequence[bytes]) -> bytes:
        """Offer ids of records just stored, instead of pushing the records themselves."""
        self._require_usable()
        fresh = list(dict.fromkeys(ids))
        self._known.update(fresh)  # the peer will hold them, from us or another: no push
        return _chunked(Have, fresh)

    def records(self, records: Sequence[bytes], ids: Sequence[bytes] | None = None) -> bytes:
        """Send record bytes (answers or pushes); they are never pushed to this peer again.
        `ids`: the record_id of each, when the caller knows them (saves hashing them)."""
        self._require_usable()
        if ids is None or len(ids) != len(records):
            ids = [record_id(r) for r in records]
        self._known.update(ids)
        return b"".join(encode_message(m) for m in split_records(records))

    def query(self, query_id: bytes, depth: int, filter: Filter) -> bytes:
        """Ask the peer a know-who query; its one Answer is expected. LocalProtocolError if
        `query_capacity` is 0: asking anyway would break the peer's in-flight bound."""
        self._require_usable()
        if query_id in self._queries_out:
            raise LocalProtocolError("query id already in use")
        if not self.query_capacity:
            raise LocalProtocolError("too many of our queries unanswered by this peer")
        data = encode_message(Query(query_id, depth, filter))
        self._queries_out.add(query_id)
        return data

    @property
    def query_capacity(self) -> int:
        """How many more queries we may send before the peer answers one of ours."""
        return max(0, limits.MAX_QUERIES_IN_FLIGHT - len(self._queries_out))

    def answer(
        self, query_id: bytes, records: Sequence[bytes], status: AnswerStatus = AnswerStatus.OK
    ) -> bytes:
        """Answer the peer's query `query_id`, once."""
        self._require_usable()
        if query_id not in self._queries_in:
            raise LocalProtocolError("no such query from this peer")
        data = encode_message(Answer(query_id, status, tuple(records)))
        self._queries_in.discard(query_id)
        return data

    def intro_request(self, request: IntroRequest) -> bytes:
        self._require_usable()
        data = encode_message(request)
        _remember(self._intros_out, request.request_id, _INTROS_REMEMBERED)
        return data

    def intro_reply(self, request_id: bytes, status: IntroStatus) -> bytes:
        """Reply to a request this peer sent us on this session."""
        self._require_usable()
        if request_id not in self._intros_in:
            raise LocalProtocolError("no such introduction request from this peer")
        del self._intros_in[request_id]
        return encode_message(IntroReply(request_id, status))

    def can_reply_intro(self, request_id: bytes) -> bool:
        return request_id in self._intros_in

    # -- incoming ------------------------------------------------------------------------

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
                events.append(self._handle(message))
        except RemoteProtocolError:
            self.state = SessionState.FAILED
            raise
        return events

    def _handle(self, message: Message) -> Event:
        if self.state is SessionState.AWAIT_HELLO:
            if not isinstance(message, Hello):
                raise UnexpectedMessage("expected hello")
            if message.version != PROTOCOL_VERSION:
                raise UnexpectedMessage("unsupported sync protocol version")
            self.state = SessionState.OPEN
            return PeerHello(message.version, message.name, message.addresses)
        if isinstance(message, Hello):
            raise UnexpectedMessage("second hello")
        if isinstance(message, Reconcile):
            if self.initiator:
                if not self._awaiting_reply:
                    raise UnexpectedMessage("reconcile reply that was not asked for")
                self._awaiting_reply = False
            else:
                self._round_open = True
            return PeerReconcile(message.payload)
        if isinstance(message, SyncDone):
            if self.initiator or not self._round_open:
                raise UnexpectedMessage("sync-done without a round")
            self._round_open = False
            return PeerSyncDone()
        if isinstance(message, Want):
            return PeerWant(message.ids)
        if isinstance(message, Have):
            self._known.update(message.ids)  # never pushed back
            return PeerHave(message.ids)
        if isinstance(message, Missing):
            if any(i not in self._wanted for i in message.ids):
                raise UnexpectedMessage("missing for an id that was not asked for")
            self._wanted.difference_update(message.ids)
            return PeerMissing(message.ids)
        if isinstance(message, Query):
            if message.query_id in self._queries_in:
                raise UnexpectedMessage("query id reused while open")
            if len(self._queries_in) >= limits.MAX_QUERIES_IN_FLIGHT:
                raise UnexpectedMessage("too many unanswered queries")
            self._queries_in.add(message.query_id)
            return PeerQuery(message.query_id, message.depth, message.filter)
        if isinstance(message, Answer):
            if message.query_id not in self._queries_out:
                raise UnexpectedMessage("answer to a query we did not ask")
            self._queries_out.discard(message.query_id)
            return PeerAnswer(message.query_id, message.status, message.records)
        if isinstance(message, IntroRequest):
            if message.request_id in self._intros_in:
                raise UnexpectedMessage("introduction request id reused")
            if len(self._intros_in) >= limits.MAX_INTROS_OPEN:
                raise UnexpectedMessage("too many open introduction requests")
            self._intros_in[message.request_id] = None
            return PeerIntroRequest(message)
        if isinstance(message, IntroReply):
            if message.request_id not in self._intros_out:
                raise UnexpectedMessage("introduction reply that was not asked for")
            del self._intros_out[message.request_id]
            return PeerIntroReply(message.request_id, message.status)
        # A record repeated within one message is taken once: repeats cost the peer nothing
        # to send, so they must cost us nothing to process (no second check, no log line).
        unique: dict[bytes, bytes] = {}
        for data in message.records:
            unique.setdefault(record_id(data), data)
        solicited = []
        for rid in unique:
            solicited.append(rid in self._wanted)
            self._wanted.discard(rid)
            self._known.add(rid)
        return RecordsReceived(tuple(unique.values()), tuple(solicited), tuple(unique))

    # -- queries -------------------------------------------------------------------------

    def peer_knows(self, rid: bytes) -> bool:
        """Whether the peer sent us or was sent this id (so a push would be an echo)."""
        return rid in self._known

    def note_known(self, ids: Iterable[bytes]) -> None:
        """Ids the node learnt the peer holds (e.g. from reconciliation)."""
        self._known.update(ids)

    @property
    def outstanding_wants(self) -> frozenset[bytes]:
        return frozenset(self._wanted)

    @property
    def round_open(self) -> bool:
        """Responder: the peer started a reconciliation round and has not said SyncDone."""
        return self._round_open

    @property
    def reconciling(self) -> bool:
        return self._awaiting_reply

    def close(self) -> None:
        self.state = SessionState.CLOSED

    def _require_usable(self) -> None:
        if self.state in (SessionState.FAILED, SessionState.CLOSED):
            raise LocalProtocolError(f"session is {self.state.value}")


def _remember(table: OrderedDict[bytes, None], key: bytes, bound: int) -> None:
    table[key] = None
    while len(table) > bound:
        table.popitem(last=False)


def _chunked(kind: type[Want] | type[Missing] | type[Have], ids: list[bytes]) -> bytes:
    out = bytearray()
    for start in range(0, len(ids), limits.MAX_IDS_PER_MESSAGE):
        out += encode_message(kind(tuple(ids[start : start + limits.MAX_IDS_PER_MESSAGE])))
    return bytes(out)
