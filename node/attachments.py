"""Attachments on a data directory: choosing the files, sealing them chunk by chunk into
`chunk` records, and writing them back out (docs/spec/85-attachments.md).

Owns which files a guide attaches (`--attach` and relative links in its Markdown, never a
path outside the guide's folder), the metadata report, storing chunks before their guide,
how much of an attachment is held, and `save`, which streams chunk by chunk into a
temporary file renamed when whole. Never holds a whole attachment in memory, except an
image or PDF while its metadata is stripped (bounded by `limits.MAX_STRIP_BYTES`).
"""

from __future__ import annotations

import contextlib
import mimetypes
import os
import re
import tempfile
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from node import circles
from node.local import Local, random
from node.metadata import STRIPPED_TYPES, strip
from node.store import row_of
from protocol import limits
from protocol.attachment import (
    Attachment,
    chunk_count,
    new_attachment_secrets,
    open_chunk,
    seal_chunk,
)
from protocol.content import Guide
from protocol.envelope import open_record
from protocol.errors import CanopyError, NotForUs, RemoteProtocolError
from protocol.identity import Identity
from protocol.record import Kind, Record, Scope

# Markdown links and images: [text](target "title") and ![alt](target).
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_FALLBACK_TYPE = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class Source:
    """A file about to be attached: read from `path`, or `data` once its metadata went."""

    path: Path
    name: str
    type: str
    size: int
    data: bytes | None = None
    removed: tuple[str, ...] = ()

    def chunks(self) -> Iterator[bytes]:
        """The file's chunks in order, one in memory at a time."""
        full = limits.ATTACHMENT_CHUNK_BYTES
        if self.data is not None:
            for start in range(0, len(self.data), full):
                yield self.data[start : start + full]
            return
        read = 0
        with self.path.open("rb") as f:
            while piece := f.read(full):
                read += len(piece)
                yield piece
        if read != self.size:
            raise CanopyError(f"{self.path} changed while it was being attached")


def media_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or _FALLBACK_TYPE


def linked_files(text: str, folder: Path) -> list[Path]:
    """Files the Markdown links by relative path that exist inside `folder` (resolved, so
    neither `..` nor a symbolic link leads out of it); URLs, anchors, absolute paths and
    missing files are left alone."""
    root = folder.resolve()
    out: list[Path] = []
    for match in _LINK.finditer(text):
        target = match.group(1)
        parsed = urllib.parse.urlsplit(target)
        if parsed.scheme or parsed.netloc or not parsed.path or target.startswith(("/", "#")):
            continue
        relative = urllib.parse.unquote(parsed.path)
        if "\x00" in relative:
            continue
        candidate = (folder / relative).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            continue
        if candidate not in out:
            out.append(candidate)
    return out


def gather(explicit: Sequence[Path], text: str, guide: Path | None) -> list[Path]:
    """Every file one guide attaches: `--attach` ones, then those its Markdown links."""
    paths: list[Path] = []
    for path in explicit:
        if not path.is_file():
            raise CanopyError(f"cannot attach {path}: no such file")
        if path.resolve() not in paths:
            paths.append(path.resolve())
    if guide is not None:
        paths += [p for p in linked_files(text, guide.parent) if p not in paths]
    return paths


def prepare(paths: Sequence[Path], *, keep_metadata: bool) -> list[Source]:
    """Each file as a Source, its metadata stripped unless `keep_metadata`; names are
    the files' own names, which must differ (CanopyError)."""
    sources: list[Source] = []
    names: set[str] = set()
    for path in paths:
        name = path.name
        if name in names:
            raise CanopyError(f"two attachments are named {name}; rename one")
        names.add(name)
        kind = media_type(name)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise CanopyError(f"cannot read {path}: {exc.strerror}") from None
        if size > limits.MAX_ATTACHMENT_BYTES:
            raise CanopyError(f"{path} is too large to attach (limit 1 GiB)")
        if keep_metadata or kind not in STRIPPED_TYPES:
            sources.append(Source(path, name, kind, size))
            continue
        if size > limits.MAX_STRIP_BYTES:
            raise CanopyError(
                f"{path} is too large to remove its metadata in memory;"
                " --keep-metadata attaches it as it is"
            )
        stripped = strip(path.read_bytes(), kind, name)
        sources.append(
            Source(path, name, kind, len(stripped.data), stripped.data, stripped.removed)
        )
    return sources


