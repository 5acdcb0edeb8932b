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
from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

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
        """Frames for `data`, split into bodies of at most 4096 bytes; b"" for b"".

        Every frame is written in place into one output buffer by libsodium's
        `crypto_secretbox_easy` (the body first, its MAC where the header's tail goes, then
        the header over it): two library calls a frame and no copy of a body in Python."""
        if self._closed:
            raise LocalProtocolError("box-stream already said goodbye")
        size = len(data)
        if not size:
            return b""
        most = limits.BOXSTREAM_MAX_BODY
        frames = -(-size // most)
        header_bytes = limits.BOXSTREAM_HEADER_BYTES
        out = bytearray(size + frames * header_bytes)
        dst = _ffi.from_buffer(out)
        src = _ffi.from_buffer(data)
        key, counter = self._key, self._counter
        easy = _lib.crypto_secretbox_easy
        read = pos = 0
        for _ in range(frames):
            length = min(most, size - read)
            body_at = pos + HEADER_PLAIN_BYTES  # MAC || body ciphertext land here
            if easy(dst + body_at, src + read, length, _nonce(counter + 1), key) != 0:
                raise LocalProtocolError("box-stream encryption failed")
            header_plain = length.to_bytes(2, "big") + bytes(out[body_at : body_at + MAC_BYTES])
            if easy(dst + pos, header_plain, HEADER_PLAIN_BYTES, _nonce(counter), key) != 0:
                raise LocalProtocolError("box-stream encryption failed")
            counter += 2
            read += length
            pos += header_bytes + length
        self._counter = counter % _NONCE_MODULUS
        return bytes(out)

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

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded."""
        return len(self._buffer) - self._pos

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

    def next_bodies(self) -> tuple[bytes, bool]:
        """Every complete body buffered, decrypted and joined, and whether the peer's
        goodbye followed them (the decoder is then ENDED). Bytes of a frame that does not
        authenticate are never returned: VerificationError (FAILED), with the bodies before
        it dropped too, like any failure of the stream.

        The fast path of `next_event` for bulk transfer: each frame is opened by libsodium
        in place in the receive buffer (the body's MAC from its header is written over the
        header's tail, just before the body), two library calls a frame."""
        state = self._state
        if state is _DecoderState.FAILED:
            raise LocalProtocolError("box-stream decoder already failed")
        if state is not _DecoderState.HEADER:
            event = self.next_event()  # a body already half read, or after the goodbye
            if event is None or isinstance(event, StreamEnd):
                return b"", event is not None or self._state is _DecoderState.ENDED
            more, ended = self.next_bodies()
            return event + more, ended
        try:
            return self._bodies()
        except BaseException:
            self._enter_failed()
            raise

    def _bodies(self) -> tuple[bytes, bool]:
        buffer, pos, counter, key = self._buffer, self._pos, self._counter, self._key
        header_bytes = limits.BOXSTREAM_HEADER_BYTES
        available = len(buffer)
        # How many whole frames are buffered is only known as each header opens: the
        # output is sized to the upper bound (every byte a body byte).
        out = bytearray(max(0, available - pos))
        src = _ffi.from_buffer(buffer)
        dst = _ffi.from_buffer(out)
        header = _ffi.new("unsigned char[]", HEADER_PLAIN_BYTES)
        open_easy = _lib.crypto_secretbox_open_easy
        written = 0
        ended = False
        while available - pos >= header_bytes:
            if open_easy(header, src + pos, header_bytes, _nonce(counter), key) != 0:
                raise VerificationError("box-stream frame did not authenticate")
            plain = bytes(_ffi.buffer(header, HEADER_PLAIN_BYTES))
            if plain == _GOODBYE_PLAIN:
                pos += header_bytes
                self._state = _DecoderState.ENDED
                ended = True
                break
            length = (plain[0] << 8) | plain[1]
            if not 1 <= length <= limits.BOXSTREAM_MAX_BODY:
                raise DecodeError("box-stream frame length out of range")
            if available - pos < header_bytes + length:
                # The header opened but its body has not all arrived: keep the header's
                # result, as next_event would, and wait for more bytes.
                self._body_len, self._body_mac = length, plain[2:]
                self._state = _DecoderState.BODY
                pos += header_bytes
                break
            mac_at = pos + HEADER_PLAIN_BYTES  # the header's tail, already used: MAC || body
            buffer[mac_at : mac_at + MAC_BYTES] = plain[2:]
            if open_easy(dst + written, src + mac_at, MAC_BYTES + length, _nonce(counter + 1), key):
                raise VerificationError("box-stream frame did not authenticate")
            written += length
            counter = (counter + 2) % _NONCE_MODULUS
            pos += header_bytes + length
        del src, dst
        self._counter = counter
        self._pos = pos
        self._release()
        if ended and len(self._buffer):
            raise DecodeError("data after goodbye")
        return bytes(memoryview(out)[:written]), ended

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
