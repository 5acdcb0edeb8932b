"""The library: the guide index built from the sealed opened cache, and the running node's
live copy of it (built in the background at start, kept current as guides are stored,
withdrawn and expire, what it opened cached for the next start).

Listings of it: node/guide_listing.py (re-exported here).

`build_guides` is the one build, for the running node and for `canopy guides` / `show`
when no node runs: it reads what was cached of each guide (`node.guide_index.pack_guide`)
and opens only the guides with nothing valid cached. Cached values depend on the keys that
open guides (every network's key, every circle key): a keyed print of each is kept in the
sealed settings. When keys were only added since (a circle joined, a network added), what
opened still opens the same and only the guides cached as unreadable are opened again;
when one went (a circle left), every guide is. The running node does the same when its
keys change (`Library.keys_changed`). docs/spec/30-sync.md ("Translations"). Logs never
carry a guide's content.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence

from node import circles
from node.clock import now_ms
from node.entries import MALFORMED, OPENED_VERSION, UNREADABLE, open_stored
from node.guide_index import (
    GuideEntry,
    GuideIndex,
    guide_entry_of,
    pack_guide,
    unpack_guide,
)
from node.guide_listing import author_keys as author_keys  # listings: kept importable here
from node.guide_listing import listing as listing
from node.guide_listing import wanted_of as wanted_of
from node.index_common import PendingRemovals, flush_openings
from node.local import Local, Peer
from protocol import limits
from protocol.errors import RemoteProtocolError
from protocol.identity import Identity, NodeId
from protocol.record import Kind, Record

log = logging.getLogger("canopy.library")

_PRINT = 16  # bytes of one key's print
_PRINTS = "guide_key_prints"  # (the digest "guide_keys_stamp" before: opened again once)


def key_prints(network_keys: Iterable[bytes], circle_keys: Iterable[bytes]) -> frozenset[bytes]:
    """What cached guide openings depend on: the layout, and a keyed print of each key that
    opens guides (the keys themselves are never written). Prints, not one digest, so that a
    build can tell keys added (what opened still opens) from keys gone."""
    layout = f"guides {OPENED_VERSION}".encode()
    return frozenset(
        hashlib.blake2b(layout + role, key=key, digest_size=_PRINT).digest()
        for role, keys in ((b" network", network_keys), (b" circle", circle_keys))
        for key in keys
    )


def _packed_prints(prints: frozenset[bytes]) -> bytes:
    """The layout's version (one byte), then the prints in order."""
    return bytes([OPENED_VERSION]) + b"".join(sorted(prints))


def _unpacked_prints(value: bytes | None) -> frozenset[bytes] | None:
    """What `_packed_prints` made; None if nothing (or something else) was kept."""
    if not value or value[0] != OPENED_VERSION or (len(value) - 1) % _PRINT:
        return None
    return frozenset(value[at : at + _PRINT] for at in range(1, len(value), _PRINT))


def holds_every(
    keys: tuple[Sequence[bytes], Sequence[bytes]], before: tuple[Sequence[bytes], Sequence[bytes]]
) -> bool:
    """Do `keys` (network keys, circle keys) hold every key of `before`? Then a guide that
    opened with `before` opens the same with `keys` (every slot seals the same body)."""
    return set(before[0]) <= set(keys[0]) and set(before[1]) <= set(keys[1])


def _open_guide(
    data: bytes, identity: Identity, network_keys: Sequence[bytes], circle_keys: Sequence[bytes]
) -> GuideEntry | int:
    opened = open_stored(data, Kind.GUIDE, identity, network_keys, circle_keys)
    if opened is None:
        return UNREADABLE
    try:
        return guide_entry_of(opened)
    except RemoteProtocolError:
        return MALFORMED


def _count(index: GuideIndex, item: GuideEntry | int, now_ms: int) -> None:
    if isinstance(item, GuideEntry):
        if item.expires > now_ms:
            index.put(item)
    elif item == UNREADABLE:
        index.unreadable += 1
    else:
        index.malformed += 1