def manifest_bytes(sources: Sequence[Source]) -> int:
    """About how much the manifest of `sources` adds to a guide's Body (an upper bound)."""
    return sum(34 * chunk_count(s.size) + 160 + len(s.name.encode()) for s in sources)


async def store_chunks(
    local: Local, source: Source, *, scope: Scope, created: int, expires: int
) -> Attachment:
    """Seal `source` chunk by chunk into chunk records of ours, stored durably a few at a
    time; its manifest entry. The guide naming them is stored after (its readers never
    wait for a chunk that was not yet written)."""
    key, tag = new_attachment_secrets(random)
    ids: list[bytes] = []
    batch: list[Record] = []
    for index, piece in enumerate(source.chunks()):
        record = chunk_record(local.identity, key, tag, index, piece, scope, created, expires)
        ids.append(record.id)
        batch.append(record)
        if len(batch) >= limits.ATTACHMENT_STORE_BATCH:
            await local.store.put_records(
                [row_of(r, local=True) for r in batch], created, defer=True
            )
            batch = []
    if batch:
        await local.store.put_records([row_of(r, local=True) for r in batch], created, defer=True)
    if len(ids) != chunk_count(source.size):
        raise CanopyError(f"{source.path} changed while it was being attached")
    return Attachment(source.name, source.type, source.size, key, tag, tuple(ids))


def chunk_record(
    identity: Identity,
    key: bytes,
    tag: bytes,
    index: int,
    piece: bytes,
    scope: Scope,
    created: int,
    expires: int,
) -> Record:
    return Record.create(
        identity,
        Kind.CHUNK,
        created=created,
        expires=expires,
        scope=scope,
        payload=seal_chunk(key, tag, index, piece),
    )


async def tags_of(local: Local, records: Sequence[Record]) -> tuple[bytes, ...]:
    """The attachment tags of those of `records` that are guides this node can read (its
    own, when withdrawing them): their chunks are withdrawn with them."""
    guides = [r for r in records if r.kind is Kind.GUIDE]
    if not guides:
        return ()
    network_key = await local.network_key()
    keys = await circles.read_keys(local)
    tags: list[bytes] = []
    for record in guides:
        try:
            body = open_record(record, local.identity, network_key, circle_keys=keys)
        except (NotForUs, RemoteProtocolError):
            continue
        tags += [a.tag for a in Guide.from_content(body.content).attachments]
    return tuple(dict.fromkeys(tags))[: limits.MAX_WITHDRAW_TAGS]


async def missing(local: Local, attachment: Attachment) -> int:
    """How many of the attachment's chunks this node does not hold yet."""
    return len(attachment.chunks) - len(await local.store.has(list(attachment.chunks)))


def safe_name(name: str) -> str:
    """A name to write under a directory: its last component, no leading dot."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].strip()
    base = "".join(c if c.isprintable() else "_" for c in base).lstrip(".")
    return base or "attachment"


async def save(local: Local, attachment: Attachment, out: Path) -> int:
    """Write the attachment to `out`, byte-identical, chunk by chunk, through a temporary
    file beside it renamed when whole; the bytes written. CanopyError when chunks are
    missing or one fails its check (the record is then not the author's: it is left out)."""
    lacking = await missing(local, attachment)
    if lacking:
        raise CanopyError(
            f"{attachment.name} is incomplete here: missing {lacking} of"
            f" {len(attachment.chunks)} chunks (they are still arriving)"
        )
    if out.exists():
        raise CanopyError(f"{out} already exists; choose another name")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise CanopyError(f"{folder} is not a directory")
    fd, temp = tempfile.mkstemp(dir=folder, prefix=f".{safe_name(out.name)}.", suffix=".part")
    written = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for index, rid in enumerate(attachment.chunks):
                data = (await local.store.get_records([rid])).get(rid)
                if data is None:
                    raise CanopyError(f"{attachment.name}: chunk {index} was deleted meanwhile")
                record = Record.from_stored(data)
                try:
                    piece = open_chunk(attachment, index, rid, record.payload)
                except RemoteProtocolError as exc:
                    raise CanopyError(f"{attachment.name}: chunk {index} is bad ({exc})") from None
                f.write(piece)
                written += len(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return written
