"""Publishing and reading content on an unlocked data directory (guides for now).

Owns the mapping from what a person types (files, --to, short ids) to sealed records,
and back from stored records to what this node can read. Decrypts into memory only;
nothing readable is ever written back to disk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from node import circles, peers_circle
from node.local import Local, random
from node.store import row_of
from node.trust import match_peers, parse_node_id
from protocol import limits
from protocol.content import Guide
from protocol.encoding import Value
from protocol.envelope import Body, open_record, seal_record
from protocol.errors import CanopyError, DecodeError, NotForUs, RemoteProtocolError
from protocol.identity import NodeId
from protocol.lifecycle import Withdrawal, withdrawable
from protocol.record import Kind, Record, Scope


@dataclass(frozen=True, slots=True)
class Audience:
    scope: Scope
    recipients: tuple[NodeId, ...]
    network: bool
    circle: str = ""  # a circle's name: sealed to its current epoch key
    circle_keys: tuple[bytes, ...] = ()
    grows: bool = False  # `peers`: the implicit peers circle, brought up to date when sealing

    def describe(self) -> str:
        if self.grows:
            return "peers"
        if self.circle:
            return f"circle:{self.circle}"
        if self.network:
            return "network"
        if self.scope is Scope.PEERS:
            return "peers"
        return ",".join(r.short for r in self.recipients)


async def parse_audience(local: Local, to: str) -> Audience:
    """`peers`, `peers-now`, `network`, `circle:NAME`, or a comma-separated list of node
    ids / trusted peer names. Writes nothing: `sealing` makes what the audience needs."""
    to = to.strip()
    if to == "network":
        return Audience(Scope.NETWORK, (), True)
    if to.startswith("circle:"):
        state = await circles.find(local, to.removeprefix("circle:"))
        return Audience(Scope.NETWORK, (), False, state.name, (state.key,))
    if to == "peers":
        return Audience(Scope.PEERS, (), False, grows=True)
    peers = await local.peers()
    if to == "peers-now":
        return Audience(Scope.PEERS, tuple(peers), False)
    recipients: list[NodeId] = []
    for ref in filter(None, (part.strip() for part in to.split(","))):
        named = [p.node_id for p in match_peers(list(peers.values()), ref)]
        if len(named) == 1:
            recipients.append(named[0])
        elif len(named) > 1:
            raise CanopyError(f"--to {ref!r} matches several peers; give more of the id")
        else:
            recipients.append(parse_node_id(ref))
    if not recipients:
        raise CanopyError(
            "--to must be peers, peers-now, network, circle:NAME, or node ids separated by commas"
        )
    return Audience(Scope.NETWORK, tuple(dict.fromkeys(recipients)), False)


async def sealing(local: Local, audience: Audience, now_ms: int) -> Audience:
    """The audience ready to seal to: for `peers`, the peers circle made or brought up to
    date now (called once every input is checked, so a refused publish writes nothing)."""
    if not audience.grows:
        return audience
    state = await peers_circle.ensure(local, now_ms)
    return replace(audience, circle=state.name, circle_keys=(state.key,))


async def seal_to(
    local: Local,
    audience: Audience,
    kind: Kind,
    contents: Sequence[dict[str, Value]],
    *,
    now_ms: int,
    lifetime_ms: int,
) -> list[Record]:
    """One sealed record of `kind` per content, for `audience` (made ready by `sealing`);
    nothing stored yet."""
    audience = await sealing(local, audience, now_ms)
    network_key = await local.network_key() if audience.network else None
    return [
        seal_record(
            local.identity,
            kind,
            content,
            created=now_ms,
            expires=now_ms + lifetime_ms,
            scope=audience.scope,
            recipients=audience.recipients,
            network_key=network_key,
            random=random,
            circle_keys=audience.circle_keys,
        )
        for content in contents
    ]


def _title_of(text: str, path: Path) -> str:
    for line in text.splitlines():
        match = re.match(r"#\s+(.+)", line.strip())
        if match:
            return match.group(1).strip()[:200]
    return path.stem


async def publish_guides(
    local: Local,
    files: list[Path],
    *,
    title: str | None,
    lang: str,
    topics: list[str],
    region: str,
    to: str,
    now_ms: int,
    replaces: str | None = None,
) -> list[tuple[Record, str]]:
    """Seal one guide record per file and store them; returns (record, title) pairs.

    With `replaces`, the one new guide supersedes an earlier one of ours: a tombstone
    naming the old record (and the new one as its successor) purges it everywhere."""
    await parse_audience(local, to)  # a wrong --to is said before any file is read
    texts: list[tuple[Path, str]] = []
    for path in files:  # read and check every file before storing anything
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CanopyError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) > (most := limits.MAX_GUIDE_TEXT_BYTES):
            raise CanopyError(f"{path} is too large ({len(data)} bytes; limit {most})")
        try:
            texts.append((path, data.decode("utf-8")))
        except UnicodeDecodeError:
            raise CanopyError(f"{path} is not UTF-8 text") from None
    return await publish_guide_texts(
        local,
        [(str(path), text) for path, text in texts],
        title=title,
        lang=lang,
        topics=topics,
        region=region,
        to=to,
        now_ms=now_ms,
        replaces=replaces,
    )


async def publish_guide_texts(
    local: Local,
    texts: list[tuple[str, str]],
    *,
    title: str | None,
    lang: str,
    topics: list[str],
    region: str,
    to: str,
    now_ms: int,
    replaces: str | None = None,
) -> list[tuple[Record, str]]:
    """`publish_guides` for texts already in memory, as (file name, text) pairs: the web
    app's editor publishes through here, and nothing readable touches the disk."""
    audience = await parse_audience(local, to)
    for name, text in texts:
        if len(text.encode("utf-8")) > (most := limits.MAX_GUIDE_TEXT_BYTES):
            raise CanopyError(f"{name} is too large ({len(text.encode())} bytes; limit {most})")
    if replaces and len(texts) != 1:
        raise CanopyError("--replaces takes exactly one file: the new version")
    old = await _own_record(local, replaces) if replaces else None
    contents: list[tuple[str, dict[str, Value]]] = []
    for name, text in texts:
        path = Path(name)
        guide_title = title or _title_of(text, path)
        content: dict[str, Value] = {
            "title": guide_title,
            "lang": lang,
            "topics": list(topics),
            "region": region,
            "format": "text/markdown",
            "filename": path.name,
            "text": text,
        }
        try:  # what every reader will check: refuse here what they would find unreadable
            Guide.from_content(content)
        except DecodeError as exc:
            raise CanopyError(f"cannot publish {path}: {exc}") from None
        contents.append((guide_title, content))
    records = await seal_to(
        local,
        audience,
        Kind.GUIDE,
        [content for _, content in contents],
        now_ms=now_ms,
        lifetime_ms=limits.DEFAULT_GUIDE_LIFETIME_MS,
    )
    titles = [guide_title for guide_title, _ in contents]
    published = list(zip(records, titles, strict=True))
    await local.store.put_records([row_of(r, local=True) for r, _ in published], now_ms)
    if old is not None:
        await _withdraw(local, [old], now_ms, successor=published[0][0].id)
    return published


