"""The opened-record cache: what the know-who index made of each stored contact and vouch,
kept sealed next to the record (Store.put_opened), and the index build that reads it.

Opening a stored contact (its record, its sealed payload, the checks of every field) costs
~60 us; at start a node opens every one. What the index made of each record is kept next
to it instead, sealed under the storage key like the record itself and padded to its size,
and read back at the next start in a few microseconds. Also kept: that a record is
unreadable to us or malformed, so a relay does not retry every record it cannot read at
every start. The value holds the checked fields, and the search words when they fit (they
are recomputed otherwise). Changing how a contact is checked, or this layout, means
bumping OPENED_VERSION: cached values of another version are ignored and the records
opened again. Never holds anything readable outside the sealed column.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import importlib.metadata
from collections.abc import Sequence
from typing import Any

import msgpack

from node import circles
from node.contact_index import ContactIndex
from node.entries import (
    MALFORMED,
    OPENED_VERSION,
    UNREADABLE,
    Entry,
    VouchEntry,
    entry_of,
    open_stored,
)
from node.local import Local
from protocol import limits
from protocol.contact import Contact, Share, Vouch, VouchAbout
from protocol.encoding import Value
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.identity import Identity
from protocol.record import Kind, Scope

_KEYS_STAMP = "contact_keys_stamp"
_CONTACT = 1
_VOUCH = 2
_SHARES = {s.value: s for s in Share}
_ABOUTS = {a.value: a for a in VouchAbout}
_SCOPES = {int(s): s for s in Scope}


def pack_opened(item: Entry | VouchEntry | int, room: int) -> bytes:
    """What to cache for a record: its index entry, or UNREADABLE / MALFORMED. A contact's
    search words go along when they fit in `room` bytes (see `Store.opened_room`); else
    they are recomputed when the value is read."""
    if isinstance(item, Entry):
        c = item.contact
        fields: list[Value] = [
            c.uid,
            c.share.value,
            c.kind,
            c.region,
            list(c.langs),
            list(c.specialties),
            c.name,
            [[t, v] for t, v in c.channels],
            c.notes,
            c.review,
            c.teaser,
            c.introducer,
        ]
        value: list[Value] = [OPENED_VERSION, _CONTACT, item.author, item.scope.value]
        value += [item.created, item.expires, fields, list(item.words)]
        packed = _pack(value)
        return packed if len(packed) <= room else _pack(value[:-1])
    if isinstance(item, VouchEntry):
        v = item.vouch
        head: list[Value] = [OPENED_VERSION, _VOUCH, item.voucher, item.scope.value]
        return _pack([*head, item.created, item.expires, [v.about.value, v.subject, v.uid]])
    if item not in (UNREADABLE, MALFORMED):
        raise LocalProtocolError("pack_opened takes an entry, UNREADABLE or MALFORMED")
    return _pack([OPENED_VERSION, item])


def _pack(value: list[Value]) -> bytes:
    packed: bytes = msgpack.packb(value)
    return packed


def unpack_opened(
    rid: bytes, data: bytes, shared: dict[Any, Any] | None = None
) -> Entry | VouchEntry | int | None:
    """What `pack_opened` made (rid: the record's id, which the store checked the value is
    bound to); None if it is of another version or does not parse (open the record again).
    The values were checked when they were cached, by this version of the code.

    `shared`: one copy of each author, kind, region, languages and specialties for a whole
    build (they repeat across thousands of contacts): less memory, less to allocate."""
    one = (shared if shared is not None else {}).setdefault
    try:
        value = msgpack.unpackb(data, use_list=False)  # tuples: what Contact and Entry hold
        if value[0] != OPENED_VERSION:
            return None
        what = value[1]
        if what == _CONTACT:
            author, scope, created, expires, f = value[2:7]
            contact = Contact(
                uid=f[0],
                share=_SHARES[f[1]],
                kind=one(f[2], f[2]),
                region=one(f[3], f[3]),
                langs=one(f[4], f[4]),
                specialties=one(f[5], f[5]),
                name=f[6],
                channels=f[7],
                notes=f[8],
                review=f[9],
                teaser=f[10],
                introducer=f[11],
            )
            words = value[7] if len(value) == 8 else contact.search_words()
            author = one(author, author)
            return Entry(rid, author, _SCOPES[scope], created, expires, contact, words)
        if what == _VOUCH:
            _, _, voucher, scope, created, expires, (about, subject, uid) = value
            vouch = Vouch(_ABOUTS[about], subject, uid)
            return VouchEntry(rid, voucher, _SCOPES[scope], created, expires, vouch)
        if what in (UNREADABLE, MALFORMED) and len(value) == 2:
            return int(what)
    except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException):
        pass
    return None


async def build_index(local: Local, now_ms: int, *, yield_every: int = 0) -> ContactIndex:
    """Every stored contact and vouch we can read, in a fresh in-memory index.

    Reads what was cached of each record (see `pack_opened`); opens the records that have
    nothing (valid) cached, then caches what it made of them for the next start.
    `yield_every`: give the event loop a turn after that many records, so that a running
    node's connections and API keep working, more slowly, while it builds (0: never)."""
    index = ContactIndex(local.node_id.raw)
    network_key = tuple(await local.network_keys())
    circle_keys = await circles.read_keys(local)
    stamp = opened_stamp()
    if await local.store.get_setting("opened_stamp") != stamp:
        await local.store.forget_opened()
        await local.store.set_setting("opened_stamp", stamp)
    # A record cached as unreadable may open with a key that came since (a circle joined,
    # a peers circle that admitted us, a network added): open those again then.
    keys = contact_keys_stamp(network_key, circle_keys)
    retry_unreadable = await local.store.get_setting(_KEYS_STAMP) != keys
    fresh: list[tuple[bytes, bytes, int]] = []  # (id, value, record size) to cache
    shared: dict[Any, Any] = {}
    room = local.store.opened_room

    def opened_now(rid: bytes, data: bytes, kind: Kind) -> None:
        item = _open_to_cache(data, kind, local.identity, network_key, circle_keys)
        fresh.append((rid, pack_opened(item, room(len(data))), len(data)))
        _index_item(index, item, now_ms)

    # Building allocates ~10 objects per contact and frees none: the cyclic collector would
    # rescan the growing heap again and again for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for kind in (Kind.CONTACT, Kind.VOUCH):
            spoilt: list[bytes] = []  # a cached value that did not open or parse
            n = 0
            async for rows in local.store.opened_of_kind(str(kind)):
                for rid, plain, data in rows:
                    n += 1
                    if yield_every and n % yield_every == 0:
                        await asyncio.sleep(0)
                    item = None if plain is None else unpack_opened(rid, plain, shared)
                    if item == UNREADABLE and retry_unreadable:
                        spoilt.append(rid)  # fetched and opened again below
                    elif item is not None:
                        _index_item(index, item, now_ms)
                    elif plain is None and data is not None:
                        opened_now(rid, data, kind)
                    else:
                        spoilt.append(rid)
            for start in range(0, len(spoilt), limits.OPENED_REPAIR_CHUNK):
                chunk = spoilt[start : start + limits.OPENED_REPAIR_CHUNK]
                for rid, data in (await local.store.get_records(chunk)).items():
                    opened_now(rid, data, kind)
    finally:
        if collecting:
            gc.enable()
    for start in range(0, len(fresh), limits.OPENED_WRITE_CHUNK):
        await local.store.put_opened(fresh[start : start + limits.OPENED_WRITE_CHUNK])
    if retry_unreadable:
        await local.store.set_setting(_KEYS_STAMP, keys)
    return index


