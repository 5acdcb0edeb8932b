"""Invite codes: round trip, signature, expiry, and InviteError for every bad input."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import labels, limits
from protocol.errors import InviteError, LocalProtocolError
from protocol.identity import Identity, b32encode
from protocol.invite import Invite
from tests.strategies import invites

ALICE = Identity(b"\xa1" * 32)
MALLORY = Identity(b"\x3a" * 32)
NOW = 1_700_000_000_000


def make(**kw: object) -> Invite:
    args: dict[str, object] = {
        "name": "Legal Aid Network",
        "addresses": ["wss://node.example.org/canopy", "ws://abc234.onion/canopy"],
        "network_key": b"\x4e" * 32,
        "secret": b"\x53" * 32,
        "expires": NOW + limits.DEFAULT_INVITE_LIFETIME_MS,
    }
    args.update(kw)
    return Invite.create(ALICE, **args)  # type: ignore[arg-type]


def encode(fields: list[object]) -> str:
    return labels.INVITE_PREFIX + b32encode(msgpack.packb(fields, use_bin_type=True))


def fields_of(invite: Invite) -> list[object]:
    value = msgpack.unpackb(invite.to_bytes(), raw=False)
    assert isinstance(value, list)
    return value


@given(invites())
@settings(max_examples=60)
def test_round_trip_and_canonical(invite: Invite) -> None:
    code = invite.to_code()
    assert code.startswith(labels.INVITE_PREFIX)
    decoded = Invite.from_code(code)
    assert decoded == invite
    assert decoded.to_code() == code


def test_whitespace_and_case_ignored() -> None:
    code = make().to_code()
    wrapped = "  " + "\n".join(code[i : i + 60] for i in range(0, len(code), 60)) + "\n"
    assert Invite.from_code(wrapped) == make()
    assert Invite.from_code(code.upper()) == make()


@given(invites(), st.data())
@settings(max_examples=80)
def test_tampered_invite_rejected(invite: Invite, data: st.DataObject) -> None:
    code = invite.to_code()
    body = code[len(labels.INVITE_PREFIX) :]
    mode = data.draw(st.sampled_from(["char", "truncate", "extend"]))
    if mode == "char":
        i = data.draw(st.integers(0, len(body) - 1))
        new = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567!0"))
        tampered = body[:i] + new + body[i + 1 :]
    elif mode == "truncate":
        tampered = body[: data.draw(st.integers(0, len(body) - 1))]
    else:
        tampered = body + data.draw(st.text("abcdefghijklmnopqrstuvwxyz234567", min_size=1))
    if tampered == body:
        return
    with pytest.raises(InviteError):
        Invite.from_code(labels.INVITE_PREFIX + tampered)


@given(st.text(max_size=300))
def test_garbage_is_invite_error(text: str) -> None:
    with pytest.raises(InviteError):
        Invite.from_code(labels.INVITE_PREFIX + text)
    with pytest.raises(InviteError):
        Invite.from_code(text)


@given(st.binary(max_size=300))
def test_garbage_bytes_are_invite_error(data: bytes) -> None:
    with pytest.raises(InviteError):
        Invite.from_code(labels.INVITE_PREFIX + b32encode(data))


def test_forged_invite_rejected() -> None:
    invite = make()
    fields = fields_of(invite)
    fields[7] = MALLORY.sign(b"anything")
    with pytest.raises(InviteError):
        Invite.from_code(encode(fields))


def test_redirected_address_rejected() -> None:
    fields = fields_of(make())
    fields[3] = ["wss://attacker.example/canopy"]
    with pytest.raises(InviteError):
        Invite.from_code(encode(fields))


def test_expired_invite() -> None:
    invite = make(expires=NOW)
    with pytest.raises(InviteError, match="expired"):
        invite.check_time(NOW)
    invite.check_time(NOW - 1)


@pytest.mark.parametrize(
    "address",
    [
        "http://example.org/canopy",
        "wss://",
        "ws://exa mple.org/",
        "ws://user:pw@example.org/",
        "ws://example.org:99999/",
        "ws://example.org/\x1b[31m",
        "ws://example.org/#frag",
        "wss://" + "a" * limits.MAX_ADDRESS_LEN,
        "",
    ],
)
def test_bad_addresses_rejected(address: str) -> None:
    with pytest.raises(LocalProtocolError):
        make(addresses=[address])
    fields = fields_of(make())
    fields[3] = [address]
    with pytest.raises(InviteError):
        Invite.from_code(encode(fields))


def test_too_many_addresses_rejected() -> None:
    many = [f"ws://10.0.0.{i}:7420/canopy" for i in range(limits.MAX_INVITE_ADDRESSES + 1)]
    with pytest.raises(LocalProtocolError):
        make(addresses=many)
    make(addresses=many[:-1])


@pytest.mark.parametrize("name", ["a\x1b[2J", "bidi\u202eevil", "x" * (limits.MAX_NAME_LEN + 1)])
def test_bad_names_rejected(name: str) -> None:
    with pytest.raises(LocalProtocolError):
        make(name=name)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda f: [2, *f[1:]], id="version"),
        pytest.param(lambda f: f[:7], id="short"),
        pytest.param(lambda f: [*f[:4], f[4][:31], *f[5:]], id="short-network-key"),
        pytest.param(lambda f: [*f[:6], 1.5, f[7]], id="float-expiry"),
        pytest.param(lambda f: [*f[:6], msgpack.ExtType(1, b""), f[7]], id="ext"),
        pytest.param(lambda f: [*f[:3], "ws://x/", *f[4:]], id="addresses-not-array"),
    ],
)
def test_shape_violations_are_invite_errors(change: object) -> None:
    assert callable(change)
    with pytest.raises(InviteError):
        Invite.from_code(encode(change(fields_of(make()))))


def test_oversize_code_rejected_before_decoding() -> None:
    with pytest.raises(InviteError):
        Invite.from_code(labels.INVITE_PREFIX + "a" * 100_000)


def test_capability_is_keyed_by_network_key() -> None:
    invite = make()
    expected = hashlib.blake2b(
        invite.secret, digest_size=32, key=invite.network_key, person=labels.INVITE_CAPABILITY
    ).digest()
    assert invite.capability() == expected
    assert make(network_key=b"\x00" * 32).capability() != expected
    assert make(secret=b"\x00" * 32).capability() != expected


def test_repr_hides_secrets() -> None:
    invite = make()
    shown = repr(invite)
    assert invite.secret.hex() not in shown and repr(invite.secret) not in shown
    assert repr(invite.network_key) not in shown
