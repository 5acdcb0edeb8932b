"""The documentation cannot silently drift from its parts or from the code it describes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from protocol import labels, limits
from protocol.messages import Hello, SyncDone, encode_message

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "SPEC.md"


def _build_spec_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_spec", ROOT / "docs" / "build_spec.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _constants(module: object, types: tuple[type, ...]) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, types)
    ]


def test_spec_is_the_concatenation_of_its_parts() -> None:
    parts = sorted((ROOT / "docs" / "spec").glob("*.md"))
    assert parts, "docs/spec/ has no parts"
    expected = b"".join(p.read_bytes() for p in parts)
    assert SPEC.read_bytes() == expected, "docs/SPEC.md is stale: run python docs/build_spec.py"
    assert _build_spec_module().spec_text() == expected


@pytest.mark.parametrize("name", _constants(labels, (bytes, str)))
def test_every_label_is_in_the_spec(name: str) -> None:
    assert f"`{name}`" in SPEC.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", _constants(limits, (int,)))
def test_every_limit_is_in_the_spec(name: str) -> None:
    assert f"`{name}`" in SPEC.read_text(encoding="utf-8")


def test_worked_examples_match_the_code() -> None:
    text = SPEC.read_text(encoding="utf-8")
    assert encode_message(Hello(1, "A", ())).hex() in text
    assert encode_message(SyncDone()).hex() in text


def test_readme_starts_with_the_two_commands() -> None:
    head = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:15])
    assert "make demo" in head
    assert "make test" in head
