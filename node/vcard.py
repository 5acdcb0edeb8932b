"""One contact as a vCard 4.0 (RFC 6350): what `canopy contact export ID --vcard` writes.

Written here rather than with a library: vobject (the maintained Python one) writes 3.0
cards; the tests parse these cards back with it. Lines end in CRLF and are folded at 75
octets (never inside a UTF-8 sequence); text values escape backslash, comma, semicolon and
newline (RFC 6350 3.4); ORG and ADR are structured (components joined by ';').

    FN, ORG   the contact's name          KIND       org
    TEL       phone (voice), sms (text), whatsapp (cell) as tel: URIs
    EMAIL     email                       URL        url
    IMPP      signal, telegram, matrix    LANG       each language, PREF in order
    NOTE      notes                       ADR        region: subdivision and country names
    CATEGORIES the Canopy kind, then specialties
    UID       urn:uuid: of the contact's uid
"""

from __future__ import annotations

import uuid

from protocol.contact import Contact, region_names


def escape(text: str) -> str:
    """A TEXT value (RFC 6350 3.4): \\ , ; and newlines escaped."""
    return (
        text.replace("\\", "\\\\")
        .replace(",", "\\,")
        .replace(";", "\\;")
        .replace("\r\n", "\n")
        .replace("\r", "\n")
        .replace("\n", "\\n")
    )


def fold(line: str) -> str:
    """`line` folded into CRLF-terminated lines of at most 75 octets (continuations start
    with one space, which counts); a UTF-8 sequence is never split."""
    out: list[str] = []
    current = ""
    size = 0
    limit = 75  # RFC 6350 3.2: a line is at most 75 octets, CRLF excluded
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size = " ", 1
        current += char
        size += width
    out.append(current)
    return "".join(f"{part}\r\n" for part in out)


def _tel(value: str, kind: str) -> str:
    types = {"phone": "voice", "sms": "text", "whatsapp": "cell"}[kind]
    return f"TEL;VALUE=uri;TYPE={types}:tel:{value}"


def to_vcard(contact: Contact) -> str:
    """The contact as one vCard 4.0 (a str of CRLF-terminated lines)."""
    if contact.teaser:
        raise ValueError("a teaser holds no details to export")
    lines = [
        "BEGIN:VCARD",
        "VERSION:4.0",
        "KIND:org",
        f"FN:{escape(contact.name)}",
        f"ORG:{escape(contact.name)}",
        f"UID:urn:uuid:{uuid.UUID(bytes=contact.uid)}",
    ]
    for kind, value in contact.channels:
        if kind in ("phone", "sms", "whatsapp"):
            lines.append(_tel(value, kind))
        elif kind == "email":
            lines.append(f"EMAIL:{escape(value)}")
        elif kind == "url":
            lines.append(f"URL:{value}")
        elif kind == "signal" and value.startswith("+"):
            lines.append(f"IMPP:sgnl://signal.me/#p/{value}")
        else:
            lines.append(f"IMPP:{kind}:{value}")
    for n, lang in enumerate(contact.langs, start=1):
        lines.append(f"LANG;PREF={n}:{lang}")
    names = region_names(contact.region)
    country = names[0] if names else contact.region[:2]
    subdivision = names[1] if len(names) > 1 else ""
    lines.append(f"ADR;TYPE=work:;;;;{escape(subdivision)};;{escape(country)}")
    lines.append("CATEGORIES:" + ",".join(escape(x) for x in (contact.kind, *contact.specialties)))
    if contact.notes:
        lines.append(f"NOTE:{escape(contact.notes)}")
    lines.append("END:VCARD")
    return "".join(fold(line) for line in lines)
