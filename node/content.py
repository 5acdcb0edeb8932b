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

from node import attachments, circles, peers_circle
from node.local import Local, Network, random
from node.networks import networks_of
from node.sealed_files import read_text_file
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
    # `network`: the networks sealed to, one record each; else the one whose tag it carries.
    networks: tuple[Network, ...] = ()

    def seals(self) -> list[tuple[bytes | None, bytes | None]]:
        """(network key to seal to, network tag to carry) of each record to write: one per
        network for `--to network`; one otherwise, tagged when network-scoped."""
        if self.network:
            return [(n.key, n.tag) for n in self.networks]
        if self.networks and self.scope is Scope.NETWORK:  # readers in several: one each
            return [(None, n.tag) for n in self.networks]
        return [(None, None)]

    def describe(self) -> str:
        if self.grows:
            return "peers"
        if self.circle:
            return f"circle:{self.circle}"
        if self.network:
            return "network" if len(self.networks) != 1 else f"network:{self.networks[0].name}"
        if self.scope is Scope.PEERS:
            return "peers"
        return ",".join(r.short for r in self.recipients)


async def parse_audience(local: Local, to: str) -> Audience:
    """`peers`, `peers-now`, `network`, `circle:NAME`, or a comma-separated list of node
    ids / trusted peer names. Writes nothing: `sealing` makes what the audience needs."""
    to = to.strip()
    if to == "network":  # every network this node is in: one record each
        return Audience(Scope.NETWORK, (), True, networks=tuple(await local.networks()))
    if to.startswith("network:"):
        network = await local.network_named(to.removeprefix("network:"))
        return Audience(Scope.NETWORK, (), True, networks=(network,))
    if to.startswith("circle:"):
        state = await circles.find(local, to.removeprefix("circle:"))
        homes = await networks_of(local, [NodeId(m) for m in state.members])
        return Audience(Scope.NETWORK, (), False, state.name, (state.key,), networks=homes)
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
            "--to must be peers, peers-now, network, network:NAME, circle:NAME, or node ids"
            " separated by commas"
        )
    homes = await networks_of(local, recipients)
    return Audience(Scope.NETWORK, tuple(dict.fromkeys(recipients)), False, networks=homes)


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
) -> list[list[Record]]:
    """The sealed records of `kind` of each content, for `audience` (made ready by
    `sealing`): one per network for `--to network`, else one. Nothing stored yet."""
    audience = await sealing(local, audience, now_ms)
    return [
        [
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
                network=tag,
            )
            for network_key, tag in audience.seals()
        ]
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
    translation_of: str | None = None,
    attach: Sequence[Path] = (),
    keep_metadata: bool = False,
    report: list[str] | None = None,
) -> list[tuple[Record, str]]:
    """Seal one guide record per file and store them; returns (record, title) pairs.

    With `replaces`, the one new guide supersedes an earlier one of ours: a tombstone
    naming the old record (and the new one as its successor) purges it everywhere.
    `attach`: files attached to the (one) guide; files its Markdown links inside its
    folder are attached too, their metadata stripped unless `keep_metadata` (what was
    removed goes to `report`, one line per file)."""
    await parse_audience(local, to)  # a wrong --to is said before any file is read
    if attach and len(files) != 1:
        raise CanopyError("--attach takes exactly one guide file")
    # read and check every file before storing anything
    texts = [(path, read_text_file(path, limit=limits.MAX_GUIDE_TEXT_BYTES)) for path in files]
    sources = [
        attachments.prepare(attachments.gather(attach, text, path), keep_metadata=keep_metadata)
        for path, text in texts
    ]
    if report is not None:
        for group in sources:
            report += [f"{s.name}: removed {', '.join(s.removed)}" for s in group if s.removed]
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
        translation_of=translation_of,
        sources=sources,
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
    translation_of: str | None = None,
    sources: Sequence[Sequence[attachments.Source]] = (),
    audience: Audience | None = None,
    original_id: bytes | None = None,
) -> list[tuple[Record, str]]:
    """`publish_guides` for texts already in memory, as (file name, text) pairs: the web
    app's editor publishes through here, and nothing readable touches the disk.
    `sources`: per text, the files it attaches (their chunks are stored first). A caller
    publishing many (`publish library`) may give `to` already parsed (`audience`), and
    for a translation the id of the original it just published (`original_id`)."""
    if audience is None:
        audience = await parse_audience(local, to)
    for i, (name, text) in enumerate(texts):
        extra = attachments.manifest_bytes(sources[i]) if i < len(sources) else 0
        if len(text.encode("utf-8")) + extra > (most := limits.MAX_GUIDE_TEXT_BYTES):
            raise CanopyError(
                f"{name} is too large ({len(text.encode())} bytes of text and {extra} of"
                f" attachment list; limit {most})"
            )
    if replaces and len(texts) != 1:
        raise CanopyError("--replaces takes exactly one file: the new version")
    old = await _own_record(local, replaces) if replaces else None
    original = original_id
    if translation_of and original is None:
        original = await _original(local, translation_of, lang, now_ms)
    expires = now_ms + limits.DEFAULT_GUIDE_LIFETIME_MS
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
        if original is not None:
            content["translation_of"] = original
        try:  # what every reader will check: refuse here what they would find unreadable
            Guide.from_content(content)
        except DecodeError as exc:
            raise CanopyError(f"cannot publish {path}: {exc}") from None
        contents.append((guide_title, content))
    for i, (_, content) in enumerate(contents):  # every guide checked: chunks first
        attached = [
            await attachments.store_chunks(
                local, source, scope=audience.scope, created=now_ms, expires=expires
            )
            for source in (sources[i] if i < len(sources) else ())
        ]  # then the guide that names them
        if attached:
            content["attachments"] = [a.to_content() for a in attached]
    sealed = await seal_to(
        local,
        audience,
        Kind.GUIDE,
        [content for _, content in contents],
        now_ms=now_ms,
        lifetime_ms=limits.DEFAULT_GUIDE_LIFETIME_MS,
    )
    published = [
        (record, guide_title)
        for (guide_title, _), records in zip(contents, sealed, strict=True)
        for record in records
    ]
    await local.store.put_records(  # deferred only inside a store batch (publish library)
        [row_of(r, local=True) for r, _ in published], now_ms, defer=True
    )
    if old is not None:
        await _withdraw(local, [old], now_ms, successor=published[0][0].id)
    return published


