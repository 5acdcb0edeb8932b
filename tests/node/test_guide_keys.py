"""When a key that opens guides arrives (a circle joined), only the guides no key of ours
opened before are opened again: what opened still opens the same. Both in the build from
the sealed cache (`build_guides`, at start and for `canopy guides` without a node) and in
the running node's live `Library`. Real data directories, real stores, real sealed records.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from node import circles
from node.content import publish_guide_texts, row_of
from node.library import Library, build_guides
from node.local import Local
from node.trust import trust_node
from protocol.keyring import KeyRing
from protocol.record import Kind, Record

CIRCLE = "Land lawyers"


def _now() -> int:
    return int(time.time() * 1000)


async def _guides(local: Local, names: Sequence[str], to: str) -> list[Record]:
    texts = [(f"{n}.md", f"# {n}\n\nWhat {n} says.") for n in names]
    published = await publish_guide_texts(
        local, texts, title=None, lang="en", topics=[], region="", to=to, now_ms=_now()
    )
    return [record for record, _ in published]


async def _copy(records: Sequence[Record], to: Local) -> None:
    await to.store.put_records([row_of(r, local=False) for r in records], _now())


async def _two(tmp_path: Path) -> tuple[Local, Local, list[Record], list[Record]]:
    """Us, holding 3 guides of our own and 4 of an author's circle we are added to, whose
    membership record we do not hold yet (a relay brought the guides first)."""
    us = await Local.create(tmp_path / "us", "Us", None)
    author = await Local.create(tmp_path / "author", "Author", None)
    await author.set_network_key(await us.network_key())
    await trust_node(author, str(us.node_id), None, "Us", _now())
    await circles.create(author, CIRCLE, "all", _now())
    await circles.add(author, CIRCLE, str(us.node_id), _now())
    ours = await _guides(us, ["ours-1", "ours-2", "ours-3"], "network")
    theirs = await _guides(author, ["c-1", "c-2", "c-3", "c-4"], f"circle:{CIRCLE}")
    await _copy(theirs, us)
    return us, author, ours, theirs


async def _membership(author: Local, us: Local) -> None:
    records = await author.store.records_of_kind(str(Kind.CIRCLE))
    await _copy([Record.from_bytes(d) for d in records], us)


async def test_a_circle_key_that_arrives_opens_only_the_guides_cached_unreadable(
    tmp_path: Path,
) -> None:
    us, author, ours, theirs = await _two(tmp_path)
    try:
        index = await build_guides(us, _now())
        assert set(index.entries) == {r.id for r in ours}
        assert index.unreadable == 4 and index.opened == 7
        assert (await build_guides(us, _now())).opened == 0  # all cached, unreadable too
        await _membership(author, us)
        index = await build_guides(us, _now())
        assert index.opened == 4  # the circle's, not ours again
        assert set(index.entries) == {r.id for r in ours + theirs}
        assert index.unreadable == 0
        again = await build_guides(us, _now())
        assert again.opened == 0 and set(again.entries) == set(index.entries)
    finally:
        await us.close()
        await author.close()


async def test_a_network_left_opens_every_guide_again(tmp_path: Path) -> None:
    us, author, ours, theirs = await _two(tmp_path)
    try:
        await _membership(author, us)
        assert (await build_guides(us, _now())).opened == 7
        other = await Local.create(tmp_path / "other", "Other", None)
        await us.add_network("N2", await other.network_key(), _now())
        await other.close()
        assert (await build_guides(us, _now())).opened == 7  # a network's key came
        await us.leave_network("N2")
        index = await build_guides(us, _now())
        assert index.opened == 7  # a key went: nothing cached is trusted
        assert set(index.entries) == {r.id for r in ours + theirs}
    finally:
        await us.close()
        await author.close()


async def _until(what: str, check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_the_running_library_opens_again_only_what_it_could_not_read(
    tmp_path: Path,
) -> None:
    us, author, ours, theirs = await _two(tmp_path)
    held: dict[str, tuple[Sequence[bytes], Sequence[bytes]]] = {}
    try:
        held["keys"] = (tuple(await us.network_keys()), await circles.read_keys(us))
        library = Library(us, keys=lambda: held["keys"], people=lambda: ({}, ()))
        await library.start()
        await asyncio.wait_for(library.ready.wait(), 20)
        assert set(library.index.entries) == {r.id for r in ours}
        assert library.index.unreadable == 4
        late = await _guides(author, ["c-5"], f"circle:{CIRCLE}")
        await _copy(late, us)
        library.add(late[0])  # stored while the node runs, still unreadable
        assert not library.ready.is_set()  # until it is opened
        await asyncio.wait_for(library.ready.wait(), 20)
        assert library.index.unreadable == 5
        await _membership(author, us)
        held["keys"] = (held["keys"][0], await circles.read_keys(us))
        library.keys_changed()
        await _until("the circle's guides opened", lambda: library.reopened == 5)
        await _until("the reopen done", lambda: not library._reopening)
        assert library.reopened == 5  # ours were never opened again
        assert set(library.index.entries) == {r.id for r in ours + theirs + late}
        assert library.index.unreadable == 0
        await library.flush_opened()
        library.stop()
        index = await build_guides(us, _now())  # the next start: all from the cache
        assert index.opened == 0 and set(index.entries) == set(library.index.entries)
    finally:
        await us.close()
        await author.close()


async def test_a_key_gone_builds_the_running_library_again(tmp_path: Path) -> None:
    us, author, _, theirs = await _two(tmp_path)
    try:
        await _membership(author, us)
        held = {"keys": (tuple(await us.network_keys()), await circles.read_keys(us))}
        library = Library(us, keys=lambda: held["keys"], people=lambda: ({}, ()))
        await library.start()
        await asyncio.wait_for(library.ready.wait(), 20)
        assert len(library.index.entries) == 7
        withdrawn = theirs[0].id
        library.remove([withdrawn])
        assert len(library.index.entries) == 6
        held["keys"] = (held["keys"][0], KeyRing())  # as if the circle were gone
        library.keys_changed()
        assert library._pending is not None  # a full build, not a reopen
        await _until("the build", lambda: library._pending is None)
        assert library.reopened == 0
        library.stop()
    finally:
        await us.close()
        await author.close()


async def test_guides_stored_while_the_node_runs_are_opened_in_a_batch_off_the_loop(
    tmp_path: Path,
) -> None:
    us = await Local.create(tmp_path / "us", "Us", None)
    try:
        keys = (tuple(await us.network_keys()), await circles.read_keys(us))
        library = Library(us, keys=lambda: keys, people=lambda: ({}, ()))
        await library.start()
        await asyncio.wait_for(library.ready.wait(), 20)
        stored = await _guides(us, [f"g-{i}" for i in range(40)], "network")
        for record in stored:
            library.add(record)
        assert library.index.entries == {}  # not on the caller's turn of the event loop
        library.remove([stored[0].id])  # withdrawn before it was opened: never indexed
        await asyncio.wait_for(library.ready.wait(), 20)
        assert set(library.index.entries) == {r.id for r in stored[1:]}
        assert library.index.unreadable == 0
        await library.flush_opened()
        library.stop()
        index = await build_guides(us, _now())  # the next start: cached, but for the one
        assert index.opened == 1  # taken out of the index only (still stored), never opened
        assert len(index.entries) == 40
    finally:
        await us.close()


async def _holding_library(
    us: Local, author: Local, ingesting: dict[str, bool]
) -> tuple[Library, dict[str, tuple[Sequence[bytes], Sequence[bytes]]], list[Record]]:
    """A running library to which a sync (`ingesting`) brought a batch of 20 guides of a
    circle whose key has not come: it opened them all in vain, so it holds what comes next."""
    held = {"keys": (tuple(await us.network_keys()), await circles.read_keys(us))}
    library = Library(us, keys=lambda: held["keys"], people=lambda: ({}, ()))
    library.ingesting = lambda: ingesting["on"]
    await library.start()
    await asyncio.wait_for(library.ready.wait(), 20)
    first = await _guides(author, [f"h-{i}" for i in range(20)], f"circle:{CIRCLE}")
    await _copy(first, us)
    for record in first:
        library.add(record)
    await asyncio.wait_for(library.ready.wait(), 20)
    assert library.index.unreadable == 4 + 20 and library._holding
    return library, held, first


async def test_a_circles_history_before_its_key_is_held_unopened_and_opened_once(
    tmp_path: Path,
) -> None:
    us, author, ours, theirs = await _two(tmp_path)
    ingesting = {"on": True}
    try:
        library, held, first = await _holding_library(us, author, ingesting)
        later = await _guides(author, [f"l-{i}" for i in range(20)], f"circle:{CIRCLE}")
        await _copy(later, us)
        for record in later:
            library.add(record)
        assert library.ready.is_set()  # held, not being opened: counted unreadable at once
        assert library.index.unreadable == 4 + 40 and len(library._unopened) == 20
        own = await _guides(us, ["ours-late"], "network")
        library.add(own[0])  # our own: opened (and shown) at once even while holding
        await asyncio.wait_for(library.ready.wait(), 20)
        assert own[0].id in library.index.entries
        await _membership(author, us)  # the membership record, last (newest) as a sync sends
        held["keys"] = (held["keys"][0], await circles.read_keys(us))
        library.keys_changed()
        assert not library._holding
        await _until("every circle guide opened", lambda: library.index.unreadable == 0)
        await _until("the reopen done", lambda: not library._reopening)
        # The 4 held since the start and the first batch were opened again; the 20 held
        # were opened once, with the key.
        assert library.reopened == 4 + 20 and not library._unopened
        everything = ours + theirs + first + later + own
        assert set(library.index.entries) == {r.id for r in everything}
        library.stop()
    finally:
        await us.close()
        await author.close()


async def test_guides_held_unopened_are_opened_when_the_sync_ends_without_a_key(
    tmp_path: Path,
) -> None:
    us, author, _, _ = await _two(tmp_path)
    ingesting = {"on": True}
    try:
        library, _, _ = await _holding_library(us, author, ingesting)
        later = await _guides(author, [f"l-{i}" for i in range(20)], f"circle:{CIRCLE}")
        readable_ones = await _guides(author, ["net-1", "net-2"], "network")
        await _copy(later + readable_ones, us)
        for record in later + readable_ones:
            library.add(record)
        assert len(library._unopened) == 22 and not library.index.entries.keys() & {
            r.id for r in readable_ones
        }
        await asyncio.sleep(0.2)
        assert len(library._unopened) == 22  # still ingesting: they wait
        ingesting["on"] = False
        await _until("the held guides opened", lambda: not library._unopened, timeout=30)
        await _until("the held guides opened", lambda: not library._waiting, timeout=30)
        assert {r.id for r in readable_ones} <= library.index.entries.keys()
        assert library.index.unreadable == 4 + 40 and library.reopened == 0
        assert not library._holding
        await library.flush_opened()
        library.stop()
        index = await build_guides(us, _now())  # the next start: every one cached
        assert index.opened == 0 and index.unreadable == 44
    finally:
        await us.close()
        await author.close()
