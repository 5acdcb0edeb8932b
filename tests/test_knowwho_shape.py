"""The shape of the know-who side (issue 12): one decoder of the record layout, in
protocol/; no know-who module reaches back into the running node; every one stays small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KNOW_WHO = [
    "node/entries.py",
    "node/contact_index.py",
    "node/ranking.py",
    "node/opened_cache.py",
    "node/contact_rows.py",
    "node/directory.py",
    "node/introductions.py",
    "node/query_network.py",
    "node/peer_traffic.py",
    "node/queries.py",
]
# The opened-record caches are the node's own format (what an index made of a record), not
# record bytes: the modules of node/ that pack and unpack msgpack themselves (contacts and
# vouches; guides).
MSGPACK_ALLOWED = {"node/opened_cache.py", "node/guide_entry.py"}


def _tree(rel: str) -> ast.Module:
    return ast.parse((ROOT / rel).read_text(encoding="utf-8"))


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def _node_files() -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "node").rglob("*.py"))


def test_node_decodes_no_record_layout_itself() -> None:
    """Record bytes are decoded by protocol/record.py and protocol/envelope.py only: no
    msgpack on them in node/, and no writing into a frozen record from outside."""
    for rel in _node_files():
        tree = _tree(rel)
        if rel not in MSGPACK_ALLOWED:
            assert not {m for m in _imports(tree) if m.split(".")[0] == "msgpack"}, rel
        setattrs = [
            n.lineno
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and n.attr == "__setattr__"
            and isinstance(n.value, ast.Name)
            and n.value.id == "object"
        ]
        assert setattrs == [], f"{rel}: object.__setattr__ at {setattrs}"


def test_know_who_never_imports_the_running_node() -> None:
    for rel in KNOW_WHO:
        assert not {m for m in _imports(_tree(rel)) if m.startswith("node.runtime")}, rel


def test_know_who_modules_are_small() -> None:
    sizes = {rel: len((ROOT / rel).read_text(encoding="utf-8").splitlines()) for rel in KNOW_WHO}
    assert {rel: n for rel, n in sizes.items() if n > 500} == {}
