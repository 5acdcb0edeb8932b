"""`circle create|add|remove|list|oncall|set`, `away`: groups of peers with a key that changes
when one leaves, their on-call rota and response target, and being off duty."""

from __future__ import annotations

import argparse

from .common import now_ms, opened
from .output import Row, duration, print_rows, printable, table


async def cmd_circle_create(args: argparse.Namespace) -> int:
    from node import circles, oncall

    target = oncall.parse_target(args.response_target) if args.response_target else None
    async with opened(args, notify=True) as local:
        made = await circles.create(local, args.name, args.history, now_ms())
        if target is not None:
            await oncall.set_target(local, made.id.hex(), target, now_ms())
    print(f"created circle {made.name!r} ({made.id.hex()[:8]}), history: {made.history.value}")
    print(f"  add members with: canopy circle add {made.name!r} PEER")
    return 0


async def cmd_circle_add(args: argparse.Namespace) -> int:
    from node import circles

    async with opened(args, notify=True) as local:
        state, peer = await circles.add(local, args.name, args.peer, now_ms())
    shared = "with its history" if state.history.value == "all" else "from now on (new-only)"
    print(f"added {peer.short} to {state.name!r}: it reads what the circle shares {shared}")
    return 0


async def cmd_circle_remove(args: argparse.Namespace) -> int:
    from node import circles

    async with opened(args, notify=True) as local:
        state, peer = await circles.remove(local, args.name, args.peer, now_ms())
    print(
        f"removed {peer.short} from {state.name!r}: epoch {state.epoch} began, and nothing "
        "shared with the circle from now on is readable to it"
    )
    return 0


async def cmd_circle_list(args: argparse.Namespace) -> int:
    from node import circles

    async with opened(args) as local:
        rows = [r.to_json(local.node_id) for r in await circles.rows(local)]

    def cells(r: Row) -> Row:
        return {
            "NAME": r["name"],
            "ID": r["id"][:8],
            "OWNER": "you" if r["owned"] else r["owner"][:16],
            "EPOCH": str(r["epoch"]),
            "HISTORY": r["history"],
            "MEMBERS": ", ".join(r["member_names"]),
        }

    empty = "no circles yet: `canopy circle create NAME`"
    print_rows(args.json, {"circles": rows}, empty, cells)
    return 0


async def cmd_circle_oncall(args: argparse.Namespace) -> int:
    """`circle oncall NAME [PEER --from --to | --clear [PEER]]`: the rota (listed without
    PEER), a shift added, or shifts cleared."""
    from node import oncall

    now = now_ms()
    if args.clear:
        async with opened(args, notify=True) as local:
            state, n = await oncall.clear_shifts(local, args.name, args.peer, now)
        print(f"cleared {n} shift{'' if n == 1 else 's'} from the on-call rota of {state.name!r}")
        return 0
    if args.peer is not None:
        if not args.from_ or not args.to:
            from protocol.errors import CanopyError

            raise CanopyError("give the shift as --from WHEN --to WHEN (or --clear)")
        start = oncall.parse_when(args.from_, now, "--from")
        end = oncall.parse_when(args.to, now, "--to")
        async with opened(args, notify=True) as local:
            state, shift = await oncall.add_shift(local, args.name, args.peer, start, end, now)
        print(
            f"on call for {state.name!r}: {_short(shift.member)} from"
            f" {oncall.iso(shift.start)} to {oncall.iso(shift.end)}"
        )
        return 0
    async with opened(args) as local:
        rota = await oncall.rota(local, args.name, now)
    if args.json:
        from .output import print_json

        print_json(rota)
        return 0
    target = duration(int(str(rota["response_target_ms"])) / 1000)
    print(f"circle {printable(str(rota['circle']))!r}: first-response target {target}")
    on_call = rota["on_call_now"]
    assert isinstance(on_call, list)
    shown = printable(", ".join(on_call)) if on_call else "nobody (every member is asked)"
    print(f"on call now: {shown}")
    away = rota["away_now"]
    assert isinstance(away, list)
    for row in away:
        print(f"off duty:    {printable(row['member'])} until {oncall.iso(row['until'])}")
    shifts = rota["shifts"]
    assert isinstance(shifts, list)
    if not shifts:
        print("no shifts: add one with canopy circle oncall NAME PEER --from WHEN --to WHEN")
        return 0
    table(
        [
            [
                str(s["member"]),
                oncall.iso(s["from"]),
                oncall.iso(s["to"]),
                "on call now" if s["now"] else ("over" if s["over"] else ""),
                str(s["by"]),
            ]
            for s in shifts
        ],
        ["MEMBER", "FROM", "TO", "", "ADDED BY"],
    )
    return 0


def _short(raw: bytes) -> str:
    from protocol.identity import NodeId

    return NodeId(raw).short


async def cmd_circle_set(args: argparse.Namespace) -> int:
    """`circle set NAME --response-target DURATION`: the owner's settings of its circle."""
    from node import oncall

    target = oncall.parse_target(args.response_target)
    async with opened(args, notify=True) as local:
        state = await oncall.set_target(local, args.name, target, now_ms())
    print(f"{state.name!r}: first response to help requests within {duration(target / 1000)}")
    return 0


async def cmd_away(args: argparse.Namespace) -> int:
    """`away --until WHEN` / `away --off`: off duty in every circle (or back on duty);
    `away` alone says whether this node is off duty."""
    from node import oncall

    now = now_ms()
    if args.until is None and not args.off:
        async with opened(args) as local:
            until = await oncall.away_until(local, now)
        print(f"off duty until {oncall.iso(until)}" if until > now else "on duty")
        return 0
    until = 0 if args.off else oncall.parse_when(args.until, now, "--until")
    async with opened(args, notify=True) as local:
        told = await oncall.set_away(local, until, now)
    names = ", ".join(repr(c.name) for c in told)
    if until:
        print(f"off duty until {oncall.iso(until)}: not asked, not counted, in {names}")
    else:
        print(f"back on duty in {names}")
    return 0
