"""Circles: membership records, epochs, and what each member (and each former member) can
read. Every membership record here is really sealed to its recipients and opened by each
node that can open it; each node folds what it opened, as a node will."""

from __future__ import annotations

import json
import random as stdlib_random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import circle
from protocol.circle import Change, Circle, History, Op
from protocol.encoding import Value, pack, unpack
from protocol.envelope import open_record, seal_record, unseal
from protocol.errors import DecodeError, LocalProtocolError, NotForUs
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope
from tests.strategies import seeded

OWNER = Identity(b"\x01" * 32)
B = Identity(b"\x02" * 32)
C = Identity(b"\x03" * 32)
D = Identity(b"\x04" * 32)
RELAY = Identity(b"\x05" * 32)
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000


def membership_record(author: Identity, change: Change, random: object, at: int) -> Record:
    return seal_record(
        author,
        Kind.CIRCLE,
        change.to_content(),
        created=NOW + at,
        expires=NOW + at + DAY,
        scope=Scope.NETWORK,
        recipients=change.recipients(),
        network_key=None,
        random=random,  # type: ignore[arg-type]
    )


@dataclass
class World:
    """The membership records made so far, and what each node can fold from them."""

    records: list[Record] = field(default_factory=list)
    random: object = field(default_factory=lambda: seeded("circle-world"))

    def publish(self, author: Identity, change: Change) -> None:
        self.records.append(membership_record(author, change, self.random, len(self.records)))

    def view(self, who: Identity, revoked: frozenset[bytes] = frozenset()) -> Circle | None:
        opened = []
        for record in self.records:
            try:
                body = open_record(record, who, None)
            except NotForUs:
                continue
            opened.append((record.id, record.author.raw, Change.from_content(body.content)))
        return circle.fold(opened, revoked)

    def seal_to(self, author: Identity, state: Circle, text: str) -> Record:
        return seal_record(
            author,
            Kind.ALERT,
            {"text": text, "urgency": "normal"},
            created=NOW,
            expires=NOW + DAY,
            scope=Scope.NETWORK,
            recipients=[],
            network_key=None,
            random=self.random,  # type: ignore[arg-type]
            circle_keys=[state.key],
        )


def reads(who: Identity, state: Circle | None, record: Record) -> bool:
    keys = state.read_keys if state is not None else ()
    try:
        open_record(record, who, None, circle_keys=keys)
    except NotForUs:
        return False
    return True


def made(world: World, history: History = History.ALL) -> Circle:
    world.publish(OWNER, circle.create(OWNER.node_id, "Land-rights lawyers", history, world.random))  # type: ignore[arg-type]
    state = world.view(OWNER)
    assert state is not None
    world.publish(OWNER, circle.add(state, OWNER.node_id, [B.node_id, C.node_id], world.random))  # type: ignore[arg-type]
    state = world.view(OWNER)
    assert state is not None
    return state


def test_every_member_reads_what_is_sealed_to_the_circle_and_a_relay_does_not() -> None:
    world = World()
    state = made(world)
    note = world.seal_to(B, state, "meet at the usual place")
    for member in (OWNER, B, C):
        assert reads(member, world.view(member), note)
    assert world.view(RELAY) is None and not reads(RELAY, None, note)


def test_a_removed_member_cannot_read_what_is_sealed_after_its_removal() -> None:
    world = World()
    before = made(world)
    old = world.seal_to(OWNER, before, "before C left")
    world.publish(OWNER, circle.remove(before, OWNER.node_id, [C.node_id], world.random))  # type: ignore[arg-type]
    after = world.view(OWNER)
    assert after is not None and after.epoch == before.epoch + 1
    new = world.seal_to(OWNER, after, "after C left")
    c_view = world.view(C)
    assert c_view is not None and c_view.epoch == before.epoch  # it never got the new epoch
    assert not reads(C, c_view, new)
    assert reads(C, c_view, old)  # what it was given before stays readable
    b_view = world.view(B)
    assert b_view == after and reads(B, b_view, new) and reads(B, b_view, old)
    assert C.node_id.raw not in b_view.members  # members see who is in the circle