async def _original(local: Local, ref: str, lang: str, now_ms: int) -> bytes:
    """The id of the original a translation names: the guide `ref` (any author's, readable
    here), or the original that guide itself translates (SPEC "Translations")."""
    if not lang.strip():
        raise CanopyError("--translation-of needs --lang: the language of this translation")
    item = await find(local, ref, now_ms)
    if item.record.kind is not Kind.GUIDE:
        raise CanopyError(f"--translation-of {ref}: that record is a {item.record.kind}")
    return Guide.from_content(item.body.content).translation_of or item.record.id


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
    (records,) = await seal_to(
        local,
        audience,
        Kind.ALERT,
        [content],
        now_ms=now_ms,
        lifetime_ms=lifetime_ms,
    )
    await local.store.put_records([row_of(r, local=True) for r in records], now_ms)
    return records[0]


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
    tags = await attachments.tags_of(local, targets)  # their chunks go with them
    tombstone = Record.create(
        local.identity,
        Kind.TOMBSTONE,
        created=now_ms,
        expires=expires,
        scope=Scope.NETWORK,
        payload=Withdrawal(tuple(t.id for t in targets), successor, tags).to_payload(),
    )
    await local.store.put_records([row_of(tombstone, local=True)], now_ms)
    await local.store.withdraw([t.id for t in targets], local.node_id.raw, expires, tags)
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
    network_key = await local.network_keys()
    keys = await circles.read_keys(local)
    out: list[Readable] = []
    unreadable = 0
    for data in await local.store.records_of_kind(str(kind)):
        record = Record.from_stored(data)  # checked (its signature too) before it was stored
        if record.expires <= now_ms:
            continue
        try:
            # The record signature, checked before storing, binds the author to the body.
            body = open_record(
                record, local.identity, network_key, circle_keys=keys, verify_body=False
            )
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
            await local.network_keys(),
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
