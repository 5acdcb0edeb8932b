"""Circles: groups inside a network whose key changes (a new epoch) when a member leaves.

A circle's state is a fold over its membership records (kind `circle`, each sealed to the
members after its change, docs/spec/80-circles.md). Every membership record carries the
whole state after its change: the members, the epoch and that epoch's key, and, for a
circle that shares its history, every earlier epoch key too. Folding any set of them, in any
order, gives one state: records are applied in (seq, record id) order, and a record that
breaks a rule against the state it builds on is skipped (`fold`).

Who may do what:
- `create` (seq 0): anyone; its author is the circle's owner, and the circle id is bound to
  the owner (`circle_id`), so nobody else can create "the same" circle;
- `add` and `remove`: the owner only (the owner never removes itself);
- `rekey`: any member, removing only members whose keys are revoked: a revoked member is
  cut off by whichever member notices first, without waiting for the owner.

A removal or a rekey starts a new epoch; so does an addition to a circle whose history is
`new-only` (the new member must not read what was sealed before it joined). A member reads
with every epoch key it was ever handed (`Circle.keys`); it seals only with the current one.
Giving a new member the history costs one key per epoch inside one sealed record, never
work per record: no body is encrypted again.

Pure: randomness comes in as `Random`, time is not needed.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from protocol import labels, limits
from protocol.encoding import Value, as_bytes, as_int, as_list, as_str, check_keys
from protocol.errors import DecodeError, LocalProtocolError
from protocol.identity import NodeId, Random, random_bytes

ID_BYTES = 16
SALT_BYTES = 16
KEY_BYTES = 32
_NODE = 32
_REQUIRED = frozenset(
    {"circle", "owner", "salt", "seq", "op", "name", "history", "members", "epoch", "keys"}
)


class Op(enum.StrEnum):
    CREATE = "create"
    ADD = "add"
    REMOVE = "remove"
    REKEY = "rekey"


class History(enum.StrEnum):
    ALL = "all"  # a new member receives every earlier epoch key
    NEW_ONLY = "new-only"  # a new member reads only what is sealed after it joined


def circle_id(owner: NodeId, salt: bytes) -> bytes:
    """The circle's id: BLAKE2b-128(owner || salt, person=CIRCLE_ID)."""
    return hashlib.blake2b(owner.raw + salt, digest_size=ID_BYTES, person=labels.CIRCLE_ID).digest()


@dataclass(frozen=True, slots=True)
class Change:
    """The content of one membership record: the circle's whole state after the change."""

    circle: bytes
    owner: NodeId
    salt: bytes
    seq: int
    op: Op
    name: str
    history: History
    members: frozenset[bytes]  # raw node ids
    epoch: int
    keys: Mapping[int, bytes]  # epoch -> key; always holds `epoch`

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Change:
        """Strictly check a membership record's content (DecodeError names the first fault)."""
        if not isinstance(content, dict):
            raise DecodeError("circle content must be a map")
        check_keys(content, _REQUIRED, frozenset(), "circle")
        owner = NodeId(as_bytes(content["owner"], _NODE, "owner"))
        salt = as_bytes(content["salt"], SALT_BYTES, "salt")
        circle = as_bytes(content["circle"], ID_BYTES, "circle")
        if circle != circle_id(owner, salt):
            raise DecodeError("circle id is not bound to its owner")
        op, history = as_str(content["op"], "op"), as_str(content["history"], "history")
        if op not in Op.__members__.values() or history not in History.__members__.values():
            raise DecodeError("unknown circle op or history")
        name = as_str(content["name"], "name", limits.MAX_CIRCLE_NAME_BYTES)
        if not name.strip() or not name.isprintable():
            raise DecodeError("circle name must be printable text")
        raw_members = as_list(content["members"], what="members")
        if not 1 <= len(raw_members) <= limits.MAX_CIRCLE_MEMBERS:
            raise DecodeError("circle members out of range")
        members = [as_bytes(m, _NODE, "member") for m in raw_members]
        if members != sorted(set(members)):
            raise DecodeError("circle members must be sorted and unique")
        epoch = as_int(content["epoch"], "epoch", 0, limits.MAX_CIRCLE_EPOCHS - 1)
        keys: dict[int, bytes] = {}
        for pair in as_list(content["keys"], what="keys"):
            number, key = as_list(pair, 2, "epoch key")
            at = as_int(number, "key epoch", 0, epoch)
            if keys and at <= max(keys):
                raise DecodeError("epoch keys must be in ascending order")
            keys[at] = as_bytes(key, KEY_BYTES, "epoch key")
        if epoch not in keys:
            raise DecodeError("the current epoch's key is missing")
        return cls(
            circle=circle,
            owner=owner,
            salt=salt,
            seq=as_int(content["seq"], "seq", 0, limits.MAX_CIRCLE_SEQ),
            op=Op(op),
            name=name,
            history=History(history),
            members=frozenset(members),
            epoch=epoch,
            keys=keys,
        )

    def to_content(self) -> dict[str, Value]:
        return {
            "circle": self.circle,
            "owner": self.owner.raw,
            "salt": self.salt,
            "seq": self.seq,
            "op": self.op.value,
            "name": self.name,
            "history": self.history.value,
            "members": list[Value](sorted(self.members)),
            "epoch": self.epoch,
            "keys": [[number, self.keys[number]] for number in sorted(self.keys)],
        }

    def recipients(self) -> list[NodeId]:
        """Who the record is sealed to: the members after the change, and nobody else."""
        return [NodeId(m) for m in sorted(self.members)]


