"""The package's shape: layers as folders, no import cycles (function-level imports included: they
hid two), no module too long to read, and the layers depending downwards only."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "crm360"
# a layer may import its own modules and the layers below it (core is the ground floor); the CLI,
# above all, may import anything; the synthetic generator stands apart: only the CLI imports it
LAYERS = {
    "core": set(),
    "ingest": {"core"},
    "transform": {"core", "ingest"},
    "quality": {"core", "ingest", "transform"},
    "serve": {"core", "ingest", "transform", "quality"},
    "privacy": {"core", "ingest", "transform", "quality", "serve"},
    "pipeline": {"core", "ingest", "quality", "transform", "serve", "privacy"},
    "synthetic": {"core"},
}

# a module a reader can hold in mind: longer ones are split by what they do (issue 19)
MAX_LINES = 500
LENGTH_CHECKED = ("crm360", "plugins", "dags")
# a module allowed past MAX_LINES for a while, with the reason beside it; empty is the goal
EXEMPT: set[str] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts and "versions" in path.parts:
            continue
        rel = path.relative_to(REPO).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        found[name] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The crm360 modules ``name`` imports, anywhere in the file (in functions too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("crm360")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                base = ".".join(parent[:len(parent) - node.level + 1] + ([base] if base else []))
            if not base.startswith("crm360"):
                continue
            for alias in node.names:  # a name that is a module is an import of that module
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in out if m in modules and m != name}


def _runtime_nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:`` (imports for annotations only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                todo.extend(child.orelse)
                continue
            todo.append(child)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_depend_downwards_only():
    wrong = []
    for module, imported in _graph().items():
        parts = module.split(".")
        if len(parts) < 2 or parts[1] not in LAYERS:
            continue
        layer = parts[1]
        for other in imported:
            other_layer = other.split(".")[1] if other.count(".") else None
            if other_layer in LAYERS and other_layer != layer and other_layer not in LAYERS[layer]:
                wrong.append(f"{module} ({layer}) imports {other} ({other_layer})")
    assert wrong == []


def test_the_product_does_not_import_the_synthetic_generator():
    users = {m for m, imported in _graph().items() if any(i.startswith("crm360.synthetic") for i in imported)}
    assert {u for u in users if not u.startswith("crm360.synthetic")} <= {"crm360.cli"}


def _too_long(root: Path, folders: tuple[str, ...], limit: int) -> dict[str, int]:
    """{path relative to root: lines} for every .py file under ``folders`` with more than ``limit`` lines."""
    out = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > limit:
                out[path.relative_to(root).as_posix()] = lines
    return out


def test_no_module_is_longer_than_max_lines():
    long = _too_long(REPO, LENGTH_CHECKED, MAX_LINES)
    assert {path: lines for path, lines in long.items() if path not in EXEMPT} == {}, (
        f"split these modules (at most {MAX_LINES} lines each)")
    shortened = sorted(EXEMPT - long.keys())
    assert shortened == [], f"now at most {MAX_LINES} lines: remove {shortened} from EXEMPT"


def test_the_length_check_counts_lines(tmp_path):
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "short.py").write_text("x = 1\n" * 3)
    (tmp_path / "pkg" / "sub" / "long.py").write_text("x = 1\n" * 4)
    (tmp_path / "pkg" / "notes.txt").write_text("x\n" * 9)
    assert _too_long(tmp_path, ("pkg",), 3) == {"pkg/sub/long.py": 4}
