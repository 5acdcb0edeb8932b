"""`canopy publish library DIR` (issue 14): a library folder in en, fr and ar with lessons,
a checklist, `.category.yml` titles, an image and malformed files mixed in, imported on a
real data directory; translations grouped into one lesson (node/library.py); a re-run
publishes nothing, an edited file one new version, a deleted one one withdrawal; the map
of what was published stays sealed on disk; and a real second node reads the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.checklists import states
from node.demo import NodeProcess, wait_until
from node.guide_index import Wanted
from node.library import build_guides
from node.library_import import TABLE, import_library
from node.local import Local
from protocol.content import Guide
from tests.conftest import Net
from tests.test_attachments import gps_jpeg
from tests.test_multinode import connected, link

pytestmark = pytest.mark.timeout(180)
PASS = b"library pass"
NOW = 1_900_000_000_000
SECRET = "Zq7-library-marker"


def _write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _lesson(title: str, body: str, index: int = 1) -> str:
    return f"---\ntitle: {title}\nindex: {index}\n---\n{body}\n"


def library(root: Path) -> Path:
    """en (original, with an image and a missing one), fr and ar translations, a checklist
    in en and fr, category titles per language, and four malformed files."""
    base = "digital/phones/basic"
    _write(root, "en/digital/.category.yml", "title: Digital security\nindex: 1\n")
    _write(root, "en/digital/phones/.category.yml", "title: Phones\ndescription: x\nindex: 2\n")
    _write(root, "fr/digital/.category.yml", "title: Sécurité numérique\nindex: 1\n")
    _write(root, "fr/digital/phones/.category.yml", "title: Téléphones\nindex: 2\n")
    _write(root, "ar/digital/.category.yml", "title: [unclosed\n")  # malformed: folder name
    _write(
        root,
        f"en/{base}/s_sim.md",
        _lesson("SIM safety", f"A second SIM {SECRET}.\n\n![card](img/sim.jpg)\n![x](gone.png)"),
    )
    (root / "en" / base / "img").mkdir()
    gps_jpeg(root / "en" / base / "img" / "sim.jpg")
    _write(root, f"en/{base}/s_backup.md", _lesson("Backups", "Back up weekly.", index=2))
    _write(root, f"fr/{base}/s_sim.md", _lesson("Sécurité de la SIM", "Une seconde SIM."))
    _write(root, f"ar/{base}/s_sim.md", _lesson("أمان الشريحة", "استخدم شريحة ثانية."))
    office = "index: 1\ntitle: Office\nlist:\n  - check: Lock the cabinet\n  - check: Shred logs\n"
    _write(root, f"en/{base}/c_office.yml", office)
    _write(root, f"fr/{base}/c_office.yml", office.replace("Office", "Bureau"))
    # malformed, each beside good files
    _write(root, f"en/{base}/s_badyaml.md", "---\ntitle: [oops\n---\nText.\n")
    _write(root, f"en/{base}/s_notitle.md", "---\nindex: 3\n---\nText.\n")
    (root / "en" / base / "s_latin1.md").write_bytes(b"---\ntitle: Caf\xe9\n---\nT\xe9\n")
    _write(root, f"fr/{base}/c_empty.yml", "title: Vide\nlist: []\n")
    return root


async def _lessons(local: Local) -> dict[str, list[tuple[str, str, tuple[str, ...]]]]:
    """Per lesson (its original's title): (lang, title, topics) of each version."""
    index = await build_guides(local, NOW)
    found, _ = index.lessons(Wanted(), NOW)
    out = {}
    for _, versions in found:
        original = next(v for v in versions if v.rid == v.lesson)
        out[original.title] = sorted((v.lang, v.title, v.topics) for v in versions)
    return out


async def test_a_library_imports_translations_grouped_and_reports_every_bad_file(
    tmp_path: Path,
) -> None:
    root = library(tmp_path / "lib")
    local = await Local.create(tmp_path / "node", "Org", PASS)
    try:
        dry = await import_library(local, root, to="peers", now_ms=NOW, dry_run=True)
        assert sum(dry.lessons.values()) == 4 and await local.store.rows(TABLE) == {}
        assert (await build_guides(local, NOW)).entries == {}  # a dry run publishes nothing

        report = await import_library(local, root, to="peers", now_ms=NOW)
        assert dict(report.lessons) == {"en": 2, "fr": 1, "ar": 1}
        assert (report.checklists, report.translations, report.attachments) == (2, 3, 1)
        assert (report.new_versions, report.withdrawn, report.unchanged) == (0, 0, 0)
        bad = dict(report.malformed)
        assert "valid YAML" in bad["en/digital/phones/basic/s_badyaml.md"]
        assert "no 'title'" in bad["en/digital/phones/basic/s_notitle.md"]
        assert "UTF-8" in bad["en/digital/phones/basic/s_latin1.md"]
        assert "'list'" in bad["fr/digital/phones/basic/c_empty.yml"]
        assert "valid YAML" in bad["ar/digital/.category.yml"]
        assert report.missing == [("en/digital/phones/basic/s_sim.md", "gone.png")]

        lessons = await _lessons(local)
        assert lessons["SIM safety"] == [
            ("ar", "أمان الشريحة", ("digital", "phones")),  # its .category.yml was bad
            ("en", "SIM safety", ("Digital security", "Phones")),
            ("fr", "Sécurité de la SIM", ("Sécurité numérique", "Téléphones")),
        ]
        assert lessons["Backups"] == [("en", "Backups", ("Digital security", "Phones"))]
        index = await build_guides(local, NOW)
        (sim,) = [e for e in index.entries.values() if e.title == "SIM safety"]
        guide = Guide.from_content(await _opened(local, sim.rid))  # type: ignore[arg-type]
        assert [a.name for a in guide.attachments] == ["sim.jpg"]
        found, _ = await states(local, NOW)
        by_title = {s.checklist.title: s for s in found}
        assert set(by_title) == {"Office", "Bureau"}
        assert by_title["Bureau"].checklist.translation_of == by_title["Office"].item.record.id

        # Nothing changed: nothing new.
        again = await import_library(local, root, to="peers", now_ms=NOW + 1)
        assert (sum(again.lessons.values()), again.checklists, again.new_versions) == (0, 0, 0)
        assert (again.withdrawn, again.unchanged) == (0, 6)
        assert len((await build_guides(local, NOW + 1)).entries) == 4

        # One file edited: one new version; one deleted: one withdrawal.
        _write(root, "en/digital/phones/basic/s_backup.md", _lesson("Backups", "Daily now."))
        (root / "fr/digital/phones/basic/c_office.yml").unlink()
        changed = await import_library(local, root, to="peers", now_ms=NOW + 2)
        assert (changed.new_versions, changed.withdrawn, changed.unchanged) == (1, 1, 4)
        assert sum(changed.lessons.values()) == 0 and changed.checklists == 0
        index = await build_guides(local, NOW + 2)
        texts = [await _opened(local, r) for r in index.entries]
        assert sorted(t["text"] for t in texts if t["title"] == "Backups") == ["Daily now.\n"]
        found, _ = await states(local, NOW + 2)
        assert [s.checklist.title for s in found] == ["Office"]
        assert len(await local.store.rows(TABLE)) == 5
    finally:
        await local.close()
    # The map names the library's paths and titles only sealed: nothing readable on disk.
    for path in (tmp_path / "node").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for word in (b"s_backup.md", b"digital/phones", SECRET.encode()):
                assert word not in data, (path, word)


async def _opened(local: Local, rid: bytes) -> dict[str, object]:
    from node.content import find

    content: dict[str, object] = dict((await find(local, rid.hex(), NOW)).body.content)
    return content


async def test_a_folder_with_nothing_readable_fails_with_one_line(net: Net, tmp_path: Path) -> None:
    node = await net.node("A", "Alpha Legal")
    empty = tmp_path / "empty"
    _write(empty, "en/x/s_bad.md", "no front matter\n")
    code, out, err = await node.cli("publish", "library", str(empty), check=False)
    assert code == 1 and "Traceback" not in err
    assert "malformed: en/x/s_bad.md: no YAML front matter" in out
    code, _, err = await node.cli("publish", "library", str(tmp_path / "nope"), check=False)
    assert code == 1 and "is not a directory" in err and "Traceback" not in err


async def _titles(node: NodeProcess) -> set[str]:
    rows = (await node.json("guides"))["guides"]
    return {str(r["title"]) for r in rows}


async def test_a_peer_reads_the_imported_library(net: Net, tmp_path: Path) -> None:
    a = await net.node("A", "Alpha Legal")
    b = await net.node("B", "Beta Rights")
    for node in (a, b):
        await node.start()
    await link(a, b)

    async def both_connected() -> bool:
        return await connected(a, 1) and await connected(b, 1)

    await wait_until("A and B connect", both_connected)
    root = library(tmp_path / "lib")
    _, out, _ = await a.cli("publish", "library", str(root), "--json")
    report = json.loads(out)
    assert report["lessons"] == {"ar": 1, "en": 2, "fr": 1} and report["translations"] == 3

    async def b_reads_it() -> bool:
        return await _titles(b) == {"SIM safety", "Backups"}

    await wait_until("B lists the library's two lessons", b_reads_it)
    rows = {r["title"]: r for r in (await b.json("guides"))["guides"]}
    assert {v["lang"] for v in rows["SIM safety"]["languages"]} == {"en", "fr", "ar"}
    _, out, _ = await a.cli("publish", "library", str(root))
    assert out.startswith("published 0 lessons, 0 checklists") and "6 unchanged" in out
