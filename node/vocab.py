"""The sorted vocabulary a word index finds prefixes in, kept current cheaply as words come
and go (node/guide_index.py).

A running node indexes the words of every guide it stores. Inserting each new word into a
sorted list at once costs a move of the whole list per word: a library of 4,000 lessons
brings a million new words, which held the event loop for a minute (peers timed out).
Here new words wait unsorted and are merged in one sort (two sorted runs: linear) when a
search next needs the order; a word no longer indexed is not deleted from the list (a move
too) but skipped when read, and the list is made again once such words are many.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Iterator

from protocol import limits


class Vocabulary:
    """The words of an index in sorted order, as `starting` reads them."""

    __slots__ = ("_gone", "_new", "_words")

    def __init__(self) -> None:
        self._words: list[str] = []  # sorted; may hold words no longer indexed
        self._new: list[str] = []  # indexed since the last fold, in any order
        self._gone = 0  # about how many of _words are no longer indexed (never fewer)

    def reset(self, words: Iterable[str]) -> None:
        """Exactly `words` (every word of the index)."""
        self._words = sorted(words)
        self._new = []
        self._gone = 0

    def add(self, word: str) -> None:
        """`word` was indexed (it was not before)."""
        self._new.append(word)

    def discard(self) -> None:
        """A word is no longer indexed (it stays in the list until the list is made again)."""
        self._gone += 1

    def __len__(self) -> int:
        return len(self._words) + len(self._new)

    def starting(self, prefix: str, indexed: Collection[str]) -> Iterator[str]:
        """The words of `indexed` (the index's own) that start with `prefix`, in order."""
        self._fold(indexed)
        words = self._words
        at = bisect.bisect_left(words, prefix)
        while at < len(words) and words[at].startswith(prefix):
            word = words[at]
            if word in indexed:
                yield word
            at += 1

    def _fold(self, indexed: Collection[str]) -> None:
        if self._gone > max(1024, len(self._words) // 4):
            self.reset(indexed)  # mostly stale: start again from the index
            return
        new = self._new
        if not new:
            return
        words = self._words
        if len(new) <= limits.VOCAB_INSERT_MOST:
            for word in new:
                at = bisect.bisect_left(words, word)
                if at == len(words) or words[at] != word:  # else a stale copy is live again
                    words.insert(at, word)
        else:
            words += new
            words.sort()  # two sorted runs (after new's own sort): merged in linear time
            if self._gone or len(set(new)) != len(new):  # a word gone and back: twice
                self._words = [w for n, w in enumerate(words) if n == 0 or words[n - 1] != w]
        self._new = []
