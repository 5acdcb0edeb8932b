"""The in-memory guide index: what the library lists and searches (title, language, region,
topics, author, created, lesson, and the search words of title and text) for every guide
this node can read (the entries and their sealed cached layout: node/guide_entry.py).

Owns matching (`--lang`, `--topic`, `--region`, `--from`, `--search`) and the grouping of
guides into lessons: an original and every translation of it this node can read
(docs/spec/30-sync.md, "Translations"). `node.library` builds it at start from the opened
cache (`Store.put_opened`, as `node.opened_cache` does for contacts) and keeps it current in
the running node; `commands/content.py` builds it the same way when no node runs. Lives in
memory only: nothing readable of a guide is written to disk but the sealed cached value.

Search: posting lists of slots (a small int per guide; sets, and for search words sorted
arrays, 4 bytes a member) and their bitsets, intersected smallest first
(node/guide_words.py); a prefix is the lists of every word it starts, from the sorted
vocabulary. A listing of the newest few of many matches reads them newest first
and stops once no lesson left can be newer, with the count of every lesson matched.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from node.guide_entry import GuideEntry as GuideEntry
from node.guide_entry import guide_entry_of as guide_entry_of
from node.guide_entry import pack_guide as pack_guide
from node.guide_entry import search_words as search_words
from node.guide_entry import unpack_guide as unpack_guide
from node.guide_words import EMPTY, BitCache, Field, Key, Posting, matching_slots
from node.guide_words import discard_sorted as _discard_sorted
from node.guide_words import post_sorted as _post_sorted
from node.index_common import discard
from node.vocab import Vocabulary
from protocol import limits
from protocol.contact import primary_lang, region_matches, tokens
from protocol.record import Scope


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a listing asks for: every given field must match (empty: any)."""

    lang: str = ""
    topic: str = ""
    region: str = ""
    authors: frozenset[bytes] | None = None  # --from, resolved to author keys
    search: str = ""
    limit: int = 0  # the newest this many lessons (0: all)


