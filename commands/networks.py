"""`networks [--json]`, `networks leave NAME`: the networks this node belongs to."""

from __future__ import annotations

import argparse

from .common import opened
from .output import Row, print_rows, when


async def cmd_networks(args: argparse.Namespace) -> int:
    from node.networks import network_rows

    async with opened(args) as local:
        rows = await network_rows(local)

    def cells(r: Row) -> Row:
        return {
            "NAME": r["name"] + (" (first)" if r["primary"] else ""),
            "TAG": r["tag"][:16],
            "JOINED": when(r["joined"]),
            "MEMBERS": str(r["member_count"]),
            "RECORDS": str(r["records"]),
            "PEERS": ", ".join(r["member_names"]) or "-",
        }

    print_rows(args.json, {"networks": rows}, "no networks (damaged store?)", cells)
    return 0


async def cmd_networks_leave(args: argparse.Namespace) -> int:
    async with opened(args, notify=True) as local:
        left = await local.leave_network(args.name)
        rest = [n.name for n in await local.networks()]
    print(
        f"left network {left.name!r}: its key and pending invites are gone; "
        f"still in: {', '.join(rest)}"
    )
    return 0
