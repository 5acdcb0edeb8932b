"""Several networks per node, the pure parts: the network tag (vectors), the tagged record
layout (version 2) and the rule of which records a connection carries."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgpack
import pytest

from protocol import labels
from protocol.conversation import may_receive
from protocol.encoding import pack
from protocol.envelope import open_record, seal_record
from protocol.errors import DecodeError, LocalProtocolError, NotForUs
from protocol.identity import Identity
from protocol.networks import NetworkView, default_network_name, network_tag
from protocol.record import Kind, Record, Scope, created_of

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "vectors" / "network.json").read_text()
)
NOW = 1_800_000_000_000
AUTHOR = Identity(bytes(range(32)))
PEER = Identity(bytes(range(1, 33))).node_id
N1, N2 = b"\x01" * 32, b"\x02" * 32


def tagged(key: bytes, scope: Scope = Scope.NETWORK, kind: Kind = Kind.ALERT) -> Record:
    return seal_record(
        AUTHOR,
        kind,
        {"text": "hello", "urgency": "normal"},
        created=NOW,
        expires=NOW + 1000,
        scope=scope,
        recipients=[],
        network_key=key,
        random=lambda n: b"\x07" * n,
        network=network_tag(key),
    )


def test_network_tag_vectors_match_the_keyed_blake2b_of_the_spec() -> None:
    for case in VECTORS["tags"]:
        key = bytes.fromhex(case["network_key"])
        expected = hashlib.blake2b(b"", digest_size=16, key=key, person=labels.NETWORK_TAG)
        assert network_tag(key).hex() == case["tag"] == expected.hexdigest()
        assert default_network_name(network_tag(key)) == case["name"]


def test_tagged_record_vector_decodes_verifies_and_opens_with_its_network_key() -> None:
    case = VECTORS["tagged_record"]
    record = Record.from_bytes(bytes.fromhex(case["record"]))
    record.verify()
    key = bytes.fromhex(case["network_key"])
    assert record.network == network_tag(key) and record.scope is Scope.NETWORK
    assert record.id.hex() == case["id"]
    assert record.signed_bytes().hex() == case["signed_bytes"]
    reader = Identity(b"\x33" * 32)
    assert open_record(record, reader, [N1, key]).content["title"] == "Tagged"
    with pytest.raises(NotForUs):
        open_record(record, reader, [N1, N2])


def test_a_tagged_record_round_trips_and_its_tag_is_signed() -> None:
    record = tagged(N1)
    again = Record.from_bytes(record.to_bytes())
    again.verify()
    assert again.network == network_tag(N1) and created_of(record.to_bytes()) == NOW
    fields = msgpack.unpackb(record.to_bytes())
    fields[7] = network_tag(N2)  # a relay re-tagging it for another network
    forged = Record.from_bytes(pack(fields))
    with pytest.raises(Exception, match="signature"):
        forged.verify()


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.__setitem__(7, b"\x00" * 15),  # tag of the wrong size
        lambda f: f.__setitem__(0, 1),  # version 1 never has nine fields
        lambda f: f.__setitem__(5, int(Scope.PEERS)),  # only network-scoped records are tagged
    ],
)
def test_a_malformed_tagged_record_is_refused(change: object) -> None:
    fields = msgpack.unpackb(tagged(N1).to_bytes())
    change(fields)  # type: ignore[operator]
    with pytest.raises(DecodeError):
        Record.from_bytes(pack(fields))


def test_a_peers_scoped_record_cannot_be_tagged() -> None:
    with pytest.raises(LocalProtocolError):
        tagged(N1, scope=Scope.PEERS)


def test_a_connection_carries_only_the_network_records_of_networks_shared() -> None:
    first, second = network_tag(N1), network_tag(N2)
    only_second = NetworkView(frozenset({second}), first)
    in_first, in_second = tagged(N1), tagged(N2)
    untagged = Record.create(
        AUTHOR, Kind.ALERT, created=NOW, expires=NOW + 1, scope=Scope.NETWORK, payload=b"x"
    )
    revocation_like = Record.create(
        AUTHOR, Kind.TOMBSTONE, created=NOW, expires=NOW + 1, scope=Scope.NETWORK, payload=b"x"
    )
    assert only_second.carries(in_second) and not only_second.carries(in_first)
    assert not only_second.carries(untagged)  # untagged: this node's first network
    assert NetworkView(frozenset({first}), first).carries(untagged)
    assert only_second.carries(revocation_like)  # withdrawals cross every network
    us = AUTHOR.node_id
    assert may_receive(in_second, PEER, us, only_second)
    assert not may_receive(in_first, PEER, us, only_second)
    assert may_receive(in_first, PEER, us)  # without a view: as with one network
