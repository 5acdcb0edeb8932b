"""Rules of structure that keep the code base one shape (STYLE.md): one exception hierarchy,
every bound named once in protocol/limits.py, one wall clock, and no import circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Module-level numeric constants node/ may keep: none of them bounds a resource or the
# protocol, so none belongs in protocol/limits.py.
NODE_CONSTANTS_ALLOWED = {
    # codes of the opened-record cache format (what a cached value is), not bounds
    ("node/entries.py", "OPENED_VERSION"),
    ("node/entries.py", "UNREADABLE"),
    ("node/entries.py", "MALFORMED"),
    ("node/opened_cache.py", "_CONTACT"),
    ("node/opened_cache.py", "_VOUCH"),
    ("node/guide_entry.py", "_GUIDE"),
    # the byte layout of a stored row: sizes fixed by the format, not chosen bounds
    ("node/at_rest.py", "_ID_BYTES"),
    ("node/at_rest.py", "_MARK_BYTES"),
    ("node/library.py", "_PRINT"),  # a key's print in the guide cache's settings
    # EXIF tag numbers (GPS IFD, orientation): codes of the format metadata is stripped from
    ("node/metadata.py", "_GPS_IFD"),
    ("node/metadata.py", "_ORIENTATION"),
    # how often a progress line is printed without a terminal: presentation only
    ("node/progress.py", "PLAIN_EVERY_S"),
    # `canopy demo` and the simulator: where a demo picks ports, the simulated epoch and day
    ("node/demo.py", "_LISTEN_PORTS_FROM"),
    ("node/sim/world.py", "EPOCH_MS"),
    ("node/sim/pool.py", "DAY_MS"),
}


def _sources(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (ROOT / r).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _error_classes() -> dict[str, str]:
    """Every class (anywhere in protocol/ node/) that derives, directly or not, from
    CanopyError, with the file defining it."""
    bases: dict[str, tuple[str, list[str]]] = {}
    for path in _sources("protocol", "node"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                names = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                bases[node.name] = (_rel(path), [n.rsplit(".", 1)[-1] for n in names])

    def is_error(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name == "CanopyError":
            return True
        if name not in bases or name in seen:
            return False
        return any(is_error(b, seen | {name}) for b in bases[name][1])

    return {name: where for name, (where, _) in bases.items() if is_error(name)}


def test_every_canopy_error_is_defined_in_protocol_errors() -> None:
    errors = _error_classes()
    assert "DecodeError" in errors  # the walk sees the hierarchy at all
    assert {n: w for n, w in errors.items() if w != "protocol/errors.py"} == {}


def _is_numeric(value: ast.expr) -> bool:
    """A number, or arithmetic on numbers and names with at least one number in it."""

    def only_arithmetic(e: ast.expr) -> bool:
        if isinstance(e, ast.Constant):
            return isinstance(e.value, int | float) and not isinstance(e.value, bool)
        if isinstance(e, ast.BinOp):
            return only_arithmetic(e.left) and only_arithmetic(e.right)
        if isinstance(e, ast.UnaryOp):
            return only_arithmetic(e.operand)
        return isinstance(e, ast.Name | ast.Attribute)

    has_number = any(
        isinstance(n, ast.Constant) and isinstance(n.value, int | float) for n in ast.walk(value)
    )
    return only_arithmetic(value) and has_number


def _is_limit_alias(value: ast.expr) -> bool:
    """`X = limits.Y`: a second name for a bound."""
    return (
        isinstance(value, ast.Attribute)
        and isinstance(value.value, ast.Name)
        and value.value.id == "limits"
    )


def test_no_bound_is_named_in_node_outside_protocol_limits() -> None:
    found = set()
    for path in _sources("node"):
        for stmt in _tree(path).body:
            if isinstance(stmt, ast.Assign):
                targets, value = stmt.targets, stmt.value
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                targets, value = [stmt.target], stmt.value
            else:
                continue
            for target in targets:
                if (
                    isinstance(target, ast.Name)
                    and target.id.lstrip("_").isupper()
                    and (_is_numeric(value) or _is_limit_alias(value))
                ):
                    found.add((_rel(path), target.id))
    assert found - NODE_CONSTANTS_ALLOWED == set()
    assert NODE_CONSTANTS_ALLOWED - found == set()  # the allow-list names only what exists


def test_node_has_one_wall_clock() -> None:
    clocks = [
        f"{_rel(path)}:{node.lineno}"
        for path in _sources("node", "bench")
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.lstrip("_") == "now_ms"
    ]
    assert clocks == ["node/clock.py:12"]
    # ... and nothing else turns `time.time()` into milliseconds on its own
    elsewhere = [
        f"{_rel(path)}:{node.lineno}"
        for path in _sources("node", "bench")
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.BinOp)
        and ast.unparse(node.left) == "time.time()"
        and ast.unparse(node.right) == "1000"
    ]
    assert elsewhere == ["node/clock.py:14"]


def _import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (imports under TYPE_CHECKING count: they are
    still a dependency a reader must hold in mind). As /work/shared/hooks/shape.py builds it."""
    files = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in _sources("protocol", "node")
    }
    files["cli"] = ROOT / "cli.py"
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(_tree(path)):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                mods = [base] + [f"{base}.{a.name}" for a in node.names]
            for m in mods:
                while m and m not in files:
                    m = m.rsplit(".", 1)[0] if "." in m else ""
                if m and m != name:
                    deps.add(m)
        graph[name] = deps
    return graph


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(v: str, path: list[str]) -> list[str] | None:
        state[v] = 1
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state and (found := visit(w, [*path, w])):
                return found
        state[v] = 2
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v, [v])):
            return found
    return None


def test_import_graph_is_built() -> None:
    graph = _import_graph()
    assert "protocol.errors" in graph["node.local"]
    assert "protocol.limits" in graph["node.connection"]
    assert _circle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle() -> None:
    assert _circle(_import_graph()) is None


def test_no_module_in_node_is_over_520_lines() -> None:
    """One room, one door (issue 12): a node/ module that grows past ~500 lines is split
    along its seams, as node/store.py and node/runtime.py were."""
    lines = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in _sources("node")}
    assert lines["node/runtime.py"] > 100  # the walk sees the modules at all
    assert {path: n for path, n in lines.items() if n > 520} == {}
