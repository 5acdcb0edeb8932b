"""The schema of every kind's content: what a Body may hold, checked when a record is opened.

Owns the guide, alert and checklist schemas (help and ack: `protocol.help`) and the one
dispatch (`check_content`) that `open_record` applies to every Body; contacts and vouches
keep their schemas in `protocol.contact`
(docs/spec/30-sync.md, "Content"). A Body that breaks its schema is a DecodeError: the
record is unreadable, never shown. Kinds whose payload is not sealed (tombstone, revocation)
have no Body; theirs are checked by `protocol.lifecycle` and `protocol.revocation`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from protocol import labels, limits
from protocol.attachment import Attachment, attachments_of
from protocol.checkin import CheckIn
from protocol.circle import Change
from protocol.contact import Contact, Vouch
from protocol.encoding import Value, as_bytes, as_int, as_list, check_keys
from protocol.errors import DecodeError
from protocol.help import AlertAck
from protocol.help import from_content as help_from_content
from protocol.oncall import DutyRecord
from protocol.record import ID_BYTES, Kind

_GUIDE_REQUIRED = frozenset({"title"})
_GUIDE_OPTIONAL = frozenset(
    {"text", "lang", "region", "topics", "format", "filename", "translation_of", "attachments"}
)
_ALERT_KEYS = frozenset({"text", "urgency"})
_ALERT_OPTIONAL = frozenset({"ack"})
URGENCIES = ("normal", "high")


def _text(content: dict[str, Value], key: str, max_bytes: int, *, empty: bool = True) -> str:
    value = content.get(key, "")
    if not isinstance(value, str):
        raise DecodeError(f"{key} must be a string")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: never decoded from msgpack, but be total
        raise DecodeError(f"{key} is not valid text") from None
    if size > max_bytes:
        raise DecodeError(f"{key} too long")
    if not empty and not value.strip():
        raise DecodeError(f"{key} is empty")
    return value


@dataclass(frozen=True, slots=True)
class Guide:
    """The content of a `guide` record."""

    title: str
    text: str = ""
    lang: str = ""
    region: str = ""
    topics: tuple[str, ...] = ()
    format: str = ""
    filename: str = ""
    translation_of: bytes = b""  # the record id of the guide this one translates
    attachments: tuple[Attachment, ...] = ()  # manifests of its chunk records

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Guide:
        """Strictly check a guide's content (DecodeError names the first bad field)."""
        if not isinstance(content, dict):
            raise DecodeError("guide content must be a map")
        check_keys(content, _GUIDE_REQUIRED, _GUIDE_OPTIONAL, "guide")
        field = limits.MAX_GUIDE_FIELD_BYTES
        topics = as_list(content.get("topics", []), what="topics")
        if len(topics) > limits.MAX_GUIDE_TOPICS:
            raise DecodeError("too many topics")
        return cls(
            title=_text(content, "title", limits.MAX_GUIDE_TITLE_BYTES),
            text=_text(content, "text", limits.MAX_GUIDE_TEXT_BYTES),
            lang=_text(content, "lang", field),
            region=_text(content, "region", field),
            topics=tuple(_text({"topic": t}, "topic", field) for t in topics),
            format=_text(content, "format", field),
            filename=_text(content, "filename", field),
            translation_of=as_bytes(content["translation_of"], ID_BYTES, "translation_of")
            if "translation_of" in content
            else b"",
            attachments=attachments_of(content.get("attachments", [])),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """The content of an `alert` record."""

    text: str
    urgency: str = "normal"
    ack: bool = False  # the author asks every recipient to acknowledge it (`canopy ack`)

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Alert:
        """Strictly check an alert's content (DecodeError names the first bad field)."""
        if not isinstance(content, dict):
            raise DecodeError("alert content must be a map")
        check_keys(content, _ALERT_KEYS, _ALERT_OPTIONAL, "alert")
        urgency = content["urgency"]
        if not isinstance(urgency, str) or urgency not in URGENCIES:
            raise DecodeError("unknown alert urgency")
        ack = content.get("ack", False)
        if ack is not True and "ack" in content:
            raise DecodeError("ack must be true when present")
        text = _text(content, "text", limits.MAX_ALERT_TEXT_BYTES, empty=False)
        return cls(text, urgency, ack is True)


_CHECKLIST_REQUIRED = frozenset({"title", "items"})
_CHECKLIST_OPTIONAL = frozenset({"lang", "topics", "review_days", "translation_of", "lesson"})
_RECORD_ID_BYTES = 32


def item_id(text: str) -> str:
    """An item's stable id: hex of BLAKE2b(text, person=CHECKLIST_ITEM), 6 bytes. It
    depends on the text alone, so an unchanged item keeps its id in every version."""
    digest = hashlib.blake2b(
        text.encode("utf-8"),
        person=labels.CHECKLIST_ITEM,
        digest_size=limits.CHECKLIST_ITEM_ID_BYTES,
    )
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Checklist:
    """The content of a `checklist` record: items an organisation works through, and how
    often it reviews them. `lesson` is the record id of the checklist's first version (a
    new version names it, so progress follows the lesson); `translation_of` the record id
    of the checklist this one translates."""

    title: str
    items: tuple[str, ...]
    lang: str = ""
    topics: tuple[str, ...] = ()
    review_days: int = limits.DEFAULT_CHECKLIST_REVIEW_DAYS
    translation_of: bytes | None = None
    lesson: bytes | None = None

    @property
    def item_ids(self) -> tuple[str, ...]:
        return tuple(item_id(text) for text in self.items)

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Checklist:
        """Strictly check a checklist's content (DecodeError names the first bad field)."""
        if not isinstance(content, dict):
            raise DecodeError("checklist content must be a map")
        check_keys(content, _CHECKLIST_REQUIRED, _CHECKLIST_OPTIONAL, "checklist")
        field = limits.MAX_GUIDE_FIELD_BYTES
        raw_items = as_list(content["items"], what="items")
        if not raw_items:
            raise DecodeError("a checklist needs at least one item")
        if len(raw_items) > limits.MAX_CHECKLIST_ITEMS:
            raise DecodeError("too many items")
        items = tuple(
            _text({"item": t}, "item", limits.MAX_CHECKLIST_ITEM_BYTES, empty=False)
            for t in raw_items
        )
        if len({item_id(t) for t in items}) != len(items):
            raise DecodeError("a checklist item is repeated")
        topics = as_list(content.get("topics", []), what="topics")
        if len(topics) > limits.MAX_GUIDE_TOPICS:
            raise DecodeError("too many topics")
        days = as_int(
            content.get("review_days", limits.DEFAULT_CHECKLIST_REVIEW_DAYS),
            "review_days",
            1,
            limits.MAX_CHECKLIST_REVIEW_DAYS,
        )
        links = {
            key: as_bytes(content[key], _RECORD_ID_BYTES, key) if key in content else None
            for key in ("translation_of", "lesson")
        }
        return cls(
            title=_text(content, "title", limits.MAX_GUIDE_TITLE_BYTES, empty=False),
            items=items,
            lang=_text(content, "lang", field),
            topics=tuple(_text({"topic": t}, "topic", field) for t in topics),
            review_days=days,
            translation_of=links["translation_of"],
            lesson=links["lesson"],
        )

    def to_content(self) -> dict[str, Value]:
        """The content map `from_content` reads back as this checklist."""
        content: dict[str, Value] = {
            "title": self.title,
            "items": list(self.items),
            "lang": self.lang,
            "topics": list(self.topics),
            "review_days": self.review_days,
        }
        if self.translation_of is not None:
            content["translation_of"] = self.translation_of
        if self.lesson is not None:
            content["lesson"] = self.lesson
        return content


def check_content(kind: Kind, content: dict[str, Value]) -> None:
    """Raise DecodeError unless `content` follows the schema of `kind` (SPEC "Content")."""
    if kind is Kind.GUIDE:
        Guide.from_content(content)
    elif kind is Kind.ALERT:
        Alert.from_content(content)
    elif kind is Kind.CONTACT:
        if not isinstance(content, dict):
            raise DecodeError("contact content must be a map")
        Contact.from_content(content)
    elif kind is Kind.VOUCH:
        if not isinstance(content, dict):
            raise DecodeError("vouch content must be a map")
        Vouch.from_content(content)
    elif kind is Kind.CIRCLE:
        Change.from_content(content)
    elif kind is Kind.CHECKLIST:
        Checklist.from_content(content)
    elif kind is Kind.CHECKIN:
        CheckIn.from_content(content)
    elif kind is Kind.HELP:
        help_from_content(content)
    elif kind is Kind.ACK:
        AlertAck.from_content(content)
    elif kind is Kind.DUTY:
        DutyRecord.from_content(content)
    else:  # tombstone, revocation and chunk payloads are never sealed Bodies
        raise DecodeError(f"a {kind} record carries no sealed content")
