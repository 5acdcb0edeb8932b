"""The guide list's pages, kept between page views while nothing they show has changed, and
the unfiltered list kept in its order across changes.

A page of the guide list is a pass over every guide in the index (filter, choose each
lesson's version, order); with 10,000 guides that is most of the page's time, and people
page through the same list again and again. A kept page is given again only while the
index is the very same one at the same count of changes (`GuideIndex.changes`), the same
peers (names, revocations) label its rows, and no guide in it has reached its expiry, so
what a view shows is always what a fresh pass would show.

The list without filters (what a user looks at right after publishing) is not made by a
pass after a change: `Ordered` keeps its rows in order and, when the index changed, finds
what did (the entries added, removed or replaced, read off the index by difference, and
those that expired since) and makes again only the rows those guides belong to. The rows
are made by `GuideIndex.lessons` itself, over a small index of just the guides that can
bear on them: every version of each lesson touched, every guide sealed at the same time by
the same author (a copy of one sealed once per network, which `lessons` folds), and every
lesson a row made before folded together; closed under those until nothing is added. So no
rule of the listing is written twice, and the rows are those a full pass would make
(tests/web/test_listings.py checks that against a full pass after random changes).
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from node.guide_index import GuideEntry, GuideIndex, Wanted
from protocol import limits
from protocol.errors import CanopyError

Row = tuple[GuideEntry, list[GuideEntry]]  # (the version shown, every version), as `lessons`
Key = tuple[int, bytes]  # a row's place: (-created, id) of the version shown, as `lessons`


@dataclass(slots=True)
class Shelf:
    """The pages made from one state of one index."""

    index: GuideIndex
    changes: int
    counts: tuple[int, int]  # unreadable, malformed: shown on the page too
    people: Hashable
    until: int  # the first expiry among its guides: a page may differ from then on
    size: int
    pages: OrderedDict[Hashable, dict[str, Any]] = field(default_factory=OrderedDict)
    choices: dict[str, list[str]] | None = None

    def fits(self, index: GuideIndex, people: Hashable, now_ms: int) -> bool:
        return (
            self.index is index
            and self.changes == index.changes
            and self.counts == (index.unreadable, index.malformed)
            and self.people == people
            and now_ms < self.until
        )

    def get(self, key: Hashable) -> dict[str, Any] | None:
        page = self.pages.get(key)
        if page is not None:
            self.pages.move_to_end(key)
        return page

    def put(self, key: Hashable, page: dict[str, Any]) -> None:
        self.pages[key] = page
        while len(self.pages) > self.size:
            self.pages.popitem(last=False)


class Ordered:
    """Every row of the list without filters, in order, for one index and one reader's
    languages; `update` brings it to the index's state now (see the module's docstring)."""

    def __init__(self, index: GuideIndex, prefer: Sequence[str], now_ms: int) -> None:
        self.index = index
        self.prefer = tuple(prefer)
        self.changes = index.changes
        self.seen = dict(index.entries)  # the entries the rows were made from
        self.keys: list[Key] = []  # sorted: the list's order
        self.rows: dict[Key, Row] = {}
        self.row_lessons: dict[Key, set[bytes]] = {}  # the lessons each row was made from
        self.row_of: dict[bytes, Key] = {}  # lesson -> the row it is in
        self.by_time: dict[tuple[bytes, int], set[bytes]] = {}  # (author, created) -> ids
        self.regions: Counter[str] = Counter(e.region for e in self.seen.values() if e.region)
        self.expiries = [(e.expires, rid) for rid, e in self.seen.items()]
        heapq.heapify(self.expiries)
        for rid, entry in self.seen.items():
            self.by_time.setdefault((entry.author, entry.created), set()).add(rid)
        rows, _ = index.lessons(Wanted(), now_ms, self.prefer)
        self._add_rows(rows)

    def fits(self, index: GuideIndex, prefer: Sequence[str]) -> bool:
        return self.index is index and self.prefer == tuple(prefer)

    def __len__(self) -> int:
        return len(self.keys)

    def page(self, skip: int, count: int) -> list[Row]:
        return [self.rows[key] for key in self.keys[skip : skip + count]]

    def update(self, now_ms: int) -> None:
        """Make again the rows of every guide changed or expired since the last update."""
        index = self.index
        changed: dict[bytes, list[GuideEntry]] = {}  # id -> what it was and what it is now
        if index.changes != self.changes or len(index.entries) != len(self.seen):
            self._differences(changed)
            self.changes = index.changes
        while self.expiries and self.expiries[0][0] <= now_ms:
            _, rid = heapq.heappop(self.expiries)
            entry = self.seen.get(rid)
            if entry is not None and entry.expires <= now_ms:
                changed.setdefault(rid, []).append(entry)
        if changed:
            self._redo(changed, now_ms)

    def _differences(self, changed: dict[bytes, list[GuideEntry]]) -> None:
        """The entries added, removed or replaced since `seen`, and `seen` made current:
        the key differences and the comparison run in C, no loop over every guide here."""
        entries, seen = self.index.entries, self.seen
        for rid in seen.keys() - entries.keys():
            old = seen.pop(rid)
            changed[rid] = [old]
            self._unpost(rid, old)
        for rid in entries.keys() - seen.keys():
            new = seen[rid] = entries[rid]
            changed[rid] = [new]
            self._post(rid, new)
        if seen != entries:  # an id indexed again with other fields (rare)
            for rid, new in entries.items():
                old = seen[rid]
                if old is not new and old != new:
                    changed[rid] = [old, new]
                    self._unpost(rid, old)
                    seen[rid] = new
                    self._post(rid, new)

    def _post(self, rid: bytes, entry: GuideEntry) -> None:
        self.by_time.setdefault((entry.author, entry.created), set()).add(rid)
        heapq.heappush(self.expiries, (entry.expires, rid))
        if entry.region:
            self.regions[entry.region] += 1

    def _unpost(self, rid: bytes, entry: GuideEntry) -> None:
        at = (entry.author, entry.created)
        ids = self.by_time.get(at)
        if ids is not None:
            ids.discard(rid)
            if not ids:
                del self.by_time[at]
        if entry.region:
            self.regions[entry.region] -= 1
            if self.regions[entry.region] <= 0:
                del self.regions[entry.region]

    def _redo(self, changed: dict[bytes, list[GuideEntry]], now_ms: int) -> None:
        entries, by_lesson = self.index.entries, self.index.by_lesson
        lessons: set[bytes] = set()
        times: set[tuple[bytes, int]] = set()
        for versions in changed.values():
            for entry in versions:
                lessons.add(entry.lesson)
                times.add((entry.author, entry.created))
        for at in times:
            lessons.update(entries[r].lesson for r in self.by_time.get(at, ()))
        todo = list(lessons)
        while todo:  # close over: same lesson, same author and time, folded in one row
            lesson = todo.pop()
            near: list[bytes] = []
            key = self.row_of.get(lesson)
            if key is not None:
                near.extend(self.row_lessons[key])
            for rid in by_lesson.get(lesson, ()):
                entry = entries[rid]
                near.extend(entries[r].lesson for r in self.by_time[entry.author, entry.created])
            for other in near:
                if other not in lessons:
                    lessons.add(other)
                    todo.append(other)
        for key in {self.row_of[lesson] for lesson in lessons if lesson in self.row_of}:
            del self.rows[key]
            del self.keys[bisect.bisect_left(self.keys, key)]
            for lesson in self.row_lessons.pop(key):
                del self.row_of[lesson]
        small = GuideIndex()
        for lesson in lessons:
            for rid in by_lesson.get(lesson, ()):
                small.put(entries[rid])
        rows, _ = small.lessons(Wanted(), now_ms, self.prefer)
        self._add_rows(rows)

    def _add_rows(self, rows: list[Row]) -> None:
        for chosen, versions in rows:
            key = (-chosen.created, chosen.rid)
            self.rows[key] = (chosen, versions)
            bisect.insort(self.keys, key)
            made_of = {chosen.lesson, *(v.lesson for v in versions)}
            self.row_lessons[key] = made_of
            for lesson in made_of:
                self.row_of[lesson] = key


class Page:
    """What `node.library.listing` reads of an index, for one page of `Ordered`'s rows: the
    rows themselves are the page, so the listing's labels and row format are its own."""

    def __init__(self, ordered: Ordered, skip: int, count: int) -> None:
        self.rows = ordered.page(skip, count)
        self.total = len(ordered)
        self.unreadable = ordered.index.unreadable
        self.malformed = ordered.index.malformed

    def lessons(
        self, wanted: Wanted, now_ms: int, prefer: Iterable[str] = (), limit: int = 0
    ) -> tuple[list[Row], int]:
        return self.rows, self.total


