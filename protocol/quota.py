"""Token buckets: the per-connection quotas of docs/SPEC.md, "Quotas".

Pure arithmetic; the caller passes `now` (seconds on any monotonic clock). The node decides
what an empty bucket means: wait before reading more (bytes, messages) or cut the peer off
(queries, unasked-for records).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import LocalProtocolError


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens per second, at most `burst` held; starts full."""

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        if rate <= 0 or burst <= 0:
            raise LocalProtocolError("a bucket needs a positive rate and burst")
        return cls(float(rate), float(burst), float(burst), now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, amount: float, now: float) -> bool:
        """Take `amount` if that many are there; False (and take nothing) otherwise."""
        self._refill(now)
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True

    def charge(self, amount: float, now: float) -> float:
        """Take `amount` even into debt; the seconds to wait until the debt is repaid."""
        self._refill(now)
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def refund(self, amount: float, now: float) -> None:
        """Give back `amount` taken earlier (never above `burst`)."""
        self._refill(now)
        self.tokens = min(self.burst, self.tokens + max(0.0, amount))
