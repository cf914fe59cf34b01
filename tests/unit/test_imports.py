"""No import cycles among the product's packages and the stand-in's: every `import` in a module,
at its top or inside a function, read with `ast` from the source (nothing is imported)."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runkeys", "handler", "action_src", "runkeys_sandbox")
Graph = dict[str, set[str]]


def modules(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Module name → source file, for every module of `packages` under `root` (not the copies
    a build leaves in build/ or *.egg-info)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if any(p == "build" or p.endswith(".egg-info") for p in parts):
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, in functions and under `if TYPE_CHECKING:` too: a type that
    names a module is a dependency on it as much as a call is."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def graph(found: dict[str, Path]) -> Graph:
    """Module → the modules of `found` it imports. `from a import b` is an edge to `a.b` when
    that is a module, else to `a`; relative imports are resolved against the module's package."""
    edges: Graph = {name: set() for name in found}
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in found else base
                    for alias in node.names
                ]
            edges[name].update(t for t in targets if t in found and t != name)
    # Importing `a.b.c` runs `a/__init__` and `a/b/__init__` first: an edge to each package
    # above the target, except the importer's own (they are already being imported).
    for name in edges:
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        for target in list(edges[name]):
            parts = target.split(".")
            parents = {".".join(parts[:i]) for i in range(1, len(parts))}
            edges[name].update(p for p in parents - own if p in found)
    return edges


def cycles(edges: Graph) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan's algorithm), each as
    the modules in import order, the first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: set[str] = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_cycle_in(component, edges) for component in components]


def _cycle_in(component: set[str], edges: Graph) -> list[str]:
    """A path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    todo = [start]
    while todo:
        here = todo.pop(0)
        for target in sorted(edges[here] & component):
            if target == start:
                return [*paths[here], start]
            if target not in paths:
                paths[target] = [*paths[here], target]
                todo.append(target)
    raise AssertionError(f"no cycle through {start}")  # a component of 2+ always has one


def test_no_import_cycles() -> None:
    found = modules(ROOT, PACKAGES)
    assert {"runkeys.issuance", "handler.app", "action_src.main", "runkeys_sandbox.cli"} <= set(
        found
    )
    assert [" → ".join(cycle) for cycle in cycles(graph(found))] == []


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (  # the cycle the action had: main → mint at call time, mint → main at import time
            {
                "p/__init__.py": "",
                "p/main.py": "def run():\n    from p.mint import mint\n",
                "p/mint.py": "from p.main import APP_FIX\n",
            },
            [["p.main", "p.mint", "p.main"]],
        ),
        (  # three long, through a relative import and `from package import module`
            {
                "p/__init__.py": "",
                "p/a.py": "from . import b\n",
                "p/b.py": "import p.c\n",
                "p/c.py": "from .a import x\n",
            },
            [["p.a", "p.b", "p.c", "p.a"]],
        ),
        (  # inside a method of a class, and a relative import two levels up
            {
                "p/__init__.py": "",
                "p/q/__init__.py": "",
                "p/q/a.py": "class A:\n    def f(self):\n        from ..b import y\n",
                "p/b.py": "from p.q import a\n",
            },
            [["p.b", "p.q.a", "p.b"]],
        ),
        (  # a type-only import is a dependency too: a cycle
            {
                "p/__init__.py": "",
                "p/a.py": "import typing\nif typing.TYPE_CHECKING:\n    from p.b import B\n",
                "p/b.py": "from p.a import A\n",
            },
            [["p.a", "p.b", "p.a"]],
        ),
        (  # and so is the else of such an `if`
            {
                "p/__init__.py": "",
                "p/a.py": "if TYPE_CHECKING:\n    pass\nelse:\n    import p.b\n",
                "p/b.py": "from p.a import A\n",
            },
            [["p.a", "p.b", "p.a"]],
        ),
        (  # a name from a package's __init__ is an edge to the package, not to a module
            {
                "p/__init__.py": "X = 1\n",
                "p/a.py": "from p import X\n",
                "p/b.py": "from p import a\n",
            },
            [],
        ),
        (  # importing a submodule runs its package's __init__, here importing back lazily
            {
                "p/__init__.py": "",
                "p/q/__init__.py": "def __getattr__(name):\n    from p.q.s import S\n",
                "p/q/b.py": "",
                "p/q/s.py": "import p.r\n",
                "p/r.py": "from p.q import b\n",
            },
            [["p.q", "p.q.s", "p.r", "p.q"]],
        ),
    ],
)
def test_the_cycle_finder(tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
    write(tmp_path, files)
    assert cycles(graph(modules(tmp_path, ["p"]))) == expected
