"""`publish checklist`, `checklists`, `checklist show|tick|untick|reviewed`: preparedness."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import now_ms, on_id, opened
from .output import Row, print_json, print_rows, table, when


async def cmd_publish_checklist(args: argparse.Namespace) -> int:
    from node.checklists import publish_checklist

    async with opened(args, notify=True) as local:
        record, checklist = await publish_checklist(
            local,
            Path(args.file),
            title=args.title,
            lang=args.lang or "",
            topics=list(args.topic or []),
            to=args.to,
            review_days=args.review_days,
            now_ms=now_ms(),
            translation_of=args.translation_of,
            replaces=args.replaces,
        )
    if args.replaces:
        print(f"withdrew {args.replaces} (superseded)")
    print(
        f"{record.id.hex()}  {checklist.title}  ({len(checklist.items)} items,"
        f" review every {checklist.review_days} days; to {args.to})"
    )
    return 0


def _next(row: Row) -> str:
    return "due now" if row["due"] else when(row["next_review"])


def _listed(row: Row) -> Row:
    return {
        "ID": str(row["id"])[:12],
        "TITLE": str(row["title"])[:48],
        "LANG": str(row["lang"]),
        "DONE": f"{row['ticked']}/{row['total']}",
        "NEXT REVIEW": _next(row),
    }


async def cmd_checklists(args: argparse.Namespace) -> int:
    from node.checklists import states, summary

    now = now_ms()
    async with opened(args) as local:
        found, unreadable = await states(local, now)
    rows = [summary(s, now) for s in found]
    if args.json:
        print_json({"checklists": rows, "held_unreadable": unreadable})
        return 0
    print_rows(False, {"checklists": rows}, "no checklists this node can read", _listed)
    if unreadable:
        print(f"({unreadable} more held for others or malformed, not shown)")
    return 0


async def cmd_checklist_show(args: argparse.Namespace) -> int:
    from node.checklists import detail, state

    row = detail(await on_id(args, state), now_ms())
    if args.json:
        print_json(row)
        return 0
    print(f"# {row['title']}")
    print(f"id: {row['id']}")
    print(
        f"done: {row['ticked']}/{row['total']}   last review: {when(row['last_review'])}"
        f"   next review: {_next(row)} (every {row['review_days']} days)"
    )
    print()
    items: list[Any] = row["items"]  # type: ignore[assignment]
    table(
        [
            [str(i["n"]), "[x]" if i["ticked"] else "[ ]", str(i["text"]), when(i["ticked_at"])]
            for i in items
        ],
        ["#", "DONE", "ITEM", "TICKED"],
    )
    return 0


async def cmd_checklist_tick(args: argparse.Namespace) -> int:
    from node.checklists import set_tick

    ticked = args.action == "tick"
    async with opened(args) as local:
        text = await set_tick(local, args.id, args.item, ticked, now_ms())
    print(f"{'ticked' if ticked else 'unticked'}: {text}")
    return 0


async def cmd_checklist_reviewed(args: argparse.Namespace) -> int:
    from node.checklists import mark_reviewed, summary

    row = summary(await on_id(args, mark_reviewed), now_ms())
    print(f"reviewed: {row['title']}; next review {when(row['next_review'])}")
    return 0
