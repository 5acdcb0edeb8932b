"""Box-stream framing: the encrypted, authenticated record layer after SHS1.

Owns frame layout, nonce counting and the goodbye (docs/spec/20-handshake-boxstream.md).
It must never hand out a byte that did not authenticate, and must never report a
transport close without goodbye as a clean end of stream.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nacl import bindings as _nacl
from nacl import exceptions as _nacl_exc

from protocol import limits
from protocol.errors import DecodeError, LocalProtocolError, VerificationError

KEY_BYTES = 32
NONCE_BYTES = 24
MAC_BYTES = 16
HEADER_PLAIN_BYTES = 18  # uint16 big-endian body length || 16-byte body MAC
_GOODBYE_PLAIN = bytes(HEADER_PLAIN_BYTES)
_NONCE_MODULUS = 1 << (8 * NONCE_BYTES)
# Compact the receive buffer once this many consumed bytes sit at its front.
_COMPACT_AFTER = 1 << 16

assert limits.BOXSTREAM_HEADER_BYTES == HEADER_PLAIN_BYTES + MAC_BYTES


def _check_key_nonce(key: bytes, nonce: bytes) -> int:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise LocalProtocolError(f"box-stream key must be {KEY_BYTES} bytes")
    if not isinstance(nonce, bytes | bytearray) or len(nonce) != NONCE_BYTES:
        raise LocalProtocolError(f"box-stream nonce must be {NONCE_BYTES} bytes")
    return int.from_bytes(nonce, "big")


def _nonce(counter: int) -> bytes:
    return (counter % _NONCE_MODULUS).to_bytes(NONCE_BYTES, "big")


class BoxStreamEncoder:
    """Turns plaintext into box-stream frames for one direction.

    Each frame is box(key, n, len||mac) (34 bytes) followed by the body ciphertext
    without its MAC; the header uses nonce n, the body n+1, and n advances by 2.
    """

    __slots__ = ("_closed", "_counter", "_key")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._counter = _check_key_nonce(key, nonce)
        self._key = bytes(key)
        self._closed = False

    def encode(self, data: bytes) -> bytes:
        """Frames for `data`, split into bodies of at most 4096 bytes; b"" for b""."""
        if self._closed:
            raise LocalProtocolError("box-stream already said goodbye")
        view = memoryview(data)
        key = self._key
        out: list[bytes] = []
        for start in range(0, len(view), limits.BOXSTREAM_MAX_BODY):
            body = bytes(view[start : start + limits.BOXSTREAM_MAX_BODY])
            boxed: bytes = _nacl.crypto_secretbox(body, _nonce(self._counter + 1), key)
            header_plain = len(body).to_bytes(2, "big") + boxed[:MAC_BYTES]
            out.append(_nacl.crypto_secretbox(header_plain, _nonce(self._counter), key))
            out.append(boxed[MAC_BYTES:])
            self._counter = (self._counter + 2) % _NONCE_MODULUS
        return b"".join(out)

    def goodbye(self) -> bytes:
        """The 34-byte goodbye: a boxed all-zero header. Nothing may be encoded after it."""
        if self._closed:
            raise LocalProtocolError("box-stream already said goodbye")
        self._closed = True
        goodbye: bytes = _nacl.crypto_secretbox(_GOODBYE_PLAIN, _nonce(self._counter), self._key)
        return goodbye


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Event: the peer sent an authenticated goodbye; its stream ended cleanly."""


class _DecoderState(enum.Enum):
    HEADER = "header"  # waiting for a 34-byte header
    BODY = "body"  # header opened; waiting for `_body_len` body bytes
    ENDED = "ended"  # goodbye seen (StreamEnd returned)
    FAILED = "failed"  # terminal; every further call raises LocalProtocolError


#   state   input                     output      next
#   HEADER  34 bytes, opens, goodbye  StreamEnd   ENDED
#   HEADER  34 bytes, opens, 1..4096  -           BODY
#   BODY    len bytes, opens          body bytes  HEADER
#   ENDED   no bytes                  None        ENDED
#   any     failed open               VerificationError -> FAILED
#   any     bad length / trailing bytes after goodbye / close_unclean  DecodeError -> FAILED


