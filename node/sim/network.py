"""The simulated network: a virtual clock, an event queue and links between nodes.

A link is one direction of one connection and behaves like TCP: messages on it arrive in
order (a later message never overtakes an earlier one), after a latency drawn per
message from the link's distribution. Messages on different links reorder freely. Loss
is what it is on TCP: a reset that drops the connection and whatever was in flight.
Partitions cut every link across them until they heal. Everything random comes from one
seeded `random.Random`, and ties in time are broken by insertion order, so a run is a
pure function of its seed.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(order=True, slots=True)
class _Timer:
    at: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


@dataclass(slots=True)
class LinkModel:
    """Latency (seconds) of a link: lognormal around `median`, with `jitter` as its sigma;
    `loss`: chance that one message resets the connection."""

    median: float = 0.1
    jitter: float = 0.1
    loss: float = 0.0


class Clock:
    """Virtual time and the one event queue."""

    def __init__(self, seed: int) -> None:
        self.now = 0.0
        self.random = random.Random(seed)
        self._queue: list[_Timer] = []
        self._seq = 0
        self.events = 0
        self._trace = hashlib.blake2b(digest_size=32)

    def at(self, when: float, action: Callable[[], None]) -> _Timer:
        self._seq += 1
        timer = _Timer(max(when, self.now), self._seq, action)
        heapq.heappush(self._queue, timer)
        return timer

    def after(self, delay: float, action: Callable[[], None]) -> _Timer:
        return self.at(self.now + delay, action)

    def run_until(self, end: float) -> None:
        queue = self._queue
        while queue and queue[0].at <= end:
            timer = heapq.heappop(queue)
            if timer.cancelled:
                continue
            self.now = timer.at
            self.events += 1
            timer.action()
        self.now = max(self.now, end)

    def trace(self, *parts: bytes) -> None:
        """Fold what happened into the run's digest (same seed => same digest)."""
        for part in parts:
            self._trace.update(len(part).to_bytes(4, "big"))
            self._trace.update(part)

    @property
    def digest(self) -> str:
        return self._trace.copy().hexdigest()


class Link:
    """One direction of one connection: FIFO delivery after a sampled latency."""

    __slots__ = ("_clock", "_deliver", "_last", "_model", "_on_loss", "bytes", "open", "tag")

    def __init__(
        self,
        clock: Clock,
        model: LinkModel,
        deliver: Callable[[bytes], None],
        on_loss: Callable[[], None],
        tag: bytes,
    ) -> None:
        self._clock = clock
        self._model = model
        self._deliver = deliver
        self._on_loss = on_loss
        self._last = 0.0
        self.open = True
        self.bytes = 0
        self.tag = tag

    def send(self, data: bytes) -> None:
        if not self.open or not data:
            return
        clock = self._clock
        if self._model.loss and clock.random.random() < self._model.loss:
            # A reset: nothing after the lost message arrives; both ends learn of it later.
            self.open = False
            clock.after(self._model.median, self._on_loss)
            return
        delay = clock.random.lognormvariate(0.0, self._model.jitter) * self._model.median
        arrive = max(clock.now + delay, self._last)
        self._last = arrive
        self.bytes += len(data)
        clock.at(arrive, lambda: self._arrive(data))

    def _arrive(self, data: bytes) -> None:
        if self.open:
            self._clock.trace(self.tag, int(self._clock.now * 1e9).to_bytes(8, "big"), data)
            self._deliver(data)
