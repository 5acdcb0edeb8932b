"""One simulated node: a thin driver that acts on its conversations' events.

It owns what node/runtime.py owns for a real node, reduced to sync: a real SQLite store
of record bytes, the ids in flight across connections, scores and bans, and relaying
what it stores. Every protocol rule comes from protocol.conversation. A crash drops
everything here except the database; a restart builds fresh conversations over it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from protocol import limits
from protocol.conversation import (
    CheckRecords,
    Conversation,
    ConversationEvent,
    Denied,
    FilterNeeds,
    LoadItems,
    LookUp,
    Penalise,
    Send,
    Synced,
    Throttle,
    check_record,
    hand_over,
    push_plan,
)
from protocol.errors import QuotaExceeded, RemoteProtocolError
from protocol.identity import Identity, NodeId
from protocol.record import Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id BLOB PRIMARY KEY, created INTEGER NOT NULL, expires INTEGER NOT NULL,
    scope INTEGER NOT NULL, author BLOB NOT NULL, local INTEGER NOT NULL, data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_key ON records (created, id);
"""


@dataclass(slots=True)
class End:
    """This node's end of one live connection."""

    peer: int
    conversation: Conversation
    send: Callable[[bytes], None]
    close: Callable[[str], None]


@dataclass(slots=True)
class Stats:
    bytes_in: int = 0
    honest_bytes_in: int = 0  # from honest peers: what sync itself costs
    honest_copies_in: int = 0
    record_bytes_in: int = 0
    copies_in: int = 0  # records received, duplicates included
    verified: int = 0
    penalties: int = 0
    bans: int = 0
    throttled: int = 0
    violations: int = 0  # records an honest peer sent that we may not receive
    failures: dict[str, int] = field(default_factory=dict)