class BoxStreamDecoder:
    """Turns received box-stream bytes back into bodies, for one direction.

    Inputs: receive_data(bytes) in any chunking; close_unclean() when the transport
    closed. Outputs from next_event(): a body (bytes), StreamEnd once, or None when more
    bytes are needed. Errors: VerificationError when a header or body does not open,
    DecodeError for a length of 0 (other than goodbye) or above 4096, bytes after
    goodbye, or a close without goodbye; the decoder is then FAILED.
    """

    __slots__ = ("_body_len", "_body_mac", "_buffer", "_counter", "_key", "_pos", "_state")

    def __init__(self, key: bytes, nonce: bytes) -> None:
        self._counter = _check_key_nonce(key, nonce)
        self._key = bytes(key)
        self._buffer = bytearray()
        self._pos = 0  # consumed bytes at the front of _buffer, compacted lazily
        self._state = _DecoderState.HEADER
        self._body_len = 0
        self._body_mac = b""

    @property
    def ended(self) -> bool:
        """True once an authenticated goodbye has been decoded."""
        return self._state is _DecoderState.ENDED

    def receive_data(self, data: bytes) -> None:
        """Buffer received bytes; decode them with next_event()."""
        if self._state is _DecoderState.FAILED:
            raise LocalProtocolError("box-stream decoder already failed")
        self._buffer += data

    def next_event(self) -> bytes | StreamEnd | None:
        """One decrypted body, StreamEnd (once), or None when more bytes are needed."""
        state = self._state
        if state is _DecoderState.FAILED:
            raise LocalProtocolError("box-stream decoder already failed")
        try:
            if state is _DecoderState.ENDED:
                if len(self._buffer) > self._pos:
                    raise DecodeError("data after goodbye")
                return None
            if state is _DecoderState.HEADER:
                header = self._take(limits.BOXSTREAM_HEADER_BYTES)
                if header is None:
                    return None
                plain = self._open(header, self._counter)
                if plain == _GOODBYE_PLAIN:
                    self._state = _DecoderState.ENDED
                    self._release()
                    return StreamEnd()
                length = int.from_bytes(plain[:2], "big")
                if not 1 <= length <= limits.BOXSTREAM_MAX_BODY:
                    raise DecodeError("box-stream frame length out of range")
                self._body_len, self._body_mac = length, plain[2:]
                self._state = _DecoderState.BODY
            body = self._take(self._body_len)
            if body is None:
                return None
            plain = self._open(self._body_mac + body, self._counter + 1)
            self._counter = (self._counter + 2) % _NONCE_MODULUS
            self._state = _DecoderState.HEADER
            return plain
        except BaseException:
            self._enter_failed()
            raise

    def close_unclean(self) -> None:
        """The transport closed. Fine after goodbye; otherwise the stream was truncated."""
        if self._state is _DecoderState.FAILED:
            raise LocalProtocolError("box-stream decoder already failed")
        if self._state is _DecoderState.ENDED:
            return
        self._enter_failed()
        raise DecodeError("truncated")

    def _take(self, size: int) -> bytes | None:
        end = self._pos + size
        if len(self._buffer) < end:
            return None
        chunk = bytes(self._buffer[self._pos : end])
        self._pos = end
        if self._pos >= _COMPACT_AFTER or self._pos == len(self._buffer):
            self._release()
        return chunk

    def _release(self) -> None:
        del self._buffer[: self._pos]
        self._pos = 0

    def _open(self, boxed_tail: bytes, counter: int) -> bytes:
        # Header and body are both secretboxes with the MAC first: header on wire is
        # already MAC||ciphertext, and a body is reassembled as header_mac||body.
        try:
            plain: bytes = _nacl.crypto_secretbox_open(boxed_tail, _nonce(counter), self._key)
        except (_nacl_exc.CryptoError, ValueError, TypeError):
            raise VerificationError("box-stream frame did not authenticate") from None
        return plain

    def _enter_failed(self) -> None:
        self._state = _DecoderState.FAILED
        self._buffer = bytearray()
        self._pos = 0
        self._body_mac = b""
