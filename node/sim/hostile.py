"""Hostile simulated nodes: drivers that misuse the real conversation on purpose.

Each is a `SimNode` (node/sim/peer.py) that differs in one way: it withholds what it is
asked for, stays silent, floods junk or replays what it holds. The world assigns them in
turn (`Config.hostile_kinds`); they never change what an honest node runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from node.sim.network import Clock
from node.sim.peer import End, SimNode
from protocol.conversation import ConversationEvent, LookUp
from protocol.messages import Records, encode_message, split_records

HOSTILE_KINDS = ("flood", "withhold", "replay", "silent")


class Withholder(SimNode):
    """Announces what it holds in reconciliation, then answers every Want with Missing and
    relays nothing."""

    relay = False

    def _look_up(self, ids: object, peer: int) -> dict[bytes, bytes]:
        return {}


class Silent(SimNode):
    """Announces what it holds, then never answers a Want at all (nor Missing), and relays
    nothing: the ids it was asked for must be released and fetched elsewhere."""

    relay = False

    def act(self, end: End, events: Sequence[ConversationEvent]) -> None:
        super().act(end, [e for e in events if not isinstance(e, LookUp)])


class _Bursts(SimNode):
    """Sends a burst on each connection as soon as it opens, then every `every` seconds
    while that connection lasts."""

    clock: Clock
    every: float

    def opened(self, end: End) -> None:
        super().opened(end)
        self._again(end)

    def _again(self, end: End) -> None:
        if self.ends.get(end.peer) is not end:
            return
        self.burst(end)
        self.clock.after(self.every, lambda: self._again(end))

    def burst(self, end: End) -> None:
        raise NotImplementedError


class Flooder(_Bursts):
    """Pushes junk records (random bytes) as fast as it can."""

    every = 0.05

    def burst(self, end: End) -> None:
        rnd = self.clock.random
        junk = tuple(rnd.randbytes(rnd.randrange(100, 400)) for _ in range(200))
        end.send(encode_message(Records(junk)))


class Replayer(_Bursts):
    """Sends the records it holds again and again, far past the push allowance."""

    every = 0.1

    def burst(self, end: End) -> None:
        rows = self.db.execute("SELECT data FROM records ORDER BY id LIMIT 100").fetchall()
        if rows:
            # 500 copies, each message holding a record once: a repeat within one message is
            # taken once by the receiving session, so the replay that costs is across them.
            held = [bytes(r[0]) for r in rows]
            for _ in range(500 // len(held) + 1):
                for message in split_records(held):
                    end.send(encode_message(message))


# The driver of each hostile kind; an honest node runs `SimNode` itself.
DRIVERS: dict[str, type[SimNode]] = {
    "flood": Flooder,
    "withhold": Withholder,
    "replay": Replayer,
    "silent": Silent,
}
