"""At-rest sealing of the store's rows (docs/spec/40-invites-and-storage.md, "At rest").

Owns the sub-keys of the storage key and every byte layout a sealed column holds: records,
the padded settings and rows, the cached openings, the keyed tags and marks. It does no I/O
and keeps no state but the keys; the store (node/store.py) decides what goes in which row.
Changing a layout here is a change of the disk format: existing stores must still open.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import nacl.bindings
import nacl.exceptions
import nacl.secret
import nacl.utils

from protocol import labels
from protocol.encoding import Value, pack, unpack
from protocol.envelope import padded_size
from protocol.errors import StoreError

_NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE
SEAL_OVERHEAD = _NONCE_BYTES + nacl.secret.SecretBox.MACBYTES
_ID_BYTES = 32
_LEN = struct.Struct(">I")
_OPENED_HEAD = _ID_BYTES + _LEN.size  # a cached opening: id ‖ length ‖ value ‖ zeros
_MARK_BYTES = 16


def _subkey(storage_key: bytes, person: bytes) -> bytes:
    return hashlib.blake2b(b"", key=storage_key, person=person, digest_size=32).digest()


class AtRest:
    """The sealing of one store, under the sub-keys of its storage key (one per purpose)."""

    def __init__(self, storage_key: bytes) -> None:
        self._records_key = _subkey(storage_key, labels.STORAGE_RECORDS)
        self._opened_key = _subkey(storage_key, labels.STORAGE_OPENED)
        self._settings_box = nacl.secret.SecretBox(_subkey(storage_key, labels.STORAGE_SETTINGS))
        self._tag_key = _subkey(storage_key, labels.STORAGE_TAG)
        self._delivery_key = _subkey(storage_key, labels.STORAGE_DELIVERY)
        self._mark_key = _subkey(storage_key, labels.STORAGE_MARK)

    # -- keyed stand-ins -----------------------------------------------------------------

    def tag(self, raw: bytes) -> bytes:
        """A keyed, stable stand-in for an identifier that must not be stored in clear."""
        return hashlib.blake2b(
            raw, key=self._tag_key, person=labels.STORAGE_TAG, digest_size=16
        ).digest()

    def mark(self, rid: bytes) -> bytes:
        """The keyed mark of a record authored here; every other record has random bytes of
        the same length, so the column does not say which records are ours."""
        return hashlib.blake2b(
            rid, key=self._mark_key, person=labels.STORAGE_MARK, digest_size=_MARK_BYTES
        ).digest()

    def marks(self, rows: Sequence[tuple[bytes, bool]]) -> list[bytes]:
        """The mark of each (id, local): keyed for ours, random for the others (the random
        ones drawn in one call)."""
        pool = _random_marks(len(rows))
        return [
            self.mark(rid) if local else other
            for (rid, local), other in zip(rows, pool, strict=True)
        ]

    def mark_of(self, rid: bytes, local: int) -> bytes:
        """`canopy_mark(id, local)` for the migrations (node/migrations.py)."""
        return self.mark(bytes(rid)) if local else nacl.utils.random(_MARK_BYTES)

    def delivery_tag(self, rid: bytes) -> bytes:
        """A keyed stand-in for a record id in the deliveries table (never the id itself)."""
        return hashlib.blake2b(
            rid, key=self._delivery_key, person=labels.STORAGE_DELIVERY, digest_size=16
        ).digest()

    # -- records ---------------------------------------------------------------------------

    def seal_records(self, datas: Sequence[bytes]) -> list[bytes]:
        return _seal_many(self._records_key, datas)

    def open_record(self, sealed: bytes) -> bytes:
        sealed = bytes(sealed)
        try:
            # What SecretBox.decrypt does, without its copies (a chunk row is 256 KiB).
            return nacl.bindings.crypto_secretbox_open_easy(
                sealed[_NONCE_BYTES:], sealed[:_NONCE_BYTES], self._records_key
            )
        except nacl.exceptions.CryptoError as exc:
            raise StoreError("a stored record failed its integrity check") from exc

    # -- what the index opened of a record ------------------------------------------------------

    @staticmethod
    def opened_room(record_bytes: int) -> int:
        """How long a cached opening of a record of that many bytes can be."""
        return record_bytes - _OPENED_HEAD

    def seal_opened(
        self, items: Sequence[tuple[bytes, bytes, int]]
    ) -> list[tuple[bytes, bytes, int]]:
        """(sealed, id, sealed row length) for each (id, value, record size) whose value fits:
        id ‖ length ‖ value ‖ zeros, padded to the record's own size, so that the opening
        tells someone holding the disk nothing the record does not."""
        rows: list[tuple[bytes, int, bytes]] = []
        for rid, plain, size in items:
            framed = rid + _LEN.pack(len(plain)) + plain
            if len(framed) <= size:
                rows.append((rid, size, framed + bytes(size - len(framed))))
        sealed = _seal_many(self._opened_key, [framed for _, _, framed in rows])
        return [
            (box, rid, size + SEAL_OVERHEAD)
            for (rid, size, _), box in zip(rows, sealed, strict=True)
        ]

    def open_opened(self, rid: bytes, sealed: bytes | None) -> bytes | None:
        """The cached opening of record `rid`; None when absent, damaged or another's."""
        if sealed is None or len(sealed) <= _NONCE_BYTES:
            return None
        try:
            framed = nacl.bindings.crypto_secretbox_open(
                sealed[_NONCE_BYTES:], sealed[:_NONCE_BYTES], self._opened_key
            )
        except nacl.exceptions.CryptoError:
            return None
        if framed[:_ID_BYTES] != rid or len(framed) < _OPENED_HEAD:
            return None
        end = _OPENED_HEAD + _LEN.unpack_from(framed, _ID_BYTES)[0]
        return framed[_OPENED_HEAD:end] if end <= len(framed) else None

    # -- settings and sealed rows ------------------------------------------------------------

    def seal_setting(self, value: bytes) -> bytes:
        """seal_K_settings(u32be(len) ‖ value ‖ zeros), padded like a sealed payload (a
        power of two, at least MIN_PAD_BUCKET), so that its size shows only its bucket."""
        framed = _LEN.pack(len(value)) + value
        padded = framed + bytes(padded_size(len(value)) - len(framed))
        return bytes(self._settings_box.encrypt(padded))

    def open_setting(self, sealed: bytes) -> bytes:
        value = unpad(self.open_setting_raw(sealed))
        if value is None:
            raise StoreError("a sealed setting or row is damaged")
        return value

    def open_setting_raw(self, sealed: bytes) -> bytes:
        """A sealed setting's plaintext, framed (current layout) or not (before it)."""
        try:
            return bytes(self._settings_box.decrypt(sealed))
        except nacl.exceptions.CryptoError as exc:
            raise StoreError("the database does not belong to this key") from exc

    def seal_row(self, key: bytes, value: dict[str, Value]) -> bytes:
        """A row of a sealed table (peers, invites, ...): its key and value, sealed together."""
        return self.seal_setting(pack([key, value]))

    def open_row(self, sealed: bytes, table: str) -> tuple[bytes, dict[str, Value]]:
        decoded = unpack(self.open_setting(sealed))
        if not (
            isinstance(decoded, list)
            and len(decoded) == 2
            and isinstance(decoded[0], bytes)
            and isinstance(decoded[1], dict)
        ):
            raise StoreError(f"a row of {table} is damaged")
        return decoded[0], decoded[1]

    def repad(self, sealed: bytes) -> bytes:
        """`canopy_repad(sealed)`: an unpadded sealed value of the old layout, sealed again
        padded to its bucket."""
        return self.seal_setting(self.open_setting_raw(bytes(sealed)))


