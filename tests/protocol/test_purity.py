"""protocol/ is sans-IO: no asyncio, sockets, SQLite, clock or OS randomness inside it."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {
    "asyncio",
    "aiohttp",
    "aiosqlite",
    "sqlite3",
    "socket",
    "time",
    "random",
    "secrets",
    "os",
}
ROOT = Path(__file__).resolve().parents[2] / "protocol"


def test_protocol_imports_no_io() -> None:
    offenders = []
    for path in sorted(ROOT.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in FORBIDDEN or name in ("nacl.utils",):
                    offenders.append(f"{path.name}: {name}")
    assert offenders == []


def test_protocol_is_not_empty() -> None:
    assert len(list(ROOT.glob("*.py"))) >= 10