async def build_guides(
    local: Local, now_ms: int, *, yield_every: int = 0, unreadable: dict[bytes, None] | None = None
) -> GuideIndex:
    """Every stored guide we can read, in a fresh index (see the module's docstring).
    `yield_every`: give the event loop a turn after that many guides (0: never).
    `unreadable`: filled with the ids of the guides no key of ours opens (oldest first)."""
    index = GuideIndex()
    network_key = tuple(await local.network_keys())
    keys = await circles.read_keys(local)
    prints = key_prints(network_key, keys)
    cached = _unpacked_prints(await local.store.get_setting(_PRINTS))
    trust_opened = cached is not None and cached <= prints  # keys only added since
    trust_unreadable = cached == prints
    fresh: list[tuple[bytes, bytes, int]] = []
    room = local.store.opened_room

    def counted(rid: bytes, item: GuideEntry | int) -> None:
        if item == UNREADABLE and unreadable is not None:
            unreadable[rid] = None
        _count(index, item, now_ms)

    def opened_now(rid: bytes, data: bytes) -> None:
        index.opened += 1
        item = _open_guide(data, local.identity, network_key, keys)
        fresh.append((rid, pack_guide(item, room(len(data))), len(data)))
        counted(rid, item)

    collecting = gc.isenabled()
    gc.disable()  # building allocates and frees nothing: no point rescanning the heap
    try:
        spoilt: list[bytes] = []  # nothing valid cached: fetched and opened below
        n = 0
        async for rows in local.store.opened_of_kind(str(Kind.GUIDE)):
            for rid, plain, data in rows:
                n += 1
                if yield_every and n % yield_every == 0:
                    await asyncio.sleep(0)
                item = unpack_guide(rid, plain) if plain is not None and trust_opened else None
                if item == UNREADABLE and not trust_unreadable:
                    spoilt.append(rid)  # a key came since: it may open now
                elif item is not None:
                    counted(rid, item)
                elif data is not None:
                    opened_now(rid, data)
                else:
                    spoilt.append(rid)
        for start in range(0, len(spoilt), limits.OPENED_REPAIR_CHUNK):
            chunk = spoilt[start : start + limits.OPENED_REPAIR_CHUNK]
            for rid, data in (await local.store.get_records(chunk)).items():
                opened_now(rid, data)
    finally:
        if collecting:
            gc.enable()
    for start in range(0, len(fresh), limits.OPENED_WRITE_CHUNK):
        await local.store.put_opened(fresh[start : start + limits.OPENED_WRITE_CHUNK])
    if not trust_unreadable:  # written after what it opened: a crash between opens it again
        await local.store.set_setting(_PRINTS, _packed_prints(prints))
    return index


def _open_guides(
    datas: Mapping[bytes, bytes],
    identity: Identity,
    network_keys: Sequence[bytes],
    circle_keys: Sequence[bytes],
) -> list[tuple[bytes, GuideEntry | int, int]]:
    """(id, what it opens to, its size) of each record: `Library._reopen` on a worker thread
    (libsodium releases the GIL)."""
    return [
        (rid, _open_guide(data, identity, network_keys, circle_keys), len(data))
        for rid, data in datas.items()
    ]


Keys = Callable[[], tuple[Sequence[bytes], Sequence[bytes]]]  # network keys, circle keys
People = Callable[[], tuple[Mapping[NodeId, Peer], Collection[NodeId]]]  # peers, revoked


