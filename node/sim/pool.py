"""The records of a simulated run: real sealed, signed guides and one alert.

Made once per scenario from the run's seed (`_Bytes` stands in for OS randomness when
sealing), published by honest nodes at seeded times; a share of the guides is
peers-scoped, sealed to the author's direct peers. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib

from node.sim.world import EPOCH_MS, NETWORK_KEY, Config, World
from protocol.envelope import seal_record
from protocol.record import Kind, Record, Scope

DAY_MS = 86_400_000


class _Bytes:
    """Deterministic `Random` for sealing: BLAKE2b(seed || counter) blocks."""

    def __init__(self, seed: bytes) -> None:
        self._seed, self._n, self._buf = seed, 0, b""

    def __call__(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._n += 1
            self._buf += hashlib.blake2b(self._seed + self._n.to_bytes(8, "big")).digest()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


def make_pool(world: World) -> list[tuple[float, int, Record]]:
    """Real sealed, signed records, made once per scenario and stored by every node."""
    config = world.config
    rnd = world.clock.random
    honest = [i for i in range(config.nodes) if world.honest(i)]
    honest = sorted(rnd.sample(honest, max(1, min(len(honest), config.records // 2))))
    random_bytes = _Bytes(config.seed.to_bytes(8, "big"))
    pool: list[tuple[float, int, Record]] = []
    peers_scoped = set(
        rnd.sample(range(config.records), round(config.records * config.peers_scoped))
    )
    for k in range(config.records + 1):
        at = config.start + rnd.uniform(0.0, config.publish_window)
        author = rnd.choice(honest)
        identity = world.identities[author]
        created = EPOCH_MS + int(at * 1000)
        if k == config.records:  # the alert, after the partition healed
            at = config.start + config.publish_window * 0.8
            created = EPOCH_MS + int(at * 1000)
            record = seal_record(
                identity,
                Kind.ALERT,
                {"text": f"alert {config.seed}", "urgency": "high"},
                created=created,
                expires=created + DAY_MS,
                scope=Scope.NETWORK,
                recipients=[],
                network_key=NETWORK_KEY,
                random=random_bytes,
            )
            world.alert = (at, author, record)
        else:
            peers_only = k in peers_scoped
            size = rnd.randrange(200, 3000)
            recipients = (
                [world.node_ids[p] for p in sorted(world.adjacent[author])] if peers_only else []
            )
            record = seal_record(
                identity,
                Kind.GUIDE,
                {"title": f"guide {k}", "text": "x" * size},
                created=created,
                expires=created + 30 * DAY_MS,
                scope=Scope.PEERS if peers_only else Scope.NETWORK,
                recipients=recipients,
                network_key=None if peers_only else NETWORK_KEY,
                random=random_bytes,
            )
        pool.append((at, author, record))
    return pool


def sample_records(count: int, seed: int = 1) -> list[bytes]:
    """Wire bytes of network-scoped records like a run's (for a ceiling beside it)."""
    world = World(Config(nodes=20, seed=seed, records=count, hostile=0.0, peers_scoped=0.0))
    return [record.to_bytes() for _, _, record in make_pool(world)]
