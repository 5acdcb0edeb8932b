"""Secret Handshake v1 (SHS1) of Scuttlebutt as two sans-IO state machines.

Owns the four handshake messages and the session keys handed to box-stream
(docs/spec/20-handshake-boxstream.md). It must never send msg2 for a bad msg1 or msg4
to an unauthorised client, and never touches a socket, the clock or the system RNG:
the ephemeral secret comes in as an argument.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from nacl import bindings as _nacl
from nacl import exceptions as _nacl_exc

from protocol.errors import HandshakeError, LocalProtocolError

# Fixed wire sizes (SPEC "Transport: SHS1 and box-stream", "Wire messages").
MSG1_BYTES = 64  # auth(N, a_pk) || a_pk
MSG2_BYTES = 64  # auth(N, b_pk) || b_pk
MSG3_BYTES = 112  # box(K3, 0, sigA || A_pk)
MSG4_BYTES = 80  # box(K4, 0, sigB)
NETWORK_KEY_BYTES = 32
SECRET_KEY_BYTES = 64  # libsodium Ed25519 secret key: seed || pk
PUBLIC_KEY_BYTES = 32
EPHEMERAL_SECRET_BYTES = 32
SESSION_NONCE_BYTES = 24

_ZERO_NONCE = bytes(24)
_SIG_BYTES = 64

# Libraries raise these on malformed or low-order inputs; all map to one opaque error.
_CRYPTO_FAILURES = (_nacl_exc.CryptoError, RuntimeError, ValueError, TypeError)


class HandshakeState(enum.Enum):
    """Where a handshake machine stands. See the transition table `_TRANSITIONS`."""

    CLIENT_START = "client-start"  # client built, start() not yet called
    CLIENT_AWAIT_MSG2 = "client-await-msg2"  # msg1 sent
    CLIENT_AWAIT_MSG4 = "client-await-msg4"  # msg3 sent
    SERVER_AWAIT_MSG1 = "server-await-msg1"  # server built, nothing received
    SERVER_AWAIT_MSG3 = "server-await-msg3"  # msg2 sent
    DONE = "done"  # keys available; further bytes belong to box-stream
    FAILED = "failed"  # terminal; every further call raises LocalProtocolError


class _Input(enum.Enum):
    START = "start"
    MSG1 = "msg1"
    MSG2 = "msg2"
    MSG3 = "msg3"
    MSG4 = "msg4"


# The one transition table. Any error from any state goes to FAILED; anything not
# listed here is API misuse (LocalProtocolError) and leaves the state unchanged.
#
#   state              input   output               next
#   CLIENT_START       start   msg1                 CLIENT_AWAIT_MSG2
#   CLIENT_AWAIT_MSG2  msg2    msg3                 CLIENT_AWAIT_MSG4
#   CLIENT_AWAIT_MSG4  msg4    (keys)               DONE
#   SERVER_AWAIT_MSG1  msg1    msg2                 SERVER_AWAIT_MSG3
#   SERVER_AWAIT_MSG3  msg3    msg4 (if authorised) DONE
_TRANSITIONS: dict[tuple[HandshakeState, _Input], HandshakeState] = {
    (HandshakeState.CLIENT_START, _Input.START): HandshakeState.CLIENT_AWAIT_MSG2,
    (HandshakeState.CLIENT_AWAIT_MSG2, _Input.MSG2): HandshakeState.CLIENT_AWAIT_MSG4,
    (HandshakeState.CLIENT_AWAIT_MSG4, _Input.MSG4): HandshakeState.DONE,
    (HandshakeState.SERVER_AWAIT_MSG1, _Input.MSG1): HandshakeState.SERVER_AWAIT_MSG3,
    (HandshakeState.SERVER_AWAIT_MSG3, _Input.MSG3): HandshakeState.DONE,
}

# The message each waiting state expects next, with its fixed size.
_EXPECTS: dict[HandshakeState, tuple[_Input, int]] = {
    HandshakeState.CLIENT_AWAIT_MSG2: (_Input.MSG2, MSG2_BYTES),
    HandshakeState.CLIENT_AWAIT_MSG4: (_Input.MSG4, MSG4_BYTES),
    HandshakeState.SERVER_AWAIT_MSG1: (_Input.MSG1, MSG1_BYTES),
    HandshakeState.SERVER_AWAIT_MSG3: (_Input.MSG3, MSG3_BYTES),
}


@dataclass(frozen=True, slots=True)
class SessionKeys:
    """What a finished handshake hands to box-stream. The repr never shows key material."""

    remote_public_key: bytes  # the peer's 32-byte Ed25519 public key
    network_key_index: int  # which configured network key matched (client: always 0)
    encrypt_key: bytes = field(repr=False)
    encrypt_nonce: bytes = field(repr=False)
    decrypt_key: bytes = field(repr=False)
    decrypt_nonce: bytes = field(repr=False)


# --- primitives -------------------------------------------------------------------


def _auth(key: bytes, msg: bytes) -> bytes:
    """libsodium crypto_auth: HMAC-SHA-512 truncated to 32 bytes."""
    return hmac.new(key, msg, hashlib.sha512).digest()[:32]


def _sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def _fail() -> NoReturn:
    # One opaque message for every remote failure: which check failed is not the peer's business.
    raise HandshakeError("handshake failed")


def _dh(secret: bytes, public: bytes) -> bytes:
    """X25519; an all-zero result (low-order point) is a handshake failure."""
    try:
        out: bytes = _nacl.crypto_scalarmult(secret, public)
    except _CRYPTO_FAILURES:
        _fail()
    return out


def _ed2x_pk(public_key: bytes) -> bytes:
    try:
        out: bytes = _nacl.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except _CRYPTO_FAILURES:
        _fail()
    return out


def _sign(secret_key: bytes, msg: bytes) -> bytes:
    sig: bytes = _nacl.crypto_sign(msg, secret_key)[:_SIG_BYTES]
    return sig


def _verify(public_key: bytes, sig: bytes, msg: bytes) -> None:
    try:
        _nacl.crypto_sign_open(sig + msg, public_key)
    except _CRYPTO_FAILURES:
        _fail()


def _box(key: bytes, plaintext: bytes) -> bytes:
    out: bytes = _nacl.crypto_secretbox(plaintext, _ZERO_NONCE, key)
    return out


def _unbox(key: bytes, ciphertext: bytes) -> bytes:
    try:
        out: bytes = _nacl.crypto_secretbox_open(ciphertext, _ZERO_NONCE, key)
    except _CRYPTO_FAILURES:
        _fail()
    return out


def _check_len(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise LocalProtocolError(f"{name} must be {size} bytes")


def _check_secret_key(secret_key: bytes) -> bytes:
    """Return the public half of a libsodium Ed25519 secret key, after checking it is one."""
    _check_len("secret_key", secret_key, SECRET_KEY_BYTES)
    public: bytes = _nacl.crypto_sign_seed_keypair(bytes(secret_key[:32]))[0]
    if not hmac.compare_digest(public, bytes(secret_key[32:])):
        raise LocalProtocolError("secret_key is not seed || public key")
    return public


def _session_keys(
    k4: bytes,
    local_pk: bytes,
    remote_pk: bytes,
    local_hello_mac: bytes,
    remote_hello_mac: bytes,
    index: int,
) -> SessionKeys:
    """Each direction is keyed to the receiver's long-term key and starts at its hello MAC."""
    kk = _sha256(k4)
    return SessionKeys(
        remote_public_key=remote_pk,
        network_key_index=index,
        encrypt_key=_sha256(kk, remote_pk),
        encrypt_nonce=remote_hello_mac[:SESSION_NONCE_BYTES],
        decrypt_key=_sha256(kk, local_pk),
        decrypt_nonce=local_hello_mac[:SESSION_NONCE_BYTES],
    )


