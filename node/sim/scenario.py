"""A simulated run: its phases, what it checks and the figures it measures (issue 12).

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

import time
from dataclasses import asdict, dataclass, field

from node.sim.checks import components_agree, expected
from node.sim.checks import converged as all_converged
from node.sim.pool import make_pool, sample_records
from node.sim.world import NETWORK_KEY, Config, World
from protocol.record import Record, Scope

__all__ = ["NETWORK_KEY", "Config", "Figures", "run", "sample_records"]


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
    # The same, leaving out the stores that came over a connection opened after the last
    # publish (a redial after a reset, a restart) or downstream of one: the propagation
    # itself, without the redial backoff and handshake a lost connection costs.
    steady_converge_s: float
    steady_converge_hops: float
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
    # ... share of them reachable from its author when it was published: the ceiling of
    # `alert_reached` (a node whose every peer is down or hostile cannot get it).
    alert_reachable: float
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


# -- a run -----------------------------------------------------------------------------


def run(config: Config) -> Figures:
    """Run one scenario; the figures and the checks' outcome (asserted by the caller)."""
    cpu0 = time.process_time()
    world = World(config)
    clock = world.clock
    rnd = clock.random
    n = config.nodes
    world.pool = make_pool(world)
    for i, node in enumerate(world.nodes):
        node.may_hold = expected(world, i).__contains__
    last_publish = max(at for at, _, _ in world.pool)
    for node in world.nodes:
        node.reconnect_after = last_publish
        node.peer_behind = lambda peer, rid: rid in world.nodes[peer].behind_reconnect
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
    components_ok = components_agree(world)
    fresh_one = [
        at
        for i, node in enumerate(world.nodes)
        if world.honest(i)
        for at in node.stored_at.values()
        if at <= end_one
    ]
    converge_s = max(0.0, max(fresh_one, default=0.0) - last_publish)
    steady_one = [
        at
        for i, node in enumerate(world.nodes)
        if world.honest(i)
        for rid, at in node.stored_at.items()
        if at <= end_one and rid not in node.behind_reconnect
    ]
    steady_s = max(0.0, max(steady_one, default=0.0) - last_publish)
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
    converged = all_converged(world)
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
        steady_converge_s=round(steady_s, 3),
        steady_converge_hops=round(steady_s / config.latency, 1),
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
        alert_reachable=round(alert_due / max(1, len(stayed)), 4),
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
