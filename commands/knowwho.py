"""`contact add`, `query`, `vouch`, `review`, `introduce`, `introductions`: know-who."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from node import local_api as api
from protocol.errors import CanopyError, UsageError

from .common import data_dir, now_ms, opened
from .output import Row, print_json, print_rows, printable, when


async def cmd_contact_add(args: argparse.Namespace) -> int:
    from node.directory import Draft, add_contact

    draft = Draft(
        kind=args.kind,
        name=args.name,
        region=args.region,
        langs=list(args.lang or []),
        channels=list(args.channel or []),
        specialties=list(args.specialty or []),
        notes=args.notes or "",
    )
    async with opened(args, notify=True) as local:
        added = await add_contact(
            local,
            draft,
            share=args.share,
            to=args.to,
            review_days=args.review_days,
            now_ms=now_ms(),
        )
    what = {
        "peers": "readable by your peers only, never passed on",
        "network": "readable by the whole network",
        "on-request": "others see that it exists; details only by introduction",
        "private": "never leaves this node",
        "circle": "readable by the circle's members only, never passed on",
    }[added.share.value]
    print(f"{added.record.id.hex()}  {args.kind} contact, share {added.share.value} ({what})")
    if len(added.records) > 1:  # --share network: one record per network
        print(f"(one record in each of {len(added.records)} networks)")
    if added.details is not None:
        print(
            f"(details kept here as {added.details.id.hex()[:12]}; the id above is what others see)"
        )
    return 0


def _stars(row: dict[str, Any]) -> str:
    vouchers = row.get("vouchers", [])
    names = ", ".join(
        f"{v['label']}" + (f" (d{v['distance']})" if v.get("distance") is not None else "")
        for v in vouchers
    )
    return names


def _print_hits(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no contacts match")
        return
    for row in rows:
        mark = " [STALE: due for re-verification]" if row["stale"] else ""
        if row.get("unverified"):
            mark += " [UNVERIFIED: every voucher's key was revoked]"
        langs = ",".join(row["langs"]) or "-"
        if row["teaser"]:
            title = f"(on request) {row['kind']} in {row['region']}, {langs}"
        else:
            title = f"{row['name']} — {row['kind']} in {row['region']}, {langs}"
        via = f"  via {row['via']}" if "via" in row else ""
        print(f"{row['id'][:12]}  {title}{mark}")
        if row.get("specialties"):
            print(f"    specialties: {', '.join(row['specialties'])}")
        for channel in row.get("channels", []):
            print(f"    {channel}")
        if row["teaser"]:
            print(f"    ask for an introduction: canopy introduce {row['id'][:12]}")
        print(
            f"    vouched by: {_stars(row)}; trust distance {row['distance']};"
            f" score {row['score']}{via}"
        )


async def cmd_query(args: argparse.Namespace) -> int:
    from node.directory import local_query
    from protocol import limits
    from protocol.contact import Filter

    flt = Filter.build(
        " ".join(args.text or []), args.kind or "", args.region or "", args.lang or ""
    )
    if not 1 <= args.limit <= limits.MAX_LOCAL_RESULTS:
        raise UsageError(f"--limit must be between 1 and {limits.MAX_LOCAL_RESULTS}")
    if not 1 <= args.depth <= limits.MAX_QUERY_DEPTH:
        raise UsageError(f"--depth must be between 1 and {limits.MAX_QUERY_DEPTH}")
    path = data_dir(args)
    body = {
        "text": flt.text,
        "kind": flt.kind,
        "region": flt.region,
        "lang": flt.lang,
        "limit": args.limit,
        "depth": args.depth,
        "network": bool(args.network),
    }
    async with opened(args) as local:  # checks the passphrase even when the node answers
        timeout = limits.QUERY_TIMEOUT_MS / 1000 + 10
        result = api.call(local.path, "POST", "/v1/query", body, timeout=timeout)
        if result is None:
            if args.network:
                raise CanopyError(
                    f"--network needs the node running on {path}: start it with canopy run"
                )
            result = {"results": await local_query(local, flt, now_ms(), args.limit)}
    if args.json:
        print_json(result)
        return 0
    _print_hits(result["results"])
    if args.network:
        print(
            f"({result['asked']} peers asked, {result['answered']} answered"
            f" in {result['elapsed_ms']} ms)",
            file=sys.stderr,
        )
    return 0


async def cmd_vouch(args: argparse.Namespace) -> int:
    from node.directory import vouch

    async with opened(args, notify=True) as local:
        record, what = await vouch(local, args.target, now_ms())
    print(f"{record.id.hex()}  you vouch for {what} (withdraw it with: canopy withdraw ID)")
    return 0


def _due(r: Row) -> Row:
    return {
        "ID": r["id"][:12],
        "STATE": r["state"],
        "DUE": when(r["due"]),
        "KIND": r["kind"],
        "REGION": r["region"],
        "NAME": r["name"] or "-",
    }


def _checklist_due(r: Row) -> Row:
    return {
        "ID": r["id"][:12],
        "TITLE": str(r["title"])[:48],
        "DONE": f"{r['ticked']}/{r['total']}",
        "LAST REVIEW": when(r["last_review"]),
    }


async def cmd_review(args: argparse.Namespace) -> int:
    from node import checklists
    from node.directory import review

    now = now_ms()
    async with opened(args) as local:
        rows = await review(local, now)
        lists = await checklists.due(local, now)
    if args.json:  # `due` (contacts) as before; `checklists_due` added beside it
        print_json({"due": rows, "checklists_due": lists})
        return 0
    if print_rows(False, {"due": rows}, "no contacts are due for re-verification", _due):
        print("re-verify a contact, then renew it with: canopy vouch ID", file=sys.stderr)
    if lists:
        print()
        print_rows(False, {"checklists_due": lists}, "", _checklist_due)
        print(
            "work through a checklist (canopy checklist show ID), then tick its items"
            " or record the review: canopy checklist reviewed ID",
            file=sys.stderr,
        )
    return 0


async def cmd_introduce(args: argparse.Namespace) -> int:
    from node.introductions import request_introduction

    async with opened(args, notify=True) as local:
        row = await request_introduction(local, args.id, args.note or "", now_ms())
    request_id = row["request_id"]
    assert isinstance(request_id, bytes)
    print(
        f"introduction requested ({request_id.hex()[:12]}); it goes out while the node runs."
        " Follow it with: canopy introductions"
    )
    return 0


def _request(r: Row) -> Row:
    return {
        "ID": r["id"][:12],
        "DIRECTION": r["direction"],
        "STATUS": r["status"],
        "CONTACT": f"{r['kind']} {r['region']}",
        "WHO": (r["asker"] if r["direction"] == "incoming" else r["introducer"])[:16],
        "NOTE": str(r["note"])[:40],
    }


async def cmd_introductions(args: argparse.Namespace) -> int:
    from node.introductions import decide, introductions

    if args.approve and args.decline:
        raise UsageError("--approve and --decline exclude each other")
    async with opened(args, notify=bool(args.approve or args.decline)) as local:
        if args.approve or args.decline:
            row = await decide(local, args.approve or args.decline, bool(args.approve), now_ms())
            decided = str(row["status"])
        else:
            decided = ""
        rows = await introductions(local)
    if decided:
        print(f"{decided}: {(args.approve or args.decline)}")
        return 0
    print_rows(args.json, {"introductions": rows}, "no introduction requests", _request)
    return 0


async def cmd_contact_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from node.hsds_contacts import import_hsds, report_lines

    async with opened(args, notify=not args.dry_run) as local:
        report = await import_hsds(
            local,
            Path(args.hsds).expanduser(),
            kind=args.kind or "",
            region=args.region or "",
            share=args.share,
            to=args.to,
            review_days=args.review_days,
            dry_run=bool(args.dry_run),
            now_ms=now_ms(),
        )
    if args.json:
        print_json(report.to_value())
        return 0
    for line in report_lines(report):
        print(line)
    return 0


async def cmd_contact_export(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    if bool(args.hsds) == bool(args.vcard):
        raise UsageError("give --hsds OUT (all your contacts) or ID --vcard (one contact)")
    if args.hsds:
        if args.id:
            raise UsageError("--hsds exports every contact you wrote; it takes no ID")
        from node.hsds_contacts import export_hsds

        async with opened(args) as local:
            orgs, left_out = await export_hsds(local)
        out = Path(args.hsds).expanduser()
        out.write_text(json.dumps(orgs, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {len(orgs)} contacts as HSDS 3 JSON to {out}")
        for what, count in sorted(left_out.items()):
            print(f"  not written: {what}: {count}")
        return 0
    if not args.id:
        raise UsageError("--vcard needs the contact's ID")
    from node.directory import readable_contact
    from node.vcard import to_vcard

    async with opened(args) as local:
        _, _, contact = await readable_contact(local, args.id)
    if contact.teaser:
        raise CanopyError(
            f"{args.id} is an on-request teaser: no details to export (ask for an introduction)"
        )
    card = to_vcard(contact)
    if args.out:
        Path(args.out).expanduser().write_bytes(card.encode("utf-8"))
        print(f"wrote a vCard 4.0 of {contact.name} to {args.out}")
    else:  # CRLF kept (the stream would escape CR); every other character still escaped
        stream = getattr(sys.stdout, "unescaped", sys.stdout)
        stream.write("".join(f"{printable(line)}\r\n" for line in card.split("\r\n")[:-1]))
        stream.flush()
    return 0
