"""The guide index answers what a scan of every guide would (node/guide_index.py): word and
prefix search (by posting sets or by each guide's own words, whichever it picks), filters,
one row per lesson with every version, the reader's language chosen; and the vocabulary
stays sorted as guides come and go."""

from __future__ import annotations

import random

import pytest

from node.guide_index import GuideEntry, GuideIndex, Wanted, choose
from protocol.contact import tokens
from protocol.record import Scope

NOW = 1_900_000_000_000
LANGS = ("en", "fr", "ar", "fa-IR")
WORDS = ["ka", "kalo", "kalomi", "kami", "lo", "lomira", "mira", "mirate", "suno", "sunovi",
         "te", "tepe", "vida", "vidalo", "zo", "zobu", "ĥaro", "ħaz"]  # fmt: skip


def _index(n: int, seed: int) -> tuple[GuideIndex, list[GuideEntry]]:
    rng = random.Random(seed)
    index, entries, originals = GuideIndex(), [], []
    for i in range(n):
        rid = rng.randbytes(32)
        of = rng.choice(originals) if originals and rng.random() < 0.4 else b""
        if not of:
            originals.append(rid)
        title = " ".join(rng.sample(WORDS, 2))
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        entry = GuideEntry(
            rid, bytes([i % 3]) * 32, Scope.NETWORK, NOW - rng.randint(0, 10**6),
            NOW + (1 if i % 17 else -1), title, rng.choice(LANGS), "KE",
            ("digital",) if i % 2 else ("legal",), of,
            " ".join(dict.fromkeys(tokens(title) + tokens(text))),
        )  # fmt: skip
        entries.append(entry)
        index.put(entry)
    return index, entries


def _scan(entries: list[GuideEntry], wanted: Wanted) -> set[bytes]:
    """What a search means, read from every guide's words directly."""
    words = list(dict.fromkeys(tokens(wanted.search)))
    out = set()
    for e in entries:
        have = (e.words or "").split()
        if e.expires <= NOW or (wanted.topic and wanted.topic not in e.topics):
            continue
        if all(w in have for w in words[:-1]) and (
            not words or any(h.startswith(words[-1]) for h in have)
        ):
            out.add(e.rid)
    return out


@pytest.mark.parametrize("cost", [0, 16, 10**9])  # own words never, as tuned, always
def test_search_matches_a_scan_of_every_guide_for_words_and_prefixes(
    cost: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("protocol.limits.GUIDE_WORDS_CHECK_COST", cost)
    index, entries = _index(600, 1)
    rng = random.Random(2)
    for _ in range(300):
        query = " ".join(rng.choice(WORDS)[: rng.randint(1, 6)] for _ in range(rng.randint(1, 3)))
        for topic in ("", "digital"):
            wanted = Wanted(search=query, topic=topic)
            got = {e.rid for e in index.matching(wanted, NOW)}
            assert got == _scan(entries, wanted), (query, topic)


def test_the_vocabulary_stays_sorted_as_guides_come_and_go() -> None:
    index, entries = _index(200, 3)
    index.build_words()
    gone = entries[::3]
    index.remove([e.rid for e in gone])
    later, _ = _index(50, 4)
    for entry in later.entries.values():
        index.put(entry)
    assert index._by_token is not None
    assert list(index._vocab.starting("", index._by_token)) == sorted(index._by_token)
    kept = [e for e in entries if e not in gone] + list(later.entries.values())
    for prefix in ("k", "ka", "mi", "ħ", "zob", "vidalo"):
        wanted = Wanted(search=prefix)
        assert {e.rid for e in index.matching(wanted, NOW)} == _scan(kept, wanted)


def test_lessons_list_every_version_once_and_choose_the_readers_language() -> None:
    index, entries = _index(400, 5)
    rows, total = index.lessons(Wanted(), NOW, ["fa", "fr"])
    live = [e for e in entries if e.expires > NOW]
    assert total == len({e.lesson for e in live}) == len(rows)
    for chosen, versions in rows:
        expected = sorted((e for e in live if e.lesson == chosen.lesson),
                          key=lambda e: (-e.created, e.rid))  # fmt: skip
        assert versions == expected
        assert chosen == choose(expected, chosen.lesson, ["fa", "fr"])
    assert [c.created for c, _ in rows] == sorted((c.created for c, _ in rows), reverse=True)
    top, _ = index.lessons(Wanted(limit=5), NOW, ["fa", "fr"], 5)
    assert [c.rid for c, _ in top] == [c.rid for c, _ in rows[:5]]
    # Filtered by language: the lesson's other versions are still listed with it.
    fr_rows, _ = index.lessons(Wanted(lang="fr"), NOW)
    for chosen, versions in fr_rows:
        assert chosen.lang == "fr"
        assert {v.rid for v in versions} == {e.rid for e in live if e.lesson == chosen.lesson}
