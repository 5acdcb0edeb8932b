"""`publish guide`, `alert`, `watch`, `withdraw`, `guides`, `show`: know-how."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from node import local_api as api

from .common import data_dir, now_ms, opened
from .output import print_json, table, when


async def cmd_publish_guide(args: argparse.Namespace) -> int:
    from node.content import publish_guides

    async with opened(args, notify=True) as local:
        published = await publish_guides(
            local,
            [Path(f) for f in args.files],
            title=args.title,
            lang=args.lang or "",
            topics=list(args.topic or []),
            region=args.region or "",
            to=args.to,
            now_ms=now_ms(),
            replaces=args.replaces,
        )
    if args.replaces:
        print(f"withdrew {args.replaces} (superseded)")
    for record, title in published:
        print(f"{record.id.hex()}  {title}  (to {args.to})")
    return 0


async def cmd_alert(args: argparse.Namespace) -> int:
    from node.content import publish_alert
    from protocol import limits

    async with opened(args, notify=True) as local:
        record = await publish_alert(
            local,
            args.text,
            to=args.to,
            urgency=args.urgency,
            now_ms=now_ms(),
            lifetime_ms=int(args.hours * 3600 * 1000)
            if args.hours
            else limits.DEFAULT_ALERT_LIFETIME_MS,
            ack=args.ack,
        )
        if args.ack:
            from node.acks import remember

            asked = await remember(local, record, args.to)
    print(f"{record.id.hex()}  alert ({args.urgency}) to {args.to}")
    if args.ack:
        print(f"asked {asked} recipient(s) to acknowledge it (see: canopy alerts)")
    return 0


async def cmd_watch(args: argparse.Namespace) -> int:
    """Print alerts as the running node receives them (Ctrl-C to stop)."""

    def started() -> None:
        print("watching for alerts (Ctrl-C to stop)", file=sys.stderr, flush=True)

    for entry in api.lines(data_dir(args), "/v1/watch", on_open=started):
        if args.json:
            print(json.dumps(entry), flush=True)
        elif entry.get("readable"):
            mark = "!!" if entry.get("urgency") == "high" else "--"
            at = when(int(entry["created"]))
            print(f"{mark} {at} from {entry['from']}: {entry['text']}", flush=True)
    return 0


async def cmd_withdraw(args: argparse.Namespace) -> int:
    from node.directory import withdraw

    async with opened(args, notify=True) as local:
        tombstone = await withdraw(local, args.id, now_ms())
    print(f"withdrew {args.id}; the withdrawal ({tombstone.id.hex()[:12]}) purges it everywhere")
    return 0


async def cmd_guides(args: argparse.Namespace) -> int:
    from node.content import readable
    from node.revocation import revoked_ids
    from protocol.content import Guide
    from protocol.record import Kind

    malformed: list[bytes] = []
    async with opened(args) as local:
        items, unreadable = await readable(local, Kind.GUIDE, now_ms(), malformed)
        peers = await local.peers()
        revoked = await revoked_ids(local)

    def author(node_id: Any) -> str:
        if node_id == local.node_id:
            return "you"
        peer = peers.get(node_id)
        return peer.label if peer else node_id.short

    guides = [(it, Guide.from_content(it.body.content)) for it in items]  # checked: typed
    rows = [
        {
            "id": it.record.id.hex(),
            "title": guide.title,
            "lang": guide.lang,
            "region": guide.region,
            "topics": list(guide.topics),
            "author": str(it.record.author),
            "author_label": author(it.record.author),
            "created": it.record.created,
            "scope": it.record.scope.name.lower(),
            # Its author's key was revoked: anyone holding the key may have written it.
            "unverified": it.record.author in revoked,
        }
        for it, guide in sorted(guides, key=lambda pair: -pair[0].record.created)
    ]
    if args.json:
        print_json(
            {"guides": rows, "held_unreadable": unreadable, "held_malformed": len(malformed)}
        )
        return 0
    if rows:
        table(
            [
                [
                    r["id"][:12],
                    str(r["title"])[:48],
                    str(r["lang"]),
                    r["author_label"] + (" UNVERIFIED (key revoked)" if r["unverified"] else ""),
                    when(r["created"]),
                ]
                for r in rows
            ],
            ["ID", "TITLE", "LANG", "FROM", "PUBLISHED"],
        )
    else:
        print("no guides this node can read")
    if unreadable:
        print(f"({unreadable} more held for others, unreadable here)")
    if malformed:
        print(f"({len(malformed)} malformed, not shown: their content breaks the guide schema)")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    from node.content import find
    from protocol.content import Alert, Guide
    from protocol.record import Kind

    async with opened(args) as local:
        item = await find(local, args.id, now_ms())
        peers = await local.peers()
    content = item.body.content
    peer = peers.get(item.record.author)
    if args.json:
        print_json(
            {
                "id": item.record.id.hex(),
                "kind": str(item.record.kind),
                "author": str(item.record.author),
                "created": item.record.created,
                "expires": item.record.expires,
                "content": {k: v for k, v in content.items() if not isinstance(v, bytes)},
            }
        )
        return 0
    who = (
        "you"
        if item.record.author == local.node_id
        else (peer.label if peer else item.record.author.short)
    )
    # open_record checked the content against its kind's schema: typed from here on.
    if item.record.kind is Kind.GUIDE:
        guide = Guide.from_content(content)
        title, text = guide.title, guide.text
        meta = [f"{k}: {v}" for k, v in (("lang", guide.lang), ("region", guide.region)) if v]
        if guide.topics:
            meta.append("topics: " + ", ".join(guide.topics))
    elif item.record.kind is Kind.ALERT:
        alert = Alert.from_content(content)
        title, text, meta = f"alert ({alert.urgency})", alert.text, []
    elif item.record.kind is Kind.CHECKLIST:
        from protocol.content import Checklist

        checklist = Checklist.from_content(content)
        title, meta = checklist.title, [f"review every {checklist.review_days} days"]
        text = "\n".join(f"{n}. {t}" for n, t in enumerate(checklist.items, start=1))
        text += f"\n\n(progress here: canopy checklist show {item.record.id.hex()[:12]})"
    else:
        title, text, meta = str(item.record.kind), "(see: canopy show --json)", []
    print(f"# {title}")
    print(f"id: {item.record.id.hex()}")
    print(
        f"from: {who}   published: {when(item.record.created)}"
        f"   expires: {when(item.record.expires)}"
    )
    if meta:
        print("   ".join(meta))
    print()
    print(text)
    return 0
