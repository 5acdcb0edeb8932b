"""A KeyRing changes the order in which a reader tries its keys, never what opens."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.envelope import seal, unseal
from protocol.errors import LocalProtocolError, NotForUs
from protocol.identity import Identity
from protocol.keyring import CIRCLE, NETWORK, OWN, KeyRing
from tests.strategies import seeded

READER = Identity(b"\x51" * 32)
OTHER = Identity(b"\x52" * 32)
NETWORKS = [bytes([0x60 + i]) * 32 for i in range(3)]
CIRCLES = [bytes([0x70 + i]) * 32 for i in range(6)]

# What a payload is sealed to: our own slot, one of the networks, one of the circle keys,
# or only to someone else.
targets = st.one_of(
    st.just(("own", 0)),
    st.tuples(st.just("network"), st.integers(0, len(NETWORKS) - 1)),
    st.tuples(st.just("circle"), st.integers(0, len(CIRCLES) - 1)),
    st.just(("other", 0)),
)


def _sealed(target: tuple[str, int], n: int) -> bytes:
    what, i = target
    random = seeded(f"keyring {n} {what} {i}")
    plaintext = f"payload {n}".encode()
    if what == "own":
        return seal(plaintext, [READER.node_id], None, random)
    if what == "network":
        return seal(plaintext, [OTHER.node_id], NETWORKS[i], random)
    if what == "circle":
        return seal(plaintext, [OTHER.node_id], None, random, circle_keys=[CIRCLES[i]])
    return seal(plaintext, [OTHER.node_id], None, random)


def _open(sealed: bytes, networks: list[bytes], circle_keys: tuple[bytes, ...]) -> bytes | None:
    try:
        return unseal(sealed, READER, networks, circle_keys=circle_keys)
    except NotForUs:
        return None


@given(
    st.lists(
        st.tuples(targets, st.integers(0, len(NETWORKS)), st.integers(0, len(CIRCLES))),
        min_size=1,
        max_size=12,
    )
)
@settings(max_examples=60, deadline=None)
def test_a_ring_opens_exactly_what_the_plain_keys_open(
    runs: list[tuple[tuple[str, int], int, int]],
) -> None:
    """Whatever a ring remembers from earlier payloads, and whichever networks and circle
    keys the reader holds now, each payload opens to the same plaintext, or to nothing, as
    with the plain tuple of the same keys."""
    rings: dict[tuple[bytes, ...], KeyRing] = {}
    for n, (target, networks, circles) in enumerate(runs):
        sealed = _sealed(target, n)
        held = tuple(CIRCLES[:circles])
        ring = rings.setdefault(held, KeyRing(held))
        nets = NETWORKS[:networks]
        assert _open(sealed, nets, ring) == _open(sealed, nets, held)


def test_the_way_that_opened_the_last_payload_is_remembered_first() -> None:
    ring = KeyRing(CIRCLES)
    unseal(_sealed(("circle", 4), 1), READER, NETWORKS, circle_keys=ring)
    assert ring.recent == ((CIRCLE, CIRCLES[4]),)
    unseal(_sealed(("own", 0), 2), READER, NETWORKS, circle_keys=ring)
    unseal(_sealed(("network", 1), 3), READER, NETWORKS, circle_keys=ring)
    unseal(_sealed(("circle", 4), 4), READER, NETWORKS, circle_keys=ring)
    assert ring.recent == ((CIRCLE, CIRCLES[4]), (NETWORK, NETWORKS[1]), (OWN, b""))
    unseal(_sealed(("circle", 2), 5), READER, NETWORKS, circle_keys=ring)
    assert len(ring.recent) == limits.RECENT_OPENERS
    assert ring.recent[0] == (CIRCLE, CIRCLES[2])
    with pytest.raises(NotForUs):  # nothing opened: nothing learnt
        unseal(_sealed(("other", 0), 6), READER, NETWORKS, circle_keys=ring)
    assert ring.recent[0] == (CIRCLE, CIRCLES[2])


def test_a_remembered_network_key_is_not_tried_once_the_reader_no_longer_passes_it() -> None:
    ring = KeyRing(CIRCLES)
    unseal(_sealed(("network", 0), 1), READER, NETWORKS, circle_keys=ring)
    assert ring.recent[0] == (NETWORK, NETWORKS[0])
    with pytest.raises(NotForUs):
        unseal(_sealed(("network", 0), 2), READER, NETWORKS[1:], circle_keys=ring)


def test_a_ring_is_the_tuple_of_its_keys_and_never_shows_them() -> None:
    ring = KeyRing(CIRCLES[:2])
    assert ring == tuple(CIRCLES[:2])
    assert sorted(ring) == sorted(CIRCLES[:2])
    assert CIRCLES[0].hex() not in repr(ring) and "2 keys" in repr(ring)


def test_a_ring_refuses_keys_that_are_not_32_bytes_or_too_many() -> None:
    with pytest.raises(LocalProtocolError):
        KeyRing([b"short"])
    with pytest.raises(LocalProtocolError):
        KeyRing([bytes(32)] * (limits.MAX_CIRCLE_KEYS_TRIED + 1))
