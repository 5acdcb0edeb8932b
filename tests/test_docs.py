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


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_architecture_table_names_every_module() -> None:
    """A module added without its row in docs/ARCHITECTURE.md is a reader's blind spot."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = [
        f"{path.parent.name}/{path.name}"
        for package in ("protocol", "node")
        for path in sorted((ROOT / package).glob("*.py"))
        if path.name != "__init__.py"
    ]
    missing = [m for m in modules if f"| `{m}` |" not in text]
    assert not missing, f"docs/ARCHITECTURE.md has no row for {missing}"


def test_spec_preface_names_every_part() -> None:
    preface = (ROOT / "docs" / "spec" / "00-conventions.md").read_text(encoding="utf-8")
    parts = [p.name for p in sorted((ROOT / "docs" / "spec").glob("*.md"))[1:]]
    missing = [name for name in parts if f"`{name}`" not in preface]
    assert not missing, f"the SPEC's list of parts does not name {missing}"


def _commands() -> list[str]:
    import argparse

    import cli

    parser = cli.build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert actions, "the canopy parser has no commands"
    return sorted(actions[0].choices)


def test_readme_commands_table_lists_every_command() -> None:
    readme = _readme()
    table = readme[readme.index("## Commands") :]
    missing = [c for c in _commands() if f"| `canopy {c}" not in table]
    assert not missing, f"README's command table lacks {missing}"


def test_readme_calls_nothing_that_exists_planned() -> None:
    """A README that says "planned" or "not yet" about a command that exists is a bug."""
    for line in _readme().splitlines():
        lowered = line.lower()
        if "planned" in lowered or "not yet available" in lowered or "yet;" in lowered:
            named = [c for c in _commands() if f"`{c}`" in line or f"`canopy {c}" in line]
            assert not named, f"README calls existing commands {named} planned: {line!r}"
    readme = _readme().lower()
    assert "no key revocation" not in readme
    assert "no wiping yet" not in readme
    assert "and, later, know-who" not in readme
