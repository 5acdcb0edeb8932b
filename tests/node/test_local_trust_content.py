"""node.local, node.trust and node.content on real data directories in tmp_path.

Real key files (Argon2id), real SQLite stores and real sealed records: who can open a
published guide is checked with `open_record` and each party's own identity.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from node import peers_circle
from node.content import find, parse_audience, publish_guides, readable, row_of
from node.local import KEY_FILE, Local, Peer
from node.trust import (
    accept_invite,
    create_invite,
    distrust,
    pending_invites,
    redeem_invite,
    resolve_peer,
    trust_node,
)
from protocol import limits
from protocol.envelope import open_record, seal_record
from protocol.errors import (
    CanopyError,
    InviteError,
    KeyFileError,
    NotForUs,
    NotInitialised,
    StoreError,
)
from protocol.identity import Identity, NodeId
from protocol.invite import Invite
from protocol.record import Kind, Record, Scope
from tests.strategies import seeded

PW = b"pw"
NOW = 1_700_000_000_000
DAY = 24 * 3600 * 1000
ADDR = "ws://a.example.org:7420/canopy"

PEER = Identity(b"\x11" * 32)  # a trusted peer of the author
STRANGER = Identity(b"\x22" * 32)  # same network, not a peer
OUTSIDER = Identity(b"\x33" * 32)  # another network altogether


def _prefix_twins() -> tuple[Identity, Identity]:
    """Two identities whose text ids share their first 4 characters (found deterministically)."""
    seen: dict[str, Identity] = {}
    for n in range(100_000):
        ident = Identity(n.to_bytes(32, "big"))
        key = str(ident.node_id)[:4]
        if key in seen:
            return seen[key], ident
        seen[key] = ident
    raise AssertionError("no prefix collision found")


TWIN_A, TWIN_B = _prefix_twins()


@pytest.fixture
async def alice(tmp_path: Path):  # type: ignore[no-untyped-def]
    local = await Local.create(tmp_path / "alice", "Alice Legal Aid", PW)
    yield local
    await local.close()


@pytest.fixture
async def bob(tmp_path: Path):  # type: ignore[no-untyped-def]
    local = await Local.create(tmp_path / "bob", "Bob Shelter", PW)
    yield local
    await local.close()


# -- Local: key file, modes ------------------------------------------------------------------


async def test_open_with_wrong_or_missing_passphrase_raises_key_file_error(tmp_path: Path) -> None:
    data = tmp_path / "d"
    local = await Local.create(data, "Org", PW)
    node_id = local.node_id
    await local.close()
    with pytest.raises(KeyFileError):
        await Local.open(data, b"wrong")
    with pytest.raises(KeyFileError):
        await Local.open(data, None)
    reopened = await Local.open(data, PW)
    try:
        assert reopened.node_id == node_id
        assert await reopened.name() == "Org"
    finally:
        await reopened.close()


async def test_no_passphrase_key_opens_without_one(tmp_path: Path) -> None:
    data = tmp_path / "d"
    local = await Local.create(data, "Server", None)
    node_id, network_key = local.node_id, await local.network_key()
    await local.close()
    assert not Local.key_needs_passphrase(data)
    reopened = await Local.open(data, None)
    try:
        assert reopened.node_id == node_id
        assert await reopened.network_key() == network_key
    finally:
        await reopened.close()


async def test_uninitialised_and_double_create(tmp_path: Path) -> None:
    with pytest.raises(NotInitialised):
        await Local.open(tmp_path / "empty", PW)
    local = await Local.create(tmp_path / "d", "Org", PW)
    await local.close()
    key_before = (tmp_path / "d" / KEY_FILE).read_bytes()
    with pytest.raises(CanopyError, match="already holds"):
        await Local.create(tmp_path / "d", "Other", None)
    assert (tmp_path / "d" / KEY_FILE).read_bytes() == key_before


async def test_key_file_of_another_node_does_not_open_its_store(tmp_path: Path) -> None:
    for name in ("a", "b"):
        await (await Local.create(tmp_path / name, name, PW)).close()
    (tmp_path / "b" / KEY_FILE).write_bytes((tmp_path / "a" / KEY_FILE).read_bytes())
    with pytest.raises(StoreError, match="does not belong"):
        await Local.open(tmp_path / "b", PW)


@pytest.mark.parametrize(("target", "mode"), [("dir", 0o755), ("dir", 0o701), ("key", 0o644)])
async def test_world_readable_data_dir_or_key_file_refused(
    tmp_path: Path, target: str, mode: int
) -> None:
    data = tmp_path / "d"
    await (await Local.create(data, "Org", PW)).close()
    path = data if target == "dir" else data / KEY_FILE
    os.chmod(path, mode)
    with pytest.raises(CanopyError, match="accessible to other users"):
        await Local.open(data, PW)
    os.chmod(path, 0o700 if target == "dir" else 0o600)
    await (await Local.open(data, PW)).close()


async def test_data_dir_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "d"
    old = os.umask(0o022)  # the common default: files readable by everyone unless chmodded
    try:
        data.mkdir(mode=0o755)
        local = await Local.create(data, "Org", PW)
        await local.save_peer(Peer(PEER.node_id, name="p"))
        files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
        await local.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert {KEY_FILE, "canopy.db", "canopy.db-wal"} <= files.keys()
    assert {name: m for name, m in files.items() if m & 0o077} == {}


# -- invites ---------------------------------------------------------------------------------


async def test_invite_accepted_by_fresh_node_adopts_network_key(alice: Local, bob: Local) -> None:
    alice_key, bob_key = await alice.network_key(), await bob.network_key()
    assert alice_key != bob_key
    invite = await create_invite(alice, [ADDR], NOW, DAY)
    accepted = await accept_invite(bob, invite.to_code(), NOW + 1000)
    peer = accepted.peer
    assert not accepted.added and [n.name for n in await bob.networks()] == ["default"]
    assert peer.node_id == alice.node_id
    assert peer.name == "Alice Legal Aid"
    assert peer.addresses == [ADDR]
    assert await bob.network_key() == alice_key
    assert list(await bob.peers()) == [alice.node_id]
    # Both sides derive the same one-time capability for the redeem handshake.
    (pending,) = await pending_invites(alice, NOW)
    assert (await bob.peers())[alice.node_id].invite_capability == pending.capability
    assert pending.expires == NOW + DAY


async def test_create_invite_needs_an_address(alice: Local) -> None:
    with pytest.raises(CanopyError, match="address"):
        await create_invite(alice, [], NOW, DAY)
    assert await alice.store.rows("invites") == {}


async def test_invite_for_another_network_adds_it_when_node_has_peers(
    alice: Local, bob: Local
) -> None:
    bob_key = await bob.network_key()
    await trust_node(bob, str(PEER.node_id), ADDR, "partner", NOW)
    code = (await create_invite(alice, [ADDR], NOW, DAY)).to_code()
    accepted = await accept_invite(bob, code, NOW)
    assert accepted.added and [n.key for n in accepted.beside] == [bob_key]
    assert await bob.network_key() == bob_key  # the first network stays first
    assert await bob.network_keys() == [bob_key, await alice.network_key()]
    assert set(await bob.peers()) == {PEER.node_id, alice.node_id}
    assert (await bob.peers())[alice.node_id].networks == [accepted.network.tag]


async def test_invite_for_another_network_adds_it_when_node_has_pending_invites(
    alice: Local, bob: Local
) -> None:
    bob_key = await bob.network_key()
    await create_invite(bob, [ADDR], NOW, DAY)
    code = (await create_invite(alice, [ADDR], NOW, DAY)).to_code()
    accepted = await accept_invite(bob, code, NOW, network_name="Uganda shelters")
    assert accepted.added and accepted.network.name == "Uganda shelters"
    assert await bob.network_key() == bob_key
    assert [n.name for n in await bob.networks()] == ["default", "Uganda shelters"]


async def test_invite_on_the_same_network_accepted_with_peers(
    tmp_path: Path, alice: Local, bob: Local
) -> None:
    await accept_invite(bob, (await create_invite(alice, [ADDR], NOW, DAY)).to_code(), NOW)
    carol = await Local.create(
        tmp_path / "carol", "Carol", PW, network_key=await alice.network_key()
    )
    try:
        code = (await create_invite(carol, ["wss://carol.example/canopy"], NOW, DAY)).to_code()
        assert not (await accept_invite(bob, code, NOW)).added
        assert set(await bob.peers()) == {alice.node_id, carol.node_id}
    finally:
        await carol.close()


async def test_own_invite_refused(alice: Local) -> None:
    code = (await create_invite(alice, [ADDR], NOW, DAY)).to_code()
    with pytest.raises(InviteError, match="own invite"):
        await accept_invite(alice, code, NOW)
    assert await alice.peers() == {}


async def test_expired_invite_refused(alice: Local, bob: Local) -> None:
    bob_key = await bob.network_key()
    invite = await create_invite(alice, [ADDR], NOW - 2 * DAY, DAY)
    assert invite.expires < NOW
    with pytest.raises(InviteError, match="expired"):
        await accept_invite(bob, invite.to_code(), NOW)
    with pytest.raises(InviteError, match="expired"):
        await accept_invite(bob, invite.to_code(), invite.expires)  # expiry instant is past
    assert await bob.peers() == {}
    assert await bob.network_key() == bob_key
    # The inviter forgets it, too.
    assert await pending_invites(alice, NOW) == []
    assert await alice.store.rows("invites") == {}


async def test_tampered_invite_refused(alice: Local, bob: Local) -> None:
    good = await create_invite(alice, [ADDR], NOW, DAY)
    tampered = Invite(  # Alice's signature over a different network key
        good.node_id,
        good.name,
        good.addresses,
        bytes(32),
        good.secret,
        good.expires,
        good.signature,
    )
    bob_key = await bob.network_key()
    with pytest.raises(InviteError, match="signature"):
        await accept_invite(bob, tampered.to_code(), NOW)
    assert await bob.peers() == {}
    assert await bob.network_key() == bob_key


async def test_redeem_invite_trusts_the_redeemer_and_burns_the_invite(
    alice: Local, bob: Local
) -> None:
    await create_invite(alice, [ADDR], NOW, DAY)
    (pending,) = await pending_invites(alice, NOW)
    peer = await redeem_invite(alice, pending, bob.node_id, NOW)
    assert peer.node_id == bob.node_id and peer.added == NOW
    assert list(await alice.peers()) == [bob.node_id]
    assert await pending_invites(alice, NOW) == []
    assert await alice.store.rows("invites") == {}


# -- trust, distrust, resolving peers ----------------------------------------------------------


async def test_trust_node_by_id(alice: Local) -> None:
    epoch = await alice.store.epoch()
    peer = await trust_node(alice, f"  {str(PEER.node_id).upper()}\n", ADDR, "Clinic", NOW)
    assert peer.node_id == PEER.node_id
    again = await trust_node(alice, str(PEER.node_id), "wss://b.example/canopy", "", NOW + 1)
    assert again.name == "Clinic"  # kept when no new name is given
    assert again.addresses == ["wss://b.example/canopy", ADDR]
    assert again.added == NOW
    assert (await alice.peers())[PEER.node_id].addresses == again.addresses
    assert await alice.store.epoch() > epoch  # a running node is told


@pytest.mark.parametrize(
    ("text", "address", "message"),
    [
        ("notanid", None, "not a node id"),
        ("a" * 51, None, "not a node id"),
        (str(PEER.node_id)[:-1] + "1", None, "not a node id"),  # '1' is not base32
        (str(PEER.node_id), "http://x.example/canopy", "ws:// or wss://"),
        (str(PEER.node_id), "ws://" + "x" * limits.MAX_ADDRESS_LEN, "ws:// or wss://"),
    ],
)
async def test_trust_node_bad_input(
    alice: Local, text: str, address: str | None, message: str
) -> None:
    with pytest.raises(CanopyError, match=message):
        await trust_node(alice, text, address, "", NOW)
    assert await alice.peers() == {}


async def test_trust_own_id_refused(alice: Local) -> None:
    with pytest.raises(CanopyError, match="own id"):
        await trust_node(alice, str(alice.node_id), None, "", NOW)
    assert await alice.peers() == {}


async def test_resolve_peer_by_id_prefix_and_name(alice: Local) -> None:
    await trust_node(alice, str(PEER.node_id), None, "Clinic", NOW)
    await trust_node(alice, str(STRANGER.node_id), None, "", NOW)
    text = str(PEER.node_id)
    for ref in (text, text[:4], text[:10].upper(), " Clinic "):
        assert (await resolve_peer(alice, ref)).node_id == PEER.node_id, ref
    with pytest.raises(CanopyError, match="no trusted peer"):
        await resolve_peer(alice, text[:3])  # too short to be a prefix
    with pytest.raises(CanopyError, match="no trusted peer"):
        await resolve_peer(alice, "clinic")  # names match exactly
    with pytest.raises(CanopyError, match="no trusted peer"):
        await resolve_peer(alice, str(OUTSIDER.node_id))


async def test_ambiguous_prefix_refused(alice: Local) -> None:
    twin_a, twin_b = str(TWIN_A.node_id), str(TWIN_B.node_id)
    assert twin_a[:4] == twin_b[:4] and twin_a != twin_b
    await trust_node(alice, twin_a, None, "", NOW)
    await trust_node(alice, twin_b, None, "", NOW)
    with pytest.raises(CanopyError, match="matches 2 peers"):
        await resolve_peer(alice, twin_a[:4])
    with pytest.raises(CanopyError, match="matches 2 peers"):
        await distrust(alice, twin_a[:4])
    assert len(await alice.peers()) == 2  # nothing withdrawn on an ambiguous reference
    longer = next(n for n in range(5, 52) if twin_a[:n] != twin_b[:n])
    assert (await distrust(alice, twin_a[:longer])).node_id == TWIN_A.node_id
    assert list(await alice.peers()) == [TWIN_B.node_id]


async def test_distrust_withdraws_at_once(alice: Local) -> None:
    await trust_node(alice, str(PEER.node_id), ADDR, "Clinic", NOW)
    epoch = await alice.store.epoch()
    assert (await distrust(alice, "Clinic")).node_id == PEER.node_id
    assert await alice.peers() == {}
    assert await alice.store.epoch() > epoch
    with pytest.raises(CanopyError, match="no trusted peer"):
        await distrust(alice, "Clinic")
    with pytest.raises(CanopyError, match="no trusted peer"):
        await distrust(alice, "nobody")


async def test_peer_name_cannot_shadow_another_peers_id_prefix_on_distrust(
    alice: Local,
) -> None:
    victim = str(PEER.node_id)
    await trust_node(alice, victim, None, "", NOW)
    await trust_node(alice, str(STRANGER.node_id), None, victim[:10], NOW)  # name = short id
    try:
        withdrawn = await distrust(alice, victim[:10])
    except CanopyError:
        withdrawn = None  # refusing as ambiguous is fine too
    assert withdrawn is None or withdrawn.node_id == PEER.node_id


# -- publishing and who can open what ----------------------------------------------------------


def guide_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def publish(alice: Local, tmp_path: Path, to: str, text: str = "# Title\n\nBody") -> Record:
    (item,) = await publish_guides(
        alice,
        [guide_file(tmp_path, "g.md", text)],
        title=None,
        lang="en",
        topics=["digital-security"],
        region="KE",
        to=to,
        now_ms=NOW,
    )
    record = item[0]
    assert await alice.store.get_records([record.id]) == {record.id: record.to_bytes()}
    return record


def can_open(record: Record, who: Identity, network_key: bytes | None) -> bool:
    try:
        open_record(record, who, network_key)
    except NotForUs:
        return False
    return True


async def test_peers_scoped_guide_readable_by_peers_only(alice: Local, tmp_path: Path) -> None:
    """`--to peers`: sealed to the peers circle, whose key only the peers receive."""
    await trust_node(alice, str(PEER.node_id), None, "Clinic", NOW)
    nk = await alice.network_key()
    record = await publish(alice, tmp_path, "peers", "# Safe routes\n\ntext")
    record.verify()
    assert record.scope is Scope.PEERS and record.kind is Kind.GUIDE
    state = await peers_circle.mine(alice)
    assert state is not None and state.members == {alice.node_id.raw, PEER.node_id.raw}
    body = open_record(record, PEER, None, circle_keys=state.read_keys)
    assert body.content["title"] == "Safe routes"
    assert not can_open(record, STRANGER, nk)  # holding the network key is not enough
    assert not can_open(record, OUTSIDER, None)


async def test_peers_now_guide_readable_by_the_peers_of_that_moment_only(
    alice: Local, tmp_path: Path
) -> None:
    await trust_node(alice, str(PEER.node_id), None, "Clinic", NOW)
    nk = await alice.network_key()
    record = await publish(alice, tmp_path, "peers-now", "# Safe routes\n\ntext")
    record.verify()
    assert record.scope is Scope.PEERS and record.kind is Kind.GUIDE
    body = open_record(record, PEER, None)
    assert body.content["title"] == "Safe routes"
    assert body.content["text"] == "# Safe routes\n\ntext"
    assert body.author == alice.node_id
    assert can_open(record, alice.identity, None)
    assert not can_open(record, STRANGER, nk)  # holding the network key is not enough
    assert not can_open(record, OUTSIDER, None)


async def test_id_scoped_guide_readable_only_by_that_id(alice: Local, tmp_path: Path) -> None:
    await trust_node(alice, str(PEER.node_id), None, "Clinic", NOW)
    nk = await alice.network_key()
    record = await publish(alice, tmp_path, str(STRANGER.node_id))  # need not be a peer
    assert record.scope is Scope.NETWORK  # relayed by everyone, readable by one
    assert can_open(record, STRANGER, None)
    assert can_open(record, alice.identity, None)
    assert not can_open(record, PEER, nk)
    assert not can_open(record, OUTSIDER, nk)


async def test_guide_to_peer_names_and_prefixes(alice: Local, tmp_path: Path) -> None:
    await trust_node(alice, str(PEER.node_id), None, "Clinic", NOW)
    await trust_node(alice, str(STRANGER.node_id), None, "Lawyers", NOW)
    record = await publish(alice, tmp_path, f"Clinic, {str(STRANGER.node_id)[:6]}")
    assert can_open(record, PEER, None) and can_open(record, STRANGER, None)
    assert not can_open(record, OUTSIDER, await alice.network_key())


async def test_network_scoped_guide_readable_with_the_network_key(
    alice: Local, tmp_path: Path
) -> None:
    nk = await alice.network_key()
    record = await publish(alice, tmp_path, "network")
    assert record.scope is Scope.NETWORK
    assert can_open(record, STRANGER, nk)
    assert can_open(record, OUTSIDER, nk)  # anyone holding the key
    assert not can_open(record, OUTSIDER, bytes(32))
    assert not can_open(record, OUTSIDER, None)


@pytest.mark.parametrize(
    ("to", "message"),
    [("nosuchpeer", "not a node id"), (",", "--to must be"), ("", "--to must be")],
)
async def test_bad_audience(alice: Local, tmp_path: Path, to: str, message: str) -> None:
    with pytest.raises(CanopyError, match=message):
        await publish(alice, tmp_path, to)
    assert await alice.store.count_by_kind() == {}


async def test_audience_matching_two_peers_refused(alice: Local) -> None:
    await trust_node(alice, str(PEER.node_id), None, "Same", NOW)
    await trust_node(alice, str(STRANGER.node_id), None, "Same", NOW)
    with pytest.raises(CanopyError, match="several peers"):
        await parse_audience(alice, "Same")


async def test_peer_name_cannot_redirect_a_guide_meant_for_another_peer(
    alice: Local, tmp_path: Path
) -> None:
    intended = str(PEER.node_id)
    await trust_node(alice, intended, None, "", NOW)
    await trust_node(alice, str(STRANGER.node_id), None, intended[:10], NOW)
    try:
        record = await publish(alice, tmp_path, intended[:10])
    except CanopyError:
        return  # refusing as ambiguous is fine too
    assert can_open(record, PEER, None)
    assert not can_open(record, STRANGER, None)


async def test_two_files_two_records_with_titles(alice: Local, tmp_path: Path) -> None:
    a = guide_file(tmp_path, "checklist.md", "no heading here\n")
    b = guide_file(tmp_path, "b.md", "intro\n#   Digital security  \nmore")
    published = await publish_guides(
        alice, [a, b], title=None, lang="sw", topics=[], region="", to="peers", now_ms=NOW
    )
    assert [t for _, t in published] == ["checklist", "Digital security"]
    assert len({r.id for r, _ in published}) == 2
    assert await alice.store.count_by_kind() == {"guide": 2, "circle": 1}  # the peers circle
    forced = await publish_guides(
        alice, [a], title="Given", lang="", topics=[], region="", to="peers", now_ms=NOW + 1
    )
    assert forced[0][1] == "Given"
    assert open_record(forced[0][0], alice.identity, None).content["title"] == "Given"


@pytest.mark.parametrize("bad", ["missing", "directory", "latin1", "oversized"])
async def test_bad_file_gives_canopy_error_and_stores_nothing(
    alice: Local, tmp_path: Path, bad: str
) -> None:
    good = guide_file(tmp_path, "good.md", "# Good\n")
    target = tmp_path / "bad.md"
    if bad == "directory":
        target.mkdir()
    elif bad == "latin1":
        target.write_bytes("Café rights".encode("latin-1"))
    elif bad == "oversized":
        target.write_bytes(b"a" * (limits.MAX_GUIDE_TEXT_BYTES + 1))
    expected = {
        "missing": "cannot read",
        "directory": "cannot read",
        "latin1": "not UTF-8",
        "oversized": "too large",
    }[bad]
    with pytest.raises(CanopyError, match=expected) as info:
        await publish_guides(
            alice,
            [good, target],
            title=None,
            lang="",
            topics=[],
            region="",
            to="peers",
            now_ms=NOW,
        )
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)
    assert await alice.store.count_by_kind() == {}  # the good file was not published either
    assert await alice.store.max_seq() == 0


async def test_largest_allowed_guide_fits_in_a_record(alice: Local, tmp_path: Path) -> None:
    path = tmp_path / "big.md"
    path.write_bytes(b"x" * limits.MAX_GUIDE_TEXT_BYTES)
    ((record, _),) = await publish_guides(
        alice, [path], title=None, lang="", topics=[], region="", to="network", now_ms=NOW
    )
    assert len(record.to_bytes()) <= limits.MAX_RECORD_BYTES
    assert Record.from_bytes(record.to_bytes()) == record
    text = open_record(record, alice.identity, None).content["text"]
    assert isinstance(text, str) and len(text) == limits.MAX_GUIDE_TEXT_BYTES


# -- reading: readable() and find() -------------------------------------------------------------


def foreign_record(author: Identity, to: Identity, *, created: int = NOW) -> Record:
    return seal_record(
        author,
        Kind.GUIDE,
        {"title": "not for alice", "text": "x"},
        created=created,
        expires=created + DAY,
        scope=Scope.NETWORK,
        recipients=[to.node_id],
        network_key=None,
        random=seeded("foreign"),
    )


async def test_readable_lists_what_we_can_open_and_counts_the_rest(
    alice: Local, tmp_path: Path
) -> None:
    mine = await publish(alice, tmp_path, "peers")
    for_peer = foreign_record(OUTSIDER, PEER)
    for_us = foreign_record(OUTSIDER, alice.identity, created=NOW + 1)
    await alice.store.put_records([row_of(for_peer, local=False), row_of(for_us, local=False)], NOW)
    items, unreadable = await readable(alice, Kind.GUIDE, NOW + 10)
    assert {it.record.id for it in items} == {mine.id, for_us.id}
    assert unreadable == 1
    assert {it.body.author for it in items} == {alice.node_id, OUTSIDER.node_id}
    assert await readable(alice, Kind.CONTACT, NOW) == ([], 0)
    # Once expired, nothing is listed.
    assert await readable(alice, Kind.GUIDE, NOW + limits.DEFAULT_GUIDE_LIFETIME_MS) == ([], 0)


async def test_find_by_full_and_short_ids(alice: Local, tmp_path: Path) -> None:
    record = await publish(alice, tmp_path, "peers", "# Found\n")
    full = record.id.hex()
    for ref in (full, full[:8], full[:9], full[:8].upper(), f"  {full[:12]}\n"):
        found = await find(alice, ref, NOW)
        assert found.record.id == record.id, ref
        assert found.body.content["title"] == "Found"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("zz", "not a record id"),
        ("1234567", "not a record id"),  # shorter than 8
        ("g" * 8, "not a record id"),
        ("0" * 65, "not a record id"),
        ("", "not a record id"),
    ],
)
async def test_find_rejects_non_ids(alice: Local, ref: str, message: str) -> None:
    with pytest.raises(CanopyError, match=message):
        await find(alice, ref, NOW)


async def test_find_unknown_and_unreadable(alice: Local, tmp_path: Path) -> None:
    mine = await publish(alice, tmp_path, "peers")
    unknown = bytes(b ^ 0xFF for b in mine.id[:4]).hex()
    with pytest.raises(CanopyError, match="no record"):
        await find(alice, unknown, NOW)
    other = foreign_record(OUTSIDER, PEER)
    await alice.store.put_records([row_of(other, local=False)], NOW)
    with pytest.raises(CanopyError, match="cannot read"):
        await find(alice, other.id.hex()[:10], NOW)


async def test_find_ambiguous_short_id(alice: Local) -> None:
    record = foreign_record(OUTSIDER, alice.identity)
    base = row_of(record, local=False)
    twins = [
        type(base)(
            id=bytes.fromhex("abcdef01") + bytes([n]) * 28,
            kind=base.kind,
            scope=base.scope,
            created=base.created,
            expires=base.expires,
            author=base.author,
            local=False,
            data=base.data,
        )
        for n in (1, 2)
    ]
    await alice.store.put_records(twins, NOW)
    with pytest.raises(CanopyError, match="several records"):
        await find(alice, "abcdef01", NOW)
    assert (await find(alice, "abcdef0101", NOW)).record.id == record.id  # longer prefix: unique


async def test_expired_guide_not_shown(alice: Local, tmp_path: Path) -> None:
    past = NOW - limits.DEFAULT_GUIDE_LIFETIME_MS - DAY
    ((record, _),) = await publish_guides(
        alice,
        [guide_file(tmp_path, "old.md", "# Old\n")],
        title=None,
        lang="",
        topics=[],
        region="",
        to="peers",
        now_ms=past,
    )
    assert record.expires < NOW
    assert await readable(alice, Kind.GUIDE, NOW) == ([], 0)
    with pytest.raises(CanopyError):
        await find(alice, record.id.hex(), NOW)


def test_node_id_of_twins_is_real() -> None:
    """The twins used above are real, distinct identities (guards the collision search)."""
    assert NodeId.from_text(str(TWIN_A.node_id)) == TWIN_A.node_id
    assert TWIN_A.seed != TWIN_B.seed


async def test_runtime_file_and_database_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "d"
    old = os.umask(0o000)  # the worst umask: only explicit modes protect the files
    try:
        local = await Local.create(data, "Org", PW)
        local.write_runtime("http://127.0.0.1:1", "token")
        await local.save_peer(Peer(PEER.node_id, name="p"))
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in data.iterdir()}
        await local.close()
    finally:
        os.umask(old)
    assert {"node.json", "canopy.db", KEY_FILE} <= modes.keys()
    assert {name: m for name, m in modes.items() if m & 0o077} == {}
