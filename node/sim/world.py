"""The simulated world: its nodes, their trust graph, live connections and partitions.

`World` owns what happens to connections (dialling after a handshake's round trips, resets
and redials, crashes, restarts, one partition that heals) on the virtual clock of
node/sim/network.py; each node is a real conversation driver (node/sim/peer.py or one of
node/sim/hostile.py). It decides nothing about records: node/sim/pool.py makes them and
node/sim/scenario.py runs the phases and measures.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from node.sim.graph import connect_honest, trust_graph
from node.sim.hostile import DRIVERS, HOSTILE_KINDS, Flooder, Replayer
from node.sim.network import Clock, Link, LinkModel
from node.sim.peer import End, SimNode
from protocol.conversation import Conversation, Role
from protocol.identity import Identity, NodeId
from protocol.record import Record

EPOCH_MS = 1_800_000_000_000  # the simulated wall clock at t = 0
NETWORK_KEY = hashlib.blake2b(b"canopy-sim-network-key", digest_size=32).digest()


@dataclass(slots=True)
class Config:
    nodes: int = 100
    seed: int = 1
    degree: float = 4.0  # average number of trusted peers
    servers: int = 0  # community servers (0: nodes // 100, at least 2)
    server_share: float = 0.05  # of all nodes, how many each server peers with
    offline: float = 0.10  # share of nodes down at any time in the first phase
    hostile: float = 0.05
    hostile_kinds: tuple[str, ...] = HOSTILE_KINDS  # behaviours, assigned in turn
    records: int = 20
    peers_scoped: float = 0.2  # share of the records published to the author's peers only
    latency: float = 0.1  # median one-way link latency, seconds
    jitter: float = 0.1  # sigma of its lognormal
    loss: float = 0.0005  # chance one message resets its connection
    start: float = 3.0  # first publish
    publish_window: float = 12.0
    partition: bool = True
    churn_every: float = 1.0
    settle: float = 30.0
    resync: float = 15.0
    idle: float = 30.0  # phase three: seconds with nothing published
    db_dir: str = ""  # SQLite files here (default: in memory)


def identity_of(index: int) -> Identity:
    return Identity(
        hashlib.blake2b(b"canopy-sim-node" + index.to_bytes(4, "big"), digest_size=32).digest()
    )


class World:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = Clock(config.seed)
        rnd = self.clock.random
        n = config.nodes
        servers = config.servers or max(2, n // 100)
        self.edges = trust_graph(n, servers, config.server_share, config.degree, rnd)
        self.adjacent: list[set[int]] = [set() for _ in range(n)]
        for u, v in self.edges:
            self.adjacent[u].add(v)
            self.adjacent[v].add(u)
        small = list(range(servers, n))
        hostile = sorted(rnd.sample(small, round(n * config.hostile)))
        kinds = config.hostile_kinds
        self.kind = {h: kinds[k % len(kinds)] for k, h in enumerate(hostile)}
        connect_honest(self.edges, self.adjacent, n, self.kind, rnd)
        self.identities = [identity_of(i) for i in range(n)]
        self.node_ids: list[NodeId] = [i.node_id for i in self.identities]
        self.nodes: list[SimNode] = []
        for i in range(n):
            path = os.path.join(config.db_dir, f"node-{i}.db") if config.db_dir else ":memory:"
            cls = DRIVERS.get(self.kind.get(i, ""), SimNode)
            node = cls(i, self.identities[i], path)
            if isinstance(node, Flooder | Replayer):
                node.clock = self.clock
            node.now = lambda: self.clock.now
            node.now_ms = lambda: EPOCH_MS + int(self.clock.now * 1000)
            node.ids = self.node_ids.__getitem__
            node.honest = self.honest
            self.nodes.append(node)
        self.model = LinkModel(config.latency, config.jitter, config.loss)
        self.live: dict[tuple[int, int], tuple[Link, Link]] = {}
        self.side: list[int] = [0] * n  # partition side; all 0 when healed
        self.pool: list[tuple[float, int, Record]] = []  # (publish time, author, record)
        self.alert: tuple[float, int, Record] | None = None
        self.publishers: set[int] = set()
        self.crashed_at: list[float] = [-1.0] * n

    def honest(self, index: int) -> bool:
        return index not in self.kind

    def reachable(self, start: int) -> dict[int, int]:
        """Honest online nodes reachable from `start` over live connections (`start`
        excluded), each with its distance in hops."""
        hops = {start: 0}
        frontier = [start]
        while frontier:
            after: list[int] = []
            for x in frontier:
                for y in sorted(self.adjacent[x]):
                    if y not in hops and self.honest(y) and (min(x, y), max(x, y)) in self.live:
                        hops[y] = hops[x] + 1
                        after.append(y)
            frontier = after
        del hops[start]
        return hops

    # -- connections -----------------------------------------------------------------

    def eligible(self, u: int, v: int) -> bool:
        a, b = self.nodes[u], self.nodes[v]
        return (
            a.online
            and b.online
            and self.side[u] == self.side[v]
            and not a.banned(v)
            and not b.banned(u)
        )

    def dial(self, u: int, v: int, delay: float) -> None:
        """The lower index dials; after the handshake's two round trips, both say Hello."""
        u, v = min(u, v), max(u, v)
        handshake = 4 * self.config.latency
        self.clock.after(delay + handshake, lambda: self._open(u, v))

    def _open(self, u: int, v: int) -> None:
        if (u, v) in self.live or not self.eligible(u, v):
            return
        cu, cv = self._conversation(u, v, Role.INITIATOR), self._conversation(v, u, Role.RESPONDER)
        tag_uv = u.to_bytes(4, "big") + v.to_bytes(4, "big")
        lost = lambda: self.drop(u, v, "reset")  # noqa: E731
        uv = Link(self.clock, self.model, lambda d: self.nodes[v].receive(u, d), lost, tag_uv)
        vu = Link(self.clock, self.model, lambda d: self.nodes[u].receive(v, d), lost, tag_uv[::-1])
        self.live[(u, v)] = (uv, vu)
        close: Callable[[str], None] = lambda reason: self.drop(u, v, reason)  # noqa: E731
        self.nodes[u].opened(End(v, cu, uv.send, close))
        if (u, v) in self.live:
            self.nodes[v].opened(End(u, cv, vu.send, close))

    def _conversation(self, us: int, peer: int, role: Role) -> Conversation:
        return Conversation(
            us=self.node_ids[us],
            peer=self.node_ids[peer],
            role=role,
            now=self.clock.now,
            resync_interval=self.config.resync,
        )

    def drop(self, u: int, v: int, reason: str) -> None:
        links = self.live.pop((min(u, v), max(u, v)), None)
        if links is None:
            return
        for link in links:
            link.open = False
        self.nodes[u].closed(v)
        self.nodes[v].closed(u)
        if self.eligible(u, v):  # a reset: redial with backoff
            self.dial(u, v, self.clock.random.uniform(0.375, 0.625))

    def start(self, index: int) -> None:
        node = self.nodes[index]
        if node.online:
            return
        node.online = True
        for peer in sorted(self.adjacent[index]):
            self.dial(index, peer, self.clock.random.uniform(0.0, 0.5))
        self._tick(node, node.generation)

    def _tick(self, node: SimNode, generation: int) -> None:
        if node.online and node.generation == generation:
            node.tick()
            self.clock.after(1.0, lambda: self._tick(node, generation))

    def crash(self, index: int) -> None:
        node = self.nodes[index]
        if node.online:
            node.crash()
            self.crashed_at[index] = self.clock.now

    def split(self) -> None:
        rnd = self.clock.random
        self.side = [rnd.randrange(2) for _ in range(self.config.nodes)]
        for u, v in sorted(self.live):
            if self.side[u] != self.side[v]:
                self.drop(u, v, "partition")

    def heal(self) -> None:
        self.side = [0] * self.config.nodes
        for u, v in self.edges:
            if (u, v) not in self.live and self.eligible(u, v):
                self.dial(u, v, self.clock.random.uniform(0.0, 0.5))

    # -- records ---------------------------------------------------------------------

    def publish(self, author: int, record: Record) -> None:
        self.nodes[author].store([record], source=None)
