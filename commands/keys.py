"""`revocation export`, `revoke-key`, `exposure`: when a key is lost or stolen."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from protocol.errors import CanopyError

from .common import now_ms, opened
from .output import print_json, when


async def cmd_revocation_export(args: argparse.Namespace) -> int:
    from node.revocation import own_certificate
    from protocol.revocation import to_text

    async with opened(args) as local:
        text = to_text(await own_certificate(local, now_ms()))
    if args.out:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text + "\n")
        print(f"revocation certificate written to {args.out}; keep it offline", file=sys.stderr)
    else:
        print(text)
    return 0


async def cmd_revoke_key(args: argparse.Namespace) -> int:
    from node.revocation import publish_revocation

    text = None
    if args.certificate:
        try:
            text = Path(args.certificate).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise CanopyError(f"cannot read {args.certificate}: {exc.strerror}") from None
    async with opened(args, notify=True) as local:
        record = await publish_revocation(local, text, now_ms())
    if record.author == local.node_id:
        print(f"revoked this node's key {record.author}")
        print(
            "peers refuse it as soon as they receive the revocation; create a new identity "
            "(canopy --data NEW_DIR init) and ask each peer to trust it after comparing "
            "safety codes by phone"
        )
    else:
        print(f"published the revocation of {record.author}; peers refuse it on receipt")
    return 0


async def cmd_exposure(args: argparse.Namespace) -> int:
    from node.revocation import exposure

    async with opened(args) as local:
        author, report = await exposure(local, args.id)
    if args.json:
        print_json(
            {
                "author": str(author),
                "peers": [
                    {
                        "peer": e.peer,
                        "peer_id": e.peer_id,
                        "records": [
                            {"id": rid, "kind": kind, "sent_at": at} for rid, kind, at in e.records
                        ],
                    }
                    for e in report
                ],
            }
        )
        return 0
    if not report:
        print(f"no record by {author.short} was sent to any peer from this node")
        return 0
    for entry in report:
        print(f"{entry.peer}: {len(entry.records)} record(s)")
        for rid, kind, at in entry.records:
            print(f"  {rid[:16]}  {kind:<10} sent {when(at)}")
    return 0
