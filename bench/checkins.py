"""Issue 16's check-in targets: a member node watching 1,000 active check-in plans uses at
most 1 % of a core while idle, and detects a missed check-in at most 1 s after its grace.

W (the watcher) owns the circles; `plans` defenders (identities made here) are members,
each with a plan and a check-in sealed to its circle, due in an hour: W's store holds them
as if they had arrived from peers. Beside W runs E, an empty node, over the same window:
the idle cost of a node with no plans. After the window, `late` more defenders' plans are
written into W's store (as `canopy` writes), due within seconds (grace 1 s, 250 ms apart);
each missed-check-in notice says when W raised it (`received_at_ms`), and lateness is that
minus due + grace.
"""

from __future__ import annotations

import asyncio
import time

from bench.data import NodeDir, create_dir, network_key, progress
from bench.harness import Node, Result, free_port, wait_for, workspace
from node import circles
from node.clock import now_ms
from node.local import Local, random
from node.store import row_of
from protocol import circle, limits
from protocol.checkin import CheckIn, Op
from protocol.envelope import seal_record
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

SEED = 16
PER_CIRCLE = 500  # members of one circle (within MAX_CIRCLE_MEMBERS)
HOUR = 3_600_000


def _records(defender: Identity, key: bytes, cid: bytes, due: int, grace: int) -> list[Record]:
    """A plan and one check-in due at `due`, sealed to the circle's key (as `checkin plan`
    and `checkin` write them), the mark to W alone."""
    me, now = defender.node_id.raw, now_ms()
    plan_id = random(limits.CHECKIN_PLAN_ID_BYTES)
    contents = [
        CheckIn(plan_id, Op.PLAN, me, 0, circle=cid, every=HOUR, grace=grace,
                next_due=now + HOUR, confirmations=1, escalate="network", message="bench"),
        CheckIn(plan_id, Op.CHECKIN, me, 1, next_due=due, mark=b""),
    ]  # fmt: skip
    return [
        seal_record(
            defender,
            Kind.CHECKIN,
            content.to_content(),
            created=now + n,
            expires=now + limits.CHECKIN_LIFETIME_MS,
            scope=Scope.NETWORK,
            recipients=[],
            network_key=None,
            random=random,
            circle_keys=[key],
        )
        for n, content in enumerate(contents)
    ]


Late = list[tuple[Identity, bytes, bytes]]  # a defender, its circle's key and id


async def _fill(w: NodeDir, plans: int, late: int, grace: int) -> Late:
    """W's circles and their members' plans, due in an hour (stored as received from peers);
    the `late` defenders are members too, their plans written later (`_late`)."""
    local = await Local.open(w.path, None)
    try:
        now = now_ms()
        defenders = [Identity(random(32)) for _ in range(plans + late)]
        later: Late = []
        rows = []
        for start in range(0, len(defenders), PER_CIRCLE):
            group = defenders[start : start + PER_CIRCLE]
            name = f"Watch {start // PER_CIRCLE}"
            state = await circles.create(local, name, "all", now)
            change = circle.add(state, local.node_id, [d.node_id for d in group], random)
            await circles.store_change(local, change, now)
            state = await circles.find(local, name)
            for n, defender in enumerate(group, start=start):
                if n >= plans:
                    later.append((defender, state.key, state.id))
                    continue
                for record in _records(defender, state.key, state.id, now + HOUR, grace):
                    rows.append(row_of(record, local=False))
            progress(f"checkins: {min(start + PER_CIRCLE, len(defenders)):,} plans sealed")
        await local.store.put_records(rows, now)
        return later
    finally:
        await local.close()


async def _late(w: NodeDir, later: Late, grace: int) -> list[int]:
    """Plans due in the next seconds, written into W's store while it runs (as `canopy`
    writes, then notifies it); their due times."""
    local = await Local.open(w.path, None)
    try:
        first = now_ms() + 3000
        dues = [first + n * 250 for n in range(len(later))]
        rows = [
            row_of(record, local=True)
            for (defender, key, cid), due in zip(later, dues, strict=True)
            for record in _records(defender, key, cid, due, grace)
        ]
        await local.store.put_records(rows, now_ms())
        return dues
    finally:
        await local.close()


