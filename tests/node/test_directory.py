"""node.directory on a real data directory: what each policy writes, what the store lets
travel, the in-memory index (dedupe, region/lang/text matching, ranking, stale marks)."""

from __future__ import annotations

import itertools
import random
import time
from pathlib import Path

import pytest

from node import directory
from node.contact_index import ContactIndex
from node.entries import Opened
from node.local import Local
from node.trust import trust_node
from protocol.contact import (
    DAY_MS,
    UNKNOWN_DISTANCE,
    Contact,
    Filter,
    Share,
    Vouch,
    VouchAbout,
    is_stale,
    rank_score,
)
from protocol.errors import CanopyError
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

PEER = Identity(b"\x11" * 32)
UID = bytes(range(16))
ADDR = "ws://peer.example:7420/canopy"


async def _local(tmp_path: Path) -> Local:
    local = await Local.create(tmp_path / "d", "Org", None)
    await trust_node(local, str(PEER.node_id), ADDR, "Peer", int(time.time() * 1000))
    return local


async def _add(
    local: Local, share: str, *, review_days: int = 180, now_ms: int = 0, **kw: str
) -> directory.Added:
    draft = directory.Draft(
        **{"kind": "lawyer", "name": f"Name {share}", "region": "KE-28", **kw},
        langs=["sw"],
        channels=["phone:+254700000001"],
        specialties=["land-rights"],
    )
    return await directory.add_contact(
        local,
        draft,
        share=share,
        to=None,
        review_days=review_days,
        now_ms=now_ms or int(time.time() * 1000),
    )


