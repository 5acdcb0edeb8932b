"""HSDS directories in and out of this node's know-who: `import_hsds` adds each candidate of
node/hsds.py through `node.directory.add_contact` (the same validation, sealing and sharing
as `canopy contact add`), `export_hsds` writes the contacts this node authored as HSDS 3
JSON (organizations with one service each) that `import_hsds` reads back.

Export mapping (one organization per contact): name -> organization and service name;
notes -> description; phone/sms channels -> phones (type voice/text); email, url -> the
service's email and url; langs -> languages (code); region -> a service area named by the
ISO 3166 code; kind -> an attribute whose taxonomy term (taxonomy "canopy-kind") is the kind.
Signal, WhatsApp, Telegram and Matrix have no HSDS field: they are counted, not written.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.directory import Draft, add_contact, authored_records
from node.hsds import Candidate, Skipped, candidates, load, summary
from node.local import Local
from protocol.contact import (
    UID_BYTES,
    Contact,
    check_kind,
    check_region,
    check_review_days,
    check_share,
)
from protocol.errors import ContactError
from protocol.record import Record

KIND_TAXONOMY = "canopy-kind"


@dataclass
class ImportReport:
    imported: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, record id, name)
    skipped: list[Skipped] = field(default_factory=list)
    defaulted: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    def to_value(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "imported": [{"ref": r, "id": i, "name": n} for r, i, n in self.imported],
            "defaulted": dict(self.defaulted),
            "dropped": dict(self.dropped),
            "skipped": [{"ref": s.ref, "reason": s.reason} for s in self.skipped],
        }


async def import_hsds(
    local: Local,
    path: Path,
    *,
    kind: str = "",
    region: str = "",
    share: str = "peers",
    to: str | None = None,
    review_days: int = 180,
    dry_run: bool = False,
    now_ms: int,
) -> ImportReport:
    """Every service of the HSDS data at `path` as a contact of ours (none with `dry_run`)."""
    check_share(share)
    check_review_days(review_days)
    default_kind = check_kind(kind) if kind else ""
    default_region = check_region(region) if region else ""
    report = ImportReport(dry_run=dry_run)
    accepted: list[Candidate] = []
    for item in candidates(load(path), default_kind, default_region):
        if isinstance(item, Skipped):
            report.skipped.append(item)
            continue
        draft = Draft(item.kind, item.name, item.region, item.langs, item.channels, (), item.notes)
        try:  # the rules of `contact add`, on what HSDS gave
            draft.build(uid=bytes(UID_BYTES), share=share, review=now_ms)
        except ContactError as exc:
            report.skipped.append(Skipped(item.ref, str(exc)))
            continue
        if not dry_run:  # a ContactError here is about --share/--to: it ends the import
            added = await add_contact(
                local, draft, share=share, to=to, review_days=review_days, now_ms=now_ms
            )
            report.imported.append((item.ref, added.record.id.hex(), item.name))
        else:
            report.imported.append((item.ref, "", item.name))
        accepted.append(item)
    report.defaulted, report.dropped = summary(accepted)
    return report


# -- export ----------------------------------------------------------------------------------


async def authored_contacts(local: Local) -> list[tuple[Record, Contact]]:
    """The contacts this node wrote, with their details (never a teaser), one per uid."""
    seen: set[bytes] = set()
    out: list[tuple[Record, Contact]] = []
    for record, contact in await authored_records(local):
        if contact.teaser or contact.uid in seen:
            continue
        seen.add(contact.uid)
        out.append((record, contact))
    return out


def hsds_organization(contact: Contact) -> tuple[dict[str, Any], Counter[str]]:
    """One contact as an HSDS 3 organization with one service; and what had no HSDS field."""
    ident = str(uuid.UUID(bytes=contact.uid))
    left_out: Counter[str] = Counter()
    phones: list[dict[str, Any]] = []
    service: dict[str, Any] = {"id": ident, "organization_id": ident, "name": contact.name}
    for n, (kind, value) in enumerate(contact.channels):
        if kind in ("phone", "sms"):
            phones.append(
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ident}/phone/{n}")),
                    "number": value,
                    "type": "text" if kind == "sms" else "voice",
                }
            )
        elif kind in ("email", "url") and kind not in service:
            service[kind] = value
        else:
            left_out[f"{kind} channel (no HSDS field)"] += 1
    service.update(
        {
            "description": contact.notes,
            "status": "active",
            "phones": phones,
            "languages": [
                {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ident}/lang/{code}")), "code": code}
                for code in contact.langs
            ],
            "service_areas": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ident}/area")),
                    "name": contact.region,
                    "extent_type": "iso3166",
                }
            ],
            "attributes": [
                {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ident}/kind")),
                    "link_id": ident,
                    "link_type": "service",
                    "link_entity": "service",
                    "taxonomy_term": {
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"canopy-kind/{contact.kind}")),
                        "code": contact.kind,
                        "name": contact.kind,
                        "taxonomy": KIND_TAXONOMY,
                    },
                }
            ],
        }
    )
    if contact.specialties:
        left_out["specialties (no HSDS field)"] += 1
    org = {"id": ident, "name": contact.name, "description": contact.notes, "services": [service]}
    return org, left_out


async def export_hsds(local: Local) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The contacts this node authored as a list of HSDS 3 organizations."""
    orgs: list[dict[str, Any]] = []
    left_out: Counter[str] = Counter()
    for _, contact in await authored_contacts(local):
        org, missing = hsds_organization(contact)
        orgs.append(org)
        left_out.update(missing)
    return orgs, left_out


def report_lines(report: ImportReport, limit: int = 20) -> Sequence[str]:
    """The import report as the CLI prints it."""
    verb = "would import" if report.dry_run else "imported"
    lines = [f"{verb} {len(report.imported)} contacts, skipped {len(report.skipped)}"]
    for what, count in sorted(report.defaulted.items()):
        lines.append(f"  defaulted {what} (from --{what}): {count}")
    for what, count in sorted(report.dropped.items()):
        lines.append(f"  left out: {what}: {count}")
    for skipped in report.skipped[:limit]:
        lines.append(f"  skipped {skipped.ref}: {skipped.reason}")
    if len(report.skipped) > limit:
        lines.append(f"  ... and {len(report.skipped) - limit} more skipped (see --json)")
    return lines
