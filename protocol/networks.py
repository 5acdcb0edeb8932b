"""Several networks per node: a network's public tag, its default name, and which records
two nodes that share some networks may exchange (docs/spec/45-networks.md).

Pure: no I/O, no clock. A network is known by its 32-byte key (a secret: the SHS1 network
key and the key of the network slot of sealed payloads); its tag is the keyed BLAKE2b-128
of nothing under that key, safe to show and to put in clear on records, since it reveals
nothing of the key and is the same on every node of the network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from protocol import labels
from protocol.errors import LocalProtocolError
from protocol.record import Kind, Record, Scope

NETWORK_KEY_BYTES = 32
NETWORK_TAG_BYTES = 16


def network_tag(key: bytes) -> bytes:
    """BLAKE2b-128(empty message, key=network key, person=NETWORK_TAG)."""
    if not isinstance(key, bytes) or len(key) != NETWORK_KEY_BYTES:
        raise LocalProtocolError("network key must be 32 bytes")
    return hashlib.blake2b(
        b"", digest_size=NETWORK_TAG_BYTES, key=key, person=labels.NETWORK_TAG
    ).digest()


def default_network_name(tag: bytes) -> str:
    """The name a network goes by when nobody named it: the same on every member."""
    return "net-" + tag.hex()[:8]


def shared_networks(ours: Iterable[bytes], theirs: Iterable[bytes]) -> frozenset[bytes]:
    """The tags of the networks two nodes are both members of."""
    return frozenset(ours) & frozenset(theirs)


def record_network(tag: bytes | None, primary: bytes) -> bytes:
    """The network a network-scoped record belongs to: the one its tag names, or for a
    record without a tag (written before networks were tagged) this node's first network."""
    return primary if tag is None else tag


# Unsealed network-scoped kinds that must reach every node holding what they act on, in
# every network: a revocation certificate and an author's withdrawal of its own records.
EVERY_NETWORK_KINDS = frozenset({Kind.REVOCATION, Kind.TOMBSTONE})


@dataclass(frozen=True, slots=True)
class NetworkView:
    """What one connection may carry: the networks this node and the peer share, and this
    node's first network (the one an untagged record belongs to)."""

    shared: frozenset[bytes]
    first: bytes

    def carries(self, record: Record) -> bool:
        """Whether `record` may pass over this connection, either way, as far as networks
        go (the scope rules of protocol/conversation.py `may_receive` apply as well)."""
        if record.scope is not Scope.NETWORK or record.kind in EVERY_NETWORK_KINDS:
            return True
        return may_exchange_network_record(record.network, self.shared, self.first)

    @property
    def first_shared(self) -> bool:
        return self.first in self.shared


def may_exchange_network_record(
    tag: bytes | None, shared: frozenset[bytes], primary: bytes
) -> bool:
    """Whether a network-scoped record with `tag` may pass between this node and a peer
    with whom it shares the networks `shared` (either way: offered, sent or accepted)."""
    return record_network(tag, primary) in shared
