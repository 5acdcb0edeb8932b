"""Box-stream: published and own vectors, round trips under any chunking, nonce carry,
and rejection of every tampered, truncated or replayed byte."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_secretbox

from protocol import errors
from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder, StreamEnd
from protocol.errors import DecodeError, LocalProtocolError, RemoteProtocolError, VerificationError

ROOT = Path(__file__).resolve().parents[2]
VECTORS: list[dict[str, Any]] = json.loads((ROOT / "docs/vectors/boxstream.json").read_text())[
    "cases"
]
DECODE = [c for c in VECTORS if "stream" in c]
ENCODE = [c for c in VECTORS if "writes" in c]
KEY = bytes(range(32))
NONCE = bytes(24)
MAX_NONCE = b"\xff" * 24


def drain(dec: BoxStreamDecoder) -> list[bytes | StreamEnd]:
    out: list[bytes | StreamEnd] = []
    while (ev := dec.next_event()) is not None:
        out.append(ev)
    return out


def as_hex(events: list[bytes | StreamEnd]) -> list[str]:
    return ["end" if isinstance(e, StreamEnd) else e.hex() for e in events]


# --- vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("case", DECODE, ids=lambda c: c["name"])
def test_vector_decode(case: dict[str, Any]) -> None:
    dec = BoxStreamDecoder(bytes.fromhex(case["key"]), bytes.fromhex(case["nonce"]))
    dec.receive_data(bytes.fromhex(case["stream"]))
    events: list[bytes | StreamEnd] = []
    if case["expect"] == "ok":
        events = drain(dec)
        if case["close"]:
            dec.close_unclean()
    else:
        expected = getattr(errors, case["expect"])
        with pytest.raises(RemoteProtocolError) as info:
            while (ev := dec.next_event()) is not None:
                events.append(ev)
            if case["close"]:
                dec.close_unclean()
        assert type(info.value) is expected
        with pytest.raises(LocalProtocolError):
            dec.next_event()
    assert as_hex(events) == case["events"]


@pytest.mark.parametrize("case", ENCODE, ids=lambda c: c["name"])
def test_vector_encode(case: dict[str, Any]) -> None:
    enc = BoxStreamEncoder(bytes.fromhex(case["key"]), bytes.fromhex(case["nonce"]))
    out = b"".join(enc.encode(bytes.fromhex(w)) for w in case["writes"])
    if "stream_tail" in case:
        tail = bytes.fromhex(case["stream_tail"])
        assert out[-len(tail) :] == tail
    else:
        if case["expect"] == "ok" and case["events"][-1:] == ["end"]:
            out += enc.goodbye()
        assert out == bytes.fromhex(case["stream"])


# --- framing facts -------------------------------------------------------------------


def test_empty_input_encodes_to_nothing() -> None:
    assert BoxStreamEncoder(KEY, NONCE).encode(b"") == b""


def test_frame_sizes_and_split_at_4096() -> None:
    enc = BoxStreamEncoder(KEY, NONCE)
    assert len(enc.encode(b"x")) == 34 + 1
    assert len(enc.encode(bytes(4096))) == 34 + 4096
    assert len(enc.encode(bytes(4097))) == 2 * 34 + 4097
    assert len(enc.goodbye()) == 34


def test_nonce_carry_header_n_body_n_plus_1() -> None:
    enc = BoxStreamEncoder(KEY, MAX_NONCE)
    wire = enc.encode(b"abc") + enc.encode(b"d")
    # Header 1 at ff..ff, body 1 at 00..00 (wrapped), header 2 at 00..01, body 2 at 00..02.
    body1 = crypto_secretbox(b"abc", bytes(24), KEY)
    header1 = crypto_secretbox(b"\x00\x03" + body1[:16], MAX_NONCE, KEY)
    body2 = crypto_secretbox(b"d", (2).to_bytes(24, "big"), KEY)
    header2 = crypto_secretbox(b"\x00\x01" + body2[:16], (1).to_bytes(24, "big"), KEY)
    assert wire == header1 + body1[16:] + header2 + body2[16:]
    goodbye = crypto_secretbox(bytes(18), (3).to_bytes(24, "big"), KEY)
    assert enc.goodbye() == goodbye


def test_carry_propagates_through_middle_bytes() -> None:
    start = bytes(20) + b"\x00\xff\xff\xff"
    enc = BoxStreamEncoder(KEY, start)
    enc.encode(b"a")
    goodbye = crypto_secretbox(bytes(18), bytes(20) + b"\x01\x00\x00\x01", KEY)
    assert enc.goodbye() == goodbye


@settings(max_examples=120, deadline=None)
@given(
    writes=st.lists(st.binary(max_size=9000), max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=50_000), max_size=12),
    nonce=st.one_of(
        st.binary(min_size=24, max_size=24),
        st.integers(0, 8).map(lambda k: (2**192 - 1 - k).to_bytes(24, "big")),
    ),
)
def test_round_trip_any_sizes_any_chunking(
    writes: list[bytes], cuts: list[int], nonce: bytes
) -> None:
    enc = BoxStreamEncoder(KEY, nonce)
    wire = b"".join(enc.encode(w) for w in writes) + enc.goodbye()
    dec = BoxStreamDecoder(KEY, nonce)
    events: list[bytes | StreamEnd] = []
    prev = 0
    for p in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        dec.receive_data(wire[prev:p])
        prev = max(prev, p)
        events += drain(dec)
    assert events[-1] == StreamEnd()
    bodies = [e for e in events[:-1] if isinstance(e, bytes)]
    assert all(1 <= len(b) <= 4096 for b in bodies)
    assert b"".join(bodies) == b"".join(writes)
    assert dec.ended
    dec.close_unclean()
    assert dec.next_event() is None


# --- rejection -----------------------------------------------------------------------


def sample_stream() -> bytes:
    enc = BoxStreamEncoder(KEY, NONCE)
    return enc.encode(b"first") + enc.encode(bytes(5000)) + enc.goodbye()


def decode_all(wire: bytes) -> list[bytes | StreamEnd]:
    dec = BoxStreamDecoder(KEY, NONCE)
    dec.receive_data(wire)
    events = drain(dec)
    dec.close_unclean()
    return events


@settings(max_examples=400, deadline=None)
@given(index=st.integers(0, 10_000), mask=st.integers(1, 255))
def test_any_byte_mutation_raises_remote_protocol_error(index: int, mask: int) -> None:
    wire = bytearray(sample_stream())
    wire[index % len(wire)] ^= mask
    with pytest.raises(RemoteProtocolError):
        decode_all(bytes(wire))


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 10_000))
def test_truncation_anywhere_is_an_error_not_an_end(cut: int) -> None:
    wire = sample_stream()
    cut %= len(wire)  # strictly shorter than the full stream
    with pytest.raises(DecodeError):
        decode_all(wire[:cut])


@settings(max_examples=200, deadline=None)
@given(junk=st.binary(min_size=34, max_size=200))
def test_random_bytes_rejected(junk: bytes) -> None:
    with pytest.raises(VerificationError):
        decode_all(junk)


def test_replayed_frame_rejected() -> None:
    enc = BoxStreamEncoder(KEY, NONCE)
    frame = enc.encode(b"pay me")
    dec = BoxStreamDecoder(KEY, NONCE)
    dec.receive_data(frame + frame)
    assert dec.next_event() == b"pay me"
    with pytest.raises(VerificationError):
        dec.next_event()


@pytest.mark.parametrize("length", [0, 4097, 65535])
def test_correctly_boxed_bad_length_is_decode_error(length: int) -> None:
    header = crypto_secretbox(length.to_bytes(2, "big") + b"\x01" * 16, NONCE, KEY)
    dec = BoxStreamDecoder(KEY, NONCE)
    dec.receive_data(header + bytes(min(length, 5000)))
    with pytest.raises(DecodeError):
        dec.next_event()
    with pytest.raises(LocalProtocolError):
        dec.receive_data(b"")


def test_close_without_goodbye_is_truncation() -> None:
    enc = BoxStreamEncoder(KEY, NONCE)
    dec = BoxStreamDecoder(KEY, NONCE)
    dec.receive_data(enc.encode(b"complete frame"))
    assert drain(dec) == [b"complete frame"]
    with pytest.raises(DecodeError, match="truncated"):
        dec.close_unclean()
    with pytest.raises(LocalProtocolError):
        dec.close_unclean()


def test_wrong_key_rejected() -> None:
    wire = BoxStreamEncoder(KEY, NONCE).encode(b"x")
    dec = BoxStreamDecoder(bytes(32), NONCE)
    dec.receive_data(wire)
    with pytest.raises(VerificationError):
        dec.next_event()


def test_error_messages_are_opaque() -> None:
    wire = bytearray(sample_stream())
    wire[40] ^= 1
    with pytest.raises(VerificationError) as info:
        decode_all(bytes(wire))
    assert "first" not in str(info.value) and KEY.hex() not in str(info.value)


# --- misuse ----------------------------------------------------------------------------


def test_encode_after_goodbye_is_local_error() -> None:
    enc = BoxStreamEncoder(KEY, NONCE)
    enc.goodbye()
    with pytest.raises(LocalProtocolError):
        enc.encode(b"late")
    with pytest.raises(LocalProtocolError):
        enc.goodbye()


@pytest.mark.parametrize("key,nonce", [(KEY[:31], NONCE), (KEY, NONCE[:23]), (KEY + b"x", NONCE)])
def test_bad_key_or_nonce_is_local_error(key: bytes, nonce: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        BoxStreamEncoder(key, nonce)
    with pytest.raises(LocalProtocolError):
        BoxStreamDecoder(key, nonce)


# --- throughput ------------------------------------------------------------------------


def test_decoder_is_linear_in_buffered_bytes() -> None:
    # 20k small records arriving in one lump must not cost quadratic copying.
    enc = BoxStreamEncoder(KEY, NONCE)
    wire = b"".join(enc.encode(bytes(100)) for _ in range(20_000))
    dec = BoxStreamDecoder(KEY, NONCE)
    started = time.perf_counter()
    dec.receive_data(wire)
    count = len(drain(dec))
    elapsed = time.perf_counter() - started
    assert count == 20_000
    assert elapsed < 5.0, f"decoding 20k frames took {elapsed:.2f}s"


@given(
    sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=8),
    cuts=st.lists(st.integers(1, 20_000), max_size=12),
    mixed=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_next_bodies_gives_the_same_bytes_as_next_event_under_any_chunking(
    sizes: list[int], cuts: list[int], mixed: bool
) -> None:
    """The bulk path opens frames in place in the receive buffer: whatever the chunking,
    and interleaved with next_event, it yields exactly the plaintext, then the goodbye."""
    enc = BoxStreamEncoder(KEY, NONCE)
    plain = b"".join(bytes([i % 251]) * n for i, n in enumerate(sizes))
    wire = b"".join(enc.encode(bytes([i % 251]) * n) for i, n in enumerate(sizes))
    wire += enc.goodbye()
    dec = BoxStreamDecoder(KEY, NONCE)
    got, ended, at = b"", False, 0
    for cut in [*cuts, len(wire)]:
        dec.receive_data(wire[at : at + cut])
        at += cut
        if mixed and not ended:
            event = dec.next_event()
            if isinstance(event, bytes):
                got += event
            ended = ended or isinstance(event, StreamEnd)
        if not ended:
            body, ended = dec.next_bodies()
            got += body
    assert ended and got == plain


@given(index=st.integers(0, 20_000), mask=st.integers(1, 255))
@settings(max_examples=80, deadline=None)
def test_next_bodies_never_returns_a_byte_of_a_tampered_stream_past_the_damage(
    index: int, mask: int
) -> None:
    enc = BoxStreamEncoder(KEY, NONCE)
    plain = bytes(range(256)) * 60  # 15,360 bytes: four frames
    wire = bytearray(enc.encode(plain) + enc.goodbye())
    index %= len(wire)
    wire[index] ^= mask
    frame = index // (34 + 4096)  # the first frame the damage touches
    dec = BoxStreamDecoder(KEY, NONCE)
    got = b""
    with pytest.raises(RemoteProtocolError):
        for at in range(0, len(wire), 5000):
            dec.receive_data(bytes(wire[at : at + 5000]))
            body, ended = dec.next_bodies()
            got += body
            assert not ended
    assert plain.startswith(got) and len(got) <= frame * 4096
    with pytest.raises(LocalProtocolError):
        dec.next_bodies()