class SimNode:
    relay = True  # push what we store to our other peers

    def __init__(self, index: int, identity: Identity, path: str = ":memory:") -> None:
        self.index = index
        self.identity = identity
        self.node_id: NodeId = identity.node_id
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript(_SCHEMA)
        self.online = False
        self.generation = 0  # bumped by every crash: timers of a previous life stop
        self.ends: dict[int, End] = {}
        self.inflight: set[bytes] = set()
        self.scores: dict[int, int] = {}
        self.banned_until: dict[int, float] = {}
        self.stored_at: dict[bytes, float] = {}  # first store of each record (figures)
        # Figures only: records whose first copy here came over a connection opened after
        # `reconnect_after` (a redial or a restart), or from a peer whose copy did.
        self.reconnect_after: float | None = None
        self.opened_at: dict[int, float] = {}
        self.behind_reconnect: set[bytes] = set()
        self.peer_behind: Callable[[int, bytes], bool] = lambda peer, rid: False
        self.stats = Stats()
        self.now_ms: Callable[[], int] = lambda: 0
        self.now: Callable[[], float] = lambda: 0.0
        self.ids: Callable[[int], NodeId] = lambda i: self.node_id
        self.honest: Callable[[int], bool] = lambda i: True
        self.may_hold: Callable[[bytes], bool] = lambda rid: True  # the scenario's oracle

    # -- lifecycle -------------------------------------------------------------------

    def crash(self) -> None:
        """Lose every in-memory state; the database survives (as on a real crash)."""
        self.online = False
        self.generation += 1
        for end in list(self.ends.values()):
            end.close("crash")
        self.inflight.clear()

    def banned(self, peer: int) -> bool:
        return self.banned_until.get(peer, -1.0) > self.now()

    def opened(self, end: End) -> None:
        self.ends[end.peer] = end
        self.opened_at[end.peer] = self.now()
        self.act(end, end.conversation.hello(f"node-{self.index}"))
        if end.conversation.round_due(self.now()):
            self.act(end, end.conversation.begin_round(self.now()))

    def closed(self, peer: int) -> None:
        end = self.ends.pop(peer, None)
        if end is not None:
            wanted = sorted(end.conversation.wanted)
            end.conversation.close()
            if self.online:
                self._refetch(wanted, peer)
            else:
                self.inflight.difference_update(wanted)

    def tick(self) -> None:
        """Once a second: release wants a peer sits on, ask a second holder for those it
        is overdue on, start every round that is due."""
        now = self.now()
        for end in list(self.ends.values()):
            try:
                self.act(end, end.conversation.tick(now))
            except RemoteProtocolError as exc:
                self._punish(end, exc, fatal=True)
                continue
            if end.peer in self.ends:
                self._hedge(end, end.conversation.overdue(now))
            if end.peer in self.ends and end.conversation.round_due(now):
                self.act(end, end.conversation.begin_round(now))

    # -- the conversation's events -----------------------------------------------------

    def receive(self, peer: int, data: bytes) -> None:
        end = self.ends.get(peer)
        if end is None:
            return
        self.stats.bytes_in += len(data)
        if self.honest(peer):
            self.stats.honest_bytes_in += len(data)
        try:
            events = end.conversation.receive(data, self.now())
        except RemoteProtocolError as exc:
            self._punish(end, exc, fatal=True)
            return
        self.act(end, events)

    def act(self, end: End, events: Sequence[ConversationEvent]) -> None:
        queue = list(events)
        conv = end.conversation
        while queue and end.peer in self.ends:
            event = queue.pop(0)
            try:
                if isinstance(event, Send):
                    end.send(event.data)
                elif isinstance(event, LoadItems):
                    queue += conv.set_items(self._items(end.peer))
                elif isinstance(event, FilterNeeds):
                    queue += conv.want(*self._to_fetch(event.ids))
                elif isinstance(event, LookUp):
                    queue += conv.serve(self._look_up(event.ids, end.peer))
                elif isinstance(event, CheckRecords):
                    queue += self._ingest(end, event)
                elif isinstance(event, Denied):
                    self._refetch(event.ids, end.peer)
                elif isinstance(event, Penalise):
                    self._punish(end, event.error, fatal=False)
                elif isinstance(event, Throttle):
                    self.stats.throttled += 1
                elif isinstance(event, Synced):
                    pass
            except RemoteProtocolError as exc:
                self._punish(end, exc, fatal=True)
                return

    def _punish(self, end: End, error: RemoteProtocolError, *, fatal: bool) -> None:
        self.stats.penalties += 1
        name = type(error).__name__
        key = name if not self.honest(end.peer) else f"{name} from an honest peer: {error}"
        self.stats.failures[key] = self.stats.failures.get(key, 0) + 1
        score = self.scores.get(end.peer, limits.INITIAL_SCORE) - error.penalty
        self.scores[end.peer] = score
        if isinstance(error, QuotaExceeded) or score < 0:
            self.stats.bans += 1
            self.banned_until[end.peer] = self.now() + limits.BAN_SECONDS
            self.scores[end.peer] = limits.INITIAL_SCORE // 2
            fatal = True
        if fatal:
            end.close(name)

    # -- the store ---------------------------------------------------------------------

    def _items(self, peer: int) -> list[tuple[int, bytes]]:
        rows = self.db.execute(
            "SELECT created, id FROM records WHERE expires > ?"
            " AND (scope = 1 OR (scope = 0 AND (local = 1 OR author = ?)))"
            " ORDER BY created, id",
            (self.now_ms(), self.ids(peer).raw),
        )
        return [(int(c), bytes(i)) for c, i in rows]

    def _held(self, ids: Sequence[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT id FROM records WHERE id IN ({marks})", chunk)
            found.update(bytes(r[0]) for r in rows)
        return found

    def _to_fetch(self, ids: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
        """(ids to ask this peer for, ids it has that another peer is being asked for)."""
        held = self._held(ids)
        out = [i for i in ids if i not in held and i not in self.inflight]
        deferred = [i for i in ids if i not in held and i in self.inflight]
        self.inflight.update(out)
        return out, deferred

    def _refetch(self, ids: Sequence[bytes], source: int) -> None:
        """Ids `source` denied, sat on or took with it: ask another peer that announced them."""
        self.inflight.difference_update(ids)
        held = self._held(ids)
        remaining = [i for i in ids if i not in held]
        others = {self.ends[p].conversation: self.ends[p] for p in sorted(self.ends) if p != source}
        for conversation, taken in hand_over(remaining, list(others)):
            self.inflight.update(taken)
            end = others[conversation]
            if end.peer in self.ends:
                self.act(end, conversation.ask(taken))

    def _hedge(self, end: End, ids: Sequence[bytes]) -> None:
        """Ids `end`'s peer is overdue on: also ask another peer that announced them; they
        stay in flight (and outstanding at `end`) until one of them answers."""
        if not ids:
            return
        others = {
            self.ends[p].conversation: self.ends[p] for p in sorted(self.ends) if p != end.peer
        }
        asked: list[bytes] = []
        for conversation, taken in hand_over(ids, list(others)):
            other = others[conversation]
            if other.peer in self.ends:
                asked += taken
                self.act(other, conversation.ask(taken))
        if end.peer in self.ends:
            end.conversation.hedged(asked)

    def _look_up(self, ids: Sequence[bytes], peer: int) -> dict[bytes, bytes]:
        """What `peer` may receive from us (docs/SPEC.md "Who may receive what")."""
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            f"SELECT id, data FROM records WHERE id IN ({marks}) AND expires > ?"
            " AND (scope = 1 OR (scope = 0 AND local = 1)) AND author != ?",
            (*ids, self.now_ms(), self.ids(peer).raw),
        )
        return {bytes(i): bytes(d) for i, d in rows}

    def _ingest(self, end: End, event: CheckRecords) -> list[ConversationEvent]:
        sender = self.ids(end.peer)
        held = self._held(event.ids)
        errors: list[RemoteProtocolError] = []
        fresh: list[Record] = []
        now_ms = self.now_ms()
        honest = self.honest(end.peer)
        for data, rid in zip(event.records, event.ids, strict=True):
            self.stats.copies_in += 1
            self.stats.honest_copies_in += honest
            self.stats.record_bytes_in += len(data)
            self.inflight.discard(rid)
            if honest and not self.may_hold(rid):
                self.stats.violations += 1  # the sender broke "who may receive what"
            if rid in held:
                continue  # already stored: no second signature check
            try:
                record = check_record(data, rid, now_ms, sender)
            except RemoteProtocolError as exc:
                errors.append(exc)
                continue
            self.stats.verified += 1
            fresh.append(record)
        self.store(fresh, source=end.peer)
        return end.conversation.records_done(errors)

    def store(self, records: Sequence[Record], source: int | None) -> list[Record]:
        """Store records durably; push the new ones to every other connected peer (as
        node/sync.py does: `push_plan` over each conversation's pruned or eager link)."""
        if not records:
            return []
        new: list[Record] = []
        self.db.execute("BEGIN")
        for r in records:
            cur = self.db.execute(
                "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    r.id,
                    r.created,
                    r.expires,
                    int(r.scope),
                    r.author.raw,
                    int(r.author == self.node_id),
                    r.to_bytes(),
                ),
            )
            if cur.rowcount:
                new.append(r)
        self.db.execute("COMMIT")
        now = self.now()
        for r in new:
            self.stored_at.setdefault(r.id, now)
        if source is not None and self.reconnect_after is not None:
            late = self.opened_at.get(source, 0.0) > self.reconnect_after
            self.behind_reconnect.update(
                r.id for r in new if late or self.peer_behind(source, r.id)
            )
        if new:
            targets = {
                self.ids(p): end.conversation.pruned
                for p, end in self.ends.items()
                if p != source
            }
            plan = push_plan(new, targets, self.now_ms())
            for end in list(self.ends.values()):
                end.conversation.items_changed()
                if self.relay and end.peer != source and end.peer in self.ends:
                    lazy = plan.get(self.ids(end.peer), set())
                    self.act(end, end.conversation.push(new, now, lazy))
        return new

    def holdings(self) -> set[bytes]:
        return {bytes(r[0]) for r in self.db.execute("SELECT id FROM records")}
