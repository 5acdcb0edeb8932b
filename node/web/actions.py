"""The web app's one door into the node: every page reads and acts through here, and this
module calls the very functions the CLI's commands call (node/content.py, node/trust.py,
node/directory.py, node/peer_rows.py, the running node's know-who engine and alert buffer).
No rule of Canopy lives here or in a page; when those functions move, only this file changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from node.clock import now_ms
from node.web.listings import guide_page
from node.wipe import destroy_keys, leave_now
from protocol import limits
from protocol.contact import KINDS, Filter, Share
from protocol.errors import CanopyError

if TYPE_CHECKING:
    from node.alerts import Alerts
    from node.config import Config
    from node.directory import Draft
    from node.local import Local
    from node.web.kept import StoreReads, Version
    from node.web.listings import GuideLists
    from protocol.identity import NodeId


class RunningNode(Protocol):
    """What the web app uses of the running node (node/runtime.py's Node)."""

    local: Local
    config: Config
    node_id: NodeId
    name: str
    advertise: tuple[str, ...]
    alerts: Alerts
    knowwho: Any
    checkins: Any  # node/checkin_watch.py's CheckinWatch: plans watched, in memory
    library: Any
    peers: Mapping[NodeId, Any]  # trusted peers, as the running node holds them
    connections: Mapping[NodeId, object]
    revoked: Mapping[NodeId, int]

    async def peer_rows(self, stored: Any = None) -> list[dict[str, object]]: ...
    async def status(self) -> dict[str, object]: ...
    async def read_changes(self) -> None: ...
    def _items_version(self) -> tuple[int, ...]: ...


@dataclass(frozen=True, slots=True)
class Me:
    name: str
    id: str
    short: str
    safety_code: str


def me(node: RunningNode) -> Me:
    return _me(node.name, node.node_id)


@functools.lru_cache(maxsize=8)  # every page shows it; the safety code is a hash (~0.1 ms)
def _me(name: str, node_id: NodeId) -> Me:
    return Me(name, str(node_id), node_id.short, node_id.safety_code())


async def _changed(node: RunningNode) -> None:
    """What `canopy` does after a change (POST /v1/notify): the node pushes it at once; and
    the node reads it before the action answers (its poll, one at a time), so the page a
    user sees next shows it (the guide list, the directory, home's alerts)."""
    await node.read_changes()


# -- home and status ---------------------------------------------------------------------------


async def peers(
    node: RunningNode, kept: tuple[StoreReads, Version] | None = None
) -> list[dict[str, object]]:
    """The rows `canopy peers` prints, from the running node; `ambiguous` where a name is
    one more than one peer goes by (never shown alone: one may pose as the other). `kept`:
    what the store held at that version, read once (node/web/kept.py)."""
    from collections import Counter

    from protocol.names import name_key

    if kept is None:
        rows = await node.peer_rows()
    else:
        reads, version = kept
        rows = await node.peer_rows(await reads.people(node.local, version, now_ms()))
    keys = Counter(name_key(str(r["name"])) for r in rows if r["name"])
    return [
        {**r, "ambiguous": bool(r["name"]) and keys[name_key(str(r["name"]))] > 1} for r in rows
    ]


async def status(node: RunningNode) -> dict[str, object]:
    """The facts `canopy status` prints: the running node's own `/v1/status` document, with
    the two the pages ask by name."""
    facts = await node.status()
    knowwho: dict[str, object] = facts["knowwho"]  # type: ignore[assignment]
    revoked: list[str] = facts["revoked"]  # type: ignore[assignment]
    return {
        **facts,
        "own_key_revoked": str(node.node_id) in revoked,
        "knowwho_ready": knowwho["ready"],
        "contacts": knowwho["contacts"],
    }


def health(node: RunningNode) -> dict[str, object]:
    """The two facts of `/v1/status` the home page warns about (our own key revoked, the
    sync lag), read as status reads them but without the store's record counts: those
    are a pass over every record, and the home page does not show them."""
    from node.metrics import sync_lag_s

    return {
        "own_key_revoked": node.node_id in node.revoked,
        "sync_lag_s": sync_lag_s(node.peers, node.connections, now_ms()),
    }


def alerts(node: RunningNode) -> list[dict[str, object]]:
    """The latest readable alerts, newest first (what `canopy alerts` / /v1/alerts hold)."""
    readable = [a for a in node.alerts.recent if a.get("readable")]
    return list(reversed(readable))[: limits.UI_RECENT_ALERTS]


@contextlib.asynccontextmanager
async def watch(node: RunningNode) -> AsyncIterator[asyncio.Queue[dict[str, object]]]:
    """Alerts as the node receives them (the queue `canopy watch` reads through /v1/watch);
    an empty entry means the node is stopping."""
    queue = node.alerts.watch()
    try:
        yield queue
    finally:
        node.alerts.unwatch(queue)


# -- guides -----------------------------------------------------------------------------------


async def guides(
    node: RunningNode,
    wanted: Mapping[str, str],
    number: int,
    per: int,
    kept: GuideLists | None = None,
) -> dict[str, Any]:
    """Page `number` (clamped to the pages there are) of the lessons that match the guide
    list's filters, from the running node's guide index (as `canopy guides` lists them),
    with the choices its filters offer. `kept`: pages made before, given again while the
    index and its readers' labels are as they were (node/web/listings.py)."""
    library = node.library
    await library.ready.wait()  # built in the background at start
    index = library.index
    peers, revoked = library.people()
    now = now_ms()
    people = (
        frozenset((p.node_id.raw, p.label) for p in peers.values()),
        frozenset(n.raw for n in revoked),
    )
    shelf = kept.shelf(index, people, now) if kept is not None else None
    key = (tuple(sorted(wanted.items())), number, per)
    found = shelf.get(key) if shelf is not None else None
    if found is None:
        # The list without filters is kept in order across changes: no pass to make a page.
        ordered = None
        if kept is not None and not any(wanted.values()):
            ordered = kept.ordered(index, node.config.languages, now)
        found = guide_page(node, index, (peers, revoked), now, wanted, number, per, shelf, ordered)
        if shelf is not None:
            shelf.put(key, found)
    return found


def _guide_row(
    node: RunningNode, item: Any, labels: Mapping[NodeId, str], revoked: Any
) -> dict[str, Any]:
    from protocol.content import Guide

    guide = Guide.from_content(item.body.content)  # open_record checked it: typed
    author = item.record.author
    return {
        "id": item.record.id.hex(),
        "title": guide.title,
        "text": guide.text,
        "lang": guide.lang,
        "region": guide.region,
        "topics": list(guide.topics),
        "author_label": "you" if author == node.node_id else labels.get(author, author.short),
        "mine": author == node.node_id,
        "created": item.record.created,
        "expires": item.record.expires,
        "scope": item.record.scope.name.lower(),
        "unverified": author in revoked,
    }


async def guide(node: RunningNode, ref: str) -> dict[str, Any]:
    from node.content import find
    from protocol.content import Guide
    from protocol.record import Kind

    item = await find(node.local, ref, now_ms())
    if item.record.kind is not Kind.GUIDE:
        raise CanopyError(f"record {ref[:12]} is not a guide")
    if item.record.expires <= now_ms():
        raise CanopyError(f"guide {Guide.from_content(item.body.content).title!r} has expired")
    from node.revocation import revoked_ids

    labels = {n: p.label for n, p in (await node.local.peers()).items()}
    return _guide_row(node, item, labels, await revoked_ids(node.local))


async def publish_guide(
    node: RunningNode,
    *,
    title: str,
    text: str,
    lang: str,
    topics: list[str],
    region: str,
    to: str,
    replaces: str | None,
) -> str:
    from node.content import publish_guide_texts

    published = await publish_guide_texts(
        node.local,
        [("guide.md", text)],
        title=title or None,
        lang=lang,
        topics=topics,
        region=region,
        to=to,
        now_ms=now_ms(),
        replaces=replaces or None,
    )
    await _changed(node)
    return published[0][0].id.hex()


async def withdraw(node: RunningNode, ref: str) -> None:
    from node.directory import withdraw as withdraw_record

    await withdraw_record(node.local, ref, now_ms())
    await _changed(node)


async def send_alert(node: RunningNode, text: str, *, to: str, urgency: str, hours: float) -> str:
    from node.content import publish_alert

    if not 0 < hours <= 5 * 365 * 24:  # the CLI's --hours rule (commands/common.py)
        raise CanopyError("the lifetime must be between 0 and 43800 hours")
    record = await publish_alert(
        node.local,
        text,
        to=to,
        urgency=urgency,
        now_ms=now_ms(),
        lifetime_ms=int(hours * 3600 * 1000),
    )
    await _changed(node)
    return record.id.hex()


# -- know-who ---------------------------------------------------------------------------------

KIND_CHOICES = tuple(KINDS)
SHARE_CHOICES = tuple(s.value for s in Share)


@functools.cache  # the same for every page view: read from pycountry's tables once
def regions() -> tuple[tuple[str, str], ...]:
    """(code, name) of every country, for the region field's suggestions: the contact
    rule (protocol/contact.py) still decides what is valid, subdivisions included."""
    import pycountry

    return tuple(sorted(((c.alpha_2, c.name) for c in pycountry.countries), key=lambda x: x[1]))


@functools.cache
def languages() -> tuple[tuple[str, str], ...]:
    """(code, name) of the languages with a two-letter code, for the languages field."""
    import pycountry

    return tuple(
        sorted(
            ((lang.alpha_2, lang.name) for lang in pycountry.languages if hasattr(lang, "alpha_2")),
            key=lambda x: x[1],
        )
    )


async def query(
    node: RunningNode, *, text: str, kind: str, region: str, lang: str, network: bool
) -> dict[str, Any]:
    """As `canopy query` through a running node (POST /v1/query)."""
    flt = Filter.build(text, kind, region, lang)
    await node.knowwho.ready.wait()  # the index is built in the background at start
    if network:
        result: dict[str, Any] = await node.knowwho.network_query(
            flt, limits.DEFAULT_QUERY_DEPTH, limits.DEFAULT_RESULTS
        )
        return result
    return dict(node.knowwho.local_query(flt, limits.DEFAULT_RESULTS))


async def add_contact(node: RunningNode, draft: Draft, *, share: str, review_days: int) -> str:
    from node.directory import add_contact as add

    added = await add(
        node.local, draft, share=share, to=None, review_days=review_days, now_ms=now_ms()
    )
    await _changed(node)
    return added.record.id.hex()


async def vouch(node: RunningNode, ref: str) -> str:
    from node.directory import vouch as vouch_for

    _, what = await vouch_for(node.local, ref, now_ms())
    await _changed(node)
    return what


async def review(node: RunningNode) -> list[dict[str, object]]:
    from node.directory import review as due

    # The running node's live index, not a new one per page (seconds with 100,000
    # contacts); built in the background at start, as a query waits for it.
    await node.knowwho.ready.wait()
    return await due(node.local, now_ms(), node.knowwho.index)


async def checklists_due(
    node: RunningNode, kept: tuple[StoreReads, Version] | None = None
) -> list[dict[str, object]]:
    from node.checklists import due, summary

    now = now_ms()
    if kept is None:
        return await due(node.local, now)
    reads, version = kept
    found = await reads.checklists(node.local, version, now)
    return [summary(s, now) for s in found if s.due(now)]  # as `due` picks them


async def introductions(
    node: RunningNode, kept: tuple[StoreReads, Version] | None = None
) -> list[dict[str, object]]:
    from node.introductions import introductions as rows

    if kept is None:
        return await rows(node.local)
    reads, version = kept
    return await reads.introductions(node.local, version, now_ms())


async def introduce(node: RunningNode, ref: str, note: str) -> None:
    from node.introductions import request_introduction

    await request_introduction(node.local, ref, note, now_ms())
    await _changed(node)


async def decide(node: RunningNode, ref: str, approve: bool) -> str:
    from node.introductions import decide as decide_request

    row = await decide_request(node.local, ref, approve, now_ms())
    await _changed(node)
    return str(row["status"])


# -- peers and invites ------------------------------------------------------------------------


async def invite(node: RunningNode, hours: float) -> tuple[str, int]:
    """An invite code for the addresses this node advertises (as `canopy invite`)."""
    from node.trust import create_invite

    if not 0 < hours <= 5 * 365 * 24:
        raise CanopyError("the lifetime must be between 0 and 43800 hours")
    made = await create_invite(node.local, list(node.advertise), now_ms(), int(hours * 3600 * 1000))
    await _changed(node)
    return made.to_code(), made.expires


async def accept(node: RunningNode, code: str) -> dict[str, str]:
    from node.trust import accept_invite

    peer = (await accept_invite(node.local, code, now_ms())).peer
    await _changed(node)
    return {"label": peer.label, "id": str(peer.node_id), "safety": peer.node_id.safety_code()}


async def peer(node: RunningNode, ref: str) -> dict[str, object]:
    from node.trust import resolve_peer

    found = await resolve_peer(node.local, ref)
    for row in await node.peer_rows():
        if row["id"] == str(found.node_id):
            return {**row, "safety_code": found.node_id.safety_code()}
    raise CanopyError(f"no trusted peer {ref}")


async def distrust(node: RunningNode, ref: str) -> str:
    from node.trust import distrust as withdraw_trust

    gone = await withdraw_trust(node.local, ref)
    await _changed(node)
    return gone.label


async def wipe(node: RunningNode) -> None:
    """`canopy wipe --yes` from inside the node: the keys are destroyed first, the same way
    (node.wipe), then this process ends as it does when the CLI asks it to."""
    destroy_keys(node.local.path)
    leave_now(node.local)
