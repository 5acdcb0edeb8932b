"""Acknowledged alerts on an unlocked data directory: who an alert asking for
acknowledgement went to, `canopy ack` (an `ack` record sealed to the alert's author alone),
and the alerts listing with who acknowledged and who has not yet.

The recipients of an alert are the audience members this node can name when it sends it
(a circle's members, the peers circle, the trusted peers for the network, or the listed
ids), kept in a sealed setting: a sealed record hides its recipients, even from its author.
"""

from __future__ import annotations

from node import circles, peers_circle
from node.content import Audience, find, parse_audience
from node.local import Local
from node.publish import publish
from node.readers import read
from protocol import limits
from protocol.content import Alert
from protocol.encoding import Value, pack, unpack
from protocol.errors import CanopyError
from protocol.help import AlertAck
from protocol.identity import NodeId
from protocol.record import Kind, Record, Scope

_RECIPIENTS = "alert_recipients"  # sealed setting: alert id -> the members we could name


async def _named(local: Local, to: str) -> set[bytes]:
    audience = await parse_audience(local, to)
    if audience.grows:
        state = await peers_circle.mine(local)
        members = set(state.members) if state else set()
    elif audience.circle:
        members = set((await circles.find(local, audience.circle)).members)
    elif audience.network:
        members = {n.raw for n in await local.peers()}
    else:
        members = {n.raw for n in audience.recipients}
    members.discard(local.node_id.raw)
    return members


async def _load(local: Local) -> dict[bytes, list[bytes]]:
    raw = await local.store.get_setting(_RECIPIENTS)
    value = unpack(raw) if raw else []
    out: dict[bytes, list[bytes]] = {}
    for pair in value if isinstance(value, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], bytes):
            members = pair[1] if isinstance(pair[1], list) else []
            out[pair[0]] = [m for m in members if isinstance(m, bytes)]
    return out


async def remember(local: Local, record: Record, to: str) -> int:
    """Keep who an alert asking for acknowledgement went to; returns how many."""
    members = await _named(local, to)
    kept = await _load(local)
    kept[record.id] = sorted(members)
    pairs: list[Value] = [
        [rid, list[Value](ms)] for rid, ms in list(kept.items())[-limits.MAX_ACKED_ALERTS_KEPT :]
    ]
    await local.store.set_setting(_RECIPIENTS, pack(pairs))
    return len(members)


async def ack(local: Local, ref: str, now_ms: int) -> Record:
    """Acknowledge an alert: an `ack` record sealed to its author alone."""
    item = await find(local, ref, now_ms)
    if item.record.kind is not Kind.ALERT:
        raise CanopyError(f"{ref} is a {item.record.kind}, not an alert")
    if item.record.author == local.node_id:
        raise CanopyError("that alert is yours: its recipients acknowledge it")
    audience = Audience(Scope.NETWORK, (item.record.author,), False)
    content = AlertAck(item.record.id).to_content()
    life = max(item.record.expires - now_ms, 1)
    return (await publish(local, audience, Kind.ACK, content, now_ms, lifetime_ms=life))[0]


async def alerts(local: Local, now_ms: int) -> list[dict[str, object]]:
    """Recent alerts received and sent, newest first; for each we sent asking for
    acknowledgement, who acknowledged and who has not yet."""
    alerts = await read(local, Kind.ALERT, Alert.from_content, now_ms)
    acked: dict[bytes, dict[bytes, int]] = {}
    mine: set[bytes] = set()
    for record, content in await read(local, Kind.ACK, AlertAck.from_content, now_ms):
        if record.author == local.node_id:
            mine.add(content.alert)
        else:
            acked.setdefault(content.alert, {}).setdefault(record.author.raw, record.created)
    peers = await local.peers()
    kept = await _load(local)

    def label(raw: bytes) -> str:
        peer = peers.get(NodeId(raw))
        return peer.label if peer else NodeId(raw).short

    rows: list[dict[str, object]] = []
    for record, alert in sorted(alerts, key=lambda it: -it[0].created)[: limits.RECENT_ALERTS]:
        sent = record.author == local.node_id
        row: dict[str, object] = {
            "id": record.id.hex(),
            "direction": "sent" if sent else "received",
            "from": "you" if sent else label(record.author.raw),
            "author": str(record.author),
            "created": record.created,
            "urgency": alert.urgency,
            "text": alert.text,
            "ack_requested": alert.ack,
        }
        if sent and alert.ack:
            by = acked.get(record.id, {})
            expected = kept.get(record.id, [])
            row["acknowledged"] = [
                {"id": str(NodeId(m)), "name": label(m), "at": by[m]} for m in sorted(by)
            ]
            row["not_yet"] = [
                {"id": str(NodeId(m)), "name": label(m)} for m in expected if m not in by
            ]
        elif not sent:
            row["acknowledged_by_us"] = record.id in mine
        rows.append(row)
    return rows
