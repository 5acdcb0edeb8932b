"""Open Referral HSDS 3 CSV data packages, read: the tables of a directory (named by its
datapackage.json, else by their conventional file names) joined into the nested JSON form
node/hsds.py maps (organizations with services, each with its phones, languages, service
areas, locations with addresses, and attributes with their taxonomy terms).

Sizes are bounded (protocol/limits.py); a resource path leaving the package, a ragged row or
a table that is not CSV is one ImportFormatError.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from protocol import limits
from protocol.errors import ImportFormatError


def read_text(path: Path) -> str:
    size = path.stat().st_size
    if size > limits.MAX_IMPORT_FILE_BYTES:
        raise ImportFormatError(
            f"{path}: {size} bytes; an import file is limited to {limits.MAX_IMPORT_FILE_BYTES}"
        )
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not UTF-8 text") from None


_TABLES = (
    "organizations",
    "services",
    "phones",
    "languages",
    "service_areas",
    "service_at_locations",
    "locations",
    "addresses",
    "attributes",
    "taxonomy_terms",
)


def _table_paths(root: Path) -> dict[str, Path]:
    paths = {name: root / f"{name}.csv" for name in _TABLES}
    paths["service_at_locations"] = next(
        (
            p
            for p in (root / "service_at_locations.csv", root / "service_at_location.csv")
            if p.exists()
        ),
        paths["service_at_locations"],
    )
    package = root / "datapackage.json"
    if package.exists():
        try:
            described = json.loads(read_text(package))
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{package}: not valid JSON (line {exc.lineno})") from None
        resources = described.get("resources") if isinstance(described, dict) else None
        if not isinstance(resources, list):
            raise ImportFormatError(f"{package}: no list of resources")
        for resource in resources:
            if not isinstance(resource, dict):
                raise ImportFormatError(f"{package}: a resource is not an object")
            name, rel = resource.get("name"), resource.get("path")
            if name == "service_at_location":
                name = "service_at_locations"
            if name not in _TABLES or not isinstance(rel, str):
                continue
            target = (root / rel).resolve()
            if not target.is_relative_to(root.resolve()):
                raise ImportFormatError(f"{package}: resource path {rel!r} leaves the package")
            paths[str(name)] = target
    return paths


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    text = read_text(path)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        for row in reader:
            if None in row:
                raise ImportFormatError(
                    f"{path}: line {reader.line_num} has more fields than the header"
                )
            rows.append({k: (v or "") for k, v in row.items()})
            if len(rows) > limits.MAX_IMPORT_RECORDS * 4:
                raise ImportFormatError(f"{path}: too many rows")
    except csv.Error as exc:
        raise ImportFormatError(f"{path}: not valid CSV ({exc})") from None
    return rows


def _by(rows: list[dict[str, str]], key: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get(key):
            out.setdefault(row[key], []).append(row)
    return out


def load_package(root: Path) -> list[dict[str, Any]]:
    if not root.exists():
        raise ImportFormatError(f"{root}: no such file or directory")
    paths = _table_paths(root)
    t = {name: _rows(p) for name, p in paths.items()}
    if not t["organizations"] and not t["services"]:
        raise ImportFormatError(f"{root}: no organizations.csv or services.csv rows")
    for name in ("organizations", "services"):
        if t[name] and "name" not in t[name][0]:
            raise ImportFormatError(f"{paths[name]}: no 'name' column")
    languages_of = {k: _by(t["languages"], k) for k in ("service_id", "location_id", "phone_id")}

    def phones(key: str, value: str) -> list[dict[str, Any]]:
        found = _by(t["phones"], key).get(value, [])
        return [
            {**p, "languages": languages_of["phone_id"].get(p.get("id", ""), [])} for p in found
        ]

    addresses = _by(t["addresses"], "location_id")
    locations = {
        row["id"]: {
            **row,
            "addresses": addresses.get(row["id"], []),
            "languages": languages_of["location_id"].get(row["id"], []),
            "phones": phones("location_id", row["id"]),
        }
        for row in t["locations"]
        if row.get("id")
    }
    terms = {row["id"]: row for row in t["taxonomy_terms"] if row.get("id")}
    attributes = _by(t["attributes"], "link_id")
    areas = _by(t["service_areas"], "service_id")
    at_locations = _by(t["service_at_locations"], "service_id")
    services_of: dict[str, list[dict[str, Any]]] = {}
    for row in t["services"]:
        sid = row.get("id", "")
        service: dict[str, Any] = {
            **row,
            "phones": phones("service_id", sid) if sid else [],
            "languages": languages_of["service_id"].get(sid, []),
            "service_areas": areas.get(sid, []),
            "service_at_locations": [
                {**sal, "location": locations.get(sal.get("location_id", ""), {})}
                for sal in at_locations.get(sid, [])
            ],
            "attributes": [
                {**a, "taxonomy_term": terms.get(a.get("taxonomy_term_id", ""), {})}
                for a in attributes.get(sid, [])
            ],
        }
        services_of.setdefault(row.get("organization_id", ""), []).append(service)
    orgs: list[dict[str, Any]] = []
    for row in t["organizations"]:
        oid = row.get("id", "")
        org_phones = [p for p in phones("organization_id", oid) if not p.get("service_id")]
        orgs.append(
            {
                **row,
                "phones": org_phones,
                "locations": [
                    loc for loc in locations.values() if loc.get("organization_id") == oid
                ],
                "services": services_of.pop(oid, []) if oid else [],
            }
        )
    for orphans in services_of.values():  # services whose organization is not in the package
        orgs.append({"services": orphans})
    return orgs
