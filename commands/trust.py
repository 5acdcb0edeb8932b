"""`invite`, `accept`, `trust`, `distrust`, `peers`: who this node trusts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from node import local_api as api

from .common import hours, now_ms, opened
from .output import Row, fields, print_rows, when


async def cmd_invite(args: argparse.Namespace) -> int:
    from node.config import load_config
    from node.trust import create_invite

    async with opened(args, notify=True) as local:
        addresses = list(args.address or [])
        if not addresses:
            status = api.call(local.path, "GET", "/v1/status")
            if status:
                addresses = list(status.get("advertise", []))
            else:
                addresses = list(
                    load_config(Path(args.config) if args.config else None).advertised()
                )
        invite = await create_invite(
            local, addresses, now_ms(), hours(args.hours), network=args.network
        )
    print(invite.to_code())
    print(
        f"(valid until {when(invite.expires)}, once; give it only to the organisation you mean "
        "to trust, over a channel you trust)",
        file=sys.stderr,
    )
    return 0


async def cmd_accept(args: argparse.Namespace) -> int:
    from node.trust import accept_invite

    async with opened(args, notify=True) as local:
        accepted = await accept_invite(local, args.code, now_ms(), args.network_name)
    peer, network = accepted.peer, accepted.network
    if accepted.added:
        beside = ", ".join(repr(n.name) for n in accepted.beside)
        print(
            f"this invite adds network {network.name!r} ({network.tag.hex()[:8]}) beside "
            f"{beside}: records shared with that network go only to its members"
        )
    print(f"trusted {peer.label} in network {network.name!r}")
    if accepted.invited_name and accepted.invited_name != network.name:
        print(f"(the inviter calls this network {accepted.invited_name!r})")
    fields(
        [
            ("id", peer.node_id),
            ("safety code", peer.node_id.safety_code()),
            ("addresses", ", ".join(peer.addresses) or "(none)"),
        ],
        width=13,
        indent="  ",
    )
    return 0


async def cmd_trust(args: argparse.Namespace) -> int:
    from node.trust import trust_node

    async with opened(args, notify=True) as local:
        peer = await trust_node(local, args.id, args.address, args.name or "", now_ms())
    print(f"trusted {peer.label}; safety code {peer.node_id.safety_code()}")
    return 0


async def cmd_distrust(args: argparse.Namespace) -> int:
    from node.trust import distrust

    async with opened(args, notify=True) as local:
        peer = await distrust(local, args.peer)
    print(f"trust withdrawn from {peer.label}")
    return 0


async def cmd_peers(args: argparse.Namespace) -> int:
    from collections import Counter

    from node.peer_rows import stored_peer_rows
    from protocol.names import name_key

    # The running node's rows (stored peers with what it knows live), else the store's.
    async with opened(args) as local:
        live = api.call(local.path, "GET", "/v1/peers")
        rows: list[dict[str, Any]] = live["peers"] if live else await stored_peer_rows(local)
    # A name more than one peer goes by is never shown alone: one may pose as the other.
    keys = Counter(name_key(r["name"]) for r in rows if r["name"])

    def cells(r: Row) -> Row:
        name = r["name"]
        return {
            "NAME": (name + f" ({r['id'][:10]})" if keys[name_key(name)] > 1 else name) or "-",
            "ID": r["id"][:16],
            "STATE": r["state"],
            "LAST SYNC": when(r["last_sync"]),
            "SCORE": "-" if r["score"] is None else str(r["score"]),
            "LAST ERROR": r["last_error"][:40],
        }

    empty = "no trusted peers yet: `canopy invite` / `canopy accept CODE`"
    print_rows(args.json, {"peers": rows}, empty, cells)
    return 0