@dataclass(frozen=True, slots=True)
class Circle:
    """A circle as a member sees it: the folded state plus every key it was handed."""

    id: bytes
    owner: NodeId
    salt: bytes
    name: str
    history: History
    seq: int
    members: frozenset[bytes]
    epoch: int
    key: bytes  # the current epoch's key: the only one anything is sealed with
    epoch_keys: Mapping[int, bytes]  # the keys of the state's own line of changes
    read_keys: tuple[bytes, ...]  # every key to read with (a race's losing side included)

    def is_member(self, node: NodeId) -> bool:
        return node.raw in self.members


def _rekeys(state: Circle, change: Change, author: bytes, revoked: frozenset[bytes]) -> bool:
    """Whether a member's `change` is a valid rekey of `state`: by a member whose key is not
    revoked, removing revoked members only, adding nobody, starting the next epoch."""
    return (
        change.op is Op.REKEY
        and change.seq > state.seq
        and change.history is state.history
        and change.name == state.name
        and author in state.members
        and author not in revoked
        and change.members <= state.members
        and state.members - change.members <= revoked
        and change.epoch == state.epoch + 1
    )


def fold(
    records: Iterable[tuple[bytes, bytes, Change]], revoked: Iterable[bytes] = ()
) -> Circle | None:
    """The circle that `records` (record id, author, change) of one circle make, applied in
    (seq, record id) order whatever order they came in; None if none of them can start it.

    The owner's word on its circle is the whole state: any record by the owner with a higher
    seq replaces the state (so a member who missed changes, or was removed and added again,
    still lands where the owner is). A member's record applies only as a valid rekey
    (`_rekeys`) of the state it follows; `revoked` are the raw node ids whose keys are
    revoked. Of two records with the same seq the one with the lower record id wins; the
    keys of the other stay readable when its author was a member."""
    gone = frozenset(revoked)
    ordered = sorted(records, key=lambda r: (r[2].seq, r[0]))
    state: Circle | None = None
    line: dict[int, bytes] = {}
    ever: set[bytes] = set()
    for _, author, change in ordered:
        if state is not None and (change.circle, change.owner) != (state.id, state.owner):
            continue
        if author == change.owner.raw:
            valid = change.owner.raw in change.members and (
                state.seq < change.seq if state is not None else True
            )
            if change.op is Op.CREATE and change.seq != 0:
                valid = False
        else:
            valid = state is not None and _rekeys(state, change, author, gone)
        if not valid:
            continue
        if author == change.owner.raw and change.history is History.ALL:
            line = dict(change.keys)  # the owner hands the whole line over
        else:
            line.update(change.keys)
        ever |= change.members
        state = Circle(
            id=change.circle,
            owner=change.owner,
            salt=change.salt,
            name=change.name,
            history=change.history,
            seq=change.seq,
            members=change.members,
            epoch=change.epoch,
            key=change.keys[change.epoch],
            epoch_keys=dict(line),
            read_keys=(),
        )
    if state is None:
        return None
    readable: dict[bytes, int] = {}
    for _, author, change in ordered:
        if change.circle == state.id and (author == state.owner.raw or author in ever):
            for number, key in change.keys.items():
                readable.setdefault(key, number)
    keys = tuple(sorted(readable, key=lambda k: (readable[k], k)))
    return dataclasses.replace(state, read_keys=keys)


