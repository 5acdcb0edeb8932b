"""`publish library DIR`: a whole library folder published, re-run for what changed."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import now_ms, opened
from .output import print_json, printable


async def cmd_publish_library(args: argparse.Namespace) -> int:
    from node.library_import import import_library

    async with opened(args, notify=not args.dry_run) as local:
        report = await import_library(
            local, Path(args.dir), to=args.to, now_ms=now_ms(), dry_run=args.dry_run
        )
    if args.json:
        print_json({**report.to_json(), "dry_run": args.dry_run})
    else:
        by_lang = ", ".join(f"{lang} {n}" for lang, n in sorted(report.lessons.items()))
        verb = "would publish" if args.dry_run else "published"
        print(
            f"{verb} {sum(report.lessons.values())} lessons"
            + (f" ({printable(by_lang)})" if by_lang else "")
            + f", {report.checklists} checklists, {report.translations} translations,"
            f" {report.attachments} attachments, {report.new_versions} new versions,"
            f" {report.withdrawn} withdrawn, {report.unchanged} unchanged"
        )
        for path, link in report.missing:
            print(f"not attached: {printable(path)}: {printable(link)}")
        for path, reason in report.malformed:
            print(f"malformed: {printable(path)}: {printable(reason)}")
    return 0 if report.read or report.withdrawn else 1
