"""A guide published `--to network` on a node in two networks is two records, one sealed and
tagged per network; the author's listing (`canopy guides`, the web guide list: both go
through `GuideIndex.lessons`) shows it once, its translations under it, on a real data
directory and a real store."""

from __future__ import annotations

import os
from pathlib import Path

from node.content import publish_guide_texts
from node.guide_index import Wanted
from node.library import build_guides, listing
from node.local import Local
from protocol.identity import NodeId

NOW = 1_800_000_000_000


async def _two_networks(path: Path) -> Local:
    local = await Local.create(path, "Alpha", None)
    await local.add_network("N2", os.urandom(32), NOW)
    return local


async def _publish(local: Local, text: str, to: str, **extra: object) -> list[str]:
    published = await publish_guide_texts(
        local,
        [("g.md", text)],
        title=None,
        lang=str(extra.pop("lang", "en")),
        topics=[],
        region="",
        to=to,
        now_ms=int(str(extra.pop("now", NOW))),
        **extra,  # type: ignore[arg-type]
    )
    return [r.id.hex() for r, _ in published]


async def _rows(local: Local) -> list[dict[str, object]]:
    index = await build_guides(local, NOW + 10)
    result = listing(index, Wanted(), NOW + 10, [], {}, local.node_id, [])
    rows: list[dict[str, object]] = result["guides"]  # type: ignore[assignment]
    return rows


async def test_a_guide_sealed_once_per_network_is_listed_once_with_its_translations(
    tmp_path: Path,
) -> None:
    local = await _two_networks(tmp_path / "a")
    try:
        copies = await _publish(local, "# Safe houses\n\nThe second gate.", "network")
        assert len(copies) == 2  # one record per network
        (row,) = await _rows(local)
        assert row["title"] == "Safe houses" and row["id"] == min(copies)
        # A translation of either copy joins the one row, listed once among its languages.
        fr = await _publish(
            local,
            "# Maisons sûres\n\nLa deuxième porte.",
            "network:N2",
            lang="fr",
            now=NOW + 1,
            translation_of=max(copies),
        )
        (row,) = await _rows(local)
        langs = sorted(str(v["lang"]) for v in row["languages"])  # type: ignore[attr-defined]
        assert langs == ["en", "fr"] and fr
    finally:
        await local.close()


async def test_two_guides_with_the_same_title_at_other_times_stay_two_rows(
    tmp_path: Path,
) -> None:
    local = await _two_networks(tmp_path / "a")
    try:
        await _publish(local, "# Checklist\n\nOne.", "network:default")
        await _publish(local, "# Checklist\n\nOne.", "network:default", now=NOW + 1)
        await _publish(local, "# Checklist\n\nTwo.", "network")  # other words, same time
        rows = await _rows(local)
        assert len(rows) == 3
        assert {str(r["author"]) for r in rows} == {str(NodeId(local.node_id.raw))}
    finally:
        await local.close()