def unpad(framed: bytes) -> bytes | None:
    """The value of a padded sealed setting or row (see `AtRest.seal_setting`); None when
    the frame is not exactly that (wrong length, bucket or padding)."""
    if len(framed) < _LEN.size:
        return None
    end = _LEN.size + _LEN.unpack_from(framed)[0]
    if len(framed) != padded_size(end - _LEN.size) or framed.count(0, end) != len(framed) - end:
        return None
    return framed[_LEN.size : end]


def _random_marks(n: int) -> list[bytes]:
    """Marks for rows not written here: random, as long as a keyed one (one random call)."""
    pool = nacl.utils.random(_MARK_BYTES * n) if n else b""
    return [pool[i * _MARK_BYTES : (i + 1) * _MARK_BYTES] for i in range(n)]


def _seal_many(key: bytes, datas: Sequence[bytes]) -> list[bytes]:
    """nonce ‖ secretbox of each, exactly what SecretBox.encrypt makes, with the nonces
    drawn in one call (one random call per row cost as much as sealing)."""
    nonces = nacl.utils.random(_NONCE_BYTES * len(datas))
    out = []
    for i, data in enumerate(datas):
        nonce = nonces[i * _NONCE_BYTES : (i + 1) * _NONCE_BYTES]
        out.append(nonce + nacl.bindings.crypto_secretbox_easy(data, nonce, key))
    return out
