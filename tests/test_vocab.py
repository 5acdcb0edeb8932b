"""The word index's vocabulary (node/vocab.py): prefix reads agree with the index's own
words through any mix of words added, removed and added again; and taking in many new words
costs time linear in them, not a move of the whole list per word."""

from __future__ import annotations

import random
import time

from node.vocab import Vocabulary


def _check(vocab: Vocabulary, indexed: set[str], prefixes: list[str]) -> None:
    for prefix in prefixes:
        want = sorted(w for w in indexed if w.startswith(prefix))
        assert list(vocab.starting(prefix, indexed)) == want, prefix


def test_prefixes_agree_with_the_index_through_adds_removes_and_re_adds() -> None:
    rng = random.Random(14)
    letters = "abcde"
    indexed: set[str] = set()
    vocab = Vocabulary()
    vocab.reset(indexed)
    prefixes = ["", "a", "ab", "abc", "e", "dd", "x"]
    for step in range(3000):
        word = "".join(rng.choices(letters, k=rng.randint(1, 4)))
        if word in indexed:
            indexed.discard(word)
            vocab.discard()
        else:
            indexed.add(word)
            vocab.add(word)
        # reads after single changes, and after runs of many (the merge path)
        if step % 7 == 0 or (step > 1500 and step % 97 == 0):
            _check(vocab, indexed, prefixes)
    _check(vocab, indexed, prefixes)
    vocab.reset(indexed)
    _check(vocab, indexed, prefixes)


def test_many_words_at_once_are_merged_not_inserted_one_by_one() -> None:
    rng = random.Random(7)
    words = list({"".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=9)) for _ in range(400_000)})
    base, more = words[:200_000], words[200_000:]
    indexed = set(base)
    vocab = Vocabulary()
    vocab.reset(indexed)
    started = time.perf_counter()
    for word in more:
        indexed.add(word)
        vocab.add(word)
    found = list(vocab.starting("ab", indexed))
    took = time.perf_counter() - started
    assert found == sorted(w for w in indexed if w.startswith("ab"))
    # The same work as a sort of everything (what a fresh build does), measured here.
    started = time.perf_counter()
    sorted(indexed)
    ceiling = time.perf_counter() - started
    # one insert per word moved the list 200,000 times: ~100x the sort; merged: ~1x
    assert took < 10 * ceiling + 0.05, (took, ceiling)