def guide_page(
    node: Any,
    index: GuideIndex,
    people: tuple[Any, Any],
    now: int,
    wanted: Mapping[str, str],
    number: int,
    per: int,
    shelf: Shelf | None,
    ordered: Ordered | None,
) -> dict[str, Any]:
    """Page `number` of the guide list (`node.web.actions.guides`): from `ordered` when
    given (no filters), else from one pass over the index."""
    from node.library import listing, wanted_of
    from protocol.identity import NodeId

    peers, revoked = people
    choices = shelf.choices if shelf is not None else None
    if choices is None:  # the same for every page of one state of the index
        labels = {p.node_id.raw: p.label for p in peers.values()}
        labels[node.node_id.raw] = node.node_id.short
        regions = (
            ordered.regions if ordered is not None else (e.region for e in index.entries.values())
        )
        choices = {
            "lang": sorted(lang for lang in index.by_lang if lang),
            "region": sorted({region for region in regions if region}),
            "topic": sorted(t for t in index.by_topic if t),
            "author": sorted(labels.get(a, NodeId(a).short) for a in index.by_author),
        }
        if shelf is not None:
            shelf.choices = choices
    query = {"lang": wanted["lang"], "topic": wanted["topic"], "region": wanted["region"],
             "from": wanted["author"], "search": wanted["q"]}  # fmt: skip
    try:
        chosen = wanted_of(index, peers, query)
    except CanopyError as exc:  # an author nobody here knows, or a filter too long
        return {"rows": [], "matched": 0, "page": 1, "pages": 1, "choices": choices,
                "error": str(exc), "unreadable": index.unreadable,
                "total": len(index.by_lesson)}  # fmt: skip
    prefer = list(node.config.languages)

    def page_of(number: int) -> dict[str, Any]:
        skip = (number - 1) * per
        if ordered is not None:
            rows = cast(GuideIndex, Page(ordered, skip, per))
            return listing(rows, chosen, now, prefer, peers, node.node_id, revoked)
        wanted = dataclasses.replace(chosen, limit=number * per)
        return listing(index, wanted, now, prefer, peers, node.node_id, revoked, skip=skip)

    number = max(number, 1)
    if ordered is not None:  # how many there are is known before the page is made
        number = min(number, max(1, -(-len(ordered) // per)))
    result = page_of(number)  # one pass over the index gives the page and how many matched
    matched = int(result["lessons"])
    pages = max(1, -(-matched // per))
    if number > pages:  # asked past the last page: the last one (a second pass, rare)
        number = pages
        result = page_of(number)
    return {"rows": result["guides"], "matched": matched, "page": number, "pages": pages,
            "choices": choices, "error": "", "unreadable": index.unreadable,
            "total": len(index.by_lesson)}  # fmt: skip


class GuideLists:
    """One web app's kept guide-list pages (one node's index)."""

    def __init__(self, size: int = limits.UI_GUIDE_PAGES_KEPT) -> None:
        self.size = size
        self._shelf: Shelf | None = None
        self._ordered: Ordered | None = None

    def shelf(self, index: GuideIndex, people: Hashable, now_ms: int) -> Shelf:
        """The pages kept for this state of `index`: none kept if anything changed."""
        shelf = self._shelf
        if shelf is None or not shelf.fits(index, people, now_ms):
            ordered = self._ordered
            if ordered is not None and ordered.index is index:
                # Its expiries, brought up to now: none earlier than the first one held.
                ordered.update(now_ms)
                until = ordered.expiries[0][0] if ordered.expiries else 2**63
            else:
                # Those already expired are not on its pages: they change nothing later.
                times = (e.expires for e in index.entries.values() if e.expires > now_ms)
                until = min(times, default=2**63)
            counts = (index.unreadable, index.malformed)
            shelf = Shelf(index, index.changes, counts, people, until, self.size)
            self._shelf = shelf
        return shelf

    def ordered(self, index: GuideIndex, prefer: Sequence[str], now_ms: int) -> Ordered:
        """The list without filters, current with `index` now."""
        ordered = self._ordered
        if ordered is None or not ordered.fits(index, prefer):
            ordered = self._ordered = Ordered(index, prefer, now_ms)
        else:
            ordered.update(now_ms)
        return ordered
