"""The guide list's pages, kept between page views while nothing they show has changed.

A page of the guide list is a pass over every guide in the index (filter, choose each
lesson's version, order); with 10,000 guides that is most of the page's time, and people
page through the same list again and again. A kept page is given again only while the
index is the very same one at the same count of changes (`GuideIndex.changes`), the same
peers (names, revocations) label its rows, and no guide in it has reached its expiry, so
what a view shows is always what a fresh pass would show.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from node.guide_index import GuideIndex
from protocol import limits


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


class GuideLists:
    """One web app's kept guide-list pages (one node's index)."""

    def __init__(self, size: int = limits.UI_GUIDE_PAGES_KEPT) -> None:
        self.size = size
        self._shelf: Shelf | None = None

    def shelf(self, index: GuideIndex, people: Hashable, now_ms: int) -> Shelf:
        """The pages kept for this state of `index`: none kept if anything changed."""
        shelf = self._shelf
        if shelf is None or not shelf.fits(index, people, now_ms):
            until = min((e.expires for e in index.entries.values()), default=2**63)
            counts = (index.unreadable, index.malformed)
            shelf = Shelf(index, index.changes, counts, people, until, self.size)
            self._shelf = shelf
        return shelf