# --- the machines -------------------------------------------------------------------


class _Machine:
    """Buffering, the state table and the FAILED rule, shared by client and server."""

    __slots__ = ("_buffer", "_keys", "_state")

    def __init__(self, state: HandshakeState) -> None:
        self._state = state
        self._buffer = bytearray()
        self._keys: SessionKeys | None = None

    @property
    def state(self) -> HandshakeState:
        return self._state

    @property
    def keys(self) -> SessionKeys:
        """The session keys; LocalProtocolError unless the handshake is DONE."""
        if self._state is not HandshakeState.DONE or self._keys is None:
            raise LocalProtocolError("handshake is not complete")
        return self._keys

    def leftover(self) -> bytes:
        """Bytes received after the final handshake message: the start of box-stream."""
        if self._state is not HandshakeState.DONE:
            raise LocalProtocolError("handshake is not complete")
        return bytes(self._buffer)

    def _advance(self, event: _Input) -> None:
        nxt = _TRANSITIONS.get((self._state, event))
        if nxt is None:
            raise LocalProtocolError(f"{event.value} not allowed in state {self._state.value}")
        self._state = nxt

    def _check_usable(self) -> None:
        if self._state is HandshakeState.FAILED:
            raise LocalProtocolError("handshake already failed")
        if self._state is HandshakeState.DONE:
            raise LocalProtocolError("handshake is complete; feed box-stream instead")

    def receive_data(self, data: bytes) -> bytes:
        """Feed any number of bytes; return what must be sent in reply (possibly b"")."""
        self._check_usable()
        if self._state not in _EXPECTS:
            raise LocalProtocolError("call start() before feeding data")
        self._buffer += data
        out = bytearray()
        try:
            while self._state in _EXPECTS:
                event, size = _EXPECTS[self._state]
                if len(self._buffer) < size:
                    break
                message = bytes(self._buffer[:size])
                del self._buffer[:size]
                out += self._handle(event, message)
                self._advance(event)
        except BaseException:
            self._enter_failed()
            raise
        return bytes(out)

    def _enter_failed(self) -> None:
        # Python cannot wipe immutable bytes; dropping references is the best we can do.
        self._state = HandshakeState.FAILED
        self._buffer = bytearray()
        self._keys = None
        self._forget()

    def _handle(self, event: _Input, message: bytes) -> bytes:
        raise NotImplementedError

    def _forget(self) -> None:
        raise NotImplementedError


