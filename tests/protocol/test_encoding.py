"""Canonical msgpack: round trip, canonical uniqueness, and rejection of everything else."""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import limits
from protocol.encoding import Value, pack, unpack
from protocol.errors import DecodeError, RemoteProtocolError

values: st.SearchStrategy[Value] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(values)
def test_round_trip(value: Value) -> None:
    assert unpack(pack(value)) == value


@given(values)
def test_accepted_encoding_is_the_only_one(value: Value) -> None:
    data = pack(value)
    assert pack(unpack(data)) == data


@given(values, st.data())
def test_any_mutation_is_rejected_or_canonical(value: Value, data: st.DataObject) -> None:
    encoded = bytearray(pack(value))
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(1, 255))
    try:
        decoded = unpack(bytes(encoded))
    except RemoteProtocolError:
        return
    assert pack(decoded) == bytes(encoded)  # a different but still canonical value


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else(blob: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        unpack(blob)


@pytest.mark.parametrize(
    "blob",
    [
        msgpack.packb({"b": 1, "a": 2}),  # unsorted keys
        b"\x82\xa1a\x01\xa1a\x02",  # duplicate key
        msgpack.packb(1.5),  # float
        msgpack.packb(math.nan),  # NaN
        b"\xcd\x00\x01",  # 1 in a uint16: not the shortest form
        msgpack.packb(msgpack.ExtType(1, b"x")),  # ext type
        b"\xd6\xff\x00\x00\x00\x01",  # timestamp ext
        msgpack.packb([1]) + b"\x00",  # trailing bytes
        b"\x91" * (limits.MAX_DEPTH + 2) + b"\x00",  # depth bomb
        b"\xdd\xff\xff\xff\xff",  # array length bomb
        b"\xc6\xff\xff\xff\xff",  # bin length bomb
        b"\x81\x01\x02",  # non-string key
        b"\xa2\xff\xfe",  # invalid UTF-8
        b"",
        b"\xc1",  # never-used byte
    ],
)
def test_rejected(blob: bytes) -> None:
    with pytest.raises(DecodeError):
        unpack(blob)


def test_size_limit_exactly_at_and_one_over() -> None:
    at = pack(b"x" * (1000 - 3))  # bin16 header is 3 bytes
    assert len(at) == 1000
    assert unpack(at, max_bytes=1000) == b"x" * 997
    with pytest.raises(DecodeError):
        unpack(pack(b"x" * 998), max_bytes=1000)