@dataclass(slots=True)
class GuideIndex:
    """Posting lists over readable guides: lesson (ids), and of slots (a small int per
    guide, `node.guide_words`) language, topic, author and search words."""

    entries: dict[bytes, GuideEntry] = field(default_factory=dict)
    by_lesson: dict[bytes, set[bytes]] = field(default_factory=dict)
    by_lang: dict[str, set[int]] = field(default_factory=dict)
    by_topic: dict[str, set[int]] = field(default_factory=dict)
    by_author: dict[bytes, set[int]] = field(default_factory=dict)
    by_region: dict[str, set[int]] = field(default_factory=dict)  # upper-cased
    unreadable: int = 0
    malformed: int = 0
    opened: int = 0  # records its build opened (the rest came from the sealed cache)
    changes: int = 0  # puts and removes so far: what a kept listing page was made at
    _slot: dict[bytes, int] = field(default_factory=dict)  # id -> slot
    _at: list[GuideEntry | None] = field(default_factory=list)  # slot -> entry
    _words_at: list[str | None] = field(default_factory=list)  # slot -> its search words
    _free: list[int] = field(default_factory=list)  # slots of removed guides, to reuse
    _times: dict[int, int] = field(default_factory=dict)  # created -> guides created then
    _shared: int = 0  # guides created at the same time as another (only they can be copies)
    _bits: BitCache = field(default_factory=BitCache)
    _soonest: int | None = 2**63  # the soonest expiry of an entry (None: to be found again)
    # The word index is built on the first search (a listing without --search needs none).
    _by_token: dict[str, array[int]] | None = None  # word -> sorted slots (compact)
    _vocab: Vocabulary = field(default_factory=Vocabulary)
    _vocab_dirty: bool = False

    def put(self, entry: GuideEntry) -> None:
        """Index one readable guide (a new version of an indexed id replaces it)."""
        rid = entry.rid
        if rid in self.entries:
            self.remove([rid])
        self.changes += 1
        self.entries[rid] = entry
        if self._free:
            slot = self._free.pop()
            self._at[slot] = entry
            self._words_at[slot] = entry.words
        else:
            slot = len(self._at)
            self._at.append(entry)
            self._words_at.append(entry.words)
        self._slot[rid] = slot
        then = self._times.get(entry.created, 0)
        self._times[entry.created] = then + 1
        if then:
            self._shared += 2 if then == 1 else 1
        # post, inline: a build does this for every guide
        lesson = entry.translation_of or rid
        rids = self.by_lesson.get(lesson)
        if rids is None:
            self.by_lesson[lesson] = {rid}
        else:
            rids.add(rid)
        lang = primary_lang(entry.lang)
        slots: dict[str, set[int]] | dict[bytes, set[int]]
        for slots, key in (
            (self.by_lang, lang),
            (self.by_author, entry.author),
            (self.by_region, entry.region.upper()),
        ):
            ids = slots.get(key)  # type: ignore[arg-type]
            if ids is None:
                slots[key] = {slot}  # type: ignore[index]
            else:
                ids.add(slot)
        if self._soonest is not None and entry.expires < self._soonest:
            self._soonest = entry.expires
        by_topic = self.by_topic
        for topic in entry.topics:
            ids = by_topic.get(topic := topic.casefold())
            if ids is None:
                by_topic[topic] = {slot}
            else:
                ids.add(slot)
        bits = self._bits
        if bits.bits:  # bitsets made of the sets it joined are stale
            bits.drop(("l", lang))
            bits.drop(("a", entry.author))
            bits.drop(("r", entry.region.upper()))
            for topic in entry.topics:
                bits.drop(("t", topic.casefold()))
        if self._by_token is not None:
            self._post_words(entry, slot)

    def _post_words(self, entry: GuideEntry, slot: int) -> None:
        assert self._by_token is not None
        by_token = self._by_token
        drop = self._bits.drop if self._bits.bits else None
        for word in (entry.words or "").split():
            if _post_sorted(by_token, word, slot):
                if not self._vocab_dirty:  # kept current as words come (no re-sort per search)
                    self._vocab.add(word)
            elif drop is not None:
                drop(word)

    def remove(self, ids: Iterable[bytes]) -> int:
        """Forget withdrawn, replaced or expired guides; returns how many were indexed."""
        self.changes += 1
        removed = 0
        bits = self._bits
        for rid in ids:
            entry = self.entries.pop(rid, None)
            if entry is None:
                continue
            removed += 1
            slot = self._slot.pop(rid)
            self._at[slot] = None
            self._words_at[slot] = None
            self._free.append(slot)
            left = self._times.pop(entry.created) - 1
            if left:
                self._times[entry.created] = left
                self._shared -= 2 if left == 1 else 1
            discard(self.by_lesson, entry.lesson, rid)
            lang = primary_lang(entry.lang)
            discard(self.by_lang, lang, slot)
            bits.drop(("l", lang))
            for topic in entry.topics:
                discard(self.by_topic, topic.casefold(), slot)
                bits.drop(("t", topic.casefold()))
            discard(self.by_author, entry.author, slot)
            bits.drop(("a", entry.author))
            discard(self.by_region, entry.region.upper(), slot)
            bits.drop(("r", entry.region.upper()))
            if entry.expires == self._soonest:
                self._soonest = None
            if self._by_token is not None:
                for word in (entry.words or "").split():
                    bits.drop(word)
                    if _discard_sorted(self._by_token, word, slot) and not self._vocab_dirty:
                        self._vocab.discard()
        return removed

    def expired(self, now_ms: int) -> list[bytes]:
        return [rid for rid, e in self.entries.items() if e.expires <= now_ms]

    def build_words(self) -> None:
        """Index the search words of every entry (once; kept current from then on)."""
        for _ in self.words_in_slices(0):
            pass

    def words_in_slices(self, size: int) -> Iterator[None]:
        """`build_words`, pausing (a yield) after every `size` entries (0: never), so that a
        running node answers meanwhile; nothing else may change the index until it ends.
        Then the bitsets of the larger posting sets are made, as the first searches would."""
        if self._by_token is not None:
            return
        self._by_token = {}
        self._vocab_dirty = True  # sorted once at the end, not word by word
        slots = self._slot
        for n, entry in enumerate(self.entries.values(), 1):
            self._post_words(entry, slots[entry.rid])
            if size and n % size == 0:
                yield
        self._vocab.reset(self._by_token)
        self._vocab_dirty = False
        if not size:
            return  # a one-off listing (no node): only what its search needs, on the way
        floor = max(limits.GUIDE_BITS_MIN_POSTINGS, limits.GUIDE_SET_PATH_MAX)
        made = 0
        for word, ids in self._by_token.items():
            if len(ids) > floor:
                self._bits.of(word, ids, len(self._at))
                made += len(ids)
                if made > size * 64:
                    made = 0
                    yield

    # -- matching ------------------------------------------------------------------------------

    def _prefixed(self, token: str) -> list[tuple[Key, Posting]]:
        """The posting sets of every word that starts with `token` (any of them matches)."""
        assert self._by_token is not None
        out: list[tuple[Key, Posting]] = []
        for word in self._vocab.starting(token, self._by_token):
            out.append((word, self._by_token[word]))
        return out

    def matching(self, wanted: Wanted, now_ms: int) -> list[GuideEntry]:
        """Unexpired guides that match every field of `wanted` (words: each one of the
        guide's words, in title or text, the last one also the start of one)."""
        # Each field: posting sets of which a guide must be in one (a word prefix: many).
        fields: list[Field] = []
        if wanted.lang:
            lang = primary_lang(wanted.lang)
            fields.append(Field([(("l", lang), self.by_lang.get(lang, EMPTY))]))
        if wanted.topic:
            topic = wanted.topic.casefold()
            fields.append(Field([(("t", topic), self.by_topic.get(topic, EMPTY))]))
        if wanted.region:
            region = wanted.region.upper()
            near = [(("r", r), s) for r, s in self.by_region.items() if region_matches(region, r)]
            fields.append(Field(near))
        if wanted.authors is not None:
            fields.append(Field([(("a", a), self.by_author.get(a, EMPTY)) for a in wanted.authors]))
        words = list(dict.fromkeys(tokens(wanted.search)))
        if words:
            self.build_words()
            assert self._by_token is not None
            fields.extend(Field([(w, self._by_token.get(w, EMPTY))]) for w in words[:-1])
            fields.append(Field(self._prefixed(words[-1]), words[-1]))  # the last, as typed so far
        elif wanted.search.strip():
            return []  # only punctuation: no word to match
        found: list[GuideEntry]
        if fields:
            at = self._at  # every matching slot holds a guide
            slots = matching_slots(fields, len(at), self._bits, self._words_at)
            found = [at[s] for s in slots]  # type: ignore[misc]
        else:
            found = list(self.entries.values())
        if self.soonest() > now_ms:  # nothing expired yet (the node removes what expires)
            return found
        return [e for e in found if e.expires > now_ms]

    def soonest(self) -> int:
        """The soonest expiry of a guide in the index (2**63: none)."""
        if self._soonest is None:
            self._soonest = min((e.expires for e in self.entries.values()), default=2**63)
        return self._soonest

    def lesson_of(self, lesson: bytes, now_ms: int) -> list[GuideEntry]:
        """Every unexpired version of a lesson this node can read, newest first."""
        versions = [self.entries[r] for r in self.by_lesson.get(lesson, ())]
        return sorted((v for v in versions if v.expires > now_ms), key=_newest_first)

    def lessons(
        self, wanted: Wanted, now_ms: int, prefer: Iterable[str] = (), limit: int = 0
    ) -> tuple[list[tuple[GuideEntry, list[GuideEntry]]], int]:
        """One (chosen version, every version) per lesson with a version that matches,
        newest lesson first (the first `limit`, 0: all), and how many lessons matched. The
        chosen version is a matching one: in the first language of `--lang` or `prefer` it
        has, else the original, else the newest."""
        found = self.matching(wanted, now_ms)
        copy_of = self.copies(found)  # a guide sealed once per network is listed once
        langs = [wanted.lang, *prefer] if wanted.lang else list(prefer)
        primaries = list(dict.fromkeys(primary_lang(lang) for lang in langs if lang))
        if limit and not copy_of and len(found) > limit:
            return self._newest(found, primaries, limit, now_ms)
        matched: dict[bytes, list[GuideEntry]] = {}
        folded: dict[bytes, set[bytes]] = {}  # lesson -> the lesson ids of its copies
        if copy_of:
            for entry in found:
                if entry.rid in copy_of:
                    continue
                own = entry.lesson
                lesson = copy_of.get(own, own)
                matched.setdefault(lesson, []).append(entry)
                folded.setdefault(lesson, set()).add(own)
        else:  # the usual case, inline: one pass over every match
            for entry in found:
                lesson = entry.translation_of or entry.rid
                hits = matched.get(lesson)
                if hits is None:
                    matched[lesson] = [entry]
                else:
                    hits.append(entry)
        # (-created, id) of the version each lesson shows: ids are unique, so plain tuples
        # order as the key did, compared without a call per comparison.
        keyed: list[tuple[int, bytes, bytes]] = []
        for lesson, hits in matched.items():
            if len(hits) == 1:
                c = hits[0]
            else:
                hits.sort(key=_newest_first)
                c = _choose_sorted(hits, lesson, primaries)
            keyed.append((-c.created, c.rid, lesson))
        top = heapq.nsmallest(limit, keyed) if limit else sorted(keyed)
        out: list[tuple[GuideEntry, list[GuideEntry]]] = []
        for _, rid, lesson in top:
            c, hits = self.entries[rid], matched[lesson]
            if copy_of:  # copies folded in: every version of each, each copy once
                out.append((c, self.versions(folded[lesson], now_ms, copy_of)))
            elif len(self.by_lesson.get(c.lesson, ())) == len(hits):
                out.append((c, hits))  # every version matched (the usual case)
            else:
                out.append((c, self.lesson_of(c.lesson, now_ms)))
        return out, len(matched)

    def _newest(
        self, found: list[GuideEntry], primaries: list[str], limit: int, now_ms: int
    ) -> tuple[list[tuple[GuideEntry, list[GuideEntry]]], int]:
        """`lessons` of matches without copies, the newest `limit` of many: the matches are
        read newest first, each lesson's version chosen when it is first met, until no lesson
        met later can be newer than the `limit` newest (the version a lesson shows is at most
        as new as its newest match)."""
        total = len({e.translation_of or e.rid for e in found})
        found.sort(key=_created, reverse=True)
        matched = {e.rid for e in found}
        entries, by_lesson = self.entries, self.by_lesson
        seen: dict[bytes, tuple[GuideEntry, list[GuideEntry]]] = {}
        newest: list[int] = []  # the `limit` newest shown versions' times (a heap)
        for entry in found:
            if newest and len(newest) == limit and newest[0] > entry.created:
                break  # this match and every later one is older than the `limit` newest
            lesson = entry.translation_of or entry.rid
            if lesson in seen:
                continue
            versions = by_lesson[lesson]
            if len(versions) == 1:
                hits = [entry]
            else:
                hits = sorted((entries[r] for r in versions if r in matched), key=_newest_first)
            c = _choose_sorted(hits, lesson, primaries)
            seen[lesson] = (c, hits)
            if len(newest) < limit:
                heapq.heappush(newest, c.created)
            elif c.created > newest[0]:
                heapq.heapreplace(newest, c.created)
        top = heapq.nsmallest(limit, seen.values(), key=lambda t: (-t[0].created, t[0].rid))
        out = []
        for c, hits in top:
            if len(by_lesson[c.lesson]) == len(hits):
                out.append((c, hits))  # every version matched (the usual case)
            else:
                out.append((c, self.lesson_of(c.lesson, now_ms)))
        return out, total

    def copies(self, entries: Sequence[GuideEntry]) -> dict[bytes, bytes]:
        """Guides that are one publication sealed once per network (`--to network`: the same
        author, time, title, language and words), and the originals they translate: each
        copy's id -> the id of the copy shown (the smallest). Most guides have no copy."""
        if not self._shared:
            return {}
        by_time: dict[tuple[bytes, int], list[GuideEntry]] = {}
        times, held = self._times, self.entries
        # Only a guide created at the same time as another can be a copy of it.
        pool = [e for e in entries if times[e.created] > 1]
        for e in entries:
            if e.translation_of in held:
                original = held[e.translation_of]
                if times[original.created] > 1:
                    pool.append(original)
        for entry in pool:
            by_time.setdefault((entry.author, entry.created), []).append(entry)
        out: dict[bytes, bytes] = {}
        for group in by_time.values():
            if len(group) < 2:
                continue
            same: dict[tuple[str, str, str | None], set[bytes]] = {}
            for entry in group:
                same.setdefault((entry.title, entry.lang, entry.words), set()).add(entry.rid)
            for rids in same.values():
                keep = min(rids)
                out.update((rid, keep) for rid in rids if rid != keep)
        return out

    def versions(
        self, lessons: Iterable[bytes], now_ms: int, copy_of: dict[bytes, bytes]
    ) -> list[GuideEntry]:
        """Every unexpired version of the lessons folded into one, each copy once."""
        out = {v.rid: v for lesson in lessons for v in self.lesson_of(lesson, now_ms)}
        return sorted(
            (v for rid, v in out.items() if rid not in copy_of), key=lambda e: (-e.created, e.rid)
        )


