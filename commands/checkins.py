"""`checkin`, `checkin plan|pause|resume|status|reached|unreachable`: check-ins watched by
a circle (node/checkins.py). A check-in prints the same lines with or without duress."""

from __future__ import annotations

import argparse

from .common import now_ms, opened
from .output import Row, duration, print_rows, when


async def cmd_checkin(args: argparse.Namespace) -> int:
    from node.checkins import check_in

    async with opened(args, notify=True) as local:
        state = await check_in(local, duress=args.duress, pin=args.pin, now=now_ms())
    print(f"checked in; next check-in due {when(state.next_due)}")
    return 0


async def cmd_checkin_plan(args: argparse.Namespace) -> int:
    from node.checkins import make_plan, parse_duration

    every = parse_duration(args.every, "--every")
    grace = parse_duration(args.grace, "--grace")
    async with opened(args, notify=True) as local:
        state, circle = await make_plan(
            local,
            every=every,
            grace=grace,
            circle_ref=args.circle,
            message=args.message,
            confirmations=args.confirmations,
            escalate_to=args.escalate_to,
            duress_pin=args.duress_pin,
            now=now_ms(),
        )
    others = len(circle.members) - 1
    print(
        f"check-in plan set: every {duration(every / 1000)}, grace {duration(grace / 1000)},"
        f" watched by circle {circle.name!r} ({others} other{'' if others == 1 else 's'};"
        f" {state.confirmations} to escalate to {args.escalate_to})"
    )
    print(f"first check-in due {when(state.next_due)}")
    return 0


async def cmd_checkin_pause(args: argparse.Namespace) -> int:
    from node.checkins import parse_duration, pause

    now = now_ms()
    until = now + parse_duration(args.for_, "--for") if args.action == "pause" else None
    async with opened(args, notify=True) as local:
        state = await pause(local, until=until, now=now)
    if until is not None:
        print(f"check-ins paused; next check-in due {when(state.next_due)}")
    else:
        print(f"check-ins resumed; next check-in due {when(state.next_due)}")
    return 0


def _listed(row: Row) -> Row:
    state = str(row["state"]) + (" DURESS" if row["duress"] else "")
    return {
        "DEFENDER": str(row["defender_name"])[:24],
        "CIRCLE": str(row["circle"])[:24],
        "NEXT DUE": when(int(str(row["next_due"]))),
        "LAST": when(row["last_checkin"]),
        "STATE": state,
        "UNREACHABLE": f"{row['unreachable']}/{row['confirmations']}",
    }


async def cmd_checkin_status(args: argparse.Namespace) -> int:
    from node.checkins import rows

    async with opened(args) as local:
        found = await rows(local, now_ms())
    print_rows(args.json, {"plans": found}, "no check-in plans made or watched here", _listed)
    return 0


async def cmd_checkin_report(args: argparse.Namespace) -> int:
    from node.checkins import report
    from protocol.checkin import Op

    op = Op.REACHED if args.action == "reached" else Op.UNREACHABLE
    async with opened(args, notify=True) as local:
        state, alert = await report(local, args.defender, op, now_ms())
    if op is Op.REACHED:
        print("recorded: reached; the missed check-in is cancelled")
    else:
        print(f"recorded: unreachable ({len(state.unreachable)} of {state.confirmations})")
    if alert is not None:
        print(f"escalated: alert {alert.id.hex()[:12]} sent to {state.escalate}")
    return 0
