"""The library: translations grouped into lessons and chosen by the reader's language, the
listing's filters and search, the same answers from a running node's live index (one GET
of the local API) as from the sealed cache without one, and an index that comes back from
that cache after a restart without opening a record (docs/spec/30-sync.md, "Translations").

Real `canopy` processes on real data directories; the running node is a real `canopy run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.clock import now_ms
from node.demo import PASSPHRASE, NodeProcess, wait_until
from node.library import build_guides
from node.local import Local
from protocol.content import Guide
from protocol.errors import DecodeError
from tests.conftest import Net

pytestmark = pytest.mark.timeout(180)


def _guide(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(text, encoding="utf-8")
    return path


async def _publish(node: NodeProcess, path: Path, *args: str) -> str:
    _, out, _ = await node.cli("publish", "guide", str(path), *args)
    return out.split()[0]


async def _library(net: Net, tmp_path: Path) -> tuple[NodeProcess, dict[str, str]]:
    """One node holding: a lesson in en (original), fr and ar; a lone Spanish guide."""
    node = await net.node("a", "Alpha Legal Aid")
    ids = {}
    ids["en"] = await _publish(
        node,
        _guide(tmp_path, "phones.md", "# Phone safety\n\nUse a separate SIM card.\n"),
        "--lang", "en", "--topic", "digital", "--region", "KE",
    )  # fmt: skip
    ids["fr"] = await _publish(
        node,
        _guide(tmp_path, "tel.md", "# Sécurité du téléphone\n\nUtilisez une carte SIM à part.\n"),
        "--translation-of", ids["en"][:10], "--lang", "fr", "--topic", "digital",
    )  # fmt: skip
    # A translation of the translation names the original: one lesson, not a chain.
    ids["ar"] = await _publish(
        node,
        _guide(tmp_path, "hatif.md", "# أمان الهاتف\n\nاستخدم شريحة منفصلة.\n"),
        "--translation-of", ids["fr"], "--lang", "ar",
    )  # fmt: skip
    ids["es"] = await _publish(
        node,
        _guide(tmp_path, "abogados.md", "# Abogados\n\nQuién acepta casos de tierras.\n"),
        "--lang", "es", "--topic", "legal", "--region", "CO-ANT",
    )  # fmt: skip
    return node, ids


async def test_translations_are_one_lesson_shown_in_the_readers_language(
    net: Net, tmp_path: Path
) -> None:
    node, ids = await _library(net, tmp_path)
    listing = await node.json("guides")
    rows = {r["lesson"]: r for r in listing["guides"]}
    assert set(rows) == {ids["en"], ids["es"]}  # one entry per lesson
    lesson = rows[ids["en"]]
    assert lesson["id"] == ids["en"]  # the default languages: ["en"]
    assert sorted((v["lang"], v["id"]) for v in lesson["languages"]) == sorted(
        (lang, ids[lang]) for lang in ("en", "fr", "ar")
    )
    table = (await node.cli("guides"))[1]
    assert table.count("Phone safety") == 1 and "Sécurité" not in table
    assert "ar fr" in table  # the other languages of the lesson, named

    # show: --lang picks the version, whichever id was given, and names the others
    shown = (await node.cli("show", ids["en"][:12], "--lang", "fr"))[1]
    assert shown.startswith("# Sécurité du téléphone\n")
    assert f"en {ids['en'][:12]}" in shown and f"ar {ids['ar'][:12]}" in shown
    # else the configured list, in order (a language not held is passed over)
    config = tmp_path / "reader.toml"
    config.write_text('[content]\nlanguages = ["sw", "ar", "fr"]\n')
    shown = json.loads((await node.cli("show", ids["fr"], "--config", str(config), "--json"))[1])
    assert shown["id"] == ids["ar"] and shown["content"]["translation_of"] == ids["en"]
    assert {v["lang"] for v in shown["languages"]} == {"en", "fr"}
    listed = json.loads((await node.cli("guides", "--config", str(config), "--json"))[1])
    assert {r["id"] for r in listed["guides"]} == {ids["ar"], ids["es"]}

    # a translation needs its language; the original must be one this node can read
    code, _, err = await node.cli(
        "publish", "guide", str(tmp_path / "tel.md"), "--translation-of", ids["en"], check=False
    )
    assert code != 0 and "needs --lang" in err and "Traceback" not in err
    code, _, err = await node.cli(
        "publish", "guide", str(tmp_path / "tel.md"), "--translation-of", "abcdef0123",
        "--lang", "fr", check=False,
    )  # fmt: skip
    assert code != 0 and "no record abcdef0123" in err and "Traceback" not in err


async def test_filters_and_search_answer_alike_from_the_node_and_from_the_cache(
    net: Net, tmp_path: Path
) -> None:
    node, ids = await _library(net, tmp_path)
    me = node.node_id
    cases: list[tuple[tuple[str, ...], set[str]]] = [
        (("--lang", "fr"), {ids["fr"]}),  # the lesson, shown in the language asked for
        (("--lang", "es"), {ids["es"]}),
        (("--lang", "de"), set()),
        (("--topic", "DIGITAL"), {ids["en"]}),
        (("--region", "CO"), {ids["es"]}),  # a country matches its subdivisions
        (("--region", "KE"), {ids["en"]}),
        (("--from", me[:8]), {ids["en"], ids["es"]}),
        (("--search", "sim"), {ids["en"]}),  # a prefix of a word of the text
        (("--search", "separate car"), {ids["en"]}),  # every word must match
        (("--search", "téléphone"), {ids["fr"]}),  # the lesson, in the version that matched
        (("--search", "telephone", "--lang", "fr"), {ids["fr"]}),  # accents folded
        (("--search", "tierras", "--topic", "legal"), {ids["es"]}),
        (("--search", "nowhere"), set()),
    ]

    async def answers() -> list[set[str]]:
        return [{r["id"] for r in (await node.json("guides", *a))["guides"]} for a, _ in cases]

    offline = await answers()
    assert offline == [want for _, want in cases]
    code, _, err = await node.cli("guides", "--from", "nobody-here", check=False)
    assert code != 0 and "--from" in err and "Traceback" not in err

    await node.start()
    await wait_until("the library", lambda: node.api("/v1/guides"))
    served = await node.api("/v1/guides?search=separate&prefer=en")
    assert [r["id"] for r in served["guides"]] == [ids["en"]]
    assert await answers() == offline
    # Published while the node runs: the command answers once the node has read it, so the
    # very next listing shows it (no waiting), and the one after a withdrawal lacks it.
    for n in range(3):
        late = await _publish(node, _guide(tmp_path, f"late{n}.md", f"# Late\n\nquokka{n}\n"))
        assert [
            r["id"] for r in (await node.json("guides", "--search", f"quokka{n}"))["guides"]
        ] == [late]
        await node.cli("withdraw", late)
        assert (await node.json("guides", "--search", f"quokka{n}"))["guides"] == []


async def test_the_index_comes_back_from_the_sealed_cache_after_a_restart(
    net: Net, tmp_path: Path
) -> None:
    node, ids = await _library(net, tmp_path)
    await node.start()
    await wait_until("the library", lambda: node.api("/v1/guides"))
    await node.stop()  # the node cached what it opened of each guide
    local = await Local.open(node.data, PASSPHRASE.encode())
    try:
        first = await build_guides(local, now_ms())
        again = await build_guides(local, now_ms())
    finally:
        await local.close()
    # nothing opened: every entry came from what the running node cached, sealed
    assert first.opened == 0 and again.opened == 0
    assert {r.hex() for r in again.entries} == {r.hex() for r in first.entries}
    assert {r.hex() for r in again.entries} == set(ids.values())
    assert again.by_lesson == first.by_lesson
    assert {r: e.words for r, e in again.entries.items()} == {
        r: e.words for r, e in first.entries.items()
    }
    listing = await node.json("guides", "--search", "sim")
    assert [r["id"] for r in listing["guides"]] == [ids["en"]]


def test_translation_of_is_checked_strictly() -> None:
    assert Guide.from_content({"title": "t", "translation_of": b"\x01" * 32}).translation_of
    for bad in (b"\x01" * 31, b"\x01" * 33, "01" * 32, 7, None):
        with pytest.raises(DecodeError, match="translation_of"):
            Guide.from_content({"title": "t", "translation_of": bad})  # type: ignore[dict-item]
