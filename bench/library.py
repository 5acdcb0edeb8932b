"""`python -m bench library`: `canopy publish library` of a large multi-language library,
then a peer holding all of it (issue 14's targets: 4,000 lessons in 7 languages with 600
images, about 40 MB: the publish <= 60 s, the peer holding everything <= 30 s later).

The library is written as organisations hold one (LANG/category/subcategory/level/, lessons
`s_NAME.md` with YAML front matter, checklists `c_NAME.yml`, `.category.yml` per folder,
images linked by relative path): the same relative path in every language (an original in
English and its translations), real PNG and JPEG bytes from Pillow with EXIF (camera, artist,
date, GPS) to strip, and a few malformed files mixed in. A and B are running nodes that
trust each other; `canopy publish library DIR --to network` runs on A, then B's store is
polled until it holds every guide, checklist and chunk A holds. The import report (counts
per language, checklists, translations, attachments, malformed files) is printed.

The ceiling, measured in the same run, is the libraries alone doing the same work in one
process: Pillow saving every image again from its pixels, SecretBox sealing and Ed25519
signing every lesson, checklist and 256 KiB chunk, SQLite storing them a transaction per
1,000 (the publish); and for B, Ed25519 verify + SecretBox open + SQLite store of the same.
"""

from __future__ import annotations

import io
import json
import random as stdrandom
import time
from pathlib import Path
from typing import Any

import nacl.bindings

from bench.data import create_dir, link_all, network_key, progress
from bench.harness import Node, Result, free_port, stop_all, wait_for, workspace
from protocol import limits

SEED = 14
LANGS = ("en", "fr", "ar", "fa", "ru", "es", "zh")
CATEGORIES = ("digital", "physical", "legal", "wellbeing", "travel", "organisation")
SUBCATEGORIES = ("basics", "devices", "communications", "documents")
LEVELS = ("beginner", "intermediate", "advanced")
_LETTERS = {
    "en": "abcdefghijklmnopqrstuvwxyz",
    "fr": "abcdefghijklmnopqrstuvwxyzéèàçù",
    "es": "abcdefghijklmnopqrstuvwxyzñáéíó",
    "ar": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "fa": "ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی",
    "ru": "абвгдежзийклмнопрстуфхцчшщыэюя",
    "zh": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年",
}
CHECKLIST_TYPE = "checklist"
MB = 1_000_000