def test_a_member_added_later_reads_the_history_unless_the_circle_is_new_only() -> None:
    for history, reads_old in ((History.ALL, True), (History.NEW_ONLY, False)):
        world = World()
        state = made(world, history)
        old = world.seal_to(OWNER, state, "from before D")
        world.publish(OWNER, circle.remove(state, OWNER.node_id, [C.node_id], world.random))  # type: ignore[arg-type]
        state = world.view(OWNER)
        assert state is not None
        older = world.seal_to(OWNER, state, "second epoch")
        world.publish(OWNER, circle.add(state, OWNER.node_id, [D.node_id], world.random))  # type: ignore[arg-type]
        state = world.view(OWNER)
        assert state is not None
        d_view = world.view(D)
        assert d_view is not None and d_view.members == state.members
        assert reads(D, d_view, world.seal_to(B, state, "after D joined"))
        assert reads(D, d_view, old) is reads_old and reads(D, d_view, older) is reads_old


def test_adding_a_member_costs_one_key_per_epoch_and_no_body_is_sealed_again() -> None:
    world = World()
    state = made(world)
    for _ in range(5):
        world.publish(OWNER, circle.remove(state, OWNER.node_id, [C.node_id], world.random))  # type: ignore[arg-type]
        state = world.view(OWNER)  # type: ignore[assignment]
        world.publish(OWNER, circle.add(state, OWNER.node_id, [C.node_id], world.random))  # type: ignore[arg-type]
        state = world.view(OWNER)  # type: ignore[assignment]
    change = circle.add(state, OWNER.node_id, [D.node_id], world.random)  # type: ignore[arg-type]
    assert len(change.keys) == state.epoch + 1 == 6  # the whole history: one key an epoch


def test_a_revoked_members_key_is_cut_off_by_any_member_without_the_owner() -> None:
    world = World()
    state = made(world)
    revoked = frozenset({C.node_id.raw})
    with pytest.raises(LocalProtocolError):
        circle.rekey(state, C.node_id, revoked, world.random)  # type: ignore[arg-type]
    world.publish(B, circle.rekey(state, B.node_id, revoked, world.random))  # type: ignore[arg-type]
    for member in (OWNER, B):
        view = world.view(member, revoked)
        assert view is not None and view.members == {OWNER.node_id.raw, B.node_id.raw}
    after = world.view(B, revoked)
    assert after is not None
    assert not reads(C, world.view(C, revoked), world.seal_to(B, after, "C's key is revoked"))


def test_only_the_owner_adds_or_removes_and_a_rekey_removes_only_revoked_keys() -> None:
    world = World()
    state = made(world)
    forged = circle._step(
        state, Op.ADD, state.members | {D.node_id.raw}, state.epoch, dict(state.epoch_keys)
    )
    world.publish(B, forged)  # B is a member, but not the owner
    rekey_of_honest = circle._next(state, Op.REKEY, state.members - {C.node_id.raw}, world.random)  # type: ignore[arg-type]
    world.publish(B, rekey_of_honest)  # C is not revoked: B cannot cut it off
    for member in (OWNER, B, C):
        view = world.view(member)
        assert view is not None
        assert (view.seq, view.members, view.epoch, view.key) == (
            state.seq,
            state.members,
            state.epoch,
            state.key,
        )  # nothing is sealed with the refused record's key: it only ever opens, for members
    assert world.view(D) is None  # the forged add opened for D, and D folds nothing from it


def test_a_circle_id_is_bound_to_its_owner() -> None:
    change = circle.create(OWNER.node_id, "Shelters", History.ALL, seeded("bind"))
    squatted = {**change.to_content(), "owner": B.node_id.raw}
    with pytest.raises(DecodeError, match="bound to its owner"):
        Change.from_content(squatted)


@pytest.mark.parametrize(
    ("key", "value", "fault"),
    [
        ("members", [], "members out of range"),
        ("members", [b"\x09" * 32, b"\x01" * 32], "sorted and unique"),
        ("keys", [], "current epoch's key is missing"),
        ("keys", [[0, b"k" * 31]], "must be 32 bytes"),
        ("name", "\u202eevil", "printable"),
        ("op", "merge", "unknown circle op"),
        ("seq", -1, "out of range"),
    ],
)
def test_a_malformed_membership_record_is_a_decode_error(
    key: str, value: Value, fault: str
) -> None:
    content = circle.create(OWNER.node_id, "Shelters", History.ALL, seeded("bad")).to_content()
    with pytest.raises(DecodeError, match=fault):
        Change.from_content({**content, key: value})
    with pytest.raises(DecodeError, match="unknown key"):
        Change.from_content({**content, "extra": 1})


