"""Smoke test of the benchmark harness: every benchmark at its smallest size, real nodes.

Checks that the harness runs end to end and reports well-formed figures, not how fast
Canopy is (that is `make bench`). The gossipsub side runs too when py-libp2p is installed;
without it the benchmark must say why instead of giving a number.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench.benchmarks import BENCHMARKS, QUICK

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


def _check(result: dict[str, object], name: str) -> dict[str, dict[str, object]]:
    assert result["benchmark"] == name
    figures = {str(f["key"]): f for f in result["figures"]}  # type: ignore[attr-defined]
    assert figures
    for figure in figures.values():
        value = figure["value"]
        if value is not None:
            assert isinstance(value, int | float) and math.isfinite(value), figure
        if figure["target"] is not None and value is not None:
            assert isinstance(figure["pass"], bool)
    # Every benchmark sets its figure against a ceiling or a peer measured in the same run.
    assert any(key.startswith("ratio") for key in figures), sorted(figures)
    # Record benchmarks: the raw ingest ceiling (circle-join sets its read time against the
    # libraries' time for the same records; checkins measures CPU and lateness, not records).
    no_ingest = (
        "guides",
        "ui",
        "circle-join",
        "circle-join-library",
        "networks",
        "attach",
        "checkins",
        "help",
        "library",
    )
    if not name.startswith("query-") and name not in no_ingest:
        assert figures["ceiling_records_per_s"]["value"] > 0  # type: ignore[operator]
    return figures


@pytest.mark.parametrize("name", [n for n in BENCHMARKS if n not in ("versus-gossipsub", "ui")])
async def test_benchmark_smallest(name: str) -> None:
    func, _ = BENCHMARKS[name]
    result = (await func(**QUICK[name])).to_json()
    figures = _check(result, name)
    if name == "sync":
        assert figures["records"]["value"] == QUICK["sync"]["records"]
        assert figures["seconds"]["value"] > 0  # type: ignore[operator]
    if name == "catch-up":
        assert figures["records"]["value"] == QUICK["catch-up"]["records"]
    if name == "networks":  # the smoke run is too short to hold the target; a figure it is
        assert figures["ratio_networks"]["value"] > 0.5  # type: ignore[operator]
    if name == "attach":  # the transfer against the box-stream + SecretBox ceiling, and RSS
        assert figures["megabytes"]["value"] == QUICK["attach"]["megabytes"]
        assert figures["ceiling_mb_per_s"]["value"] > 0  # type: ignore[operator]
        assert figures["node_mb_per_s"]["value"] > 0  # type: ignore[operator]
        assert figures["peak_rss_a_mb"]["value"] > 0  # type: ignore[operator]


def test_library_bench_publishes_a_tiny_library_and_prints_its_import_report() -> None:
    """`python -m bench library --lessons 14`: a library in 7 languages with malformed files
    mixed in, published on A and held by B, its import report in the output."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "library", "--lessons", "14", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    figures = _check(result, "library")
    assert figures["lessons"]["value"] == 14
    assert figures["publish_s"]["target"] == 60.0 and figures["peer_s"]["target"] == 30.0
    assert figures["ceiling_publish_s"]["value"] > 0  # type: ignore[operator]
    report = result["details"]["report"]
    assert report["lessons"] == {lang: 2 for lang in ("ar", "en", "es", "fa", "fr", "ru", "zh")}
    assert report["translations"] == 12 + 6 * 24  # lessons and checklists not in English
    reasons = {m["path"].rsplit("/", 1)[-1]: m["reason"] for m in report["malformed"]}
    assert set(reasons) == {"s_badyaml.md", "s_notitle.md", "s_latin1.md", "s_nofront.md",
                            "c_empty.yml"}  # fmt: skip
    assert figures["guides_published"]["value"] == 14
    assert any(note.startswith("import report: lessons by language ar 2") for note in
               result["notes"])  # fmt: skip


async def test_ui_benchmark_times_every_page_and_the_dashboard_against_its_ceilings() -> None:
    from tests.web.conftest import chromium

    chromium()  # a missing browser fails with one line, as the browser tests do
    func, _ = BENCHMARKS["ui"]
    result = (await func(**QUICK["ui"])).to_json()
    figures = _check(result, "ui")
    for page in ("home", "guide_list", "guide_search", "directory_search"):
        assert figures[f"{page}_p95_ms"]["target"] == 50.0
        assert 0 < figures[f"{page}_p50_ms"]["value"] <= figures[f"{page}_p95_ms"]["value"]  # type: ignore[operator]
        assert figures[f"{page}_ceiling_ms"]["value"] > 0  # type: ignore[operator]
    assert figures["dashboard_load_ms"]["target"] == 300.0
    assert figures["dashboard_load_ms"]["value"] > 0  # type: ignore[operator]
    assert figures["render_ceiling_ms"]["value"] > 0  # type: ignore[operator]
    # A page's first view (none kept made yet) is timed apart from the repeated views.
    first = (figures[f"guide_list_first_view_{q}_ms"]["value"] for q in ("p50", "p95"))
    assert 0 < next(first) <= next(first)  # type: ignore[operator]
    # Each page right after a change (a guide, contact or alert stored through the app).
    for page, what in (("guide_list", "guide"), ("home", "contact"),
                       ("directory_search", "contact"), ("home", "alert")):  # fmt: skip
        p50, p95 = (figures[f"{page}_after_{what}_{q}_ms"] for q in ("p50", "p95"))
        assert p95["target"] == 50.0
        assert 0 < p50["value"] <= p95["value"]  # type: ignore[operator]
    assert figures["dashboard_fcp_ms"]["value"] > 0  # type: ignore[operator]


async def test_versus_gossipsub_reports_a_figure_or_why_not() -> None:
    func, _ = BENCHMARKS["versus-gossipsub"]
    result = (await func(**QUICK["versus-gossipsub"])).to_json()
    figures = _check(result, "versus-gossipsub")
    gossipsub = figures["gossipsub_seconds"]
    if gossipsub["value"] is None:
        assert "n/a (" in str(gossipsub["missing"])  # says exactly why
    else:
        assert gossipsub["value"] > 0  # type: ignore[operator]


def test_cli_lists_and_prints_one_json_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.split()[0] for line in out.splitlines()] == list(BENCHMARKS)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "catch-up", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    document = json.loads(done.stdout)  # exactly one JSON document, progress on stderr
    assert document["benchmark"] == "catch-up"