async def checkins(
    plans: int = 1000,
    late: int = 20,
    window: float = 30.0,
    timeout: float = 120.0,
) -> Result:
    res = Result("checkins")
    grace = 1000
    async with workspace("checkins") as root:
        net = network_key(SEED)
        w_dir = await create_dir(root / "W", "W", free_port(), net)
        e_dir = await create_dir(root / "E", "E", free_port(), net)
        later = await _fill(w_dir, plans, late, grace)
        idle_env = {"CANOPY_SYNC_POLL_INTERVAL": "1.0"}  # the default: what an operator runs
        nw, ne = Node(w_dir, idle_env), Node(e_dir, idle_env)
        try:
            await asyncio.gather(nw.start(), ne.start())

            async def watching() -> bool:
                counts = (await nw.status()).get("checkins", {})
                return sum(counts.values()) >= plans

            await wait_for("W folds every plan", watching, timeout, 0.1)
            await asyncio.sleep(2.0)  # start-up work (first reconcile rounds) settles
            cpu_w, cpu_e, t0 = nw.cpu_s(), ne.cpu_s(), time.monotonic()
            await asyncio.sleep(window)
            span = time.monotonic() - t0
            idle_w = (nw.cpu_s() - cpu_w) / span * 100
            idle_e = (ne.cpu_s() - cpu_e) / span * 100
            due_late = await _late(w_dir, later, grace)  # after the idle window
            await nw.notify()

            async def all_raised() -> bool:
                alerts = (await nw.get("/v1/alerts"))["alerts"]
                return sum(a.get("kind") == "checkin_missed" for a in alerts) >= late

            last_due = max(due_late, default=now_ms()) + grace
            wait = max(0.0, (last_due - now_ms()) / 1000) + timeout
            await wait_for("W raises every missed check-in", all_raised, wait, 0.1)
            alerts = (await nw.get("/v1/alerts"))["alerts"]
        finally:
            await asyncio.gather(nw.stop(), ne.stop())
    missed = [a for a in alerts if a.get("kind") == "checkin_missed"]
    raised = {int(a["created"]): int(a["received_at_ms"]) for a in missed}
    lateness = sorted((raised[due] - (due + grace)) / 1000 for due in due_late if due in raised)
    early = [x for x in lateness if x < 0]
    res.add("plans", "active plans watched while idle", plans, "", fmt="{:,.0f}")
    res.add("idle_cpu_pct", "W's CPU while idle, watching them", idle_w, "% of a core", target=1.0)
    res.add("empty_cpu_pct", "E's CPU while idle, watching none", idle_e, "% of a core")
    res.add(
        "ratio_cpu_to_empty",
        "ratio W/E (the cost of watching)",
        idle_w / idle_e if idle_e else None,
        "x",
        missing="" if idle_e else "n/a (E used no measurable CPU)",
    )
    res.add(
        "late_max_s",
        "missed check-in raised, past due + grace (max)",
        lateness[-1] if lateness else None,
        "s",
        target=1.0,
        fmt="{:.3f}",
        missing="" if lateness else "n/a (no notice raised)",
    )
    res.add(
        "late_p50_s",
        "missed check-in raised, past due + grace (median)",
        lateness[len(lateness) // 2] if lateness else None,
        "s",
        fmt="{:.3f}",
    )
    res.add(
        "raised",
        "missed check-ins raised",
        len(lateness),
        "",
        target=late,
        goal=">=",
        fmt="{:,.0f}",
    )
    res.add("early", "raised before due + grace", len(early), "", target=0, fmt="{:,.0f}")
    res.details["lateness_s"] = lateness
    return res
