"""Brute-force limits of the web app's sign-in, in memory (the node's run only).

Failed sign-ins are counted per user name and per client address: after
`UI_SIGNIN_FAILURES` of them the key is locked out for `UI_LOCKOUT_BASE_S`, doubling with
each further failure up to `UI_LOCKOUT_MAX_S`; a success clears the name's count. While
locked, no password is even checked. Link tries (one-time sign-in and enrolment links) are
limited per address to `UI_LINK_ATTEMPTS_PER_MIN`. Time comes in as an argument.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from protocol import limits


@dataclass(slots=True)
class _Count:
    failures: int = 0
    locked_until: float = 0.0


class Throttle:
    def __init__(self) -> None:
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        self._links: OrderedDict[str, list[float]] = OrderedDict()

    def locked(self, keys: tuple[str, ...], now: float) -> float:
        """Seconds until every one of `keys` may try again (0: now)."""
        return max(
            (max(0.0, c.locked_until - now) for k in keys if (c := self._counts.get(k))),
            default=0.0,
        )

    def failed(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            count = self._counts.pop(key, None) or _Count()
            count.failures += 1
            over = count.failures - limits.UI_SIGNIN_FAILURES
            if over >= 0:
                count.locked_until = now + min(
                    limits.UI_LOCKOUT_MAX_S, limits.UI_LOCKOUT_BASE_S * 2 ** min(over, 20)
                )
            self._counts[key] = count
        while len(self._counts) > limits.UI_MAX_TRACKED_CLIENTS:
            self._counts.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._counts.pop(key, None)

    def link_try(self, address: str, now: float) -> bool:
        """Whether this address may try one more link now (the try is counted)."""
        recent = [t for t in self._links.pop(address, []) if now - t < 60]
        allowed = len(recent) < limits.UI_LINK_ATTEMPTS_PER_MIN
        if allowed:
            recent.append(now)
        self._links[address] = recent
        while len(self._links) > limits.UI_MAX_TRACKED_CLIENTS:
            self._links.popitem(last=False)
        return allowed