class ClientHandshake(_Machine):
    """The SHS1 client (the side that knows the server's key and dials).

    Inputs: start(); receive_data(bytes) with msg2 then msg4, in any chunking.
    Outputs: msg1 from start(); msg3 from the receive_data() that completes msg2.
    States: CLIENT_START -> CLIENT_AWAIT_MSG2 -> CLIENT_AWAIT_MSG4 -> DONE, or FAILED.
    Errors: HandshakeError (a RemoteProtocolError) for any bad server byte; after it the
    machine is FAILED. LocalProtocolError for misuse or use after FAILED/DONE.
    """

    __slots__ = (
        "_A_pk",
        "_A_sk",
        "_B_pk",
        "_N",
        "_aB",
        "_a_pk",
        "_a_sk",
        "_ab",
        "_b_pk",
        "_msg1_mac",
        "_msg2_mac",
        "_msg3_plain",
    )

    def __init__(
        self,
        network_key: bytes,
        secret_key: bytes,
        server_public_key: bytes,
        ephemeral_secret: bytes,
    ) -> None:
        super().__init__(HandshakeState.CLIENT_START)
        _check_len("network_key", network_key, NETWORK_KEY_BYTES)
        _check_len("server_public_key", server_public_key, PUBLIC_KEY_BYTES)
        _check_len("ephemeral_secret", ephemeral_secret, EPHEMERAL_SECRET_BYTES)
        self._A_pk = _check_secret_key(secret_key)
        self._A_sk = bytes(secret_key)
        self._N = bytes(network_key)
        self._B_pk = bytes(server_public_key)
        try:
            _nacl.crypto_sign_ed25519_pk_to_curve25519(self._B_pk)
        except _CRYPTO_FAILURES:
            raise LocalProtocolError("server_public_key is not a valid Ed25519 key") from None
        self._a_sk = bytes(ephemeral_secret)
        self._a_pk: bytes = _nacl.crypto_scalarmult_base(self._a_sk)
        self._msg1_mac = _auth(self._N, self._a_pk)
        self._msg2_mac = b""
        self._b_pk = b""
        self._ab = b""
        self._aB = b""
        self._msg3_plain = b""

    def start(self) -> bytes:
        """Return msg1 (64 bytes). Only once."""
        self._check_usable()
        self._advance(_Input.START)
        return self._msg1_mac + self._a_pk

    def _handle(self, event: _Input, message: bytes) -> bytes:
        if event is _Input.MSG2:
            return self._on_msg2(message)
        self._on_msg4(message)
        return b""

    def _on_msg2(self, msg2: bytes) -> bytes:
        mac, b_pk = msg2[:32], msg2[32:]
        if not hmac.compare_digest(mac, _auth(self._N, b_pk)):
            _fail()
        self._msg2_mac, self._b_pk = mac, b_pk
        self._ab = _dh(self._a_sk, b_pk)
        self._aB = _dh(self._a_sk, _ed2x_pk(self._B_pk))
        sig_a = _sign(self._A_sk, self._N + self._B_pk + _sha256(self._ab))
        self._msg3_plain = sig_a + self._A_pk
        return _box(_sha256(self._N, self._ab, self._aB), self._msg3_plain)

    def _on_msg4(self, msg4: bytes) -> None:
        x_sk: bytes = _nacl.crypto_sign_ed25519_sk_to_curve25519(self._A_sk)
        Ab = _dh(x_sk, self._b_pk)
        k4 = _sha256(self._N, self._ab, self._aB, Ab)
        sig_b = _unbox(k4, msg4)
        _verify(self._B_pk, sig_b, self._N + self._msg3_plain + _sha256(self._ab))
        self._keys = _session_keys(k4, self._A_pk, self._B_pk, self._msg1_mac, self._msg2_mac, 0)
        self._forget()

    def _forget(self) -> None:
        self._a_sk = self._ab = self._aB = self._msg3_plain = b""


