"""Withdrawal (tombstone) payloads: which records an author takes back, and why.

A tombstone's payload is public on purpose: every relay must be able to purge the
records it names, including relays that could never read them (docs/SPEC.md,
"Lifecycle"). It never carries content; a withdrawal applies only to records by the
tombstone's own author, which the node checks against what it stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import limits
from protocol.attachment import TAG_BYTES
from protocol.encoding import as_bytes, as_list, as_map, check_keys, pack, unpack
from protocol.errors import DecodeError, LocalProtocolError
from protocol.record import Kind

_REQUIRED = frozenset({"targets"})
_OPTIONAL = frozenset({"successor", "tags"})

NEVER_WITHDRAWN = frozenset({Kind.REVOCATION})


def withdrawable(kind: Kind) -> bool:
    """Whether a tombstone may withdraw a record of `kind`: never a revocation.

    A revocation is the owner's answer to a stolen key, and the thief holds that key: if
    its author could withdraw it, the thief could (in advance, since its id is fixed at
    `init`). So a tombstone naming a revocation neither deletes it nor makes a node refuse
    a copy that arrives later, whoever signed the tombstone and whatever arrives first."""
    return kind not in NEVER_WITHDRAWN


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """The payload of a `tombstone` record: ids withdrawn, the new version if any, and the
    attachment tags of the withdrawn guides (their chunk records by the same author go too:
    docs/spec/85-attachments.md)."""

    targets: tuple[bytes, ...]
    successor: bytes | None = None
    tags: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not 0 < len(self.targets) <= limits.MAX_WITHDRAW_TARGETS:
            raise LocalProtocolError("a withdrawal names 1..MAX_WITHDRAW_TARGETS records")
        if any(len(t) != 32 for t in self.targets) or len(set(self.targets)) != len(self.targets):
            raise LocalProtocolError("targets must be distinct 32-byte record ids")
        if self.successor is not None and (
            len(self.successor) != 32 or self.successor in self.targets
        ):
            raise LocalProtocolError("successor must be a 32-byte id not among the targets")
        if len(self.tags) > limits.MAX_WITHDRAW_TAGS or len(set(self.tags)) != len(self.tags):
            raise LocalProtocolError("a withdrawal names 0..MAX_WITHDRAW_TAGS distinct tags")
        if any(len(t) != TAG_BYTES for t in self.tags):
            raise LocalProtocolError("attachment tags are 16 bytes")

    def to_payload(self) -> bytes:
        value: dict[str, object] = {"targets": list(self.targets)}
        if self.successor is not None:
            value["successor"] = self.successor
        if self.tags:
            value["tags"] = list(self.tags)
        return pack(value)  # type: ignore[arg-type]

    @classmethod
    def from_payload(cls, data: bytes) -> Withdrawal:
        value = as_map(unpack(data, max_bytes=limits.MAX_WITHDRAW_PAYLOAD_BYTES), "withdrawal")
        check_keys(value, _REQUIRED, _OPTIONAL, "withdrawal")
        raw = as_list(value["targets"], what="targets")
        targets = tuple(as_bytes(t, 32, "target") for t in raw)
        successor = value.get("successor")
        raw_tags = as_list(value.get("tags", []), what="tags")
        if "tags" in value and not raw_tags:
            raise DecodeError("an empty tags list is left out")  # one encoding per withdrawal
        tags = tuple(as_bytes(t, TAG_BYTES, "tag") for t in raw_tags)
        try:
            return cls(
                targets, None if successor is None else as_bytes(successor, 32, "successor"), tags
            )
        except LocalProtocolError as exc:
            raise DecodeError(str(exc)) from None
