"""Hypothesis strategies and a seeded random source shared by the protocol tests."""

from __future__ import annotations

import hashlib

from hypothesis import strategies as st

from protocol import limits
from protocol.encoding import Value
from protocol.identity import Identity, NodeId
from protocol.invite import Invite, check_name
from protocol.record import Kind, Record, Scope


class SeededRandom:
    """Deterministic `Random`: BLAKE2b-512(seed || u64 BE counter) blocks, concatenated.

    The same generator is specified in docs/spec/10-identity-records.md for the vectors.
    """

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = hashlib.blake2b(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._buffer += block
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def seeded(label: str) -> SeededRandom:
    return SeededRandom(label.encode())


seeds = st.binary(min_size=32, max_size=32)
identities = seeds.map(Identity)
node_ids = identities.map(lambda i: i.node_id)
kinds = st.sampled_from(list(Kind))
scopes = st.sampled_from(list(Scope))
randoms = st.binary(min_size=8, max_size=8).map(SeededRandom)


def values(depth: int = 3) -> st.SearchStrategy[Value]:
    """Every Value shape, nested at most `depth` deep (well inside MAX_DEPTH)."""
    leaves: st.SearchStrategy[Value] = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**63), max_value=2**64 - 1)
        | st.text(max_size=16)
        | st.binary(max_size=32)
    )
    if depth == 0:
        return leaves
    inner = values(depth - 1)
    return (
        leaves
        | st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    )


contents: st.SearchStrategy[dict[str, Value]] = st.dictionaries(
    st.text(max_size=10), values(2), max_size=5
)


@st.composite
def times(draw: st.DrawFn) -> tuple[int, int]:
    """A valid (created, expires) pair."""
    created = draw(st.integers(min_value=0, max_value=2**62))
    lifetime = draw(st.integers(min_value=1, max_value=limits.MAX_LIFETIME_MS))
    return created, created + lifetime


@st.composite
def records(draw: st.DrawFn) -> Record:
    created, expires = draw(times())
    return Record.create(
        draw(identities),
        draw(kinds),
        created=created,
        expires=expires,
        scope=draw(scopes),
        payload=draw(st.binary(max_size=300)),
    )


hosts = st.sampled_from(
    ["127.0.0.1:7420", "[::1]:7420", "example.org", "node.example.net:8443", "abc234.onion"]
)
addresses = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}{path}",
    st.sampled_from(["ws", "wss"]),
    hosts,
    st.sampled_from(["", "/", "/canopy", "/a/b?x=1"]),
)
names = st.text(max_size=40).filter(lambda n: check_name(n) is None)


@st.composite
def invites(draw: st.DrawFn) -> Invite:
    return Invite.create(
        draw(identities),
        name=draw(names),
        addresses=draw(st.lists(addresses, max_size=limits.MAX_INVITE_ADDRESSES, unique=True)),
        network_key=draw(seeds),
        secret=draw(seeds),
        expires=draw(st.integers(min_value=0, max_value=limits.MAX_TIMESTAMP_MS)),
    )


def other_id(node_id: NodeId) -> NodeId:
    """A different, valid node id."""
    return Identity(hashlib.blake2b(node_id.raw, digest_size=32).digest()).node_id