async def publish_alert(
    local: Local,
    text: str,
    *,
    to: str,
    urgency: str,
    now_ms: int,
    lifetime_ms: int,
    ack: bool = False,
) -> Record:
    """An urgent notice: sealed like a guide, pushed ahead of every queue."""
    if not text.strip():
        raise CanopyError("an alert needs some text")
    if len(text.encode("utf-8")) > limits.MAX_ALERT_TEXT_BYTES:
        raise CanopyError(f"alert text is limited to {limits.MAX_ALERT_TEXT_BYTES} bytes")
    if urgency not in ("normal", "high"):
        raise CanopyError("--urgency must be normal or high")
    audience = await parse_audience(local, to)
    content: dict[str, Value] = {"text": text, "urgency": urgency}
    if ack:  # recipients are asked to acknowledge it (`canopy ack`, node/acks.py)
        content["ack"] = True
    (record,) = await seal_to(
        local,
        audience,
        Kind.ALERT,
        [content],
        now_ms=now_ms,
        lifetime_ms=lifetime_ms,
    )
    await local.store.put_records([row_of(record, local=True)], now_ms)
    return record


async def _own_record(local: Local, ref: str) -> Record:
    rid = await _resolve_id(local, ref)
    record = Record.from_bytes((await local.store.get_records([rid]))[rid])
    if record.author != local.node_id:
        raise CanopyError(
            f"record {ref} was written by another node; only its author can withdraw it"
        )
    return record


