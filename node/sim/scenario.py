"""Scenarios for the simulator: a trust graph, a record pool, hostile nodes, phases, figures.

A run has two phases and an idle one. In the first, nodes churn (about `offline` of them
are down at any time: crashes keep the store), one partition splits the network and
heals, records and one alert are published, hostile nodes flood, withhold, replay or
sit silent on what they are asked.
Churn stops at the last publish; the first phase ends `settle` seconds later and every
component of online honest nodes must then agree. In the second phase every node
restarts and the partition is gone; at its end every honest node must hold exactly what
it may receive: network-scoped records everywhere, peers-scoped ones only at their
author's direct peers. The idle phase only measures what resync rounds cost.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from node.sim.network import Clock, Link, LinkModel
from node.sim.peer import End, SimNode
from protocol.conversation import Conversation, ConversationEvent, LookUp, Role
from protocol.envelope import seal_record
from protocol.identity import Identity, NodeId
from protocol.messages import Records, encode_message, split_records
from protocol.record import Kind, Record, Scope

EPOCH_MS = 1_800_000_000_000  # the simulated wall clock at t = 0
DAY_MS = 86_400_000
NETWORK_KEY = hashlib.blake2b(b"canopy-sim-network-key", digest_size=32).digest()
HOSTILE_KINDS = ("flood", "withhold", "replay", "silent")


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


@dataclass(slots=True)
class Figures:
    seed: int
    nodes: int
    records: int
    honest: int
    hostile: int
    converged: bool  # the final phase: every honest node holds exactly what it may
    components_converged: bool  # the first phase: every online component agrees
    violations: int  # records an honest node sent to one that may not receive them
    converge_s: float  # last fresh store in phase one after the last publish, sim s
    converge_hops: float  # the same in link latencies
    graph_hops: int  # how far (in links) the last publisher's farthest reachable node was
    final_converge_s: float  # phase two: from the restart to the last fresh store
    bytes_per_node_per_record: float  # all sync bytes in, per honest node per record
    bytes_ratio: float  # ... divided by the mean record size
    record_copies_per_node: float  # records received (with duplicates) / records
    mean_record_bytes: float
    # Alert latency, sim s, to 99 % / 100 % of the honest nodes reachable from its author
    # (through online honest nodes) when it was published, and that stayed up.
    alert_p99_s: float | None
    alert_p100_s: float | None
    alert_p99_online_s: float | None  # ... of all honest online nodes that stayed up
    alert_reached: float  # share of those online ones that had it at the end of phase one
    delivery_p50_s: float | None  # every network-scoped record to every reachable node
    delivery_p99_s: float | None
    delivery_max_s: float | None
    delivery_reached: float
    hostile_cut_off: int  # flooding/replaying nodes banned by at least one honest peer
    hostile_to_cut: int  # flooding/replaying nodes with an honest peer
    penalties: int
    stored: int  # records verified and stored by honest nodes, all nodes together
    sim_seconds: float
    cpu_seconds: float
    cpu_per_sim_hour: float  # over the whole run (publishing, churn, restarts)
    idle_cpu_per_sim_hour: float  # phase three: connected, nothing new, rounds only
    events: int
    digest: str
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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


def identity_of(index: int) -> Identity:
    return Identity(
        hashlib.blake2b(b"canopy-sim-node" + index.to_bytes(4, "big"), digest_size=32).digest()
    )


# -- hostile drivers -------------------------------------------------------------------


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


class Flooder(SimNode):
    """Pushes junk records (random bytes) as fast as it can."""

    clock: Clock

    def opened(self, end: End) -> None:
        super().opened(end)
        self._flood(end)

    def _flood(self, end: End) -> None:
        if self.ends.get(end.peer) is not end:
            return
        rnd = self.clock.random
        junk = tuple(rnd.randbytes(rnd.randrange(100, 400)) for _ in range(200))
        end.send(encode_message(Records(junk)))
        self.clock.after(0.05, lambda: self._flood(end))


class Replayer(SimNode):
    """Sends the records it holds again and again, far past the push allowance."""

    clock: Clock

    def opened(self, end: End) -> None:
        super().opened(end)
        self._replay(end)

    def _replay(self, end: End) -> None:
        if self.ends.get(end.peer) is not end:
            return
        rows = self.db.execute("SELECT data FROM records ORDER BY id LIMIT 100").fetchall()
        if rows:
            # 500 copies, each message holding a record once: a repeat within one message is
            # taken once by the receiving session, so the replay that costs is across them.
            held = [bytes(r[0]) for r in rows]
            for _ in range(500 // len(held) + 1):
                for message in split_records(held):
                    end.send(encode_message(message))
        self.clock.after(0.1, lambda: self._replay(end))


# -- the world -------------------------------------------------------------------------


class World:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.clock = Clock(config.seed)
        rnd = self.clock.random
        n = config.nodes
        self.edges = _trust_graph(n, config, rnd)
        self.adjacent: list[set[int]] = [set() for _ in range(n)]
        for u, v in self.edges:
            self.adjacent[u].add(v)
            self.adjacent[v].add(u)
        servers = config.servers or max(2, n // 100)
        small = list(range(servers, n))
        hostile = sorted(rnd.sample(small, round(n * config.hostile)))
        kinds = config.hostile_kinds
        self.kind = {h: kinds[k % len(kinds)] for k, h in enumerate(hostile)}
        _connect_honest(self.edges, self.adjacent, n, self.kind, rnd)
        self.identities = [identity_of(i) for i in range(n)]
        self.node_ids: list[NodeId] = [i.node_id for i in self.identities]
        self.nodes: list[SimNode] = []
        for i in range(n):
            path = os.path.join(config.db_dir, f"node-{i}.db") if config.db_dir else ":memory:"
            cls = {
                "flood": Flooder,
                "withhold": Withholder,
                "replay": Replayer,
                "silent": Silent,
            }.get(self.kind.get(i, ""), SimNode)
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
        now = self.clock.now
        cu = Conversation(
            us=self.node_ids[u],
            peer=self.node_ids[v],
            role=Role.INITIATOR,
            now=now,
            resync_interval=self.config.resync,
        )
        cv = Conversation(
            us=self.node_ids[v],
            peer=self.node_ids[u],
            role=Role.RESPONDER,
            now=now,
            resync_interval=self.config.resync,
        )
        tag_uv = u.to_bytes(4, "big") + v.to_bytes(4, "big")
        lost = lambda: self.drop(u, v, "reset")  # noqa: E731
        uv = Link(self.clock, self.model, lambda d: self.nodes[v].receive(u, d), lost, tag_uv)
        vu = Link(self.clock, self.model, lambda d: self.nodes[u].receive(v, d), lost, tag_uv[::-1])
        self.live[(u, v)] = (uv, vu)
        close: Callable[[str], None] = lambda reason: self.drop(u, v, reason)  # noqa: E731
        self.nodes[u].opened(End(v, cu, uv.send, close))
        if (u, v) in self.live:
            self.nodes[v].opened(End(u, cv, vu.send, close))

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


def _trust_graph(n: int, config: Config, rnd: object) -> list[tuple[int, int]]:
    import random

    assert isinstance(rnd, random.Random)
    servers = config.servers or max(2, n // 100)
    edges: set[tuple[int, int]] = set()
    per_server = max(3, round(n * config.server_share))
    for s in range(servers):
        for peer in rnd.sample(range(n), min(n - 1, per_server + 1)):
            if peer != s:
                edges.add((min(s, peer), max(s, peer)))
    target = round(n * config.degree / 2)
    while len(edges) < target:
        u, v = rnd.randrange(servers, n), rnd.randrange(servers, n)
        if u != v:
            edges.add((min(u, v), max(u, v)))
    return sorted(edges)


def _connect_honest(
    edges: list[tuple[int, int]],
    adjacent: list[set[int]],
    n: int,
    hostile: dict[int, str],
    rnd: object,
) -> None:
    """Join the honest nodes' components with one edge each: a trust graph in which
    honest nodes can reach each other without a hostile relay (else "converged" is moot)."""
    import random

    assert isinstance(rnd, random.Random)
    honest = [i for i in range(n) if i not in hostile]
    seen: set[int] = set()
    components: list[list[int]] = []
    for start in honest:
        if start in seen:
            continue
        stack, comp = [start], []
        seen.add(start)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in sorted(adjacent[x]):
                if y not in seen and y not in hostile:
                    seen.add(y)
                    stack.append(y)
        components.append(sorted(comp))
    for a, b in itertools.pairwise(components):
        u, v = rnd.choice(a), rnd.choice(b)
        edges.append((min(u, v), max(u, v)))
        adjacent[u].add(v)
        adjacent[v].add(u)
    edges.sort()


_POOLS: dict[tuple[int, int, int], list[tuple[float, int, Record]]] = {}


def _make_pool(world: World) -> list[tuple[float, int, Record]]:
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
    return [record.to_bytes() for _, _, record in _make_pool(world)]


# -- a run -----------------------------------------------------------------------------


def run(config: Config) -> Figures:
    """Run one scenario; the figures and the checks' outcome (asserted by the caller)."""
    cpu0 = time.process_time()
    world = World(config)
    clock = world.clock
    rnd = clock.random
    n = config.nodes
    world.pool = _make_pool(world)
    for i, node in enumerate(world.nodes):
        node.may_hold = expected(world, i).__contains__
    last_publish = max(at for at, _, _ in world.pool)
    world.publishers = {author for _, author, _ in world.pool}  # they stay up
    churners = [i for i in range(n) if i not in world.publishers]
    offline = set(rnd.sample(churners, round(n * config.offline)))
    for i in range(n):
        if i not in offline:
            world.start(i)
    reach: dict[bytes, tuple[float, dict[int, int]]] = {}  # record -> (published, hops)
    for at, author, record in world.pool:

        def publish(a: int = author, r: Record = record, t: float = at) -> None:
            reach[r.id] = (t, world.reachable(a))
            world.publish(a, r)

        clock.at(at, publish)
    if config.partition:
        clock.at(config.start + config.publish_window * 0.2, world.split)
        clock.at(config.start + config.publish_window * 0.5, world.heal)
    t = config.churn_every
    while t < last_publish:
        clock.at(t, lambda: _churn(world))
        t += config.churn_every
    alert_at, alert_author, alert = world.alert or (0.0, 0, world.pool[-1][2])
    online_at_alert: list[int] = []
    clock.at(
        alert_at,
        lambda: online_at_alert.extend(
            i for i in range(n) if world.nodes[i].online and world.honest(i) and i != alert_author
        ),
    )
    end_one = last_publish + config.settle
    clock.run_until(end_one)
    components_ok = _components_agree(world)
    fresh_one = [
        at
        for i, node in enumerate(world.nodes)
        if world.honest(i)
        for at in node.stored_at.values()
        if at <= end_one
    ]
    converge_s = max(0.0, max(fresh_one, default=0.0) - last_publish)
    latencies = sorted(
        world.nodes[i].stored_at[alert.id] - alert_at
        for i in online_at_alert
        if world.crashed_at[i] < alert_at
        and alert.id in world.nodes[i].stored_at
        and world.nodes[i].stored_at[alert.id] <= end_one
    )
    # Of the honest nodes online when it was published, those that stayed up.
    stayed = [i for i in online_at_alert if world.crashed_at[i] < alert_at]
    reached = len(latencies) / max(1, len(stayed))
    # Delivery: each network-scoped record to the honest nodes that could be reached from
    # its author (through online honest nodes) when it was published and stayed up.
    delays: list[float] = []
    due = 0
    alert_reachable: list[float] = []
    network = {r.id for _, _, r in world.pool if r.scope is Scope.NETWORK}
    for rid, (t0, nodes) in sorted(reach.items()):
        if rid not in network:
            continue
        for i in nodes:
            if world.crashed_at[i] >= t0:
                continue
            due += 1
            got = world.nodes[i].stored_at.get(rid)
            if got is not None and got <= end_one:
                delays.append(got - t0)
                if rid == alert.id:
                    alert_reachable.append(got - t0)
    delays.sort()
    alert_reachable.sort()
    alert_due = sum(1 for i in reach.get(alert.id, (0.0, {}))[1] if world.crashed_at[i] < alert_at)
    # The farthest reachable node from the last publisher, in hops: the floor for pushes.
    last_id = max(world.pool, key=lambda p: p[0])[2].id
    graph_hops = max(reach.get(last_id, (0.0, {0: 0}))[1].values(), default=0)
    # Phase two: everyone back, nothing split.
    world.heal()
    for i in range(n):
        world.start(i)
    end_two = end_one + config.settle
    clock.run_until(end_two)
    converged = _converged(world)
    # Phase three: nothing new; what the resync rounds alone cost.
    idle_cpu0 = time.process_time()
    clock.run_until(end_two + config.idle)
    idle_cpu = time.process_time() - idle_cpu0
    final = [
        at
        for i, node in enumerate(world.nodes)
        if world.honest(i)
        for at in node.stored_at.values()
    ]
    final_converge_s = max(0.0, max(final, default=end_one) - end_one)
    honest = [node for i, node in enumerate(world.nodes) if world.honest(i)]
    records = len(world.pool)
    mean_bytes = sum(len(r.to_bytes()) for _, _, r in world.pool) / records
    per_node = sum(node.stats.honest_bytes_in for node in honest) / len(honest) / records
    to_cut = [
        h
        for h, kind in world.kind.items()
        if kind in ("flood", "replay") and any(world.honest(p) for p in world.adjacent[h])
    ]
    cut = [h for h in to_cut if any(world.nodes[p].banned_until.get(h) for p in world.adjacent[h])]
    failures: dict[str, int] = {}
    for node in honest:
        for name, count in node.stats.failures.items():
            failures[name] = failures.get(name, 0) + count
    cpu = time.process_time() - cpu0
    return Figures(
        seed=config.seed,
        nodes=n,
        records=records,
        honest=len(honest),
        hostile=len(world.kind),
        converged=converged,
        components_converged=components_ok,
        violations=sum(node.stats.violations for node in honest),
        converge_s=round(converge_s, 3),
        converge_hops=round(converge_s / config.latency, 1),
        graph_hops=graph_hops,
        final_converge_s=round(final_converge_s, 3),
        bytes_per_node_per_record=round(per_node, 1),
        bytes_ratio=round(per_node / mean_bytes, 2),
        record_copies_per_node=round(
            sum(x.stats.honest_copies_in for x in honest) / len(honest) / records, 2
        ),
        mean_record_bytes=round(mean_bytes, 1),
        alert_p99_s=_quantile(alert_reachable, 0.99, alert_due),
        alert_p100_s=_quantile(alert_reachable, 1.0, alert_due),
        alert_p99_online_s=_quantile(latencies, 0.99, len(stayed)),
        delivery_p50_s=_quantile(delays, 0.5, due),
        delivery_p99_s=_quantile(delays, 0.99, due),
        delivery_max_s=_quantile(delays, 1.0, due),
        delivery_reached=round(len(delays) / max(1, due), 4),
        alert_reached=round(reached, 4),
        hostile_cut_off=len(cut),
        hostile_to_cut=len(to_cut),
        penalties=sum(node.stats.penalties for node in honest),
        stored=sum(node.stats.verified for node in honest),
        sim_seconds=round(clock.now, 3),
        cpu_seconds=round(cpu, 2),
        cpu_per_sim_hour=round(cpu / clock.now * 3600, 1),
        idle_cpu_per_sim_hour=round(idle_cpu / config.idle * 3600, 1) if config.idle else 0.0,
        events=clock.events,
        digest=clock.digest,
        failures=failures,
    )


