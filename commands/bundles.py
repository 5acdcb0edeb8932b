"""`export`, `import`: bundles carried by hand."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from node import local_api as api

from .common import now_ms, opened


async def cmd_export(args: argparse.Namespace) -> int:
    from node.bundles import export_bundle

    async with opened(args) as local:
        done = await export_bundle(local, args.peer, Path(args.out), now_ms(), network=args.network)
    print(
        f"wrote {args.out}: {done.records} records for {done.peer_label} "
        f"({done.bytes} bytes, encrypted to that peer and signed by this node)"
    )
    networks = ", ".join(repr(n) for n in done.networks) or "none"
    print(f"networks carried: {networks}")
    return 0


async def cmd_import(args: argparse.Namespace) -> int:
    from node.bundles import import_bundle

    file = Path(args.file).resolve()
    async with opened(args, notify=True) as local:
        # A running node imports the bundle itself, through its own accept path (revocations
        # refused at once, alerts announced, index updated); without one, the same path here.
        answer = (
            api.call(local.path, "POST", "/v1/import", {"file": str(file)}, timeout=3600)
            if api.running(local.path)
            else None
        )
        if answer is None:
            done = await import_bundle(local, file, now_ms())
    if answer is not None:
        label, records, new = answer["sender_label"], answer["records"], answer["new"]
        print(f"import: {records}/{records} records (by the running node)", file=sys.stderr)
        reasons: dict[str, int] = dict(answer["rejected"])
        other = int(answer.get("other_network", 0))
    else:
        label, records, new, reasons = done.sender_label, done.records, done.new, done.rejected
        other = done.other_network
    rejected = sum(reasons.values())
    held = records - new - rejected - other
    print(
        f"imported from {label}: {new} new, {held} already held, "
        f"{rejected} rejected"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))})" if rejected else "")
    )
    if other:
        print(f"skipped {other} records of networks this node is not in (not stored)")
    return 0
