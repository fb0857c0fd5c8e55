"""The layout as ARCHITECTURE.md draws it: one-way imports, every module documented,
no module over ~400 lines."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import facequeue

PACKAGE = Path(facequeue.__file__).resolve().parent
REPO = PACKAGE.parent
MAX_LINES = 420  # "about 400"
BEING_SPLIT: set[str] = set()  # modules allowed over MAX_LINES while a split is under way


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that `path` imports anywhere in it (function-level imports included: a
    cycle hidden in a function is still a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            # `from facequeue.stages import download` imports the module download
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {name: imports_of(path, name, known) for name, path in mods.items()}
    # importing a.b.c runs a/__init__ and a/b/__init__: not an edge of ours to judge
    return {n: {t for t in ts if not n.startswith(t + ".")} for n, ts in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_are_one_way():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_store_imports_nothing_of_ours_but_config_and_errors():
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("facequeue.store"):
            outside = {t for t in targets if not t.startswith("facequeue.store")}
            assert outside <= {"facequeue.config", "facequeue.errors"}, (name, outside)


def test_stage_and_vision_modules_know_nothing_of_the_runner_or_the_cli():
    for name, targets in import_graph().items():
        if name.startswith(("facequeue.stages", "facequeue.vision", "facequeue.store")):
            bad = {t for t in targets if t.startswith(("facequeue.runner", "facequeue.cli"))}
            assert not bad, (name, bad)


def test_no_module_over_about_400_lines():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert set(long) <= BEING_SPLIT, long


def documented_paths() -> set[str]:
    """Module paths ARCHITECTURE.md must name: every module, and each package's __init__
    that holds more than its docstring."""
    out = set()
    for path in modules().values():
        body = ast.parse(path.read_text(encoding="utf-8")).body
        docstring_only = all(
            isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body
        )
        if path.name != "__init__.py" or not docstring_only:
            out.add(path.relative_to(REPO).as_posix())
    return out


def test_every_module_is_in_architecture_md_and_every_listed_one_exists():
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"`(facequeue/[\w/]+\.py)`", text))
    assert sorted(documented_paths() - listed) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(p for p in listed if not (REPO / p).is_file()) == [], "listed, not there"
