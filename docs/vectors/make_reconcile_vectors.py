"""Regenerate docs/vectors/reconcile.json (deterministic: no clock, no randomness).

    .venv/bin/python docs/vectors/make_reconcile_vectors.py [--check]

Ids are BLAKE2b-256 of a label and a counter, so every run writes the same bytes. Each
exchange lists every message of a full reconciliation in order; each negative case names
exactly one error class in "expect".
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_vectors import write_or_check  # (puts the repo root on sys.path)

from protocol import limits
from protocol.encoding import pack
from protocol.errors import RemoteProtocolError
from protocol.reconcile import (
    INFINITY,
    MODE_FINGERPRINT,
    MODE_IDLIST,
    MODE_SKIP,
    Bound,
    Item,
    Range,
    Reconciler,
    encode_message,
    fingerprint,
)

OUT = Path(__file__).with_name("reconcile.json")


def rid(n: int, tag: bytes = b"") -> bytes:
    return hashlib.blake2b(b"canopy-vector" + tag + n.to_bytes(4, "big"), digest_size=32).digest()


def items_json(items: list[Item]) -> list[list[int | str]]:
    return [[ts, i.hex()] for ts, i in sorted(items)]


def exchange(name: str, a: list[Item], b: list[Item], max_bytes: int) -> dict[str, object]:
    init = Reconciler(a, max_message_bytes=max_bytes)
    resp = Reconciler(b, max_message_bytes=max_bytes)
    messages: list[dict[str, str]] = []
    msg: bytes | None = init.initiate()
    while msg is not None:
        messages.append({"from": "initiator", "hex": msg.hex()})
        reply = resp.reconcile(msg)
        messages.append({"from": "responder", "hex": reply.hex()})
        msg = init.reconcile(reply)
    return {
        "name": name,
        "max_message_bytes": max_bytes,
        "initiator_items": items_json(a),
        "responder_items": items_json(b),
        "messages": messages,
        "have": sorted(i.hex() for i in init.have),
        "need": sorted(i.hex() for i in init.need),
    }


def exchanges() -> list[dict[str, object]]:
    shared = [(1_700_000_000_000 + 1000 * k, rid(k)) for k in range(17)]
    only_a = [(1_700_000_000_000 + 1000 * k + 500, rid(k, b"a")) for k in (2, 9, 15)]
    only_b = [(1_700_000_000_000 + 1000 * k + 700, rid(k, b"b")) for k in (4, 11)]
    # Equal timestamps everywhere, so bounds need id prefixes.
    same = [(42, rid(k, b"s")) for k in range(30)]
    same_a = [(42, rid(k, b"sa")) for k in range(2)]
    same_b = [(42, rid(k, b"sb")) for k in range(3)]
    # Large enough for the smallest frame limit to cut messages short.
    big = [(k // 3, rid(k, b"g")) for k in range(300)]
    big_a = [(k * 7 % 100, rid(k, b"ga")) for k in range(70)]
    big_b = [(k * 11 % 100, rid(k, b"gb")) for k in range(60)]
    m = limits.MAX_RECONCILE_MESSAGE_BYTES
    return [
        exchange("identical", shared, shared, m),
        exchange("both-empty", [], [], m),
        exchange("initiator-empty", [], shared[:5], m),
        exchange("responder-empty", shared, [], m),
        exchange("small-difference", shared + only_a, shared + only_b, m),
        exchange("equal-timestamps", same + same_a, same + same_b, m),
        exchange("frame-limit", big + big_a, big + big_b, limits.MIN_RECONCILE_MESSAGE_BYTES),
    ]


def raw(body: bytes, version: int = 1) -> bytes:
    return pack([version, body])


def negatives() -> list[dict[str, object]]:
    items = [(1000 + k, rid(k, b"n")) for k in range(12)]
    fp = fingerprint(0, 0)
    fp_range = b"\x00\x00\x01" + fp  # Fingerprint up to infinity
    bad: list[tuple[str, str, list[bytes], bytes, str, int]] = []
    m = limits.MAX_RECONCILE_MESSAGE_BYTES

    def case(
        name: str,
        message: bytes,
        expect: str,
        role: str = "responder",
        before: list[bytes] | None = None,
        max_bytes: int = m,
    ) -> None:
        bad.append((name, role, before or [], message, expect, max_bytes))

    case("empty input", b"", "DecodeError")
    case("not msgpack", b"\xc1", "DecodeError")
    case("trailing byte", raw(fp_range) + b"\x00", "DecodeError")
    case("float instead of version", b"\x92\xca\x3f\x80\x00\x00\xc4\x00", "DecodeError")
    case("non-canonical bin16", b"\x92\x01\xc5\x00\x13" + fp_range, "DecodeError")
    case("unknown version", raw(fp_range, 2), "DecodeError")
    case("three elements", pack([1, fp_range, 0]), "DecodeError")
    case("ranges not bin", pack([1, "x"]), "DecodeError")
    case("oversize", raw(b"\x00\x00\x02\x01" + b"\x00" * 2100), "DecodeError", max_bytes=2048)
    case("varint not shortest", raw(b"\x80\x05\x00\x01" + fp), "DecodeError")
    case(
        "varint above 2^64",
        raw(b"\x82\x80\x80\x80\x80\x80\x80\x80\x80\x00\x00\x01" + fp),
        "DecodeError",
    )
    case(
        "timestamp above 2^63-1",
        raw(b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01\x00\x01" + fp),
        "DecodeError",
    )
    case("prefix of 33 bytes", raw(b"\x05\x21" + b"\x01" * 33 + b"\x01" + fp), "DecodeError")
    case("prefix ends in zero", raw(b"\x05\x02\x01\x00\x01" + fp), "DecodeError")
    case("infinity with prefix", raw(b"\x00\x01\x01\x01" + fp), "DecodeError")
    case("unknown mode", raw(b"\x00\x00\x03"), "DecodeError")
    case("truncated bound", raw(b"\x05"), "DecodeError")
    case("truncated prefix", raw(b"\x05\x02\x01"), "DecodeError")
    case("missing mode", raw(b"\x05\x00"), "DecodeError")
    case("truncated fingerprint", raw(fp_range[:-1]), "DecodeError")
    case("truncated id list", raw(b"\x00\x00\x02\x02" + rid(1)), "DecodeError")
    case("zero bound", raw(b"\x01\x00\x01" + fp + fp_range), "UnexpectedMessage")
    case(
        "bounds not increasing",
        raw(b"\x0a\x00\x01" + fp + b"\x01\x00\x01" + fp + fp_range),
        "UnexpectedMessage",
    )
    case("range after infinity", raw(fp_range + fp_range), "UnexpectedMessage")
    case(
        "two skips in a row", raw(b"\x0a\x00\x00" + b"\x0a\x00\x00" + fp_range), "UnexpectedMessage"
    )
    case("ends with a skip", raw(b"\x0a\x00\x01" + fp + b"\x0a\x00\x00"), "UnexpectedMessage")
    ids = sorted([rid(1), rid(2)])
    case("id list out of order", raw(b"\x00\x00\x02\x02" + ids[1] + ids[0]), "UnexpectedMessage")
    case(
        "id list with a duplicate", raw(b"\x00\x00\x02\x02" + ids[0] + ids[0]), "UnexpectedMessage"
    )
    case("empty message to a responder", raw(b""), "UnexpectedMessage")
    done = encode_message([Range(INFINITY, MODE_IDLIST, ids=())])
    case("message after the responder finished", raw(fp_range), "UnexpectedMessage", before=[done])
    case(
        "reply after the initiator finished",
        raw(b""),
        "UnexpectedMessage",
        role="initiator",
        before=[raw(b"")],
    )
    case(
        "bad reply to an initiator",
        encode_message([Range(Bound(5), MODE_SKIP), Range(Bound(5), MODE_FINGERPRINT, fp)]),
        "UnexpectedMessage",
        role="initiator",
    )

    out: list[dict[str, object]] = []
    for name, role, before, message, expect, max_bytes in bad:
        check(items, name, role, before, message, expect, max_bytes)
        out.append(
            {
                "name": name,
                "role": role,
                "max_message_bytes": max_bytes,
                "before": [b.hex() for b in before],
                "message": message.hex(),
                "expect": expect,
            }
        )
    return [{"items": items_json(items), "cases": out}]


def check(
    items: list[Item],
    name: str,
    role: str,
    before: list[bytes],
    message: bytes,
    expect: str,
    max_bytes: int,
) -> None:
    """Refuse to write a vector whose outcome is not exactly `expect`."""
    r = Reconciler(items, max_message_bytes=max_bytes)
    if role == "initiator":
        r.initiate()
    for b in before:
        r.reconcile(b)
    try:
        r.reconcile(message)
    except RemoteProtocolError as exc:
        if type(exc).__name__ != expect:
            raise SystemExit(f"{name}: got {type(exc).__name__}, want {expect}") from exc
        return
    raise SystemExit(f"{name}: accepted")


def main() -> int:
    doc = {
        "description": "Set reconciliation (docs/spec/35-reconcile.md). Items are "
        "[timestamp_ms, id hex]. Exchanges use the default branching "
        f"({limits.RECONCILE_BRANCHING}), id-list thresholds (responder "
        f"{limits.RECONCILE_IDLIST_THRESHOLD}, initiator "
        f"{limits.RECONCILE_INITIATOR_IDLIST_THRESHOLD}) and the listed max_message_bytes. "
        "Negative cases: build a Reconciler on 'items', call initiate() if role is "
        "'initiator', feed each 'before' message to reconcile(), then 'message' must raise "
        "exactly 'expect'.",
        "fingerprints": [
            {"ids": [], "fingerprint": fingerprint(0, 0).hex()},
            {
                "ids": [rid(1).hex()],
                "fingerprint": fingerprint(int.from_bytes(rid(1), "little"), 1).hex(),
            },
            {
                "ids": [(b"\xff" * 32).hex(), b"\x01".ljust(32, b"\0").hex()],
                "fingerprint": fingerprint(2**256 - 1 + 1, 2).hex(),
            },
        ],
        "exchanges": exchanges(),
        "negative": negatives(),
    }
    return write_or_check(OUT, doc)


if __name__ == "__main__":
    raise SystemExit(main())
