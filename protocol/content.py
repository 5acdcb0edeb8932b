"""The schema of every kind's content: what a Body may hold, checked when a record is opened.

Owns the guide and alert schemas and the one dispatch (`check_content`) that `open_record`
applies to every Body; contacts and vouches keep their schemas in `protocol.contact`
(docs/spec/30-sync.md, "Content"). A Body that breaks its schema is a DecodeError: the
record is unreadable, never shown. Kinds whose payload is not sealed (tombstone, revocation)
have no Body; theirs are checked by `protocol.lifecycle` and `protocol.revocation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import limits
from protocol.attachment import Attachment, attachments_of
from protocol.circle import Change
from protocol.contact import Contact, Vouch
from protocol.encoding import Value, as_list, check_keys
from protocol.errors import DecodeError
from protocol.record import Kind

_GUIDE_REQUIRED = frozenset({"title"})
_GUIDE_OPTIONAL = frozenset(
    {"text", "lang", "region", "topics", "format", "filename", "attachments"}
)
_ALERT_KEYS = frozenset({"text", "urgency"})
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
            attachments=attachments_of(content.get("attachments", [])),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """The content of an `alert` record."""

    text: str
    urgency: str = "normal"

    @classmethod
    def from_content(cls, content: dict[str, Value]) -> Alert:
        """Strictly check an alert's content (DecodeError names the first bad field)."""
        if not isinstance(content, dict):
            raise DecodeError("alert content must be a map")
        check_keys(content, _ALERT_KEYS, frozenset(), "alert")
        urgency = content["urgency"]
        if not isinstance(urgency, str) or urgency not in URGENCIES:
            raise DecodeError("unknown alert urgency")
        return cls(_text(content, "text", limits.MAX_ALERT_TEXT_BYTES, empty=False), urgency)


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
    else:  # tombstone, revocation and chunk payloads are never sealed Bodies
        raise DecodeError(f"a {kind} record carries no sealed content")
