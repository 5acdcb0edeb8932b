"""Circles on an unlocked data directory: the circles this node is in, making membership
changes, and the keys every reader of this node tries (protocol/circle.py holds the rules).

A circle's state is never stored as such: it is folded from the membership records in the
store that this node can open (sealed records, like any other), so a restore, a bundle or a
peer's push all land in the same state. Names are the members' own: a circle is found by its
name among the circles this node is in, or by its id's first hex characters.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from node.local import Local, random
from node.networks import networks_of
from node.revocation import revoked_ids
from node.store import row_of
from node.trust import match_peers, parse_node_id
from protocol import circle, limits
from protocol.circle import Change, Circle, History
from protocol.envelope import open_record, seal_record
from protocol.errors import CanopyError, LocalProtocolError, NotForUs, RemoteProtocolError
from protocol.identity import NodeId
from protocol.keyring import KeyRing
from protocol.record import Kind, Record, Scope

PEERS_CIRCLE = "peers"  # each author's implicit circle of its peers (node/peers_circle.py)


@dataclass(frozen=True, slots=True)
class CircleRow:
    """One circle as `canopy circle list` shows it."""

    circle: Circle
    member_names: tuple[str, ...]

    def to_json(self, me: NodeId) -> dict[str, object]:
        state = self.circle
        return {
            "id": state.id.hex(),
            "name": state.name,
            "owner": str(state.owner),
            "owned": state.owner == me,
            "history": state.history.value,
            "epoch": state.epoch,
            "members": [str(NodeId(m)) for m in sorted(state.members)],
            "member_names": list(self.member_names),
        }


async def circles(local: Local) -> dict[bytes, Circle]:
    """Every circle this node is (or was) in, folded from the membership records it opens."""
    changes: dict[bytes, list[tuple[bytes, bytes, Change]]] = defaultdict(list)
    for data in await local.store.records_of_kind(str(Kind.CIRCLE)):
        record = Record.from_bytes(data)
        try:
            body = open_record(record, local.identity, None)
            change = Change.from_content(body.content)
        except (NotForUs, RemoteProtocolError):
            continue  # another circle's, or malformed: held for others, read by nobody here
        changes[change.circle].append((record.id, record.author.raw, change))
    revoked = frozenset(n.raw for n in await revoked_ids(local))
    out: dict[bytes, Circle] = {}
    for cid, items in changes.items():
        state = circle.fold(items, revoked)
        if state is not None:
            out[cid] = state
    return out


async def read_keys(local: Local) -> KeyRing:
    """Every epoch key of every circle this node is in, as a `KeyRing` (a tuple that learns
    which key opens the records being read, and tries it first next time)."""
    keys = [key for state in (await circles(local)).values() for key in state.read_keys]
    return KeyRing(tuple(dict.fromkeys(keys))[: limits.MAX_CIRCLE_KEYS_TRIED])


async def find(local: Local, ref: str) -> Circle:
    """A circle this node is a member of, by name or by the first hex characters of its id."""
    ref = ref.strip()
    mine = [c for c in (await circles(local)).values() if c.is_member(local.node_id)]
    named = [c for c in mine if c.name == ref] or [
        c for c in mine if len(ref) >= 4 and c.id.hex().startswith(ref.lower())
    ]
    if not named:
        raise CanopyError(f"no circle {ref!r} that this node is in (see: canopy circle list)")
    if len(named) > 1:
        raise CanopyError(f"several circles are called {ref!r}: give the start of its id")
    return named[0]


async def store_change(
    local: Local, change: Change, now_ms: int, scope: Scope = Scope.NETWORK
) -> Record:
    """Seal a membership change to its members and store it; `scope` NETWORK lets relays
    carry it (one record per network its members are in), PEERS keeps it between the
    author and its direct peers."""
    tags: list[bytes | None] = [None]
    if scope is Scope.NETWORK:
        tags = [n.tag for n in await networks_of(local, change.recipients())]
    records = [_sealed(local, change, now_ms, scope, tag) for tag in tags]
    await local.store.put_records([row_of(r, local=True) for r in records], now_ms)
    await local.store.bump_epoch()  # a running node reads with the new keys at once
    return records[0]


def _sealed(local: Local, change: Change, now_ms: int, scope: Scope, tag: bytes | None) -> Record:
    return seal_record(
        local.identity,
        Kind.CIRCLE,
        change.to_content(),
        created=now_ms,
        expires=now_ms + limits.MAX_LIFETIME_MS,
        scope=scope,  # only the members after the change open it
        recipients=change.recipients(),
        network_key=None,
        random=random,
        network=tag,
    )


async def create(local: Local, name: str, history: str, now_ms: int) -> Circle:
    name = name.strip()
    if name == PEERS_CIRCLE:
        raise CanopyError(f"{PEERS_CIRCLE!r} is your implicit circle of peers: pick another name")
    if any(c.name == name for c in (await circles(local)).values() if c.owner == local.node_id):
        raise CanopyError(f"you already have a circle called {name!r}")
    try:
        change = circle.create(local.node_id, name, History(history), random)
    except (ValueError, LocalProtocolError) as exc:
        raise CanopyError(f"cannot create circle {name!r}: {exc}") from None
    await store_change(local, change, now_ms)
    return await find(local, change.circle.hex())


async def _peer(local: Local, ref: str) -> NodeId:
    named = [p.node_id for p in match_peers(list((await local.peers()).values()), ref)]
    if len(named) > 1:
        raise CanopyError(f"{ref!r} matches several peers; give more of the id")
    return named[0] if named else parse_node_id(ref)


async def add(local: Local, ref: str, peer_ref: str, now_ms: int) -> tuple[Circle, NodeId]:
    return await _member_change(local, ref, peer_ref, now_ms, joining=True)


async def remove(local: Local, ref: str, peer_ref: str, now_ms: int) -> tuple[Circle, NodeId]:
    return await _member_change(local, ref, peer_ref, now_ms, joining=False)


async def _member_change(
    local: Local, ref: str, peer_ref: str, now_ms: int, *, joining: bool
) -> tuple[Circle, NodeId]:
    """The owner adds `peer_ref` to, or removes it from, the circle `ref`, and stores it."""
    state = await find(local, ref)
    peer = await _peer(local, peer_ref)
    if joining and peer.raw in {n.raw for n in await revoked_ids(local)}:
        raise CanopyError(f"{peer.short}'s key is revoked: it cannot join a circle")
    make, what = (circle.add, "add {} to") if joining else (circle.remove, "remove {} from")
    try:
        change = make(state, local.node_id, [peer], random)
    except LocalProtocolError as exc:
        raise CanopyError(f"cannot {what.format(peer.short)} {state.name!r}: {exc}") from None
    await store_change(local, change, now_ms)
    return await find(local, state.id.hex()), peer


async def cut_off_revoked(local: Local, now_ms: int) -> list[Circle]:
    """After a revocation: every circle this node is in that still counts a revoked key gets
    a new epoch without it (a removal when we own the circle, else a rekey)."""
    revoked = frozenset(n.raw for n in await revoked_ids(local))
    changed: list[Circle] = []
    for state in (await circles(local)).values():
        gone = state.members & revoked
        if not gone or not state.is_member(local.node_id) or local.node_id.raw in revoked:
            continue
        leaving = [NodeId(raw) for raw in gone]
        if state.owner == local.node_id:
            change = circle.remove(state, local.node_id, leaving, random)
        else:
            change = circle.rekey(state, local.node_id, revoked, random)
        await store_change(local, change, now_ms)
        changed.append(state)
    return changed


async def rows(local: Local) -> list[CircleRow]:
    peers = await local.peers()
    names = {p.node_id.raw: p.label for p in peers.values()}
    names[local.node_id.raw] = "(this node)"
    out = []
    for state in (await circles(local)).values():
        if state.is_member(local.node_id):
            members = tuple(names.get(m, NodeId(m).short) for m in sorted(state.members))
            out.append(CircleRow(state, members))
    return sorted(out, key=lambda r: (r.circle.name, r.circle.id))
