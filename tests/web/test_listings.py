"""The guide list without filters, kept in order across changes (node/web/listings.py
`Ordered`), shows after every change exactly the rows a full pass over the index would
(`GuideIndex.lessons`): guides published, withdrawn, replaced in place and expiring, with
translations, copies of one guide sealed once per network, and guides of one author sealed
in the same millisecond (which `lessons` may fold together)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from node.guide_index import GuideEntry, GuideIndex, Wanted
from node.web.listings import GuideLists, Ordered, Page
from protocol.record import Scope

NOW = 1_900_000_000_000
LANGS = ("en", "fr", "ar", "sw")
PREFER = ("fr", "en")


def _rows(rows: list[tuple[GuideEntry, list[GuideEntry]]]) -> list[tuple[bytes, list[bytes]]]:
    return [(chosen.rid, [v.rid for v in versions]) for chosen, versions in rows]


def _full(index: GuideIndex, now: int) -> list[tuple[bytes, list[bytes]]]:
    return _rows(index.lessons(Wanted(), now, PREFER)[0])


def _entry(rng: random.Random, index: GuideIndex, now: int) -> GuideEntry:
    """A new guide: an original, a translation of one (held or not), or a copy of a held
    guide (the same author, time, title, language and words: one sealed per network)."""
    held = list(index.entries.values())
    rid = rng.randbytes(32)
    roll = rng.random()
    if held and roll < 0.2:
        like = rng.choice(held)
        return dataclasses.replace(like, rid=rid)
    of = b""
    if held and roll < 0.55:
        of = rng.choice(held).lesson if rng.random() < 0.9 else rng.randbytes(32)
    # Few distinct times: guides of one author sealed in the same millisecond are common.
    created = now - rng.randrange(0, 40) * 1000
    title = f"guide {rng.randrange(30)}"
    return GuideEntry(rid, bytes([rng.randrange(3)]) * 32, Scope.NETWORK, created,
                      now + rng.randrange(1, 60) * 1000, title, rng.choice(LANGS),
                      rng.choice(("KE", "UG", "")), ("safety",), of, title)  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
def test_the_kept_order_matches_a_full_pass_after_every_change(seed: int) -> None:
    rng = random.Random(seed)
    index, now = GuideIndex(), NOW
    for _ in range(40):
        index.put(_entry(rng, index, now))
    ordered = Ordered(index, PREFER, now)
    assert _rows(ordered.page(0, 10**6)) == _full(index, now)
    for step in range(150):
        roll = rng.random()
        for _ in range(rng.choice((1, 1, 1, 3))):  # one change between views, or a few
            held = list(index.entries)
            if roll < 0.45 or not held:
                index.put(_entry(rng, index, now))
            elif roll < 0.75:
                index.remove([rng.choice(held)])
            elif roll < 0.85:  # indexed again with other fields (same id)
                old = index.entries[rng.choice(held)]
                index.put(GuideEntry(old.rid, old.author, old.scope, old.created, old.expires,
                                     old.title + " v2", rng.choice(LANGS), old.region,
                                     old.topics, old.translation_of, old.words))  # fmt: skip
            else:
                now += rng.randrange(1, 20) * 1000  # time passes: guides expire
        ordered.update(now)
        assert _rows(ordered.page(0, 10**6)) == _full(index, now), f"step {step}"
        assert len(ordered) == index.lessons(Wanted(), now, PREFER)[1]
        regions = {e.region for e in index.entries.values() if e.region}
        assert set(ordered.regions) == regions


def test_a_page_is_the_rows_in_order_and_a_new_index_starts_afresh() -> None:
    rng = random.Random(7)
    index = GuideIndex()
    for _ in range(120):
        index.put(_entry(rng, index, NOW))
    lists = GuideLists()
    ordered = lists.ordered(index, PREFER, NOW)
    full = _full(index, NOW)
    page = Page(ordered, 50, 50)
    assert _rows(page.rows) == full[50:100] and page.total == len(full)
    # Given again, the same; the index rebuilt (a new object), made again from it.
    assert lists.ordered(index, PREFER, NOW) is ordered
    rebuilt = GuideIndex()
    for entry in list(index.entries.values())[:30]:
        rebuilt.put(entry)
    again = lists.ordered(rebuilt, PREFER, NOW)
    assert again is not ordered and _rows(again.page(0, 10**6)) == _full(rebuilt, NOW)
    # Other languages preferred: the rows chosen for them.
    assert lists.ordered(rebuilt, ("ar",), NOW) is not again


def test_kept_pages_give_way_once_a_guide_in_them_expires() -> None:
    rng = random.Random(3)
    index = GuideIndex()
    for _ in range(30):
        index.put(_entry(rng, index, NOW))
    first = min(e.expires for e in index.entries.values())
    lists = GuideLists()
    for ordered in (False, True):  # the expiries read off the index, or off the kept order
        if ordered:
            lists.ordered(index, PREFER, NOW)
        shelf = lists.shelf(index, "people", NOW)
        assert lists.shelf(index, "people", first - 1) is shelf
        later = lists.shelf(index, "people", first)
        assert later is not shelf and lists.shelf(index, "people", first) is later
        lists = GuideLists()