def contact_keys_stamp(network_keys: Sequence[bytes], circle_keys: Sequence[bytes]) -> bytes:
    """What a cached "unreadable" depends on: the keys that open contacts and vouches (a
    keyed digest: the keys themselves are never written)."""
    digest = hashlib.blake2b(b"contacts", key=network_keys[0] if network_keys else b"")
    for key in network_keys[1:]:
        digest.update(key)
    digest.update(b"circles")
    for key in sorted(circle_keys):
        digest.update(key)
    return digest.digest()


def _open_to_cache(
    data: bytes,
    kind: Kind,
    identity: Identity,
    network_key: Sequence[bytes],
    circle_keys: Sequence[bytes] = (),
) -> Entry | VouchEntry | int:
    opened = open_stored(data, kind, identity, network_key, circle_keys)
    if opened is None:
        return UNREADABLE
    try:
        return entry_of(opened)
    except RemoteProtocolError:
        return MALFORMED


def _index_item(index: ContactIndex, item: Entry | VouchEntry | int, now_ms: int) -> None:
    if isinstance(item, int):
        if item == UNREADABLE:
            index.unreadable += 1
        else:
            index.malformed += 1
    elif item.expires > now_ms:
        index.put(item)


def opened_stamp() -> bytes:
    """What cached openings depend on besides the record: this layout and the data packages
    that check regions and languages and name them for search. When it changes, every
    record is opened again (see `build_index`)."""
    versions = [str(OPENED_VERSION)]
    for package in ("pycountry", "langcodes"):
        try:
            versions.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package}=-")
    return " ".join(versions).encode()
