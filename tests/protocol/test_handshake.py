"""SHS1 machines: published and own vectors, a byte pipe between two real machines,
and the security properties (no reply to strangers, no msg4 to the untrusted)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_seed_keypair

from protocol import errors
from protocol.boxstream import BoxStreamDecoder, BoxStreamEncoder, StreamEnd
from protocol.errors import HandshakeError, LocalProtocolError, RemoteProtocolError
from protocol.handshake import (
    MSG1_BYTES,
    MSG2_BYTES,
    MSG3_BYTES,
    MSG4_BYTES,
    ClientHandshake,
    HandshakeState,
    ServerHandshake,
    SessionKeys,
)

ROOT = Path(__file__).resolve().parents[2]
VECTORS: list[dict[str, Any]] = json.loads((ROOT / "docs/vectors/shs1.json").read_text())["cases"]
BY_NAME = {c["name"]: c for c in VECTORS}
FULL = [c for c in VECTORS if c["kind"] == "full"]
REJECT = [c for c in VECTORS if c["kind"] == "reject"]

N = bytes([7]) * 32
OTHER_N = bytes([8]) * 32
C_PK, C_SK = crypto_sign_seed_keypair(bytes([1]) * 32)
S_PK, S_SK = crypto_sign_seed_keypair(bytes([2]) * 32)
C_EPH = bytes([3]) * 32
S_EPH = bytes([4]) * 32


def h(s: str) -> bytes:
    return bytes.fromhex(s)


def trust(*keys: bytes) -> Any:
    allowed = set(keys)
    return lambda pk, index: pk in allowed


def pair(
    client_n: bytes = N, server_ns: tuple[bytes, ...] = (N,), authorize: Any = None
) -> tuple[ClientHandshake, ServerHandshake]:
    client = ClientHandshake(client_n, C_SK, S_PK, C_EPH)
    server = ServerHandshake(list(server_ns), S_SK, S_EPH, authorize or trust(C_PK))
    return client, server


def run(client: ClientHandshake, server: ServerHandshake) -> tuple[bytes, bytes, bytes, bytes]:
    m1 = client.start()
    m2 = server.receive_data(m1)
    m3 = client.receive_data(m2)
    m4 = server.receive_data(m3)
    assert client.receive_data(m4) == b""
    return m1, m2, m3, m4


def vector_machines(case: dict[str, Any], authorized: list[bytes] | None = None) -> tuple[
    ClientHandshake, ServerHandshake
]:
    _, csk = crypto_sign_seed_keypair(h(case["client_seed"]))
    spk, ssk = crypto_sign_seed_keypair(h(case["server_seed"]))
    n_keys = [h(k) for k in case["network_keys"]]
    allowed = [h(case["client_public_key"])] if authorized is None else authorized
    client = ClientHandshake(
        n_keys[case["network_key_index"]], csk, spk, h(case["client_ephemeral_secret"])
    )
    server = ServerHandshake(n_keys, ssk, h(case["server_ephemeral_secret"]), trust(*allowed))
    return client, server


def keys_dict(keys: SessionKeys) -> dict[str, str]:
    return {
        "encrypt_key": keys.encrypt_key.hex(),
        "encrypt_nonce": keys.encrypt_nonce.hex(),
        "decrypt_key": keys.decrypt_key.hex(),
        "decrypt_nonce": keys.decrypt_nonce.hex(),
    }


# --- vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("case", FULL, ids=lambda c: c["name"])
def test_vector_client_role(case: dict[str, Any]) -> None:
    client, _ = vector_machines(case)
    assert client.start() == h(case["msg1"])
    assert client.receive_data(h(case["msg2"])) == h(case["msg3"])
    assert client.receive_data(h(case["msg4"])) == b""
    assert client.state is HandshakeState.DONE
    assert keys_dict(client.keys) == case["client_keys"]
    assert client.keys.remote_public_key == h(case["server_public_key"])
    assert client.keys.network_key_index == 0


@pytest.mark.parametrize("case", FULL, ids=lambda c: c["name"])
def test_vector_server_role(case: dict[str, Any]) -> None:
    _, server = vector_machines(case)
    assert server.receive_data(h(case["msg1"])) == h(case["msg2"])
    assert server.receive_data(h(case["msg3"])) == h(case["msg4"])
    assert server.state is HandshakeState.DONE
    assert keys_dict(server.keys) == case["server_keys"]
    assert server.keys.remote_public_key == h(case["client_public_key"])
    assert server.keys.network_key_index == case["network_key_index"]


@pytest.mark.parametrize("case", REJECT, ids=lambda c: c["name"])
def test_vector_rejected(case: dict[str, Any]) -> None:
    base = BY_NAME[case["base"]]
    authorized = [h(k) for k in case["authorized"]] if "authorized" in case else None
    client, server = vector_machines(base, authorized)
    machine: ClientHandshake | ServerHandshake
    if case["role"] == "server":
        machine = server
        if case["message"] == "msg3":
            assert server.receive_data(h(base["msg1"])) == h(base["msg2"])
    else:
        machine = client
        client.start()
        if case["message"] == "msg4":
            assert client.receive_data(h(base["msg2"])) == h(base["msg3"])
    expected = getattr(errors, case["expect"])
    with pytest.raises(RemoteProtocolError) as info:
        machine.receive_data(h(case["data"]))
    assert type(info.value) is expected
    assert machine.state is HandshakeState.FAILED
    with pytest.raises(LocalProtocolError):
        machine.receive_data(b"")


def test_session_keys_mirror_each_other() -> None:
    client, server = pair()
    run(client, server)
    c, s = client.keys, server.keys
    assert (c.encrypt_key, c.encrypt_nonce) == (s.decrypt_key, s.decrypt_nonce)
    assert (c.decrypt_key, c.decrypt_nonce) == (s.encrypt_key, s.encrypt_nonce)
    assert c.encrypt_key != c.decrypt_key
    assert (c.remote_public_key, s.remote_public_key) == (S_PK, C_PK)


def test_session_keys_repr_hides_key_material() -> None:
    client, server = pair()
    run(client, server)
    text = repr(client.keys)
    for secret in (client.keys.encrypt_key, client.keys.decrypt_key, client.keys.encrypt_nonce):
        assert secret.hex() not in text and repr(secret) not in text


# --- two machines over an in-memory pipe ---------------------------------------------


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in [*points, len(data)]:
        if p > prev:
            out.append(data[prev:p])
        prev = p
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts_c=st.lists(st.integers(0, 400), max_size=8),
    cuts_s=st.lists(st.integers(0, 400), max_size=8),
    payload_c=st.binary(max_size=9000),
    payload_s=st.binary(max_size=9000),
)
def test_pipe_handshake_then_traffic_any_chunking(
    cuts_c: list[int], cuts_s: list[int], payload_c: bytes, payload_s: bytes
) -> None:
    client, server = pair()
    to_server = client.start()
    to_client = b""
    # Drive both machines with arbitrarily re-chunked bytes until both are done.
    for _ in range(4):
        if to_server:
            for chunk in split(to_server, cuts_s):
                to_client += server.receive_data(chunk)
            to_server = b""
        if to_client:
            for chunk in split(to_client, cuts_c):
                to_server += client.receive_data(chunk)
            to_client = b""
    assert client.state is server.state is HandshakeState.DONE
    c, s = client.keys, server.keys
    for sender_keys, receiver_keys, payload, cuts in (
        (c, s, payload_c, cuts_s),
        (s, c, payload_s, cuts_c),
    ):
        enc = BoxStreamEncoder(sender_keys.encrypt_key, sender_keys.encrypt_nonce)
        dec = BoxStreamDecoder(receiver_keys.decrypt_key, receiver_keys.decrypt_nonce)
        wire = enc.encode(payload) + enc.goodbye()
        got, events = bytearray(), []
        for chunk in split(wire, cuts):
            dec.receive_data(chunk)
            while (ev := dec.next_event()) is not None:
                events.append(ev)
        for ev in events:
            if isinstance(ev, bytes):
                got += ev
        assert bytes(got) == payload
        assert events[-1] == StreamEnd()
        dec.close_unclean()  # a close after goodbye is clean


def test_all_messages_fed_one_byte_at_a_time() -> None:
    client, server = pair()
    m1 = client.start()
    out = b"".join(server.receive_data(m1[i : i + 1]) for i in range(len(m1)))
    assert len(out) == MSG2_BYTES
    m3 = b"".join(client.receive_data(out[i : i + 1]) for i in range(len(out)))
    assert len(m3) == MSG3_BYTES
    m4 = b"".join(server.receive_data(m3[i : i + 1]) for i in range(len(m3)))
    assert len(m4) == MSG4_BYTES
    assert b"".join(client.receive_data(m4[i : i + 1]) for i in range(len(m4))) == b""
    assert client.state is server.state is HandshakeState.DONE


def test_bytes_after_final_message_are_kept_as_leftover() -> None:
    client, server = pair()
    m1 = client.start()
    m2 = server.receive_data(m1)
    m3 = client.receive_data(m2)
    m4 = server.receive_data(m3 + b"early-server-side")
    assert server.leftover() == b"early-server-side"
    enc = BoxStreamEncoder(server.keys.encrypt_key, server.keys.encrypt_nonce)
    frames = enc.encode(b"hello")
    assert client.receive_data(m4 + frames) == b""
    assert client.leftover() == frames
    dec = BoxStreamDecoder(client.keys.decrypt_key, client.keys.decrypt_nonce)
    dec.receive_data(client.leftover())
    assert dec.next_event() == b"hello"


def test_coalesced_msg1_and_msg3_answer_both() -> None:
    client, server = pair()
    m1 = client.start()
    m2 = ServerHandshake([N], S_SK, S_EPH, trust(C_PK)).receive_data(m1)
    m3 = client.receive_data(m2)
    out = server.receive_data(m1 + m3)
    assert out[:MSG2_BYTES] == m2 and len(out) == MSG2_BYTES + MSG4_BYTES
    assert server.state is HandshakeState.DONE


# --- security properties -------------------------------------------------------------


def test_wrong_network_key_gets_no_reply() -> None:
    client, server = pair(client_n=OTHER_N)
    m1 = client.start()
    with pytest.raises(HandshakeError):
        server.receive_data(m1)
    assert server.state is HandshakeState.FAILED
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"")


def test_untrusted_key_gets_no_msg4() -> None:
    seen: list[tuple[bytes, int]] = []

    def authorize(pk: bytes, index: int) -> bool:
        seen.append((pk, index))
        return False

    client, server = pair(authorize=authorize)
    m2 = server.receive_data(client.start())
    m3 = client.receive_data(m2)
    with pytest.raises(HandshakeError):
        server.receive_data(m3)
    assert seen == [(C_PK, 0)]
    assert server.state is HandshakeState.FAILED
    with pytest.raises(LocalProtocolError):
        _ = server.keys


@pytest.mark.parametrize("verdict", [None, 1, "yes", [C_PK]])
def test_only_exact_true_authorizes(verdict: object) -> None:
    client, server = pair(authorize=lambda pk, i: verdict)
    m3 = client.receive_data(server.receive_data(client.start()))
    with pytest.raises(HandshakeError):
        server.receive_data(m3)


def test_authorize_not_called_for_bad_signature() -> None:
    calls: list[bytes] = []
    client, server = pair(authorize=lambda pk, i: calls.append(pk) is None)
    m3 = bytearray(client.receive_data(server.receive_data(client.start())))
    m3[50] ^= 1
    with pytest.raises(HandshakeError):
        server.receive_data(bytes(m3))
    assert calls == []


def test_matching_network_key_index_reported() -> None:
    keys = (bytes([9]) * 32, bytes([10]) * 32, N)
    client, server = pair(server_ns=keys)
    run(client, server)
    assert server.keys.network_key_index == 2
    assert client.keys.network_key_index == 0


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=MSG1_BYTES, max_size=MSG1_BYTES))
def test_random_msg1_gets_no_reply(data: bytes) -> None:
    _, server = pair()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(data)
    assert server.state is HandshakeState.FAILED


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=MSG2_BYTES, max_size=MSG2_BYTES))
def test_random_msg2_rejected(data: bytes) -> None:
    client, _ = pair()
    client.start()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=MSG3_BYTES, max_size=MSG3_BYTES))
def test_random_msg3_gets_no_msg4(data: bytes) -> None:
    client, server = pair()
    server.receive_data(client.start())
    with pytest.raises(RemoteProtocolError):
        server.receive_data(data)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=MSG4_BYTES, max_size=MSG4_BYTES))
def test_random_msg4_rejected(data: bytes) -> None:
    client, server = pair()
    client.receive_data(server.receive_data(client.start()))
    with pytest.raises(RemoteProtocolError):
        client.receive_data(data)


@settings(max_examples=300, deadline=None)
@given(
    which=st.sampled_from(["msg1", "msg2", "msg3", "msg4"]),
    index=st.integers(0, 111),
    mask=st.integers(1, 255),
)
def test_any_byte_mutation_raises_remote_protocol_error(which: str, index: int, mask: int) -> None:
    client, server = pair()
    msgs = dict(zip(["msg1", "msg2", "msg3", "msg4"], run(*pair()), strict=True))
    bad = bytearray(msgs[which])
    bad[index % len(bad)] ^= mask
    machine: ClientHandshake | ServerHandshake = server if which in ("msg1", "msg3") else client
    client.start()
    if which == "msg3":
        server.receive_data(msgs["msg1"])
    if which == "msg4":
        client.receive_data(msgs["msg2"])
    with pytest.raises(RemoteProtocolError):
        machine.receive_data(bytes(bad))
    assert machine.state is HandshakeState.FAILED


def test_low_order_ephemeral_points_rejected_before_reply() -> None:
    cases = [c for c in REJECT if "low-order" in c["name"]]
    assert len(cases) >= 14
    for case in cases:
        assert case["expect"] == "HandshakeError"


# --- misuse ----------------------------------------------------------------------------


def test_start_twice_is_local_error() -> None:
    client, _ = pair()
    client.start()
    with pytest.raises(LocalProtocolError):
        client.start()
    assert client.state is HandshakeState.CLIENT_AWAIT_MSG2


def test_feeding_before_start_is_local_error() -> None:
    client, _ = pair()
    with pytest.raises(LocalProtocolError):
        client.receive_data(b"x")


def test_feeding_after_done_is_local_error() -> None:
    client, server = pair()
    run(client, server)
    for machine in (client, server):
        with pytest.raises(LocalProtocolError):
            machine.receive_data(b"more")
        assert machine.state is HandshakeState.DONE
    with pytest.raises(LocalProtocolError):
        client.start()


def test_keys_and_leftover_before_done_are_local_errors() -> None:
    client, server = pair()
    for machine in (client, server):
        with pytest.raises(LocalProtocolError):
            _ = machine.keys
        with pytest.raises(LocalProtocolError):
            machine.leftover()


def test_every_call_after_failure_is_local_error() -> None:
    client, _ = pair()
    client.start()
    with pytest.raises(RemoteProtocolError):
        client.receive_data(bytes(MSG2_BYTES))
    for call in (lambda: client.receive_data(b""), client.start, client.leftover,
                 lambda: client.keys):
        with pytest.raises(LocalProtocolError):
            call()


@pytest.mark.parametrize(
    "build",
    [
        lambda: ClientHandshake(N[:31], C_SK, S_PK, C_EPH),
        lambda: ClientHandshake(N, C_SK[:32], S_PK, C_EPH),
        lambda: ClientHandshake(N, C_SK[:32] + S_PK, S_PK, C_EPH),
        lambda: ClientHandshake(N, C_SK, S_PK[:31], C_EPH),
        lambda: ClientHandshake(N, C_SK, S_PK, C_EPH + b"x"),
        lambda: ServerHandshake([], S_SK, S_EPH, trust()),
        lambda: ServerHandshake(N, S_SK, S_EPH, trust()),
        lambda: ServerHandshake([N, N[:5]], S_SK, S_EPH, trust()),
        lambda: ServerHandshake([N], S_SK, S_EPH[:3], trust()),
    ],
)
def test_bad_configuration_is_local_error(build: Any) -> None:
    with pytest.raises(LocalProtocolError):
        build()


def test_protocol_modules_stay_pure() -> None:
    forbidden = {"asyncio", "socket", "time", "os", "random", "secrets", "aiohttp", "sqlite3"}
    for name in ("handshake.py", "boxstream.py"):
        tree = ast.parse((ROOT / "protocol" / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [(node.module or "").split(".")[0]]
            else:
                continue
            assert not forbidden.intersection(mods), (name, mods)