async def withdraw(local: Local, ref: str, now_ms: int) -> Record:
    """Publish a tombstone for one of our records and purge it here at once."""
    record = await _own_record(local, ref)
    return await _withdraw(local, [record], now_ms)


async def withdraw_records(
    local: Local, targets: list[Record], now_ms: int, successor: bytes | None = None
) -> Record:
    """Publish one tombstone for several of our records and purge them here at once (with
    `successor`: the record that supersedes them)."""
    return await _withdraw(local, targets, now_ms, successor)


async def _withdraw(
    local: Local, targets: list[Record], now_ms: int, successor: bytes | None = None
) -> Record:
    if any(not withdrawable(t.kind) for t in targets):
        raise CanopyError("a revocation cannot be withdrawn: it stands until it expires")
    expires = max(max(t.expires for t in targets), now_ms + 1)
    tombstone = Record.create(
        local.identity,
        Kind.TOMBSTONE,
        created=now_ms,
        expires=expires,
        scope=Scope.NETWORK,
        payload=Withdrawal(tuple(t.id for t in targets), successor).to_payload(),
    )
    await local.store.put_records([row_of(tombstone, local=True)], now_ms)
    await local.store.withdraw([t.id for t in targets], local.node_id.raw, expires)
    return tombstone


@dataclass(frozen=True, slots=True)
class Readable:
    record: Record
    body: Body


async def readable(
    local: Local, kind: Kind, now_ms: int, malformed: list[bytes] | None = None
) -> tuple[list[Readable], int]:
    """Records of `kind` this node can open, and how many it holds but cannot read.

    A record that opens but breaks its kind's schema is never returned; its id goes to
    `malformed` when given (else it counts as unreadable)."""
    network_key = await local.network_key()
    keys = await circles.read_keys(local)
    out: list[Readable] = []
    unreadable = 0
    for data in await local.store.records_of_kind(str(kind)):
        record = Record.from_bytes(data)
        if record.expires <= now_ms:
            continue
        try:
            body = open_record(record, local.identity, network_key, circle_keys=keys)
            out.append(Readable(record, body))
        except NotForUs:
            unreadable += 1
        except RemoteProtocolError:
            if malformed is None:
                unreadable += 1
            else:
                malformed.append(record.id)
    return out, unreadable


async def _resolve_id(local: Local, ref: str) -> bytes:
    """A stored record's id from its full or short (8+ hex characters) form."""
    ref = ref.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{8,64}", ref):
        raise CanopyError(f"not a record id: {ref!r} (expected 8 to 64 hex characters)")
    prefix = bytes.fromhex(ref[: len(ref) - len(ref) % 2])
    ids = [i for i in await local.store.ids_with_prefix(prefix) if i.hex().startswith(ref)]
    if not ids:
        if len(ref) == 64 and await local.store.is_withdrawn(bytes.fromhex(ref)):
            raise CanopyError(f"record {ref[:12]} was withdrawn by its author")
        raise CanopyError(f"no record {ref} on this node")
    if len(ids) > 1:
        raise CanopyError(f"{ref} matches several records; give more of the id")
    return ids[0]


async def find(local: Local, ref: str, now_ms: int) -> Readable:
    """One readable, unexpired record by full or short (8+ hex characters) id."""
    rid = await _resolve_id(local, ref)
    data = (await local.store.get_records([rid]))[rid]
    record = Record.from_bytes(data)
    if record.expires <= now_ms:
        raise CanopyError(f"record {ref} has expired")
    try:
        body = open_record(
            record,
            local.identity,
            await local.network_key(),
            circle_keys=await circles.read_keys(local),
        )
    except NotForUs:
        raise CanopyError(f"record {ref} is held here but this node cannot read it") from None
    except RemoteProtocolError:
        raise CanopyError(
            f"record {ref} is malformed (its content breaks the {record.kind} schema);"
            " it is not shown"
        ) from None
    return Readable(record, body)
