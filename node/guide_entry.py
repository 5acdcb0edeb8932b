"""A guide as the guide index holds it (`GuideEntry`, in memory only), its search words,
and how its entry is cached sealed next to its record (`pack_guide` / `unpack_guide`).

Cached value of a guide (msgpack, sealed under the storage key, padded to the record's
size): [OPENED_VERSION, _GUIDE, author, scope, created, expires, title, lang, region,
topics, translation_of, words] with words the search words joined by one space, or None
when they did not fit (the record is opened again at the next start). An unreadable or
malformed guide is cached as `node.opened_cache` caches one: [OPENED_VERSION, code].
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from node.entries import MALFORMED, OPENED_VERSION, UNREADABLE, Opened
from protocol.contact import tokens
from protocol.content import Guide
from protocol.encoding import Value
from protocol.record import Scope

_GUIDE = 4  # the cached value's kind code (contacts and vouches use 1 and 2)
_SCOPES = {int(s): s for s in Scope}


@dataclass(slots=True)
class GuideEntry:
    """One readable guide, as the library lists and searches it (in memory only)."""

    rid: bytes
    author: bytes
    scope: Scope
    created: int
    expires: int
    title: str
    lang: str
    region: str
    topics: tuple[str, ...]
    translation_of: bytes
    words: str | None  # the search words of title and text, one space between (None: unknown)

    @property
    def lesson(self) -> bytes:
        """The id of the lesson this guide is a version of: its original's id."""
        return self.translation_of or self.rid


def search_words(title: str, text: str) -> str:
    """The distinct search words of a guide (case- and accent-folded), in first-seen order."""
    return " ".join(dict.fromkeys(tokens(title) + tokens(text)))


def guide_entry_of(opened: Opened) -> GuideEntry:
    """The index entry of an opened guide; DecodeError (a RemoteProtocolError) if malformed."""
    guide = Guide.from_content(opened.content)
    return GuideEntry(
        opened.rid,
        opened.author,
        opened.scope,
        opened.created,
        opened.expires,
        guide.title,
        guide.lang,
        guide.region,
        guide.topics,
        guide.translation_of,
        search_words(guide.title, guide.text),
    )


def pack_guide(item: GuideEntry | int, room: int) -> bytes:
    """What to cache for a guide record: its entry (the words only if they fit in `room`
    bytes), or UNREADABLE / MALFORMED."""
    if isinstance(item, int):  # as node.opened_cache.pack_opened caches one
        packed_code: bytes = msgpack.packb([OPENED_VERSION, item])
        return packed_code
    head: list[Value] = [OPENED_VERSION, _GUIDE, item.author, item.scope.value, item.created]
    value: list[Value] = [
        *head,
        item.expires,
        item.title,
        item.lang,
        item.region,
        list(item.topics),
        item.translation_of,
        item.words,
    ]
    packed: bytes = msgpack.packb(value)
    if len(packed) > room:
        value[-1] = None
        packed = msgpack.packb(value)
    return packed


def unpack_guide(rid: bytes, data: bytes) -> GuideEntry | int | None:
    """What `pack_guide` made (rid: the record's id, which the store checked the value is
    bound to); None if it is of another version, does not parse, or lacks its words (open
    the record again). Checked when it was cached, by this version of the code."""
    try:
        value = msgpack.unpackb(data, use_list=False)
        if value[0] != OPENED_VERSION:
            return None
        if value[1] in (UNREADABLE, MALFORMED) and len(value) == 2:
            return int(value[1])
        if value[1] != _GUIDE or len(value) != 12 or value[11] is None:
            return None
        _, _, author, scope, created, expires, title, lang, region, topics, of, words = value
        return GuideEntry(
            rid, author, _SCOPES[scope], created, expires, title, lang, region, topics, of, words
        )
    except (ValueError, TypeError, KeyError, IndexError, msgpack.UnpackException):
        return None