# Any order, the same circle ------------------------------------------------------------


def history_of(seed: int) -> list[tuple[bytes, bytes, Change]]:
    """A run of changes with concurrent ones mixed in: members that rekey from a stale
    state, the owner adding and removing, a revoked member trying to act."""
    rng = stdlib_random.Random(seed)
    random = seeded(f"run-{seed}")
    people = [OWNER, B, C, D]
    revoked = frozenset({D.node_id.raw})
    out: list[tuple[bytes, bytes, Change]] = []
    first = circle.create(OWNER.node_id, "Rapid response", History.ALL, random)
    out.append((random(32), OWNER.node_id.raw, first))
    states = [circle.fold(out)]
    for _ in range(12):
        base = rng.choice([s for s in states if s is not None])  # maybe a stale one
        actor = rng.choice(people)
        try:
            if actor is OWNER and rng.random() < 0.5:
                others = [p.node_id for p in people[1:] if p.node_id.raw not in base.members]
                change = circle.add(base, OWNER.node_id, others[:1] or [B.node_id], random)
            elif actor is OWNER:
                inside = [p.node_id for p in people[1:] if p.node_id.raw in base.members]
                change = circle.remove(base, OWNER.node_id, inside[:1], random)
            else:
                change = circle.rekey(base, actor.node_id, revoked, random)
        except LocalProtocolError:
            continue
        out.append((random(32), actor.node_id.raw, change))
        states.append(circle.fold(out, revoked))
    return out


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.randoms(use_true_random=False))
def test_membership_records_applied_in_any_order_converge_to_one_membership_and_epoch(
    seed: int, shuffler: stdlib_random.Random
) -> None:
    records = history_of(seed)
    revoked = frozenset({D.node_id.raw})
    expected = circle.fold(records, revoked)
    for _ in range(4):
        shuffled = list(records)
        shuffler.shuffle(shuffled)
        got = circle.fold(shuffled, revoked)
        assert got == expected
    assert expected is not None and OWNER.node_id.raw in expected.members
    assert expected.key in expected.read_keys


def test_membership_record_has_the_layout_the_spec_gives() -> None:
    change = circle.create(OWNER.node_id, "Shelters", History.NEW_ONLY, seeded("layout"))
    content = change.to_content()
    assert sorted(content) == sorted(
        ["circle", "owner", "salt", "seq", "op", "name", "history", "members", "epoch", "keys"]
    )
    assert content["circle"] == circle.circle_id(OWNER.node_id, change.salt)
    assert Change.from_content(content) == change


# The published vectors (docs/vectors/circle.json) ---------------------------------------

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "vectors" / "circle.json").read_text()
)


def test_circle_vectors_decode_and_the_circle_slot_opens_with_the_epoch_key() -> None:
    owner = Identity(bytes.fromhex(VECTORS["owner_seed"]))
    member = Identity(bytes.fromhex(VECTORS["member_seed"]))
    ops = []
    for case in VECTORS["changes"]:
        change = Change.from_content(unpack(bytes.fromhex(case["content"])))  # type: ignore[arg-type]
        assert (
            change.circle.hex()
            == case["circle_id"]
            == circle.circle_id(owner.node_id, change.salt).hex()
        )
        assert pack(change.to_content()).hex() == case["content"]
        ops.append(change.op.value)
    assert ops == ["create", "add", "remove"]
    box = VECTORS["sealed_to_circle"]
    sealed, key = bytes.fromhex(box["sealed"]), bytes.fromhex(box["epoch_key"])
    assert unseal(sealed, member, None, circle_keys=[key]).hex() == box["plaintext"]
    with pytest.raises(NotForUs):
        unseal(sealed, member, None)  # without the circle's key, not even a member opens it


def test_circle_vectors_are_fresh() -> None:
    script = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "make_circle_vectors.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
