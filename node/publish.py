"""Publishing one record of ours: its content sealed for an audience (one record per network
for `--to network`, the first first) and stored as this node's own. Check-ins, duties, help
requests and their steps, acks, contacts, vouches and checklists are written through here
(node/content.py seals; guides and alerts keep their own path there).
"""

from __future__ import annotations

from collections.abc import Sequence

from node.content import Audience, seal_to
from node.local import Local
from node.store import row_of
from protocol import limits
from protocol.encoding import Value
from protocol.record import Kind, Record

# How long a record of each kind this node writes lives (an ack: as long as its alert).
LIFETIME_MS = {
    Kind.CHECKIN: limits.CHECKIN_LIFETIME_MS,
    Kind.DUTY: limits.DUTY_LIFETIME_MS,
    Kind.HELP: limits.DEFAULT_HELP_LIFETIME_MS,
    Kind.CHECKLIST: limits.DEFAULT_GUIDE_LIFETIME_MS,
    Kind.CONTACT: limits.DEFAULT_CONTACT_LIFETIME_MS,
    Kind.VOUCH: limits.DEFAULT_CONTACT_LIFETIME_MS,
}


async def publish(
    local: Local,
    audience: Audience,
    kind: Kind,
    content: dict[str, Value],
    now_ms: int,
    *,
    lifetime_ms: int | None = None,
    store: bool = True,
) -> list[Record]:
    """`content` sealed for `audience`, living `lifetime_ms` (else its kind's lifetime), and
    stored; the records, the first first. `store=False`: sealed only (`store_own` later,
    once the caller has checked them)."""
    life = LIFETIME_MS[kind] if lifetime_ms is None else lifetime_ms
    (sealed,) = await seal_to(local, audience, kind, [content], now_ms=now_ms, lifetime_ms=life)
    if store:
        await store_own(local, sealed, now_ms)
    return sealed


async def store_own(
    local: Local, records: Sequence[Record], now_ms: int, *, defer: bool = False
) -> None:
    """Store records this node wrote (`defer`: as `Store.put_records`)."""
    await local.store.put_records([row_of(r, local=True) for r in records], now_ms, defer=defer)