async def test_policies_map_to_scopes_and_private_never_travels(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        peers = await _add(local, "peers")
        network = await _add(local, "network")
        request = await _add(local, "on-request")
        private = await _add(local, "private")
        assert peers.record.scope is Scope.PEERS
        assert network.record.scope is Scope.NETWORK
        assert request.record.scope is Scope.NETWORK and request.details is not None
        assert request.details.scope is Scope.PRIVATE
        assert private.record.scope is Scope.PRIVATE
        now = int(time.time() * 1000)
        offered = {i for _, i in await local.store.exchangeable_items(PEER.node_id.raw, now)}
        ids = [peers.record.id, network.record.id, request.record.id]
        assert set(ids) <= offered
        assert private.record.id not in offered and request.details.id not in offered
        asked = [*ids, private.record.id, request.details.id]
        served = await local.store.records_for_peer(asked, PEER.node_id.raw, now)
        assert set(served) == set(ids)
    finally:
        await local.close()


async def test_index_dedupes_matches_and_marks_stale(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        await _add(local, "on-request", name="Nyumba Salama", kind="shelter", region="KE-30")
        await _add(local, "network", name="Old Contact", review_days=1,
                   now_ms=int(time.time() * 1000) - 3 * DAY_MS)  # fmt: skip
        now = int(time.time() * 1000)
        rows = await directory.local_query(local, Filter.build(kind="shelter"), now)
        assert [r["name"] for r in rows] == ["Nyumba Salama"]  # details win over the teaser
        rows = await directory.local_query(local, Filter.build(text="nairobi"), now)
        assert [r["name"] for r in rows] == ["Nyumba Salama"]  # KE-30 is Nairobi City
        rows = await directory.local_query(local, Filter.build(text="old"), now)
        assert rows[0]["stale"] is True
        due = await directory.review(local, now)
        assert [r["name"] for r in due] == ["Old Contact"] and due[0]["state"] == "overdue"
    finally:
        await local.close()


async def test_withdrawing_a_teaser_withdraws_its_details(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        added = await _add(local, "on-request")
        assert added.details is not None
        tombstone = await directory.withdraw(local, added.record.id.hex(), int(time.time() * 1000))
        assert tombstone.kind is Kind.TOMBSTONE
        held = await local.store.get_records([added.record.id, added.details.id])
        assert held == {}
        with pytest.raises(CanopyError, match="withdrawn"):
            await directory.vouch(local, added.record.id.hex(), int(time.time() * 1000))
    finally:
        await local.close()


async def test_vouch_scope_follows_the_contact(tmp_path: Path) -> None:
    local = await _local(tmp_path)
    try:
        now = int(time.time() * 1000)
        network = await _add(local, "network")
        peers = await _add(local, "peers")
        v_net, _ = await directory.vouch(local, network.record.id.hex(), now)
        v_peers, _ = await directory.vouch(local, peers.record.id.hex(), now)
        v_org, what = await directory.vouch(local, "Peer", now)
        assert Record.from_bytes(v_net.to_bytes()).scope is Scope.NETWORK
        assert v_peers.scope is Scope.PEERS
        assert v_org.scope is Scope.NETWORK and "organisation" in what
        with pytest.raises(CanopyError):
            await directory.vouch(local, str(local.node_id), now)
    finally:
        await local.close()


async def test_contacts_vouched_only_by_a_revoked_key_are_unverified(tmp_path: Path) -> None:
    from node.revocation import mark_revoked
    from protocol.revocation import make_revocation

    local = await _local(tmp_path)
    try:
        await _add(local, "network", name="Wakili Mwema")
        now = int(time.time() * 1000)
        (before,) = await directory.local_query(local, Filter.build(kind="lawyer"), now)
        assert before["unverified"] is False
        # The author's key is declared compromised: anyone holding it may have written this.
        revocation = make_revocation(local.identity, created=now)
        assert await mark_revoked(local, revocation, now)
        (after,) = await directory.local_query(local, Filter.build(kind="lawyer"), now)
        assert after["unverified"] is True
        assert after["score"] <= before["score"] / 10
    finally:
        await local.close()


def _expected(
    index: ContactIndex,
    flt: Filter,
    now: int,
    distances: dict[bytes, int],
    limit: int,
    answerable: bool,
) -> list[tuple[bytes, float, int, bool, bool, tuple[bytes, ...]]]:
    """Every matching contact scored with the SPEC formula, straight from the vouches."""
    best: dict[tuple[bytes, bytes], tuple[bool, float, bytes, tuple[object, ...]]] = {}
    for e in index.entries.values():
        if e.expires <= now or (answerable and not e.answerable()):
            continue
        if not flt.matches(e.contact, e.words):
            continue
        vouchers = {e.author: e.created}
        for v in index.vouches.values():
            if v.vouch.about is VouchAbout.CONTACT and (v.vouch.subject, v.vouch.uid) == e.key:
                vouchers[v.voucher] = max(vouchers.get(v.voucher, 0), v.created)
        trusted = {v: t for v, t in vouchers.items() if v not in index.revoked}
        counted = trusted or vouchers
        last = max((t for v, t in counted.items() if v != e.author or t > e.created), default=0)
        distance = min((distances.get(v, UNKNOWN_DISTANCE) for v in trusted), default=4)
        stale = is_stale(e.contact.review, last, now)
        score = rank_score(distance, len(trusted), max(e.created, last), now, stale)
        score = score if trusted else score / 10
        row = (e.rid, score, distance, stale, not trusted, tuple(sorted(vouchers)))
        item = (not e.contact.teaser, score, e.rid, row)
        have = best.get(e.key)
        if have is None or item[:3] > have[:3]:
            best[e.key] = item
    ranked = sorted(best.values(), key=lambda i: (i[1], i[2]), reverse=True)
    return [i[3] for i in ranked[:limit]]  # type: ignore[misc]


def test_search_agrees_with_scoring_every_match() -> None:
    """Posting lists, the ranking walk (bounds that only fall with time) and cached trust
    give exactly what scoring every matching contact does, as vouches, revocations,
    withdrawals, new contacts and time come and go."""
    rng = random.Random(4)
    me = b"\x00" * 32
    orgs = [bytes([i]) * 32 for i in range(1, 9)]
    index = ContactIndex(me)
    start = 1_800_000_000_000
    kinds = ["lawyer", "shelter", "medical"]
    regions = ["KE", "KE-28", "KE-30", "TZ", "UG"]
    langs = ["sw", "en", "fr", "sw-KE"]
    uids: list[tuple[bytes, bytes]] = []
    serial = iter(range(10**6))

    def rid() -> bytes:
        return next(serial).to_bytes(32, "big")

    def add_contact() -> None:
        author = rng.choice(orgs)
        same = uids and rng.random() < 0.15  # a teaser or a second copy of a known contact
        author, uid = rng.choice(uids) if same else (author, rng.randbytes(16))
        uids.append((author, uid))
        details = Contact(
            uid=uid,
            share=Share.NETWORK if rng.random() < 0.8 else Share.ON_REQUEST,
            kind=rng.choice(kinds),
            region=rng.choice(regions),
            langs=tuple(rng.sample(langs, rng.randint(1, 2))),
            specialties=tuple(rng.sample(["land-rights", "asylum", "gbv"], rng.randint(0, 2))),
            name=f"{rng.choice(['Amina', 'Juma', 'Zoë'])} {rng.randint(1, 50)}",
            channels=(("phone", "+254700000001"),),
            review=start + rng.randint(-30, 200) * DAY_MS,
        )
        contact = details.teaser_of(author) if rng.random() < 0.2 else details
        created = start - rng.randint(0, 500) * DAY_MS
        expires = start + rng.choice([-1, 400]) * DAY_MS
        scope = rng.choice([Scope.NETWORK, Scope.NETWORK, Scope.PEERS])
        opened = Opened(rid(), Kind.CONTACT, author, scope, created, expires, contact.to_content())
        assert index.add_opened(opened)

    def add_vouch() -> None:
        if rng.random() < 0.5:
            subject, uid = rng.choice(uids)
            vouch = Vouch(VouchAbout.CONTACT, subject, uid)
        else:
            vouch = Vouch(VouchAbout.PEER, rng.choice(orgs))
        voucher = rng.choice([me, *orgs])
        created = start - rng.randint(0, 400) * DAY_MS
        opened = Opened(
            rid(), Kind.VOUCH, voucher, Scope.NETWORK, created, start + 400 * DAY_MS,
            vouch.to_content(),
        )  # fmt: skip
        assert index.add_opened(opened)

    for _ in range(400):
        add_contact()
    for _ in range(40):
        add_vouch()
    filters = [
        Filter(),
        Filter.build(kind="lawyer"),
        Filter.build(region="KE"),
        Filter.build(region="KE-28"),
        Filter.build(kind="shelter", lang="sw"),
        Filter.build(text="am"),
        Filter.build(text="land", region="KE-30"),
        Filter.build(text="nairobi"),
    ]
    now = start
    peers = orgs[:2]
    for step in range(16):
        if step == 8:
            peers = orgs[2:3]
        distances = index.distances(peers)
        for flt, limit, answerable in itertools.product(filters, (1, 5, 20, 500), (False, True)):
            when = now - 2 * DAY_MS if limit == 5 else now  # clocks can go back
            got = index.search(flt, when, distances, limit, answerable)
            rows = [
                (h.entry.rid, h.score, h.distance, h.stale, h.unverified, h.vouchers) for h in got
            ]
            want = _expected(index, flt, when, distances, limit, answerable)
            assert rows == want, (step, flt, limit, answerable)
        # change the world a little, then ask again (later)
        action = step % 4
        if action == 0:
            for _ in range(10):
                add_contact()
        elif action == 1:
            for _ in range(5):
                add_vouch()
        elif action == 2:
            index.remove(
                rng.sample(sorted(index.entries), 20) + rng.sample(sorted(index.vouches), 3)
            )
        elif step % 8 == 7:
            index.set_revoked(rng.sample(orgs, step % 3))
        now += rng.choice([0, 3_600_000, 40 * DAY_MS])


def test_network_query_overlay_keeps_revoked_keys() -> None:
    author = b"\x05" * 32
    index = ContactIndex(b"\x00" * 32)
    contact = Contact(UID, Share.NETWORK, "lawyer", "KE", ("sw",), name="Wakili", review=0)
    opened = Opened(
        b"\x01" * 32, Kind.CONTACT, author, Scope.NETWORK, 1, 2**40, contact.to_content()
    )
    assert index.add_opened(opened)
    index.set_revoked([author])
    scratch = index.overlay(Filter.build(kind="lawyer"), 0)
    (hit,) = scratch.search(Filter.build(kind="lawyer"), 0, scratch.distances([]))
    assert hit.unverified


def test_own_contacts_kept_by_the_index_match_a_pass_over_every_entry() -> None:
    """The review queue starts from `own()`, kept as records come and go: always exactly the
    contacts this node wrote or vouched for, as a scan of every entry finds them."""
    rng = random.Random(13)
    me = b"\x00" * 32
    authors = [me, b"\x01" * 32, b"\x02" * 32]
    index = ContactIndex(me)
    serial = iter(range(10**6))
    keys: list[tuple[bytes, bytes]] = []

    def rid() -> bytes:
        return next(serial).to_bytes(32, "big")

    def scan() -> set[bytes]:
        vouched = {
            (v.vouch.subject, v.vouch.uid)
            for v in index.vouches.values()
            if v.voucher == me and v.vouch.about is VouchAbout.CONTACT
        }
        return {r for r, e in index.entries.items() if e.author == me or e.key in vouched}

    for step in range(300):
        action = rng.random()
        if action < 0.45 or not keys:
            again = keys and rng.random() < 0.2  # a second copy of a known contact
            author, uid = rng.choice(keys) if again else (rng.choice(authors), rng.randbytes(16))
            keys.append((author, uid))
            contact = Contact(uid, Share.NETWORK, "lawyer", "KE", ("sw",), name="N", review=0)
            opened = Opened(rid(), Kind.CONTACT, author, Scope.NETWORK, 1, 2**40,
                            contact.to_content())  # fmt: skip
            assert index.add_opened(opened)
        elif action < 0.75:
            subject, uid = rng.choice(keys)
            vouch = Vouch(VouchAbout.CONTACT, subject, uid)
            opened = Opened(rid(), Kind.VOUCH, rng.choice(authors), Scope.NETWORK, 1, 2**40,
                            vouch.to_content())  # fmt: skip
            assert index.add_opened(opened)
        else:
            held = sorted(index.entries) + sorted(index.vouches)
            index.remove(rng.sample(held, min(len(held), rng.randint(1, 4))))
        assert {e.rid for e in index.own()} == scan(), step
    assert scan(), "the walk never held a contact of ours: it tested nothing"


def test_expired_records_taken_off_the_heap_match_a_pass_over_every_entry() -> None:
    """The expiry pass pops a heap instead of walking 100,000 entries on the event loop: it
    must give exactly the expired contacts and vouches a scan finds, each once, as records
    come, are withdrawn before they expire (even re-added), and time passes; and the heap
    must not keep growing with records long gone."""
    rng = random.Random(15)
    me = b"\x00" * 32
    index = ContactIndex(me)
    serial = iter(range(10**6))
    now = 1_800_000_000_000
    keys: list[tuple[bytes, bytes]] = []
    gone: list[Opened] = []
    expired_total = 0

    def rid() -> bytes:
        return next(serial).to_bytes(32, "big")

    def opened_contact() -> Opened:
        uid = rng.randbytes(16)
        keys.append((me, uid))
        contact = Contact(uid, Share.NETWORK, "lawyer", "KE", ("sw",), name="N", review=0)
        expires = now + rng.randint(-5, 60) * DAY_MS
        return Opened(rid(), Kind.CONTACT, me, Scope.NETWORK, 1, expires, contact.to_content())

    for step in range(400):
        action = rng.random()
        if action < 0.5 or not keys:
            assert index.add_opened(opened_contact())
        elif action < 0.65:
            subject, uid = rng.choice(keys)
            vouch = Vouch(VouchAbout.CONTACT, subject, uid)
            expires = now + rng.randint(-5, 60) * DAY_MS
            opened = Opened(rid(), Kind.VOUCH, me, Scope.NETWORK, 1, expires,
                            vouch.to_content())  # fmt: skip
            assert index.add_opened(opened)
        elif action < 0.8 and index.entries:
            victim = rng.choice(sorted(index.entries))  # withdrawn before it expires
            entry = index.entries[victim]
            gone.append(Opened(victim, Kind.CONTACT, me, Scope.NETWORK, 1, entry.expires,
                               entry.contact.to_content()))  # fmt: skip
            index.remove([victim])
        elif action < 0.85 and gone:
            assert index.add_opened(gone.pop())  # the same record, stored again
        else:
            now += rng.randint(0, 4) * DAY_MS
        if step % 7 == 0:
            want = {r for r, e in index.entries.items() if e.expires <= now}
            want |= {r for r, v in index.vouches.items() if v.expires <= now}
            got = index.expired(now)
            assert len(got) == len(set(got)) and set(got) == want, step
            expired_total += len(got)
            index.remove(got)
            assert not index.expired(now)
    assert expired_total > 20, "nothing expired: the walk tested nothing"
    # Withdrawn records leave stale items behind; the heap is kept to about what is held.
    for _ in range(3000):
        index.add_opened(opened_contact())
    index.remove(sorted(index.entries))
    index.expired(now)
    assert len(index._expiry) <= 2 * len(index.vouches) + 1024 + 1