_created = attrgetter("created")


def _newest_first(entry: GuideEntry) -> tuple[int, bytes]:
    return (-entry.created, entry.rid)


def _choose_sorted(newest: list[GuideEntry], lesson: bytes, primaries: list[str]) -> GuideEntry:
    """`choose` over versions already newest first, with the languages' primary subtags."""
    if len(newest) == 1:
        return newest[0]
    for lang in primaries:
        for entry in newest:
            if entry.lang and primary_lang(entry.lang) == lang:
                return entry
    for entry in newest:
        if entry.rid == lesson:
            return entry
    return newest[0]


def choose(versions: list[GuideEntry], lesson: bytes, langs: Iterable[str]) -> GuideEntry:
    """The version a reader of `langs` (preferred first) reads: the first language it is in,
    else the original, else the newest version."""
    newest = sorted(versions, key=_newest_first)
    primaries = list(dict.fromkeys(primary_lang(lang) for lang in langs if lang))
    return _choose_sorted(newest, lesson, primaries)


_SCOPE_NAMES = {s: s.name.lower() for s in Scope}


def lesson_row(
    chosen: GuideEntry,
    versions: list[GuideEntry],
    label: Callable[[bytes, bool], str],
    revoked: Collection[bytes],
) -> dict[str, object]:
    """One listing row (what `canopy guides --json` prints, and the local API returns)."""
    return {
        "id": chosen.rid.hex(),
        "lesson": chosen.lesson.hex(),
        "title": chosen.title,
        "lang": chosen.lang,
        "region": chosen.region,
        "topics": list(chosen.topics),
        "author": label(chosen.author, True),
        "author_label": label(chosen.author, False),
        "created": chosen.created,
        "scope": _SCOPE_NAMES[chosen.scope],
        # Its author's key was revoked: anyone holding the key may have written it.
        "unverified": chosen.author in revoked,
        "languages": [
            {"lang": v.lang, "id": v.rid.hex(), "author_label": label(v.author, False)}
            for v in versions
        ],
    }
