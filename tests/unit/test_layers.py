"""The layering rules of docs/architecture.md, read from the source: no import circle inside engine/, nothing in
engine/ but the CLI imports the facade engine.api, and the dashboard imports engine.api only."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, as absolute dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            stem = ".".join([*base, *([node.module] if node.module else [])])
            found.add(stem)
            found.update(f"{stem}.{a.name}" for a in node.names)  # `from . import api` imports engine.api
    return found


def graph(folder: str) -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / folder).rglob("*.py")}
    return {name: {m for m in imports(path) if m in files and m != name} for name, path in files.items()}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of its modules, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_engine():
    # A package's __init__ re-exporting its own modules is not a circle of the code's layers.
    edges = {m: {n for n in e if not m.startswith(n + ".")} for m, e in graph("engine").items()}
    assert cycle(edges) is None


def test_only_the_cli_imports_the_facade():
    users = {m for m, e in graph("engine").items() if "engine.api" in e}
    assert users == {"engine.__main__"}


@pytest.mark.parametrize("path", sorted((ROOT / "dashboard").rglob("*.py")), ids=lambda p: p.name)
def test_the_dashboard_imports_engine_api_only(path):
    engine = {m for m in imports(path) if m == "engine" or m.startswith("engine.")}
    assert engine <= {"engine", "engine.api"}, f"{path.relative_to(ROOT)} imports {sorted(engine)}"
