"""Publishing a whole library folder at once: `canopy publish library DIR` (issue 14).

Owns the folder layout (DIR/LANG/category/subcategory/level/…, lessons `s_NAME.md` with YAML
front matter, checklists `c_NAME.yml`, `.category.yml` naming a folder), which languages of
one relative path are the original and its translations, and the sealed `library_imports`
map from (DIR, language, relative path) to the records published from it and a hash of what
they were made from: a re-run publishes only what changed (a new version, `replaces`) and
withdraws what was removed. Every bad file is reported with its path and reason; the rest
still imports. Sealing and storing are node/content.py's and node/checklists.py's.
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from node import attachments
from node.checklists import publish_checklist, read_checklist_file
from node.content import Audience, parse_audience, publish_guide_texts, withdraw_records
from node.local import Local
from protocol import limits
from protocol.encoding import Value
from protocol.errors import CanopyError
from protocol.record import Record

TABLE = "library_imports"
CATEGORY_FILE = ".category.yml"
PREFERRED_ORIGINAL = "en"


@dataclass(slots=True)
class Report:
    """What an import did (or, with --dry-run, would do)."""

    lessons: Counter[str] = field(default_factory=Counter)  # new lessons, by language
    checklists: int = 0
    translations: int = 0
    attachments: int = 0
    new_versions: int = 0
    withdrawn: int = 0
    unchanged: int = 0
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (lesson, link)
    read: int = 0  # files read well enough to publish

    def to_json(self) -> dict[str, object]:
        return {
            "lessons": dict(sorted(self.lessons.items())),
            "checklists": self.checklists,
            "translations": self.translations,
            "attachments": self.attachments,
            "new_versions": self.new_versions,
            "withdrawn": self.withdrawn,
            "unchanged": self.unchanged,
            "malformed": [{"path": p, "reason": r} for p, r in self.malformed],
            "missing_attachments": [{"path": p, "link": r} for p, r in self.missing],
        }


@dataclass(frozen=True, slots=True)
class Item:
    """One lesson or checklist file of one language, read and checked."""

    lang: str
    rel: str  # its path under DIR/LANG, with '/'
    path: Path
    kind: str  # "guide" | "checklist"
    order: tuple[tuple[int, str], ...]
    topics: tuple[str, ...]
    title: str = ""
    text: str = ""
    data: bytes = b""
    attach: tuple[Path, ...] = ()


class Malformed(Exception):
    """A file that cannot be imported, and why (one line)."""


def _load_yaml(data: bytes, what: str) -> object:
    import yaml

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("not UTF-8 text") from None
    try:
        # libyaml's safe loader when built with it (the pure-Python one: ~10x slower)
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise Malformed(f"{what} is not valid YAML{where}") from None


def _read(path: Path, most: int) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Malformed(f"cannot be read: {exc.strerror}") from None
    if len(data) > most:
        raise Malformed(f"too large ({len(data)} bytes; limit {most})")
    return data


def _index(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 1 << 30


def _category(folder: Path, report: Report, root: Path) -> tuple[int, str]:
    """(index, title) of a folder: from its `.category.yml`, else its own name."""
    path = folder / CATEGORY_FILE
    if not path.is_file():
        return (1 << 30, folder.name)
    try:
        doc = _load_yaml(_read(path, limits.MAX_CHECKLIST_FILE_BYTES), "front matter")
        if not isinstance(doc, dict):
            raise Malformed("a .category.yml is a map with a 'title'")
        title = doc.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Malformed("no 'title'")
        return (_index(doc.get("index")), title.strip()[:200])
    except Malformed as exc:
        report.malformed.append((_shown(path, root), str(exc)))
        return (1 << 30, folder.name)


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _lesson(path: Path) -> tuple[int, str, str]:
    """(index, title, body) of an `s_NAME.md` lesson with YAML front matter."""
    data = _read(path, limits.MAX_GUIDE_TEXT_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("not UTF-8 text") from None
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise Malformed("no YAML front matter (the file must start with a '---' line)")
    end = next((n for n in range(1, len(lines)) if lines[n].strip() == "---"), None)
    if end is None:
        raise Malformed("the front matter has no closing '---' line")
    doc = _load_yaml("".join(lines[1:end]).encode("utf-8"), "the front matter")
    if not isinstance(doc, dict):
        raise Malformed("the front matter is not a map of 'title' and 'index'")
    title = doc.get("title")
    if not isinstance(title, str) or not title.strip():
        raise Malformed("the front matter has no 'title'")
    body = "".join(lines[end + 1 :]).lstrip("\n")
    if not body.strip():
        raise Malformed("the lesson has no text after its front matter")
    return _index(doc.get("index")), title.strip()[:200], body


def _links(text: str, path: Path, lang_root: Path, report: Report, root: Path) -> list[Path]:
    """Files the lesson's Markdown links by relative path inside its language folder; a
    link to a file that is not there is reported (the lesson imports without it)."""
    found: list[Path] = []
    inside = lang_root.resolve()
    for match in attachments._LINK.finditer(text):
        target = match.group(1)
        parsed = urllib.parse.urlsplit(target)
        if parsed.scheme or parsed.netloc or not parsed.path or target.startswith(("/", "#")):
            continue
        candidate = (path.parent / urllib.parse.unquote(parsed.path)).resolve()
        if not candidate.is_relative_to(inside) or not candidate.is_file():
            report.missing.append((_shown(path, root), target))
        elif candidate not in found:
            found.append(candidate)
    return found


def scan(root: Path, report: Report) -> list[Item]:
    """Every lesson and checklist under `root`, read and checked, in library order (by
    the `index` of each folder and file); the malformed ones go to `report`."""
    if not root.is_dir():
        raise CanopyError(f"{root} is not a directory")
    items: list[Item] = []
    for lang_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
        lang = lang_dir.name
        folders: dict[Path, tuple[int, str]] = {}
        for here, dirs, files in os.walk(lang_dir):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            folder = Path(here)
            parts = folder.relative_to(lang_dir).parts
            if folder != lang_dir:
                folders[folder] = _category(folder, report, root)
            chain = [folders[lang_dir.joinpath(*parts[: n + 1])] for n in range(len(parts))]
            topics = tuple(title for _, title in chain[:2])
            for name in sorted(files):
                path = folder / name
                if name.startswith("s_") and name.endswith(".md"):
                    kind = "guide"
                elif name.startswith("c_") and name.endswith((".yml", ".yaml")):
                    kind = "checklist"
                else:
                    continue
                rel = path.relative_to(lang_dir).as_posix()
                try:
                    if kind == "guide":
                        index, title, text = _lesson(path)
                        links = _links(text, path, lang_dir, report, root)
                        item = Item(
                            lang, rel, path, kind, (*chain, (index, name)), topics, title,
                            text, text.encode("utf-8"), tuple(links),
                        )  # fmt: skip
                    else:
                        data = _read(path, limits.MAX_CHECKLIST_FILE_BYTES)
                        try:
                            read_checklist_file(path)
                        except CanopyError as exc:
                            raise Malformed(str(exc).replace(f"{path}: ", "")) from None
                        doc = _load_yaml(data, "the checklist")
                        index = _index(doc.get("index") if isinstance(doc, dict) else None)
                        item = Item(lang, rel, path, kind, (*chain, (index, name)), topics,
                                    data=data)  # fmt: skip
                except Malformed as exc:
                    report.malformed.append((_shown(path, root), str(exc)))
                    continue
                items.append(item)
    items.sort(key=lambda i: (i.order, i.lang))
    return items


def _key(root: Path, lang: str, rel: str) -> bytes:
    return f"{root}\n{lang}\n{rel}".encode()


def _hash(item: Item, original: bytes | None) -> bytes:
    """What the records of `item` were made from: its bytes, topics, attached files and
    the original it translates (a new version of the original moves its translations)."""
    h = hashlib.blake2b(digest_size=32, person=b"canopy-library")
    for part in (item.kind, item.title, "\x00".join(item.topics)):
        h.update(part.encode() + b"\x00")
    h.update(len(item.data).to_bytes(8, "big") + item.data)
    h.update(original or b"")
    for path in item.attach:
        h.update(path.name.encode() + b"\x00")
        try:
            with path.open("rb") as f:
                while piece := f.read(1 << 20):
                    h.update(piece)
        except OSError:
            h.update(b"\xff")
    return h.digest()


async def import_library(
    local: Local, root: Path, *, to: str, now_ms: int, dry_run: bool = False
) -> Report:
    """Publish what is new or changed under `root`, withdraw what was removed from it
    since the last import, and report; with `dry_run`, only report what it would do."""
    audience = await parse_audience(local, to)  # a wrong --to is said before any file
    root = root.resolve()
    report = Report()
    items = scan(root, report)
    report.read = len(items)
    mine = {
        key: row
        for key, row in (await local.store.rows(TABLE)).items()
        if row.get("root") == str(root)
    }
    by_rel: dict[tuple[str, str], dict[str, Item]] = {}
    for item in items:
        by_rel.setdefault((item.kind, item.rel), {})[item.lang] = item
    present = {_key(root, i.lang, i.rel) for i in items}
    present |= {_key(root, *lr) for p, _ in report.malformed if (lr := _split(p)) is not None}
    ordered = sorted(by_rel.items(), key=lambda kv: min(i.order for i in kv[1].values()))
    for start in range(0, len(ordered), limits.LIBRARY_IMPORT_BATCH):
        # One durable transaction per batch of lessons (their records, chunks and map
        # rows), not several per file: a killed import keeps every batch it committed.
        async with local.store.batch():
            for _, langs in ordered[start : start + limits.LIBRARY_IMPORT_BATCH]:
                first = PREFERRED_ORIGINAL if PREFERRED_ORIGINAL in langs else sorted(langs)[0]
                original = await _publish(local, root, langs[first], None, mine, report,
                                          audience, now_ms=now_ms, dry_run=dry_run)  # fmt: skip
                for lang in sorted(langs):
                    if lang != first:
                        await _publish(local, root, langs[lang], original, mine, report,
                                       audience, now_ms=now_ms, dry_run=dry_run)  # fmt: skip
    gone = [(key, row) for key, row in mine.items() if key not in present]
    if gone:
        ids = [bytes(i) for _, row in gone for i in _ids(row)]
        held = await local.store.get_records(ids)
        targets = [Record.from_bytes(held[i]) for i in ids if i in held]
        if not dry_run:
            if targets:
                await withdraw_records(local, targets, now_ms)
            for key, _ in gone:
                await local.store.delete_row(TABLE, key)
        report.withdrawn = len(gone)
    return report


def _split(shown: str) -> tuple[str, str] | None:
    """(lang, relative path) of a malformed file's shown path, when it is a lesson's."""
    lang, _, rel = shown.partition("/")
    name = rel.rsplit("/", 1)[-1]
    return (lang, rel) if rel and name.startswith(("s_", "c_")) else None


def _ids(row: dict[str, Value]) -> list[bytes]:
    ids = row.get("ids")
    return [i for i in ids if isinstance(i, bytes)] if isinstance(ids, list) else []


async def _publish(
    local: Local,
    root: Path,
    item: Item,
    original: bytes | None,
    mine: dict[bytes, dict[str, Value]],
    report: Report,
    audience: Audience,
    *,
    now_ms: int,
    dry_run: bool,
) -> bytes | None:
    """Publish `item` unless unchanged since the last import; the id its translations
    name (None when it could not be published)."""
    key = _key(root, item.lang, item.rel)
    row = mine.get(key)
    digest = _hash(item, original)
    old = _ids(row) if row is not None else []
    if row is not None and row.get("hash") == digest and old:
        report.unchanged += 1
        return old[0]
    if old and not await local.store.has(old[:1]):
        old = []  # withdrawn meanwhile by hand: publish it afresh
    translation_of = original.hex() if original is not None else None
    shown = _shown(item.path, root)
    try:
        if dry_run:
            records: list[Record] = []
            sources: list[attachments.Source] = []
        elif item.kind == "guide":
            sources = _sources(item, report, root)
            published = await publish_guide_texts(
                local,
                [(str(item.path), item.text)],
                title=item.title,
                lang=item.lang,
                topics=list(item.topics),
                region="",
                to="",
                now_ms=now_ms,
                replaces=old[0].hex() if old else None,
                translation_of=translation_of,
                sources=[sources],
                audience=audience,
                original_id=original,
            )
            records = [r for r, _ in published]
        else:
            sources = []
            record, _ = await publish_checklist(
                local,
                item.path,
                title=None,
                lang=item.lang,
                topics=list(item.topics),
                to="",
                review_days=None,
                now_ms=now_ms,
                translation_of=translation_of,
                replaces=old[0].hex() if old else None,
                audience=audience,
                original_id=original,
            )
            records = [record]
    except CanopyError as exc:
        report.malformed.append((shown, str(exc).replace(f"{item.path}: ", "")))
        return None
    if old:
        report.new_versions += 1
        if len(old) > 1 and not dry_run:  # one per network: the others go too
            held = await local.store.get_records(old[1:])
            rest = [Record.from_bytes(held[i]) for i in old[1:] if i in held]
            if rest:
                await withdraw_records(local, rest, now_ms, successor=records[0].id)
    elif item.kind == "checklist":
        report.checklists += 1
    else:
        report.lessons[item.lang] += 1
    if original is not None and not old:
        report.translations += 1
    report.attachments += len(sources)
    if dry_run:
        return old[0] if old else bytes(32)  # stands for the id it would have
    ids: list[Value] = [r.id for r in records]
    await local.store.put_row(
        TABLE,
        key,
        {"root": str(root), "lang": item.lang, "path": item.rel, "kind": item.kind,
         "ids": ids, "hash": digest},
        defer=True,
    )  # fmt: skip
    return records[0].id


def _sources(item: Item, report: Report, root: Path) -> list[attachments.Source]:
    """The lesson's linked files ready to attach, their metadata stripped; a file that
    cannot be attached is reported and the lesson imports without it."""
    out: list[attachments.Source] = []
    names: set[str] = set()
    for path in item.attach:
        try:
            (source,) = attachments.prepare([path], keep_metadata=False)
        except CanopyError as exc:
            report.missing.append((_shown(item.path, root), str(exc)))
            continue
        if source.name not in names:
            names.add(source.name)
            out.append(source)
    return out
