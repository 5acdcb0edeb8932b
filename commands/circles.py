"""`circle create|add|remove|list`: groups of peers with a key that changes when one leaves."""

from __future__ import annotations

import argparse

from .common import now_ms, opened
from .output import Row, print_rows


async def cmd_circle_create(args: argparse.Namespace) -> int:
    from node import circles

    async with opened(args, notify=True) as local:
        made = await circles.create(local, args.name, args.history, now_ms())
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