class Library(PendingRemovals[GuideIndex]):
    """The running node's guide index (`index`), current once `ready` is set."""

    def __init__(self, local: Local, keys: Keys, people: People) -> None:
        self.local = local
        self.keys = keys  # what opens guides now, as the running node holds them
        self.people = people  # its trusted peers (names for --from, labels) and revoked keys
        self.index = GuideIndex()
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: list[Record | list[bytes]] | None = None  # changes during a build
        self._opened: dict[bytes, tuple[GuideEntry | int, int]] = {}  # to cache at the flush
        self._seen: tuple[Sequence[bytes], Sequence[bytes]] | None = None  # keys read last
        self._again = False  # a key went during the build: build again
        # Held guides no key of ours opened, in the order they were stored: reopened in that
        # order, runs of one circle epoch come together and the key ring tries its key first.
        self._unreadable: dict[bytes, None] = {}
        self._reopen = False  # keys were added: open the unreadable ones again
        self._reopening = False
        self.reopened = 0  # guides opened again since start because a key came (not all)
        self._queued: dict[bytes, bytes] = {}  # stored guides to open: id -> wire bytes
        self._gone: set[bytes] = set()  # withdrawn while their batch was being opened
        self._opening = False
        self._builds = 0  # builds started: a batch opened before one is dropped
        # Told the author of each guide stored from elsewhere that opened malformed, as it
        # is added or reopened (node.record_hooks charges them: they signed it).
        self.malformed: Callable[[NodeId], None] | None = None
        # A sync storing guides no key of ours opens (a circle's history comes before the
        # membership record with its keys: a sync sends oldest first): the next ones it
        # stores are held unopened, counted unreadable, until a key comes (the reopen pass
        # opens them) or the ingest ends (`_open_held`): each opened once, not failed on
        # arrival and opened again. `ingesting`: a sync is storing records (set by the node).
        self.ingesting: Callable[[], bool] = lambda: False
        self._unopened: dict[bytes, None] = {}  # held: in `_unreadable`, never opened
        self._holding = False  # the last batch opened was (nearly) all unreadable
        self._waiting = False  # `_open_held` runs

    async def start(self) -> None:
        """Build the index in the background; changes meanwhile are applied after it."""
        self._pending = []
        self._seen = self.keys()
        self._spawn(self._build())

    async def _build(self) -> None:
        started = time.monotonic()
        while True:
            self._again = False
            unreadable: dict[bytes, None] = {}
            index = await build_guides(
                self.local, now_ms(), yield_every=limits.INDEX_BUILD_SLICE, unreadable=unreadable
            )
            if not self._again:
                break  # else a key went during the build: what it opened may be stale
        # Searches in the running node must not pay for it; built a slice at a time, so
        # the node answers meanwhile (100,000 guides: seconds).
        for _ in index.words_in_slices(limits.INDEX_BUILD_SLICE * 16):
            await asyncio.sleep(0)
        # Millions of long-lived objects: the cyclic collector's full passes over them
        # would stall searches (hundreds of ms); they are kept out of its generations.
        gc.collect()
        gc.freeze()
        pending, self._pending = self._pending or [], None
        self.index, self._unreadable = index, unreadable
        for change in pending:
            if isinstance(change, Record):
                self.add(change)
            else:
                self.remove(change)
        self.ready.set()
        log.info("library: %d guides in %.2f s", len(index.entries), time.monotonic() - started)
        self._start_reopen()  # keys added during the build: it may have opened with fewer

    def keys_changed(self) -> None:
        """The running node read its keys again. Keys added (a circle joined, a network):
        what opened still opens the same, so only the guides that did not are opened again.
        A key gone (a circle left): the index is built again from the records."""
        keys = self.keys()
        if self._seen is None or keys == self._seen:
            return  # not started yet, or nothing changed
        added = holds_every(keys, self._seen)
        self._seen = keys
        self._holding = False  # the new keys may open what comes next
        if added:
            self._reopen = True
            if self._pending is None:
                self._start_reopen()
            return  # else after the build
        self._opened.clear()  # opened under the old keys: not to be cached
        self._reopen = False
        if self._pending is not None:
            self._again = True  # a build is running: it starts over when it ends
            return
        self._pending = []
        self._queued.clear()  # stored already: the build reads them
        self._unopened.clear()
        self._builds += 1
        self._spawn(self._build())

    def _start_reopen(self) -> None:
        if self._reopen and not self._reopening:
            self._reopening = True
            self._spawn(self._reopen_unreadable())

    async def _reopen_unreadable(self) -> None:
        """Open the unreadable guides again with the keys held now, a chunk at a time on a
        worker thread; what opens joins the index (and the cache at the next flush). A build
        started meanwhile (a key gone) takes over; keys added meanwhile: another pass."""
        started, before = time.monotonic(), self.reopened
        try:
            while self._reopen and self._pending is None:
                self._reopen = False
                ids = list(self._unreadable)
                step = 2 * limits.OPENED_REPAIR_CHUNK  # half to each thread
                for at in range(0, len(ids), step):
                    datas = await self.local.store.get_records(ids[at : at + step])
                    items = await self._open_on_threads(datas)
                    if self._pending is not None:
                        return  # a key went: the build opens everything again
                    self._reopened(items, datas, now_ms())
        finally:
            self._reopening = False
        if self.reopened > before:
            log.info(
                "library: %d guides opened with the keys that came, in %.2f s",
                self.reopened - before,
                time.monotonic() - started,
            )

    def _reopened(
        self,
        items: list[tuple[bytes, GuideEntry | int, int]],
        datas: Mapping[bytes, bytes],
        now: int,
    ) -> None:
        for rid, item, size in items:
            if rid not in self._unreadable:
                continue  # withdrawn meanwhile
            held = self._unopened.pop(rid, 0) is None  # opened for the first time
            if item == UNREADABLE:
                if held:
                    self._opened[rid] = (item, size)  # cached: not opened again at start
                continue
            if item == MALFORMED:
                self._blame(datas[rid])
            del self._unreadable[rid]
            self.index.unreadable -= 1
            self.reopened += not held
            self._opened[rid] = (item, size)
            _count(self.index, item, now)

    def remove(self, ids: Sequence[bytes]) -> None:
        """Forget withdrawn, replaced or expired guides (held unreadable ones too)."""
        if self._pending is None:
            gone = [rid for rid in ids if rid in self._unreadable]
            for rid in gone:
                del self._unreadable[rid]
            self.index.unreadable -= len(gone)
            for rid in ids:
                self._queued.pop(rid, None)
                self._unopened.pop(rid, None)
            if self._opening:
                self._gone.update(ids)
        super().remove(ids)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def add(self, record: Record) -> None:
        """Index a stored guide (of any author; opened here once). Opened on a worker thread
        with the others stored meanwhile (a sync stores hundreds at a time; the event loop
        carries the sync); `ready` is clear until they are in the index."""
        if self._pending is not None:
            self._pending.append(record)
            return
        if self._seen is None:
            return  # not started: the build at start reads it from the store
        if self._holding and record.author != self.local.node_id and self.ingesting():
            self._hold(record.id)  # (our own: always opened, and shown at once)
            return
        self._queued[record.id] = record.to_bytes()
        if not self._opening:
            self._opening = True
            self.ready.clear()
            self._spawn(self._open_queued())

    async def _open_on_threads(
        self, datas: dict[bytes, bytes]
    ) -> list[tuple[bytes, GuideEntry | int, int]]:
        """`_open_guides` with the keys held now: on the event loop for a few, else on two
        worker threads (libsodium releases the GIL: both cores open)."""
        network_keys, circle_keys = self.keys()
        args = (self.local.identity, network_keys, circle_keys)
        # Opening a guide costs about what verifying a record does: the same threshold.
        if len(datas) <= limits.PARALLEL_VERIFY_OVER:  # one guide published: no thread hop
            return _open_guides(datas, *args)
        loop = asyncio.get_running_loop()
        rows = list(datas.items())
        half = (len(rows) + 1) // 2
        first, second = await asyncio.gather(
            loop.run_in_executor(None, _open_guides, dict(rows[:half]), *args),
            loop.run_in_executor(None, _open_guides, dict(rows[half:]), *args),
        )
        return first + second

    async def _open_queued(self) -> None:
        try:
            while self._queued and self._pending is None:
                batch, self._queued, self._gone = self._queued, {}, set()
                keys, build = self.keys(), self._builds
                items = await self._open_on_threads(batch)
                if build != self._builds or self._pending is not None:
                    break  # a build started since: it reads these from the store
                now = now_ms()
                for rid, item, size in items:
                    if rid in self._gone:
                        continue  # withdrawn while it was being opened
                    self._opened[rid] = (item, size)
                    if item == UNREADABLE:
                        self._unreadable[rid] = None
                    elif item == MALFORMED:
                        self._blame(batch[rid])
                    _count(self.index, item, now)
                if self.keys() != keys:  # keys came while it was opened with the old ones
                    self._reopen = True
                    self._start_reopen()
                else:
                    unread = sum(item == UNREADABLE for _, item, _ in items)
                    big = len(items) > limits.PARALLEL_VERIFY_OVER
                    self._holding = big and 4 * unread >= 3 * len(items) and self.ingesting()
        finally:
            self._opening = False
            if self._pending is None:
                self.ready.set()

    def _hold(self, rid: bytes) -> None:
        if rid not in self._unreadable:
            self._unreadable[rid] = None
            self._unopened[rid] = None
            self.index.unreadable += 1
        if not self._waiting:
            self._waiting = True
            self._spawn(self._open_held())

    async def _open_held(self) -> None:
        """Open the guides held unopened once no sync is storing records (those a key that
        came meanwhile did not open already), a chunk at a time on the worker threads."""
        try:
            while self._unopened:
                await asyncio.sleep(limits.GUIDE_CHECK_IDLE_S)
                if self.ingesting() or self._pending is not None or self._reopening:
                    continue  # (a build reads them from the store; a reopen pass opens them)
                self._holding = False
                ids = list(self._unopened)
                step = 2 * limits.OPENED_REPAIR_CHUNK  # half to each thread
                for at in range(0, len(ids), step):
                    chunk = [rid for rid in ids[at : at + step] if rid in self._unopened]
                    datas = await self.local.store.get_records(chunk)
                    items = await self._open_on_threads(datas)
                    if self._pending is not None:
                        break
                    self._reopened(items, datas, now_ms())
        finally:
            self._waiting = False

    def _blame(self, data: bytes) -> None:
        """A guide opened malformed: its author is told to `malformed` (not ours)."""
        author = Record.from_stored(data).author
        if self.malformed is not None and author != self.local.node_id:
            self.malformed(author)

    async def flush_opened(self) -> None:
        """Cache what was opened of the guides added since the last flush."""
        await flush_openings(self.local.store, self._opened, pack_guide)