class ServerHandshake(_Machine):
    """The SHS1 server (the side that is dialled and learns the client's key from msg3).

    Inputs: receive_data(bytes) with msg1 then msg3, in any chunking.
    Outputs: msg2 after a valid msg1; msg4 after a valid msg3 whose client key
    `authorize(client_pk, network_key_index)` accepts (only an exact True accepts).
    States: SERVER_AWAIT_MSG1 -> SERVER_AWAIT_MSG3 -> DONE, or FAILED.
    Errors: HandshakeError for a wrong network key, a bad msg3, a low-order key or an
    unauthorised client; nothing is returned for the failing message and the machine is
    FAILED. LocalProtocolError for misuse or use after FAILED/DONE.
    """

    __slots__ = (
        "_B_pk",
        "_B_sk",
        "_N",
        "_aB",
        "_a_pk",
        "_ab",
        "_authorize",
        "_b_pk",
        "_b_sk",
        "_index",
        "_msg1_mac",
        "_msg2_mac",
        "_network_keys",
    )

    def __init__(
        self,
        network_keys: Sequence[bytes],
        secret_key: bytes,
        ephemeral_secret: bytes,
        authorize: Callable[[bytes, int], bool],
    ) -> None:
        super().__init__(HandshakeState.SERVER_AWAIT_MSG1)
        if isinstance(network_keys, bytes | bytearray) or len(network_keys) == 0:
            raise LocalProtocolError("network_keys must be a non-empty sequence of keys")
        for key in network_keys:
            _check_len("network key", key, NETWORK_KEY_BYTES)
        _check_len("ephemeral_secret", ephemeral_secret, EPHEMERAL_SECRET_BYTES)
        self._network_keys = tuple(bytes(k) for k in network_keys)
        self._B_pk = _check_secret_key(secret_key)
        self._B_sk = bytes(secret_key)
        self._b_sk = bytes(ephemeral_secret)
        self._b_pk: bytes = _nacl.crypto_scalarmult_base(self._b_sk)
        self._authorize = authorize
        self._N = b""
        self._index = -1
        self._msg1_mac = b""
        self._msg2_mac = b""
        self._a_pk = b""
        self._ab = b""
        self._aB = b""

    def _handle(self, event: _Input, message: bytes) -> bytes:
        if event is _Input.MSG1:
            return self._on_msg1(message)
        return self._on_msg3(message)

    def _on_msg1(self, msg1: bytes) -> bytes:
        mac, a_pk = msg1[:32], msg1[32:]
        # Check every key, without stopping at the first match, so timing does not tell
        # a prober how many keys we hold or which one matched.
        index = -1
        for i, key in enumerate(self._network_keys):
            if hmac.compare_digest(mac, _auth(key, a_pk)) and index < 0:
                index = i
        if index < 0:
            _fail()
        self._index, self._N = index, self._network_keys[index]
        self._msg1_mac, self._a_pk = mac, a_pk
        # Compute the DH values now so a low-order a_pk fails before msg2 is sent.
        self._ab = _dh(self._b_sk, a_pk)
        x_sk: bytes = _nacl.crypto_sign_ed25519_sk_to_curve25519(self._B_sk)
        self._aB = _dh(x_sk, a_pk)
        self._msg2_mac = _auth(self._N, self._b_pk)
        return self._msg2_mac + self._b_pk

    def _on_msg3(self, msg3: bytes) -> bytes:
        plain = _unbox(_sha256(self._N, self._ab, self._aB), msg3)
        sig_a, A_pk = plain[:_SIG_BYTES], plain[_SIG_BYTES:]
        hashed_ab = _sha256(self._ab)
        _verify(A_pk, sig_a, self._N + self._B_pk + hashed_ab)
        if self._authorize(A_pk, self._index) is not True:
            raise HandshakeError("handshake failed")
        Ab = _dh(self._b_sk, _ed2x_pk(A_pk))
        k4 = _sha256(self._N, self._ab, self._aB, Ab)
        sig_b = _sign(self._B_sk, self._N + plain + hashed_ab)
        self._keys = _session_keys(
            k4, self._B_pk, A_pk, self._msg2_mac, self._msg1_mac, self._index
        )
        msg4 = _box(k4, sig_b)
        self._forget()
        return msg4

    def _forget(self) -> None:
        self._b_sk = self._ab = self._aB = b""
