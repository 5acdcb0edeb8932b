"""`attachment save`: a guide's attachments written out, byte-identical; and the rows
`show` prints for them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .common import now_ms, opened
from .output import print_json

if TYPE_CHECKING:
    from node.local import Local
    from protocol.attachment import Attachment


async def attachment_rows(
    local: Local, attachments: tuple[Attachment, ...]
) -> list[dict[str, object]]:
    """Name, type, size and how many chunks are still missing, per attachment."""
    from node.attachments import missing

    return [
        {
            "name": a.name,
            "type": a.type,
            "size": a.size,
            "chunks": len(a.chunks),
            "missing": await missing(local, a),
        }
        for a in attachments
    ]


def describe(row: dict[str, object]) -> str:
    size = row["size"]
    assert isinstance(size, int)
    text = f"  {row['name']}  {row['type']}  {_size(size)}"
    if row["missing"]:
        text += f"  (missing {row['missing']} chunks)"
    return text


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


async def cmd_attachment_save(args: argparse.Namespace) -> int:
    from node.attachments import safe_name, save
    from node.content import find
    from protocol.content import Guide
    from protocol.errors import CanopyError, UsageError
    from protocol.record import Kind

    if bool(args.all) == bool(args.name):
        raise UsageError("give an attachment NAME with --out FILE, or --all DIR")
    if args.name and not args.out:
        raise UsageError("--out FILE says where to write the attachment")
    async with opened(args) as local:
        item = await find(local, args.id, now_ms())
        if item.record.kind is not Kind.GUIDE:
            raise CanopyError(f"record {args.id} is a {item.record.kind}, not a guide")
        guide = Guide.from_content(item.body.content)  # checked by open_record
        if args.all:
            folder = Path(args.all)
            if not folder.is_dir():
                raise CanopyError(f"{folder} is not a directory")
            chosen = [(a, folder / safe_name(a.name)) for a in guide.attachments]
            if not chosen:
                raise CanopyError(f"guide {args.id} has no attachments")
        else:
            named = [a for a in guide.attachments if a.name == args.name]
            if not named:
                names = ", ".join(a.name for a in guide.attachments) or "none"
                raise CanopyError(f"guide {args.id} has no attachment {args.name!r} ({names})")
            chosen = [(named[0], Path(args.out))]
        done = []
        for attachment, out in chosen:
            written = await save(local, attachment, out)
            done.append({"name": attachment.name, "path": str(out), "bytes": written})
    if args.json:
        print_json({"saved": done})
    else:
        for row in done:
            print(f"wrote {row['path']} ({row['bytes']} bytes)")
    return 0
