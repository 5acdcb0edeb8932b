"""Reading the records of one kind: open each this node can (and that has not expired),
decode its content to its typed form, and set aside one that opens but breaks its kind's
schema (its author signed it: the author pays). Check-ins (node/checkins.py), duties
(node/oncall.py), help requests (node/help_requests.py) and acks (node/acks.py) read here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from node import circles
from node.local import Local
from protocol.encoding import Value
from protocol.envelope import NetworkKeys, open_record
from protocol.errors import NotForUs, RemoteProtocolError
from protocol.identity import Identity
from protocol.record import Kind, Record

T = TypeVar("T")
Malformed = list[tuple[Record, RemoteProtocolError]]


def open_kind(
    records: Sequence[Record],
    kind: Kind,
    decode: Callable[[dict[str, Value]], T],
    identity: Identity,
    network_key: NetworkKeys,
    circle_keys: Sequence[bytes],
    now: int = 0,
    malformed: Malformed | None = None,
    *,
    verify_body: bool = True,
) -> list[tuple[Record, T]]:
    """The records of `kind` among `records` this node can open, unexpired at `now`, each
    with its content as `decode` types it. One that opens but breaks the schema is never
    returned; it goes to `malformed` when given. `verify_body=False` only for records from
    this node's own store (their record signature, checked before storing, binds the body)."""
    out: list[tuple[Record, T]] = []
    for record in records:
        if record.kind is not kind or record.expires <= now:
            continue
        try:
            body = open_record(
                record, identity, network_key, circle_keys=circle_keys, verify_body=verify_body
            )
            content = decode(body.content)
        except NotForUs:
            continue
        except RemoteProtocolError as exc:
            if malformed is not None:
                malformed.append((record, exc))
            continue
        out.append((record, content))
    return out


async def read(
    local: Local, kind: Kind, decode: Callable[[dict[str, Value]], T], now: int
) -> list[tuple[Record, T]]:
    """Every stored record of `kind` this node can open, unexpired, with its typed content
    (one that breaks the schema is passed over: the node penalised its author on arrival)."""
    datas = await local.store.records_of_kind(str(kind))
    return open_kind(
        [Record.from_stored(d) for d in datas],
        kind,
        decode,
        local.identity,
        await local.network_keys(),
        await circles.read_keys(local),
        now,
        verify_body=False,
    )


def malformed(
    record: Record,
    identity: Identity,
    network_key: NetworkKeys,
    circle_keys: Sequence[bytes],
) -> RemoteProtocolError | None:
    """The error if a peer's record opens here but breaks its kind's schema (`open_record`
    checks it); None if fine or not ours to read."""
    bad: Malformed = []
    open_kind([record], record.kind, _as_is, identity, network_key, circle_keys, malformed=bad)
    return bad[0][1] if bad else None


def _as_is(content: dict[str, Value]) -> dict[str, Value]:
    return content
