"""Attachments in one data directory: a replacement purges the old guide's chunks, a chunk
of a withdrawn attachment arriving late is refused, another author's tombstone naming the
tag removes nothing, and chunks expire with their guide (docs/spec/85-attachments.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import nacl.utils
import pytest

from node.content import publish_guides
from node.ingest import accept_records
from node.local import Local
from protocol.attachment import seal_chunk, tag_of
from protocol.identity import Identity
from protocol.lifecycle import Withdrawal
from protocol.record import Kind, Record, Scope

DAY = 86_400_000


@pytest.fixture
async def local(tmp_path: Path) -> Local:
    node = await Local.create(tmp_path / "n", "Org", None)
    yield node  # type: ignore[misc]
    await node.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def chunks(author: Identity, tag: bytes, n: int, now: int, expires: int) -> list[Record]:
    key = os.urandom(32)
    return [
        Record.create(
            author,
            Kind.CHUNK,
            created=now,
            expires=expires,
            scope=Scope.NETWORK,
            payload=seal_chunk(key, tag, i, os.urandom(500)),
        )
        for i in range(n)
    ]


def tombstone(author: Identity, tags: tuple[bytes, ...], now: int) -> Record:
    return Record.create(
        author,
        Kind.TOMBSTONE,
        created=now,
        expires=now + DAY,
        scope=Scope.NETWORK,
        payload=Withdrawal((os.urandom(32),), None, tags).to_payload(),
    )


async def held(local: Local) -> int:
    return (await local.store.count_by_kind()).get("chunk", 0)


async def test_a_replacement_purges_the_old_guides_chunks(local: Local, tmp_path: Path) -> None:
    now = now_ms()
    guide = tmp_path / "g.md"
    guide.write_text("# One\n\n[f](f.bin)\n")
    (tmp_path / "f.bin").write_bytes(os.urandom(300_000))  # two chunks
    ((first, _),) = await publish_guides(
        local, [guide], title=None, lang="", topics=[], region="", to="network", now_ms=now
    )
    assert await held(local) == 2
    ((second, _),) = await publish_guides(
        local,
        [guide],
        title=None,
        lang="",
        topics=[],
        region="",
        to="network",
        now_ms=now + 1,
        replaces=first.id.hex(),
    )
    assert await held(local) == 2  # the new version's own two chunks only
    ours = [Record.from_bytes(d) for d in await local.store.records_of_kind("tombstone")]
    withdrawal = Withdrawal.from_payload(ours[0].payload)
    assert withdrawal.successor == second.id and len(withdrawal.tags) == 1


async def test_a_late_chunk_of_a_withdrawn_attachment_is_refused(local: Local) -> None:
    now = now_ms()
    author = Identity.generate(nacl.utils.random)
    tag = os.urandom(16)
    parts = chunks(author, tag, 3, now, now + DAY)
    done = await accept_records(local, parts[:2], now)
    assert len(done.fresh) == 2
    done = await accept_records(local, [tombstone(author, (tag,), now)], now)
    assert sorted(done.purged) == sorted(r.id for r in parts[:2])
    assert await held(local) == 0
    late = await accept_records(local, [parts[2]], now)
    assert late.fresh == [] and late.refused["withdrawn_refused"] == 1
    assert await held(local) == 0


async def test_another_authors_tombstone_naming_the_tag_removes_nothing(local: Local) -> None:
    now = now_ms()
    author, stranger = (Identity.generate(nacl.utils.random) for _ in range(2))
    tag = os.urandom(16)
    parts = chunks(author, tag, 2, now, now + DAY)
    await accept_records(local, parts, now)
    await accept_records(local, [tombstone(stranger, (tag,), now)], now)
    assert await held(local) == 2
    assert tag_of(parts[0].payload) == tag
    more = chunks(author, tag, 1, now + 1, now + DAY)
    assert len((await accept_records(local, more, now)).fresh) == 1  # not refused either


async def test_chunks_expire_with_their_guide(local: Local) -> None:
    now = now_ms()
    author = Identity.generate(nacl.utils.random)
    await accept_records(local, chunks(author, os.urandom(16), 2, now, now + 5000), now)
    assert await held(local) == 2
    assert await local.store.delete_expired(now + 5000) == 2
    assert await held(local) == 0