# Making changes ------------------------------------------------------------------------


def create(owner: NodeId, name: str, history: History, random: Random) -> Change:
    """The first membership record of a new circle, whose only member is its owner."""
    salt = random_bytes(random, SALT_BYTES)
    return _checked(
        Change(
            circle=circle_id(owner, salt),
            owner=owner,
            salt=salt,
            seq=0,
            op=Op.CREATE,
            name=name,
            history=history,
            members=frozenset({owner.raw}),
            epoch=0,
            keys={0: random_bytes(random, KEY_BYTES)},
        )
    )


def add(state: Circle, by: NodeId, joining: Iterable[NodeId], random: Random) -> Change:
    """The owner adds members. With history `all` they get every earlier epoch key; with
    `new-only` a new epoch starts and they get only its key."""
    if by != state.owner:
        raise LocalProtocolError("only the circle's owner adds members")
    new = {n.raw for n in joining} - state.members
    if not new:
        raise LocalProtocolError("nobody new to add")
    if state.history is History.NEW_ONLY:
        return _next(state, Op.ADD, state.members | new, random)
    keys = dict(state.epoch_keys)
    return _checked(_step(state, Op.ADD, state.members | new, state.epoch, keys))


def remove(state: Circle, by: NodeId, leaving: Iterable[NodeId], random: Random) -> Change:
    """The owner removes members: a new epoch whose key the removed never receive."""
    if by != state.owner:
        raise LocalProtocolError("only the circle's owner removes members")
    gone = {n.raw for n in leaving} & state.members
    if not gone:
        raise LocalProtocolError("none of them is a member")
    if state.owner.raw in gone:
        raise LocalProtocolError("the owner cannot remove itself")
    return _next(state, Op.REMOVE, state.members - gone, random)


def rekey(state: Circle, by: NodeId, revoked: Iterable[bytes], random: Random) -> Change:
    """Any member cuts off the members whose keys are revoked: a new epoch without them."""
    if not state.is_member(by):
        raise LocalProtocolError("only a member rekeys a circle")
    gone = frozenset(revoked) & state.members
    if not gone:
        raise LocalProtocolError("no member of the circle is revoked")
    if by.raw in gone:
        raise LocalProtocolError("a revoked key cannot rekey")
    return _next(state, Op.REKEY, state.members - gone, random)


def _next(state: Circle, op: Op, members: frozenset[bytes], random: Random) -> Change:
    """A change that starts a new epoch: its key, and the earlier ones when history is
    shared (the recipients are the members after the change: the removed get nothing)."""
    epoch = state.epoch + 1
    if epoch >= limits.MAX_CIRCLE_EPOCHS:
        raise LocalProtocolError("the circle has used all its epochs: create a new one")
    keys = dict(state.epoch_keys) if state.history is History.ALL else {}
    keys[epoch] = random_bytes(random, KEY_BYTES)
    return _checked(_step(state, op, members, epoch, keys))


def _step(
    state: Circle, op: Op, members: frozenset[bytes], epoch: int, keys: dict[int, bytes]
) -> Change:
    return Change(
        circle=state.id,
        owner=state.owner,
        salt=state.salt,
        seq=state.seq + 1,
        op=op,
        name=state.name,
        history=state.history,
        members=members,
        epoch=epoch,
        keys=keys,
    )


def _checked(change: Change) -> Change:
    """Our own changes pass the checks a peer's must pass (LocalProtocolError if not)."""
    try:
        return Change.from_content(change.to_content())
    except DecodeError as exc:
        raise LocalProtocolError(f"bad circle change: {exc}") from None
