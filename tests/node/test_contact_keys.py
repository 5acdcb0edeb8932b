"""The know-who index opens contacts with every key this node holds: each network's key
(contacts written before tags, untagged, stay readable in the first) and every circle
epoch key; a contact cached as unreadable is opened again once a key that opens it
arrives. Real data directories, real stores, real sealed records."""

from __future__ import annotations

import time
from pathlib import Path

from node import circles, directory
from node.content import row_of
from node.local import Local
from node.opened_cache import build_index
from node.trust import trust_node
from protocol import limits
from protocol.contact import Contact
from protocol.record import Kind, Record, Scope


def _now() -> int:
    return int(time.time() * 1000)


async def _add(local: Local, name: str, share: str) -> directory.Added:
    draft = directory.Draft("lawyer", name, "KE-30", ["sw"], ["phone:+254700999111"])
    return await directory.add_contact(
        local, draft, share=share, to=None, review_days=180, now_ms=_now()
    )


async def _copy(records: list[Record], to: Local) -> None:
    await to.store.put_records([row_of(r, local=False) for r in records], _now())


async def _names(local: Local) -> list[str]:
    index = await build_index(local, _now())
    return sorted(e.contact.name for e in index.entries.values())


async def test_a_contact_of_the_second_network_and_an_untagged_one_of_the_first_are_read(
    tmp_path: Path,
) -> None:
    us = await Local.create(tmp_path / "us", "Us", None)
    other = await Local.create(tmp_path / "other", "Other", None)
    try:
        first = (await us.networks())[0]
        await us.add_network("N2", await other.network_key(), _now())
        tagged = await _add(other, "Wakili Second", "network")  # written in N2, tagged
        assert tagged.record.network is not None
        old = directory.seal_contact(  # as written before contacts were tagged
            other,
            Contact.build(
                uid=b"\x01" * 16,
                share="network",
                kind="lawyer",
                name="Wakili Untagged",
                region="KE",
                langs=[],
                channels=[],
                specialties=[],
                notes="",
                review=_now() + 1,
            ).to_content(),
            Scope.NETWORK,
            (),
            first.key,
            _now(),
            _now() + limits.DEFAULT_CONTACT_LIFETIME_MS,
        )
        assert old.network is None
        await _copy([tagged.record, old], us)
        assert await _names(us) == ["Wakili Second", "Wakili Untagged"]
    finally:
        await us.close()
        await other.close()


async def test_a_contact_cached_unreadable_opens_once_its_circle_key_arrives(
    tmp_path: Path,
) -> None:
    us = await Local.create(tmp_path / "us", "Us", None)
    author = await Local.create(tmp_path / "author", "Author", None)
    try:
        await trust_node(author, str(us.node_id), None, "Us", _now())
        await circles.create(author, "Land lawyers", "all", _now())
        await circles.add(author, "Land lawyers", str(us.node_id), _now())
        added = await _add(author, "Wakili Circle", "circle:Land lawyers")
        await _copy([added.record], us)  # the record first, as a relay might bring it
        index = await build_index(us, _now())
        assert index.entries == {} and index.unreadable == 1  # cached: unreadable
        membership = await author.store.records_of_kind(str(Kind.CIRCLE))
        await _copy([Record.from_bytes(d) for d in membership], us)
        assert await _names(us) == ["Wakili Circle"]  # opened again with the new key
        index = await build_index(us, _now())  # and cached as readable from then on
        assert index.unreadable == 0 and len(index.entries) == 1
    finally:
        await us.close()
        await author.close()


async def test_a_vouch_for_an_organisation_goes_to_each_network_it_is_a_member_of(
    tmp_path: Path,
) -> None:
    us = await Local.create(tmp_path / "us", "Us", None)
    other = await Local.create(tmp_path / "other", "Other", None)
    try:
        second = await us.add_network("N2", await other.network_key(), _now())
        first = (await us.networks())[0]
        peer = await trust_node(us, str(other.node_id), None, "Other", _now())
        peer.join(second.tag)
        await us.save_peer(peer)
        await directory.vouch(us, "Other", _now())
        tags = [Record.from_bytes(d).network for d in await us.store.records_of_kind("vouch")]
        assert tags == [second.tag]  # not in our first network, where Other is not
        peer.join(first.tag)
        await us.save_peer(peer)
        await directory.vouch(us, "Other", _now() + 1)
        tags = [Record.from_bytes(d).network for d in await us.store.records_of_kind("vouch")]
        assert sorted(t or b"" for t in tags) == sorted([second.tag, first.tag, second.tag])
    finally:
        await us.close()
        await other.close()
