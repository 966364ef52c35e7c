"""The package's shape: no import cycle among rait modules (imports inside functions count too,
so a cycle cannot hide behind a late import), and no reference to a file the repository does
not contain."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import rait

PACKAGE = Path(rait.__file__).parent
REPO = PACKAGE.parent.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The rait modules ``path`` imports, anywhere in the file (``from rait.x import y`` counts
    as ``rait.x.y`` when that is a module, else ``rait.x``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "rait")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "rait":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    found.discard(name)
    return {m for m in found if m in modules}


def import_graph() -> dict[str, set[str]]:
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph.get(child, ()))))
    return None


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_import_graph_sees_late_and_relative_imports(tmp_path, monkeypatch):
    graph = import_graph()
    assert "rait.artifacts" in graph["rait.build"] and "rait.pipeline" in graph["rait.cli"]
    fake = tmp_path / "rait" / "late.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from rait.pipeline import PRESTAGES\n    from . import build\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "rait")
    found = _imports(fake, {"rait.pipeline", "rait.build", "rait.late"})
    assert found == {"rait.pipeline", "rait.build"}


def test_no_import_cycle_among_rait_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def _tracked_text_files() -> list[Path]:
    roots = [REPO / "src", REPO / "docs", REPO / "bench", REPO / "scripts", REPO / "tests"]
    files = [REPO / "README.md"]
    for root in roots:
        files += [p for p in root.rglob("*") if p.suffix in (".py", ".md", ".sh", ".yaml")]
    return [p for p in files if p.is_file() and "egg-info" not in str(p)]


def test_no_reference_to_the_private_specification():
    """The specification is docs/methods.md; a user's clone has no METHODS.md."""
    pattern = re.compile(r"METHODS\.md|METHODS §|\.\./shared")
    offenders = []
    for path in _tracked_text_files():
        if path == Path(__file__):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}")
    assert not offenders, "\n".join(offenders)


def test_docs_links_point_to_files_that_exist():
    link = re.compile(r"\]\(((?!https?://|#|mailto:)[^)#\s]+)(?:#[^)]*)?\)")
    missing = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in link.findall(line):
                if not (path.parent / target).exists():
                    missing.append(f"{path.relative_to(REPO)}:{number}: {target}")
    assert not missing, "\n".join(missing)