def _words(rng: stdrandom.Random, lang: str, n: int) -> str:
    letters = _LETTERS[lang]
    if lang == "zh":
        return "，".join(
            "".join(rng.choices(letters, k=rng.randint(2, 6))) for _ in range(max(1, n // 3))
        )
    return " ".join("".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(n))


def _image(rng: stdrandom.Random, path: Path, index: int, size: int) -> None:
    """A PNG or JPEG of about `size` bytes (noise does not compress), with EXIF to strip."""
    from PIL import Image

    jpeg = index % 3 != 0
    # JPEG of noise at quality 85: ~1.1 bytes a pixel; PNG: 3 (RGB, incompressible)
    pixels = int(size / (1.1 if jpeg else 3.0))
    width = max(16, int((pixels * 4 / 3) ** 0.5))
    height = max(16, pixels // width)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "EOS 80D"  # Model
    exif[0x013B] = f"Field trainer {index}"  # Artist
    exif[0x0132] = "2026:11:02 10:00:00"  # DateTime
    exif[0x8825] = {1: "N", 2: (36.0, 12.0, 7.5), 3: "E", 4: (37.0, 9.0, 3.25)}  # GPS
    out = io.BytesIO()
    if jpeg:
        image.save(out, "JPEG", quality=85, exif=exif)
    else:
        image.save(out, "PNG", exif=exif)
    path.write_bytes(out.getvalue())


def make_library(root: Path, lessons: int, images: int) -> dict[str, Any]:
    """Write the library under `root`; what it holds (for the report's expected counts)."""
    rng = stdrandom.Random(SEED)
    leaves = [(c, s, lv) for c in CATEGORIES for s in SUBCATEGORIES for lv in LEVELS]
    # lesson k: relative path k // 7, language k % 7 (every path in every language)
    image_every = max(1, lessons // images) if images else 0
    image_bytes = 0
    image_count = 0
    per_lang: dict[str, int] = {}
    for k in range(lessons):
        p, lang = divmod(k, len(LANGS))
        lang = LANGS[lang]
        cat, sub, level = leaves[p % len(leaves)]
        folder = root / lang / cat / sub / level
        folder.mkdir(parents=True, exist_ok=True)
        title = _words(rng, lang, 5).capitalize()
        body = [f"# {title}", "", _words(rng, lang, 120), "", _words(rng, lang, 150)]
        if image_every and k % image_every == 0 and image_count < images:
            name = f"fig{k}.{'png' if image_count % 3 == 0 else 'jpg'}"
            (folder / "img").mkdir(exist_ok=True)
            size = rng.randint(40_000, 80_000)
            _image(rng, folder / "img" / name, image_count, size)
            image_bytes += (folder / "img" / name).stat().st_size
            image_count += 1
            body += ["", f"![{name}](img/{name})"]
        text = f"---\ntitle: {title}\nindex: {p // len(leaves) + 1}\n---\n" + "\n".join(body)
        (folder / f"s_lesson{p}.md").write_text(text + "\n", encoding="utf-8")
        per_lang[lang] = per_lang.get(lang, 0) + 1
    checklists = 0
    for lang in LANGS:
        for i, cat in enumerate(CATEGORIES, start=1):
            (root / lang / cat).mkdir(parents=True, exist_ok=True)
            (root / lang / cat / ".category.yml").write_text(
                f"title: {_words(rng, lang, 2)}\ndescription: {_words(rng, lang, 8)}\nindex: {i}\n",
                encoding="utf-8",
            )
            for j, sub in enumerate(SUBCATEGORIES, start=1):
                folder = root / lang / cat / sub
                folder.mkdir(exist_ok=True)
                (folder / ".category.yml").write_text(
                    f"title: {_words(rng, lang, 2)}\nindex: {j}\n", encoding="utf-8"
                )
                items = "".join(f"  - check: {_words(rng, lang, 6)}\n" for _ in range(8))
                (folder / "c_review.yml").write_text(
                    f"index: 1\ntitle: {_words(rng, lang, 3)}\nlist:\n{items}", encoding="utf-8"
                )
                checklists += 1
    bad = root / "en" / CATEGORIES[0] / SUBCATEGORIES[0] / LEVELS[0]
    malformed = {
        "s_badyaml.md": b"---\ntitle: [unclosed\n---\nText.\n",
        "s_notitle.md": b"---\nindex: 3\n---\nText.\n",
        "s_latin1.md": b"---\ntitle: Caf\xe9\n---\nT\xe9\n",
        "s_nofront.md": b"Just text, no front matter.\n",
        "c_empty.yml": b"title: Empty\nlist: []\n",
    }
    bad.mkdir(parents=True, exist_ok=True)
    for name, data in malformed.items():
        (bad / name).write_bytes(data)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    return {
        "lessons": lessons,
        "per_lang": per_lang,
        "images": image_count,
        "image_mb": image_bytes / MB,
        "checklists": checklists,
        "malformed": len(malformed),
        "total_mb": total / MB,
    }


def _ceilings(root: Path, tmp: Path) -> tuple[float, float]:
    """Seconds the libraries alone take to publish the library's files (Pillow re-save,
    SecretBox seal, Ed25519 sign, SQLite store) and to take them in (verify, open, store)."""
    from PIL import Image

    seed = bytes(32)
    public, secret = nacl.bindings.crypto_sign_seed_keypair(seed)
    key, nonce = bytes(range(32)), bytes(24)
    files = sorted(f for f in root.rglob("*") if f.is_file() and f.name != ".category.yml")
    started = time.perf_counter()
    pieces: list[bytes] = []
    for f in files:
        data = f.read_bytes()
        if f.suffix in (".png", ".jpg"):
            with Image.open(io.BytesIO(data)) as image:
                out = io.BytesIO()
                image.save(out, "PNG" if f.suffix == ".png" else "JPEG", quality=85)
            data = out.getvalue()
            step = limits.ATTACHMENT_CHUNK_BYTES
            pieces += [data[i : i + step] for i in range(0, len(data), step)]
        else:
            pieces.append(data)
    sealed = [
        nacl.bindings.crypto_sign(nacl.bindings.crypto_secretbox_easy(p, nonce, key), secret)
        for p in pieces
    ]
    _store(tmp / "ceiling-a.db", sealed)
    publish = time.perf_counter() - started
    started = time.perf_counter()
    opened = [
        nacl.bindings.crypto_secretbox_open_easy(
            nacl.bindings.crypto_sign_open(s, public), nonce, key
        )
        for s in sealed
    ]
    _store(tmp / "ceiling-b.db", sealed)
    take_in = time.perf_counter() - started
    assert len(opened) == len(pieces)
    return publish, take_in


def _store(path: Path, blobs: list[bytes]) -> None:
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE r (seq INTEGER PRIMARY KEY, id BLOB UNIQUE, data BLOB)")
        for at in range(0, len(blobs), 1000):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO r (id, data) VALUES (?, ?)",
                [(b[:32], b) for b in blobs[at : at + 1000]],
            )
            db.execute("COMMIT")
    finally:
        db.close()


_KINDS = ("guide", CHECKLIST_TYPE, "chunk")


def _drops(root: Path, labels: tuple[str, ...]) -> int:
    """Connections the nodes logged as ended (a timeout, a cut, a reset), counted once per
    drop: each end of one connection logs it, so the larger of the two counts."""
    counts = []
    for label in labels:
        log = root / f"{label}.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        counts.append(text.count(" disconnected from "))
    return max(counts, default=0)


async def run(lessons: int = 4000, images: int = 600, timeout: float = 900.0) -> Result:
    res = Result("library")
    async with workspace("library") as root:
        lib = root / "library"
        progress(f"writing a library of {lessons:,} lessons in {len(LANGS)} languages…")
        made = make_library(lib, lessons, images)
        progress(
            f"{made['total_mb']:.1f} MB: {made['images']} images ({made['image_mb']:.1f} MB),"
            f" {made['checklists']} checklists, {made['malformed']} malformed files"
        )
        progress("measuring the libraries' ceiling over the same files…")
        ceiling_publish, ceiling_take_in = _ceilings(lib, root)
        key = network_key(SEED)
        a_dir = await create_dir(root / "A", "A", free_port(), key)
        b_dir = await create_dir(root / "B", "B", free_port(), key)
        await link_all([a_dir, b_dir], [(0, 1)])
        a, b = Node(a_dir), Node(b_dir)
        await a.start()
        await b.start()

        async def connected() -> bool:
            return bool((await a.status())["connected"] >= 1)

        await wait_for("A and B to connect", connected, 60, 0.1)
        progress("A: canopy publish library --to network …")
        t0 = time.monotonic()
        code, out, err = await a.cli("publish", "library", str(lib), "--to", "network", "--json")
        published_at = time.monotonic()
        publish_s = published_at - t0
        if code != 0:
            raise RuntimeError(f"publish library failed: {err.strip()[-500:]}")
        report = json.loads(out)
        stalls = {"A": 0, "B": 0}  # status requests a busy node left unanswered for 30 s

        async def records(node: Node) -> dict[str, int] | None:
            try:
                got = (await node.status())["records"]
            except TimeoutError:
                stalls[node.label] += 1
                return None
            return {k: int(got.get(k, 0)) for k in _KINDS}

        want = None
        while want is None:  # the CLI told A (the publish's notify); A's store holds it all
            want = await records(a)
        progress(f"A holds {want}; waiting until B holds all of it…")

        async def held() -> bool:
            got = await records(b)
            return got is not None and all(got[k] >= n for k, n in want.items())

        peer_s: float | None
        try:
            peer_s = await wait_for("B to hold the library", held, timeout, 0.1) - published_at
        except TimeoutError:
            peer_s = None  # the publish's figures still stand; this one says why not
        last = await records(b)
        drops = _drops(root, ("A", "B"))  # read before the stop, whose own ends are orderly
        await stop_all([a, b])
        per_lang = report["lessons"]
        res.add("lessons", "lessons written (7 languages)", lessons, "", fmt="{:,.0f}")
        res.add("library_mb", "library size on disk", made["total_mb"], "MB", fmt="{:,.1f}")
        res.add("publish_s", "A: canopy publish library, end to end", publish_s, "s", target=60.0)
        res.add("ceiling_publish_s", "ceiling: Pillow + seal + sign + SQLite", ceiling_publish, "s")
        res.add("ratio_publish_ceiling", "ratio publish/ceiling", publish_s / ceiling_publish, "x")
        missing = f"n/a (B held {last} of {want} after {timeout:.0f} s)"
        res.add("peer_s", "B holds all of it, after the publish", peer_s, "s", target=30.0,
                missing=missing)  # fmt: skip
        res.add("ceiling_take_in_s", "ceiling: verify + open + SQLite", ceiling_take_in, "s")
        ratio = None if peer_s is None else peer_s / ceiling_take_in
        res.add("ratio_peer_ceiling", "ratio peer/ceiling", ratio, "x", missing=missing)
        res.add("guides_published", "guide records (lessons, every version)", want["guide"], "",
                fmt="{:,.0f}")  # fmt: skip
        res.add("chunks_published", "attachment chunk records", want["chunk"], "", fmt="{:,.0f}")
        res.add("drops", "A-B connections that ended before the stop (nodes' logs)", drops, "",
                target=0, fmt="{:.0f}")  # fmt: skip
        res.add("stalls_a", "A: status unanswered for 30 s (times)", stalls["A"], "", fmt="{:.0f}")
        res.add("stalls_b", "B: status unanswered for 30 s (times)", stalls["B"], "", fmt="{:.0f}")
        res.details = {"report": report, "library": made}
        lines = [
            "import report: lessons by language "
            + ", ".join(f"{lang} {n}" for lang, n in sorted(per_lang.items()))
            + f" (total {sum(per_lang.values())}); checklists {report['checklists']};"
            f" translations {report['translations']}; attachments {report['attachments']};"
            f" new versions {report['new_versions']}; withdrawn {report['withdrawn']};"
            f" unchanged {report['unchanged']}",
            f"malformed ({len(report['malformed'])}): "
            + "; ".join(f"{m['path']}: {m['reason']}" for m in report["malformed"]),
            f"not attached: {len(report['missing_attachments'])}",
            f"library: {made['images']} images ({made['image_mb']:.1f} MB, EXIF with GPS),"
            f" {made['checklists']} checklists, {made['malformed']} malformed files mixed in",
        ]
        res.notes.extend(lines)
    return res
