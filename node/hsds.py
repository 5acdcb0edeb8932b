"""Open Referral HSDS 3 directories, read: a JSON file or a CSV data package becomes a list
of `Candidate` contacts (the fields `Contact.build` takes), each with what was defaulted or
dropped on the way, or a `Skipped` with the reason.

What is read (HSDS 3.0, github.com/openreferral/specification): JSON as a list of
organizations with nested services, a single organization or service, the paginated
`{"contents": [...]}` list form, or the compiled service_at_location form; CSV as a directory
(or its datapackage.json) of organizations.csv, services.csv, phones.csv, languages.csv,
service_areas.csv, service_at_locations.csv, locations.csv, addresses.csv, attributes.csv and
taxonomy_terms.csv, which node/hsds_csv.py joins into the nested JSON form, so both go
through one mapping. Each service (or organization without services) is one contact:

    name      service name, "(organization)" added when it differs
    kind      the first taxonomy term (attributes[].taxonomy_term code or name) that
              KIND_TERMS maps, else --kind
    region    a service area named by an ISO 3166 code or country name, else the first
              address country (with its state_province when it names a subdivision), else
              --region
    langs     languages[].code of the service, its locations and phones (BCP 47)
    channels  phones (type text -> sms, fax dropped, else phone), email, url (the
              organization's when the service has none)
    notes     the description (cut at the notes limit)

Input is hostile: sizes are bounded (protocol/limits.py), a value of the wrong type skips
the record that holds it, names with control or bidi characters are refused. Nothing is
stored here: node/hsds_contacts.py imports the candidates through node.directory.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.hsds_csv import load_package, read_text
from protocol import limits
from protocol.contact import KINDS, check_channel, check_lang, check_region
from protocol.errors import ContactError, ImportFormatError

# Taxonomy words -> Canopy kind. A term maps when one of these phrases starts a word of its
# code or name (case-folded: "interpret" matches "Interpretation", "grant" not "Immigrant");
# the first term that maps decides, and within a term the first phrase in this order. Exact
# kind names map to themselves.
KIND_TERMS: tuple[tuple[str, str], ...] = (
    ("digital security", "digital-security"),
    ("digital-security", "digital-security"),
    ("journalist", "journalist-support"),
    ("media worker", "journalist-support"),
    ("hotline", "hotline"),
    ("helpline", "hotline"),
    ("crisis line", "hotline"),
    ("crisis intervention", "hotline"),
    ("legal", "lawyer"),
    ("lawyer", "lawyer"),
    ("attorney", "lawyer"),
    ("paralegal", "lawyer"),
    ("shelter", "shelter"),
    ("safe house", "shelter"),
    ("emergency accommodation", "shelter"),
    ("housing", "shelter"),
    ("mental health", "psychosocial"),
    ("counselling", "psychosocial"),
    ("counseling", "psychosocial"),
    ("psychosocial", "psychosocial"),
    ("trauma", "psychosocial"),
    ("medical", "medical"),
    ("health care", "medical"),
    ("healthcare", "medical"),
    ("clinic", "medical"),
    ("forensic", "medical"),
    ("relocation", "relocation"),
    ("evacuation", "relocation"),
    ("emergency fund", "emergency-funds"),
    ("emergency-funds", "emergency-funds"),
    ("financial assistance", "emergency-funds"),
    ("cash assistance", "emergency-funds"),
    ("grant", "emergency-funds"),
    ("interpret", "interpreter"),
    ("translation", "interpreter"),
)

_KIND_PATTERNS = tuple((re.compile(rf"(?<!\w){re.escape(p)}"), k) for p, k in KIND_TERMS)

# The characters a name must not hold: controls, format characters (bidi overrides and
# isolates, zero-width joiners), line and paragraph separators, surrogates, unassigned.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_QUOTES = "\"'\u201c\u201d"


class _Skip(Exception):
    """This record cannot become a contact (the message says why)."""


@dataclass
class Candidate:
    """One contact as HSDS gave it, in the terms `Contact.build` takes."""

    ref: str  # "service ID" / "organization ID", for the report
    name: str
    kind: str
    region: str
    langs: list[str]
    channels: list[str]
    notes: str
    defaulted: list[str] = field(default_factory=list)  # fields given by --kind / --region
    dropped: list[str] = field(default_factory=list)  # values left out, with the reason


@dataclass(frozen=True)
class Skipped:
    ref: str
    reason: str


# -- reading files ---------------------------------------------------------------------------


def load(path: Path) -> list[dict[str, Any]]:
    """The organizations (nested form) of an HSDS JSON file or CSV package at `path`."""
    if path.is_dir() or path.name == "datapackage.json":
        return load_package(path if path.is_dir() else path.parent)
    if not path.exists():
        raise ImportFormatError(f"{path}: no such file or directory")
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise ImportFormatError(f"{path}: JSON nested too deeply") from None
    return _organizations(data, path)


def _organizations(data: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(data, dict) and isinstance(data.get("contents"), list):
        data = data["contents"]  # the paginated list form
    items = data if isinstance(data, list) else [data]
    out: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict):
            raise ImportFormatError(f"{path}: expected HSDS objects, found a {_type(item)}")
        if isinstance(item.get("service"), dict):  # compiled service_at_location
            service = dict(item["service"])
            here = {k: v for k, v in item.items() if k != "service"}
            service.setdefault("service_at_locations", [here])
            item = service
        if _is_organization(item):
            out.append(item)
        else:  # a service: its organization, if nested, gives the context
            org = item.get("organization")
            org = dict(org) if isinstance(org, dict) else {}
            org["services"] = [item]
            out.append(org)
    return out


def _is_organization(item: dict[str, Any]) -> bool:
    return any(k in item for k in ("services", "website", "legal_status", "year_incorporated"))


def _type(value: Any) -> str:
    return {dict: "object", list: "list", str: "text", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


# CSV tables of a package: name -> the file names tried (HSDS 3 uses the plural).
# -- mapping to candidates -------------------------------------------------------------------


def candidates(
    orgs: list[dict[str, Any]], kind: str = "", region: str = ""
) -> Iterator[Candidate | Skipped]:
    """Each service (or organization without services) as a Candidate or a Skipped."""
    count = 0
    for org in orgs:
        services = org.get("services") or []
        if not isinstance(services, list):
            yield Skipped(_ref("organization", org), "services is not a list")
            continue
        for service in services or [None]:
            count += 1
            if count > limits.MAX_IMPORT_RECORDS:
                raise ImportFormatError(
                    f"more than {limits.MAX_IMPORT_RECORDS} services in one import; split it"
                )
            ref = _ref("service", service) if service is not None else _ref("organization", org)
            try:
                if service is not None and not isinstance(service, dict):
                    raise _Skip(f"a service is a {_type(service)}, not an object")
                yield _candidate(ref, org, service, kind, region)
            except _Skip as exc:
                yield Skipped(ref, str(exc))


def _ref(what: str, item: Any) -> str:
    ident = item.get("id") if isinstance(item, dict) else None
    if isinstance(ident, str) and ident:
        return f"{what} {ident[:64]}"
    return f"{what} (no id)"


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Skip(f"{what} is a {_type(value)}, not text")
    return str(value).strip()


def _list(item: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = item.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
        raise _Skip(f"{key} is not a list of objects")
    return value


def _obj(item: dict[str, Any], key: str) -> dict[str, Any]:
    value = item.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Skip(f"{key} is a {_type(value)}, not an object")
    return value


def check_imported_name(name: str) -> str:
    """A name from a file: refused if it holds controls, bidi or other format characters."""
    for char in name:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise _Skip(f"name contains a control or bidi character (U+{ord(char):04X})")
    return " ".join(name.split())


def _clean_notes(text: str, dropped: list[str]) -> str:
    kept = "".join(
        c if c in "\n\t" or unicodedata.category(c) not in _REFUSED_CATEGORIES else "" for c in text
    )
    if kept != text:
        dropped.append("control or bidi characters removed from the description")
    raw = kept.strip().encode("utf-8")
    if len(raw) > limits.MAX_CONTACT_NOTES_BYTES:
        dropped.append(f"description cut to {limits.MAX_CONTACT_NOTES_BYTES} bytes")
        kept = raw[: limits.MAX_CONTACT_NOTES_BYTES].decode("utf-8", "ignore")
    return kept.strip()


def _candidate(
    ref: str, org: dict[str, Any], service: dict[str, Any] | None, kind: str, region: str
) -> Candidate:
    src = service if service is not None else org
    dropped: list[str] = []
    defaulted: list[str] = []
    org_name = check_imported_name(_text(org.get("name"), "organization name"))
    name = check_imported_name(_text(src.get("name"), "name"))
    if not name:
        raise _Skip("missing name")
    if service is not None and org_name and org_name.casefold() != name.casefold():
        longer = f"{name} ({org_name})"
        if len(longer.encode("utf-8")) <= limits.MAX_CONTACT_FIELD_BYTES:
            name = longer
    if len(name.encode("utf-8")) > limits.MAX_CONTACT_FIELD_BYTES:
        raise _Skip(f"name longer than {limits.MAX_CONTACT_FIELD_BYTES} bytes")

    locations = [
        loc for sal in _list(src, "service_at_locations") if (loc := _obj(sal, "location"))
    ]
    if service is None or not locations:
        locations += _list(org, "locations")
    phones = [*_list(src, "phones")]
    for sal in _list(src, "service_at_locations"):
        phones += _list(sal, "phones")
    for loc in locations:
        phones += _list(loc, "phones")
    if not phones and service is not None:
        phones = _list(org, "phones")

    channels: list[str] = []
    for phone in phones:
        number = _text(phone.get("number"), "phone number").strip(_QUOTES).strip()
        kind_of = _text(phone.get("type"), "phone type").lower()
        if not number:
            continue
        if kind_of == "fax":
            dropped.append("fax number (not a Canopy channel)")
            continue
        _channel(channels, dropped, "sms" if kind_of == "text" else "phone", number)
    email = _text(src.get("email"), "email") or _text(org.get("email"), "organization email")
    if email:
        _channel(channels, dropped, "email", email)
    url = _text(src.get("url"), "url") or _text(org.get("website"), "organization website")
    if url:
        _channel(channels, dropped, "url", url)
    channels = list(dict.fromkeys(channels))
    if len(channels) > limits.MAX_CONTACT_CHANNELS:
        dropped.append(f"channels beyond the first {limits.MAX_CONTACT_CHANNELS}")
        channels = channels[: limits.MAX_CONTACT_CHANNELS]

    langs: list[str] = []
    lang_items = [*_list(src, "languages")]
    for loc in locations:
        lang_items += _list(loc, "languages")
    for phone in phones:
        lang_items += _list(phone, "languages")
    for item in lang_items:
        code = _text(item.get("code"), "language code")
        if not code:
            dropped.append("language without a code")
            continue
        try:
            langs.append(check_lang(code))
        except ContactError:
            dropped.append("language code not BCP 47")
    langs = list(dict.fromkeys(langs))
    if len(langs) > limits.MAX_CONTACT_LANGS:
        dropped.append(f"languages beyond the first {limits.MAX_CONTACT_LANGS}")
        langs = langs[: limits.MAX_CONTACT_LANGS]

    found_kind = _kind_of(src)
    if not found_kind:
        if not kind:
            raise _Skip("no taxonomy term maps to a Canopy kind and no --kind given")
        found_kind = kind
        defaulted.append("kind")
    found_region = _region_of(src, locations)
    if not found_region:
        if not region:
            raise _Skip("no region: no service area or address country, and no --region")
        found_region = region
        defaulted.append("region")
    notes = _clean_notes(_text(src.get("description"), "description"), dropped)
    return Candidate(
        ref, name, found_kind, found_region, langs, channels, notes, defaulted, dropped
    )


_DROP_REASON = {
    "phone": "phone not in international form (+ and 7-15 digits)",
    "sms": "phone not in international form (+ and 7-15 digits)",
    "email": "email not an e-mail address",
    "url": "url not an http(s) address",
}


def _channel(channels: list[str], dropped: list[str], kind: str, value: str) -> None:
    """`kind:value` checked as `contact add --channel` checks it; dropped if it fails."""
    try:
        checked = check_channel(f"{kind}:{value}")
    except ContactError:
        dropped.append(_DROP_REASON[kind])
        return
    channels.append(f"{checked[0]}:{checked[1]}")


def _kind_of(src: dict[str, Any]) -> str:
    terms: list[str] = []
    for attribute in _list(src, "attributes"):
        term = _obj(attribute, "taxonomy_term")
        terms += [_text(term.get("code"), "term code"), _text(term.get("name"), "term name")]
    for old in _list(src, "taxonomy_terms"):  # the HSDS 2 nesting, still seen in exports
        terms += [_text(old.get("code"), "term code"), _text(old.get("name"), "term name")]
    for text in terms:
        folded = text.casefold()
        if folded in KINDS:
            return folded
        for pattern, kind in _KIND_PATTERNS:
            if pattern.search(folded):
                return kind
    return ""


def _region_of(src: dict[str, Any], locations: list[dict[str, Any]]) -> str:
    for area in _list(src, "service_areas"):
        region = _region_named(_text(area.get("name"), "service area name"))
        if region:
            return region
    for loc in locations:
        for address in _list(loc, "addresses"):
            country = _region_named(_text(address.get("country"), "country"))
            if country:
                state = _text(address.get("state_province"), "state_province")
                return _subdivision(country[:2], state) or country
    return ""


def _region_named(text: str) -> str:
    """An ISO 3166 code, or a country name pycountry knows; "" otherwise."""
    if not text or len(text) > 64:
        return ""
    try:
        return check_region(text)
    except ContactError:
        pass
    import pycountry

    try:
        return str(pycountry.countries.lookup(text).alpha_2)
    except LookupError:
        return ""


def _subdivision(country: str, state: str) -> str:
    if not state or len(state) > 64:
        return ""
    for code in (state, f"{country}-{state}"):
        try:
            found = check_region(code)
            if found.startswith(f"{country}-"):
                return found
        except ContactError:
            pass
    import pycountry

    folded = state.casefold()
    for sub in pycountry.subdivisions.get(country_code=country) or ():  # type: ignore[no-untyped-call]
        if str(sub.name).casefold() == folded:
            return str(sub.code)
    return ""


def summary(items: list[Candidate]) -> tuple[Counter[str], Counter[str]]:
    """(defaulted field -> count, dropped reason -> count) over `items`."""
    defaulted: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    for item in items:
        defaulted.update(item.defaulted)
        dropped.update(item.dropped)
    return defaulted, dropped
