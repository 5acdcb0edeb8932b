"""Canonical msgpack: the only encoding Canopy signs, hashes or sends.

Owns the byte-level rules (docs/SPEC.md, "Canonical encoding"): no floats, no ext types,
string map keys in sorted order, no duplicates, bounded size and depth, and exactly one
accepted encoding per value. It must never return a value it could not re-encode to
the very bytes it was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn, TypeAlias

import msgpack

from protocol import limits
from protocol.errors import DecodeError, LocalProtocolError

Value: TypeAlias = bool | int | str | bytes | list["Value"] | dict[str, "Value"] | None

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


# Exact types that encode as they are; checked by `type(v) in _PLAIN` (no subclasses: an
# int or str subclass could encode differently). The fast paths below only skip the
# per-element call for these; every other value takes the general path.
_PLAIN = frozenset({str, bytes, bool, type(None)})
_PLAIN_OR_INT = _PLAIN | {int}


def _canonical(value: object, depth: int) -> object:
    """Return `value` with maps key-sorted; raise LocalProtocolError on what we never encode."""
    if depth > limits.MAX_DEPTH:
        raise LocalProtocolError("value nested too deeply to encode")
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise LocalProtocolError("integer out of msgpack range")
        return value
    if isinstance(value, list | tuple):
        if depth < limits.MAX_DEPTH:  # elements are at depth + 1, still allowed
            return [
                v
                if type(v) in _PLAIN or (type(v) is int and _INT_MIN <= v <= _INT_MAX)
                else _canonical(v, depth + 1)
                for v in value
            ]
        return [_canonical(v, depth + 1) for v in value]
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key in sorted(value, key=_key_order):
            if not isinstance(key, str):
                raise LocalProtocolError("map keys must be strings")
            out[key] = _canonical(value[key], depth + 1)
        return out
    raise LocalProtocolError(f"cannot encode a {type(value).__name__}")


def _key_order(key: object) -> bytes:
    if not isinstance(key, str):
        raise LocalProtocolError("map keys must be strings")
    return key.encode("utf-8")


def pack(value: Value | Sequence[Value]) -> bytes:
    """Encode `value` canonically (maps sorted by the UTF-8 bytes of their keys)."""
    data: bytes = msgpack.packb(_canonical(value, 0), use_bin_type=True)
    return data


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise DecodeError("ext types are not allowed")


def _pairs(pairs: list[tuple[object, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, item in pairs:
        if not isinstance(key, str):
            raise DecodeError("map keys must be strings")
        if key in out:
            raise DecodeError("duplicate map key")
        out[key] = item
    return out


def _check_types(value: object) -> None:
    """Reject anything outside `Value` (floats, timestamps) and anything nested too deeply."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limits.MAX_DEPTH:
            raise DecodeError("value nested too deeply")
        if item is None or isinstance(item, bool | int | str | bytes):
            continue
        if isinstance(item, list):
            if depth < limits.MAX_DEPTH:  # plain elements need no visit of their own
                stack.extend((v, depth + 1) for v in item if type(v) not in _PLAIN_OR_INT)
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        else:
            raise DecodeError(f"type {type(item).__name__} is not allowed")


def unpack(data: bytes, *, max_bytes: int = limits.MAX_MESSAGE_BYTES) -> Value:
    """Decode one canonical value that spans all of `data`; raise DecodeError otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise LocalProtocolError("unpack takes bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError("encoded value too large")
    if not data:
        raise DecodeError("empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_pairs,
            ext_hook=_reject_ext,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
            max_map_len=max_bytes // 2,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises a zoo: ValueError, ExtraData, StackError...
        raise DecodeError("malformed msgpack") from exc
    _check_types(value)
    try:
        again = pack(value)
    except LocalProtocolError as exc:
        raise DecodeError("value cannot be re-encoded") from exc
    if again != data:
        raise DecodeError("non-canonical encoding")
    return value  # type: ignore[no-any-return]


# Typed accessors: decoders use these so every shape error is a DecodeError.


def as_list(value: Value, length: int | None = None, what: str = "value") -> list[Value]:
    if not isinstance(value, list):
        raise DecodeError(f"{what} must be an array")
    if length is not None and len(value) != length:
        raise DecodeError(f"{what} must have {length} elements")
    return value


def as_map(value: Value, what: str = "value") -> dict[str, Value]:
    if not isinstance(value, dict):
        raise DecodeError(f"{what} must be a map")
    return value


def as_bytes(
    value: Value, size: int | None = None, what: str = "value", max_len: int | None = None
) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{what} must be bytes")
    if size is not None and len(value) != size:
        raise DecodeError(f"{what} must be {size} bytes")
    if max_len is not None and len(value) > max_len:
        raise DecodeError(f"{what} too long")
    return value


def as_int(value: Value, what: str = "value", lo: int = _INT_MIN, hi: int = _INT_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeError(f"{what} must be an integer")
    if not lo <= value <= hi:
        raise DecodeError(f"{what} out of range")
    return value


def as_str(value: Value, what: str = "value", max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{what} must be a string")
    if max_len is not None and len(value.encode("utf-8")) > max_len:
        raise DecodeError(f"{what} too long")
    return value


def check_keys(
    value: dict[str, Value], required: frozenset[str], optional: frozenset[str], what: str
) -> None:
    """Unknown or missing keys are decode errors: a map means exactly what the SPEC says."""
    keys = value.keys()
    missing = required - keys
    if missing:
        raise DecodeError(f"{what} lacks {sorted(missing)[0]!r}")
    unknown = keys - required - optional
    if unknown:
        raise DecodeError(f"{what} has unknown key")
