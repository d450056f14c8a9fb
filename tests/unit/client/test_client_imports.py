"""The client's imports point one way: no cycle among its modules (imports made only for type
checking count too), nothing from the layers above it, and nothing of Accord's below
`accord.errors` and `accord.clock`."""

from __future__ import annotations

import ast
from pathlib import Path

import accord

SRC = Path(accord.__file__).resolve().parent
ABOVE_THE_CLIENT = ("accord.server", "accord.cli", "accord.console")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, wherever the import stands (functions, TYPE_CHECKING)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from accord.client import store` imports the module accord.client.store.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _client_graph() -> dict[str, set[str]]:
    files = sorted((SRC / "client").glob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): (_imports(f) & modules) - {_module_name(f)} for f in files}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_client_modules_import_each_other_without_a_cycle() -> None:
    graph = _client_graph()
    assert "accord.client.client" in graph and len(graph) > 10
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_client_imports_nothing_from_the_layers_above_it() -> None:
    for path in sorted((SRC / "client").glob("*.py")):
        above = sorted(m for m in _imports(path) if _within(m, ABOVE_THE_CLIENT))
        assert above == [], f"{path.name} imports {above}"


def test_errors_and_clock_stand_below_everything() -> None:
    for name in ("errors.py", "clock.py"):
        ours = sorted(m for m in _imports(SRC / name) if _within(m, ("accord",)))
        assert ours == [], f"{name} imports {ours}"