def _quantile(values: list[float], q: float, population: int) -> float | None:
    """The time by which a share q of `population` had it; None if fewer ever did."""
    need = max(1, -(-int(q * population * 1000) // 1000))
    if len(values) < need:
        return None
    return round(values[need - 1], 3)


def _churn(world: World) -> None:
    """Keep about `offline` of the nodes down: one crashes, one restarts."""
    rnd = world.clock.random
    up = [i for i, node in enumerate(world.nodes) if node.online and i not in world.publishers]
    down = [i for i, node in enumerate(world.nodes) if not node.online]
    if up:
        world.crash(rnd.choice(up))
    if down:
        world.start(rnd.choice(down))


def expected(world: World, index: int) -> set[bytes]:
    """What an honest node may and must hold: every published network-scoped record, and
    the peers-scoped ones of its own and of its direct peers."""
    out: set[bytes] = set()
    for _, author, record in world.pool:
        if record.scope is Scope.NETWORK or author == index or author in world.adjacent[index]:
            out.add(record.id)
    return out


def _converged(world: World) -> bool:
    return all(
        world.nodes[i].holdings() == expected(world, i)
        for i in range(world.config.nodes)
        if world.honest(i)
    )


def _components_agree(world: World) -> bool:
    """Phase one: within each component of online honest nodes, every node holds every
    network-scoped record any of them holds, and the peers-scoped ones of its online
    direct peers in the component; none holds what it may not."""
    n = world.config.nodes
    online = [i for i in range(n) if world.honest(i) and world.nodes[i].online]
    up = set(online)
    seen: set[int] = set()
    by_id = {r.id: (author, r) for _, author, r in world.pool}
    for start in online:
        if start in seen:
            continue
        comp, stack = [], [start]
        seen.add(start)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in sorted(world.adjacent[x]):
                if y in up and y not in seen and world.side[y] == world.side[x]:
                    seen.add(y)
                    stack.append(y)
        holdings = {i: world.nodes[i].holdings() for i in comp}
        network = {
            rid
            for held in holdings.values()
            for rid in held
            if by_id[rid][1].scope is Scope.NETWORK
        }
        for i in comp:
            held = holdings[i]
            if not held <= expected(world, i) or not network <= held:
                return False
            for j in world.adjacent[i]:
                if j in holdings:
                    own = {rid for rid in holdings[j] if by_id[rid][0] == j}
                    if not own <= held:
                        return False
    return True
