"""Checklists: publishing them from files, and this organisation's own progress through them.

Owns the two file formats a checklist is read from (`c_NAME.yml`: `title`, `index`,
`list:` of `- check: TEXT`; Markdown: one item per `- [ ]` line), the sealed
`checklist_progress` table (ticks keyed by (author, lesson) and item id, never sent to a
peer nor put in a bundle), and when a checklist is due for review. Audience and sealing are
node/content.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from node.content import (
    Audience,
    Readable,
    find,
    parse_audience,
    readable,
    withdraw_records,
)
from node.local import Local
from node.publish import publish, store_own
from node.sealed_files import read_text_file
from protocol import limits
from protocol.contact import DAY_MS
from protocol.content import Checklist
from protocol.encoding import Value
from protocol.errors import CanopyError, DecodeError
from protocol.record import Kind, Record

TABLE = "checklist_progress"
_MD_ITEM = re.compile(r"\s*[-*+]\s+\[[ xX]?\]\s+(.*\S)\s*$")
_MD_TITLE = re.compile(r"\s*#\s+(.*\S)\s*$")


@dataclass(frozen=True, slots=True)
class ChecklistFile:
    """What a checklist file holds: its title (empty when it names none) and items."""

    title: str
    items: tuple[str, ...]


def read_checklist_file(path: Path) -> ChecklistFile:
    """A `.yml`/`.yaml` file in the c_NAME.yml format, or a `.md` file whose `- [ ]`
    lines are the items. CanopyError (one line naming the file) when it is not one."""
    text = read_text_file(path, limit=limits.MAX_CHECKLIST_FILE_BYTES)
    suffix = path.suffix.lower()
    if suffix in (".yml", ".yaml"):
        return _from_yaml(path, text)
    if suffix in (".md", ".markdown", ".txt"):
        return _from_markdown(path, text)
    raise CanopyError(f"{path}: a checklist file is .yml (c_NAME.yml format) or .md")


def _from_yaml(path: Path, text: str) -> ChecklistFile:
    import yaml

    try:
        doc = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CanopyError(f"{path} is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise CanopyError(f"{path}: a checklist file is a map with a 'list' of checks")
    title = doc.get("title", "")
    if not isinstance(title, str):
        raise CanopyError(f"{path}: 'title' must be text")
    entries = doc.get("list")
    if not isinstance(entries, list) or not entries:
        raise CanopyError(f"{path}: 'list' must be a list of '- check: TEXT' items")
    items: list[str] = []
    for number, entry in enumerate(entries, start=1):
        check = entry.get("check") if isinstance(entry, dict) else None
        if not isinstance(check, str) or not check.strip():
            raise CanopyError(f"{path}: item {number} of 'list' is not '- check: TEXT'")
        items.append(check.strip())
    return ChecklistFile(title.strip(), tuple(items))


def _from_markdown(path: Path, text: str) -> ChecklistFile:
    title = ""
    items: list[str] = []
    for line in text.splitlines():
        if item := _MD_ITEM.match(line):
            items.append(item.group(1))
        elif not title and (heading := _MD_TITLE.match(line)):
            title = heading.group(1)
    if not items:
        raise CanopyError(f"{path}: no checklist items (one '- [ ] TEXT' line per item)")
    return ChecklistFile(title, tuple(items))


async def publish_checklist(
    local: Local,
    path: Path,
    *,
    title: str | None,
    lang: str,
    topics: list[str],
    to: str,
    review_days: int | None,
    now_ms: int,
    translation_of: str | None = None,
    replaces: str | None = None,
    audience: Audience | None = None,
    original_id: bytes | None = None,
) -> tuple[Record, Checklist]:
    """Seal one checklist record from a file and store it. With `replaces`, it is a new
    version of one of ours: it names the same lesson (so progress on unchanged items
    stays) and a tombstone naming it as successor purges the old one everywhere.
    `audience`, `original_id`: `to` already parsed, and the id of the original checklist
    just published (`publish library`: no look-up per file)."""
    if audience is None:
        audience = await parse_audience(local, to)  # a wrong --to is said before the file
    parsed = read_checklist_file(path)
    old: Readable | None = None
    lesson: bytes | None = None
    if replaces:
        old = await find(local, replaces, now_ms)
        if old.record.author != local.node_id or old.record.kind is not Kind.CHECKLIST:
            raise CanopyError(f"--replaces {replaces}: not a checklist this node published")
        lesson = Checklist.from_content(old.body.content).lesson or old.record.id
    original: bytes | None = original_id
    if translation_of and original is None:
        target = await find(local, translation_of, now_ms)
        if target.record.kind is not Kind.CHECKLIST:
            raise CanopyError(f"--translation-of {translation_of}: not a checklist")
        original = target.record.id
    checklist = Checklist(
        title=title or parsed.title or path.stem.removeprefix("c_"),
        items=parsed.items,
        lang=lang,
        topics=tuple(topics),
        review_days=limits.DEFAULT_CHECKLIST_REVIEW_DAYS if review_days is None else review_days,
        translation_of=original,
        lesson=lesson,
    )
    content = checklist.to_content()
    try:  # what every reader will check: refuse here what they would find unreadable
        Checklist.from_content(content)
    except DecodeError as exc:
        raise CanopyError(f"cannot publish {path}: {exc}") from None
    records = await publish(local, audience, Kind.CHECKLIST, content, now_ms, store=False)
    await store_own(local, records, now_ms, defer=True)
    record = records[0]
    if old is not None:
        await withdraw_records(local, [old.record], now_ms, successor=record.id)
    return record, checklist


# -- progress: this organisation's own, sealed, never sent ------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """Ticks (item id → when ticked) and the last explicit review of one lesson."""

    ticks: dict[str, int]
    reviewed: int = 0

    def to_row(self) -> dict[str, Value]:
        return {"ticks": dict(self.ticks), "reviewed": self.reviewed}

    @classmethod
    def of_row(cls, row: dict[str, Value]) -> Progress:
        ticks, reviewed = row.get("ticks", {}), row.get("reviewed", 0)
        if not isinstance(ticks, dict) or not isinstance(reviewed, int):
            raise CanopyError("a row of checklist progress is damaged")
        return cls({str(k): int(v) for k, v in ticks.items() if isinstance(v, int)}, reviewed)


def lesson_key(record: Record, checklist: Checklist) -> bytes:
    """What progress is kept under: the author and the lesson (the first version's id), so
    every version of one author's checklist shares it and no other author can claim it."""
    return record.author.raw + (checklist.lesson or record.id)


async def _progress(local: Local) -> dict[bytes, Progress]:
    return {key: Progress.of_row(row) for key, row in (await local.store.rows(TABLE)).items()}


@dataclass(frozen=True, slots=True)
class State:
    """One checklist as this node reads it, with its progress here."""

    item: Readable
    checklist: Checklist
    progress: Progress

    @property
    def ticked(self) -> list[bool]:
        return [i in self.progress.ticks for i in self.checklist.item_ids]

    @property
    def last_review(self) -> int:
        """When the checklist was last fully reviewed: `reviewed`, or when its last item
        was ticked if every item is; 0 if never."""
        done = 0
        if all(self.ticked):
            done = max(self.progress.ticks[i] for i in self.checklist.item_ids)
        return max(done, self.progress.reviewed)

    @property
    def next_review(self) -> int:
        """When it falls due: its review interval after the last full review (0: now)."""
        last = self.last_review
        return last + self.checklist.review_days * DAY_MS if last else 0

    def due(self, now_ms: int) -> bool:
        return self.next_review <= now_ms


async def states(local: Local, now_ms: int) -> tuple[list[State], int]:
    """Every readable checklist, newest version per lesson, with its progress here; and
    how many checklists are held that this node cannot read (or that are malformed)."""
    items, unreadable = await readable(local, Kind.CHECKLIST, now_ms)
    progress = await _progress(local)
    newest: dict[bytes, State] = {}
    for item in items:
        checklist = Checklist.from_content(item.body.content)  # checked when opened
        key = lesson_key(item.record, checklist)
        held = newest.get(key)
        if held is None or held.item.record.created < item.record.created:
            newest[key] = State(item, checklist, progress.get(key, Progress({})))
    ordered = sorted(newest.values(), key=lambda s: (s.checklist.title, s.item.record.id))
    return ordered, unreadable


async def state(local: Local, ref: str, now_ms: int) -> State:
    """One checklist by full or short record id, with its progress here."""
    item = await find(local, ref, now_ms)
    if item.record.kind is not Kind.CHECKLIST:
        raise CanopyError(f"record {ref} is a {item.record.kind}, not a checklist")
    checklist = Checklist.from_content(item.body.content)
    key = lesson_key(item.record, checklist)
    return State(item, checklist, (await _progress(local)).get(key, Progress({})))


def pick_item(checklist: Checklist, ref: str) -> int:
    """The index of the item `ref` names: its number as shown (from 1), its id, or the
    start of its text (case-insensitive); CanopyError if none or several."""
    ref = ref.strip()
    if ref.isdigit():
        number = int(ref)
        if not 1 <= number <= len(checklist.items):
            raise CanopyError(f"no item {number}: the checklist has {len(checklist.items)}")
        return number - 1
    ids = checklist.item_ids
    if ref.lower() in ids:
        return ids.index(ref.lower())
    folded = ref.casefold()
    hits = [n for n, text in enumerate(checklist.items) if text.casefold().startswith(folded)]
    if not ref or not hits:
        raise CanopyError(f"no item starts with {ref!r}; give its number (canopy checklist show)")
    if len(hits) > 1:
        raise CanopyError(f"{ref!r} starts several items; give its number instead")
    return hits[0]


async def set_tick(local: Local, ref: str, item: str, ticked: bool, now_ms: int) -> str:
    """Tick (or untick) one item of a checklist here; the item's text."""
    current = await state(local, ref, now_ms)
    index = pick_item(current.checklist, item)
    ticks = dict(current.progress.ticks)
    if ticked:
        ticks[current.checklist.item_ids[index]] = now_ms
    else:
        ticks.pop(current.checklist.item_ids[index], None)
    await _save(local, current, Progress(ticks, current.progress.reviewed))
    return current.checklist.items[index]


async def mark_reviewed(local: Local, ref: str, now_ms: int) -> State:
    """Record a full review of a checklist now, whatever is ticked."""
    current = await state(local, ref, now_ms)
    await _save(local, current, Progress(dict(current.progress.ticks), now_ms))
    return await state(local, ref, now_ms)


async def _save(local: Local, current: State, progress: Progress) -> None:
    key = lesson_key(current.item.record, current.checklist)
    await local.store.put_row(TABLE, key, progress.to_row())


# -- rows for the command line, the web app and `canopy review` --------------------------------


def summary(s: State, now_ms: int) -> dict[str, object]:
    ticked = s.ticked
    return {
        "id": s.item.record.id.hex(),
        "title": s.checklist.title,
        "lang": s.checklist.lang,
        "topics": list(s.checklist.topics),
        "author": str(s.item.record.author),
        "created": s.item.record.created,
        "total": len(ticked),
        "ticked": sum(ticked),
        "review_days": s.checklist.review_days,
        "last_review": s.last_review or None,
        "next_review": s.next_review or None,
        "due": s.due(now_ms),
        "translation_of": s.checklist.translation_of.hex() if s.checklist.translation_of else None,
    }


def detail(s: State, now_ms: int) -> dict[str, object]:
    row = summary(s, now_ms)
    row["items"] = [
        {
            "n": n,
            "id": iid,
            "text": text,
            "ticked": iid in s.progress.ticks,
            "ticked_at": s.progress.ticks.get(iid),
        }
        for n, (iid, text) in enumerate(
            zip(s.checklist.item_ids, s.checklist.items, strict=True), start=1
        )
    ]
    return row


async def due(local: Local, now_ms: int) -> list[dict[str, object]]:
    """The readable checklists due for review here (never fully reviewed, or last reviewed
    longer ago than their interval)."""
    found, _ = await states(local, now_ms)
    return [summary(s, now_ms) for s in found if s.due(now_ms)]
