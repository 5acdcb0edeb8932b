"""`publish guide`, `alert`, `watch`, `withdraw`, `guides`, `show`: know-how."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from node import local_api as api

from .common import data_dir, now_ms, on_id, opened
from .output import print_json, table, when


async def cmd_publish_guide(args: argparse.Namespace) -> int:
    from node.content import publish_guides

    report: list[str] = []
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
            translation_of=args.translation_of,
            attach=[Path(p) for p in args.attach or []],
            keep_metadata=args.keep_metadata,
            report=report,
        )
    for line in report:  # what metadata left the files before they were sealed
        print(line)
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

    tombstone = await on_id(args, withdraw, notify=True)
    print(f"withdrew {args.id}; the withdrawal ({tombstone.id.hex()[:12]}) purges it everywhere")
    return 0


def _languages(args: argparse.Namespace) -> list[str]:
    """The reader's languages, preferred first: --lang, then `[content] languages`."""
    from node.config import load_config

    configured = load_config(Path(args.config) if args.config else None).languages
    return list(dict.fromkeys([*([args.lang] if args.lang else []), *configured]))


async def cmd_guides(args: argparse.Namespace) -> int:
    from urllib.parse import urlencode

    query = {
        name: value
        for name, value in (
            ("lang", args.lang),
            ("topic", args.topic),
            ("region", args.region),
            ("from", args.author),
            ("search", args.search),
            ("limit", str(args.limit) if args.limit is not None else ""),
            ("prefer", ",".join(_languages(args))),
        )
        if value
    }
    # A running node answers from its live index; else the sealed cache of this directory.
    answer = api.call(data_dir(args), "GET", "/v1/guides?" + urlencode(query), timeout=60)
    if answer is None:
        answer = await _guides_here(args, query)
    rows: list[dict[str, Any]] = answer["guides"]
    unreadable, malformed = int(answer["held_unreadable"]), int(answer["held_malformed"])
    if args.json:
        print_json(answer)
        return 0
    if rows:
        table(
            [
                [
                    r["id"][:12],
                    str(r["title"])[:48],
                    str(r["lang"]),
                    " ".join(sorted({str(v["lang"]) for v in r["languages"]} - {r["lang"]})),
                    r["author_label"] + (" UNVERIFIED (key revoked)" if r["unverified"] else ""),
                    when(r["created"]),
                ]
                for r in rows
            ],
            ["ID", "TITLE", "LANG", "ALSO IN", "FROM", "PUBLISHED"],
        )
    else:
        print("no guides this node can read" + (" match" if len(query) > 1 else ""))
    if int(answer.get("lessons", len(rows))) > len(rows):
        print(f"({int(answer['lessons']) - len(rows)} more lessons match: raise --limit)")
    if unreadable:
        print(f"({unreadable} more held for others, unreadable here)")
    if malformed:
        print(f"({malformed} malformed, not shown: their content breaks the guide schema)")
    return 0


async def _guides_here(args: argparse.Namespace, query: dict[str, str]) -> dict[str, Any]:
    import gc

    from node.library import build_guides, listing, wanted_of
    from node.revocation import revoked_ids

    async with opened(args) as local:
        now = now_ms()
        index = await build_guides(local, now)
        gc.freeze()  # what it built lives until the process ends: no collector passes over it
        peers = await local.peers()
        revoked = await revoked_ids(local)
    wanted = wanted_of(index, peers, query)
    prefer = [lang for lang in query.get("prefer", "").split(",") if lang]
    return listing(index, wanted, now, prefer, peers, local.node_id, revoked)


async def cmd_show(args: argparse.Namespace) -> int:
    from node.content import find
    from node.guide_index import GuideEntry, choose
    from node.library import build_guides
    from protocol.content import Alert, Guide
    from protocol.record import Kind

    from .attachments import attachment_rows, describe

    others: list[GuideEntry] = []
    async with opened(args) as local:
        now = now_ms()
        item = await find(local, args.id, now)
        if item.record.kind is Kind.GUIDE:  # a lesson: open it in the reader's language
            lesson = Guide.from_content(item.body.content).translation_of or item.record.id
            versions = (await build_guides(local, now)).lesson_of(lesson, now)
            if versions:
                chosen = choose(versions, lesson, _languages(args))
                if chosen.rid != item.record.id:
                    item = await find(local, chosen.rid.hex(), now)
                others = [v for v in versions if v.rid != item.record.id]
        peers = await local.peers()
        files = (
            await attachment_rows(local, Guide.from_content(item.body.content).attachments)
            if item.record.kind is Kind.GUIDE
            else []
        )
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
                "content": {
                    k: v.hex() if isinstance(v, bytes) else v
                    for k, v in content.items()
                    if k != "attachments"
                },
                "languages": [{"lang": v.lang, "id": v.rid.hex()} for v in others],
                "attachments": files,
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
    if others:
        also = ", ".join(f"{v.lang or '?'} {v.rid.hex()[:12]}" for v in others)
        print(f"also in: {also}")
    if files:
        print("attachments:")
        for row in files:
            print(describe(row))
    print()
    print(text)
    return 0
