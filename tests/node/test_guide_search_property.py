"""The guide index answers every listing as a scan of every guide would, whatever the data
(hypothesis): the same lessons, the same version chosen, the same versions listed, in the
same order, and the same count of lessons matched (node/guide_index.py, node/guide_words.py).

The scan below is written from what a listing means (the words of `--search`, each one of
a guide's words in title or text, the last also the start of one; `--lang`, `--topic`,
`--region`, `--from`; one row per lesson, a guide sealed once per network listed once,
newest first), not from how the index finds it. Every way the index may take is run: sets
filtered smallest first, bitsets made on the way or kept made at the build, a prefix's
many words checked in guides' own words; and guides come and go between searches (slots
reused, kept bitsets dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.guide_index import GuideEntry, GuideIndex, Wanted, choose, search_words
from protocol import limits
from protocol.contact import primary_lang, region_matches, tokens
from protocol.record import Scope

NOW = 1_900_000_000_000
WORDS = ["ka", "kalo", "Kalomi", "kami", "lo", "lomira", "mira", "mirate", "suno", "té",
         "tepe", "vida", "vidalo", "zo", "Zöbu", "ĥaro", "ħaz", "ĥarö"]  # fmt: skip
LANGS = ("en", "en-GB", "fr", "ar", "fa-IR")
TOPICS = ("digital", "Legal", "travel")
REGIONS = ("", "KE", "KE-30", "KE-47", "CO", "CO-ANT")
AUTHORS = tuple(bytes([i]) * 32 for i in range(3))
# (set path up to, bitsets of at most this many sets, kept from this many members)
PATHS = [
    (limits.GUIDE_SET_PATH_MAX, limits.GUIDE_BITS_MAX_SETS, limits.GUIDE_BITS_MIN_POSTINGS),
    (0, 64, 1),  # bitsets always, every one kept
    (0, 2, 10**9),  # bitsets always, made on the way; prefixes of 3+ words in own words
    (10**9, 64, 1),  # sets always
]


@contextmanager
def _paths(path: tuple[int, int, int]) -> Iterator[None]:
    names = ("GUIDE_SET_PATH_MAX", "GUIDE_BITS_MAX_SETS", "GUIDE_BITS_MIN_POSTINGS")
    before = [getattr(limits, n) for n in names]
    for name, value in zip(names, path, strict=True):
        setattr(limits, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, before, strict=True):
            setattr(limits, name, value)


@st.composite
def _guides(draw: st.DrawFn, count: int) -> list[GuideEntry]:
    out: list[GuideEntry] = []
    for i in range(count):
        rid = draw(st.binary(min_size=32, max_size=32))
        if draw(st.integers(0, 5)) == 0 and out:  # a copy: the same publication, sealed again
            other = draw(st.sampled_from(out))
            out.append(GuideEntry(rid, other.author, other.scope, other.created, other.expires,
                                  other.title, other.lang, other.region, other.topics,
                                  other.translation_of, other.words))  # fmt: skip
            continue
        title = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)))
        text = " ".join(draw(st.lists(st.sampled_from(WORDS), max_size=6)))
        originals = [e.rid for e in out if not e.translation_of]
        of = draw(st.sampled_from(originals)) if originals and draw(st.booleans()) else b""
        out.append(GuideEntry(
            rid, draw(st.sampled_from(AUTHORS)), Scope.NETWORK,
            NOW - draw(st.integers(0, 6)) * 1000,  # many at one time: ties in the order
            NOW + (-1 if draw(st.integers(0, 9)) == 0 else 10**6),
            title, draw(st.sampled_from(LANGS)), draw(st.sampled_from(REGIONS)),
            tuple(draw(st.lists(st.sampled_from(TOPICS), max_size=2, unique=True))), of,
            search_words(title, text),
        ))  # fmt: skip
        del i
    return out


_search = st.lists(
    st.builds(
        lambda w, n, upper: (w.upper() if upper else w)[:n],
        st.sampled_from(WORDS),
        st.integers(1, 6),
        st.booleans(),
    ),
    max_size=3,
).map(" ".join) | st.sampled_from(["", "  ", "?!", "ka ka", "kalo, ka"])

_wanted = st.builds(
    Wanted,
    lang=st.sampled_from(("", "en", "fa", "FR", "de")),
    topic=st.sampled_from(("", "digital", "legal", "none")),
    region=st.sampled_from(("", "KE", "ke-30", "CO-ANT", "SY")),
    authors=st.none() | st.frozensets(st.sampled_from(AUTHORS), min_size=1),
    search=_search,
)


def _matches(e: GuideEntry, w: Wanted) -> bool:
    words = list(dict.fromkeys(tokens(w.search)))
    have = (e.words or "").split()
    return (
        e.expires > NOW
        and not (w.search.strip() and not words)
        and all(x in have for x in words[:-1])
        and (not words or any(h.startswith(words[-1]) for h in have))
        and (not w.lang or primary_lang(e.lang) == primary_lang(w.lang))
        and (not w.topic or w.topic.casefold() in {t.casefold() for t in e.topics})
        and (not w.region or region_matches(w.region.upper(), e.region.upper()))
        and (w.authors is None or e.author in w.authors)
    )


def _scan(
    held: dict[bytes, GuideEntry], w: Wanted, prefer: list[str], limit: int
) -> tuple[list[tuple[bytes, list[bytes]]], int]:
    """Every guide read: (shown id, every version's id) per lesson, newest first, and the
    count of lessons matched."""
    found = [e for e in held.values() if _matches(e, w)]
    lesson_of = {e.rid: e.translation_of or e.rid for e in held.values()}
    # Copies: the same author, time, title, language and words (among the guides found and
    # the originals they translate); the smallest id stands for them all.
    pool = found + [held[e.translation_of] for e in found if e.translation_of in held]
    same: dict[tuple[object, ...], set[bytes]] = {}
    for e in pool:
        same.setdefault((e.author, e.created, e.title, e.lang, e.words), set()).add(e.rid)
    copy_of = {r: min(rids) for rids in same.values() for r in rids if r != min(rids)}
    lessons: dict[bytes, list[GuideEntry]] = {}
    folded: dict[bytes, set[bytes]] = {}
    for e in found:
        if e.rid not in copy_of:
            lesson = copy_of.get(lesson_of[e.rid], lesson_of[e.rid])
            lessons.setdefault(lesson, []).append(e)
            folded.setdefault(lesson, set()).add(lesson_of[e.rid])
    langs = [w.lang, *prefer] if w.lang else prefer
    rows = []
    for lesson, hits in lessons.items():
        shown = choose(hits, lesson, langs)
        versions = sorted(
            (v for v in held.values()
             if lesson_of[v.rid] in folded[lesson] and v.expires > NOW and v.rid not in copy_of),
            key=lambda v: (-v.created, v.rid),
        )  # fmt: skip
        rows.append(((-shown.created, shown.rid), [v.rid for v in versions]))
    rows.sort()
    return [(key[1], versions) for key, versions in rows][: limit or None], len(lessons)


def _listed(index: GuideIndex, w: Wanted, prefer: list[str], limit: int) -> object:
    rows, total = index.lessons(w, NOW, prefer, limit)
    return [(c.rid, [v.rid for v in versions]) for c, versions in rows], total


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    guides=_guides(40),
    later=_guides(12),
    gone=st.sets(st.integers(0, 39), max_size=15),
    queries=st.lists(_wanted, min_size=1, max_size=8),
    prefer=st.lists(st.sampled_from(("en", "fr", "ar", "fa")), max_size=2),
    limit=st.sampled_from((0, 1, 3)),
    path=st.sampled_from(PATHS),
    warm=st.booleans(),
)
def test_the_index_lists_what_a_scan_of_every_guide_lists(
    guides: list[GuideEntry],
    later: list[GuideEntry],
    gone: set[int],
    queries: list[Wanted],
    prefer: list[str],
    limit: int,
    path: tuple[int, int, int],
    warm: bool,
) -> None:
    with _paths(path):
        index = GuideIndex()
        held: dict[bytes, GuideEntry] = {}
        for e in guides:
            index.put(e)
            held[e.rid] = e
        if warm:  # as the running node builds it: words, then the large bitsets kept made
            for _ in index.words_in_slices(1):
                pass
        for w in queries:
            assert _listed(index, w, prefer, limit) == _scan(held, w, prefer, limit), w
        # Guides come, then go (their slots are reused): nothing kept made may linger.
        for e in later:
            index.put(e)
            held[e.rid] = e
        for w in queries:
            assert _listed(index, w, prefer, limit) == _scan(held, w, prefer, limit), w
        removed = [guides[i].rid for i in gone if i < len(guides)]
        index.remove(removed)
        for rid in removed:
            held.pop(rid, None)
        for e in later[::2]:
            index.put(e)  # again: a new version of a held id replaces it
            held[e.rid] = e
        for w in queries:
            assert _listed(index, w, prefer, limit) == _scan(held, w, prefer, limit), w
