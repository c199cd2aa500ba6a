"""The package's import graph: cycles between modules and what the front ends import from the library.

    python scripts/import_graph.py            # a summary; exit code 1 when a rule is broken
    python scripts/import_graph.py --edges    # every edge, lazy ones marked

Every `import` counts, those inside functions (lazy) included; imports under `if TYPE_CHECKING:` do not.
`from pkg import name` is an edge to `pkg.name` when that is a module, else to `pkg`. A cycle is a strongly
connected group of two or more modules. The front ends (`embedsae.cli`, `embedsae.app`) may import
`embedsae.project` (the door and its records), the modules named in FRONT_END_ALLOWED (errors, progress, layout,
settings, stage settings, registries, the version) and Settings classes (subclasses of `embedsae.settings.Settings`,
wherever they live) freely; every other library name they import is listed, and at most FRONT_END_BUDGET are
allowed.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "embedsae"
FRONT_ENDS = ("embedsae.cli", "embedsae.app")
# What a front end may import from freely: the door, errors, progress, layout, settings and registries.
FRONT_END_ALLOWED = (
    "embedsae", "embedsae.project", "embedsae.errors", "embedsae.progress", "embedsae.layout", "embedsae.settings",
    "embedsae.stages", "embedsae.registry", "embedsae._version",
)
FRONT_END_BUDGET = 3


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _walk(tree: ast.AST, lazy: bool = False):
    """(node, lazy) for every import statement, skipping `if TYPE_CHECKING:` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from ((n, lazy) for n in ())
            for child in node.orelse:
                yield from _walk(child, lazy)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(node, inner)


def collect(root: Path = ROOT) -> tuple[dict[str, list[tuple[str, str | None, bool]]], set[str]]:
    """Module -> [(target module, imported name or None, lazy)] for imports of the package itself."""
    files = {module_name(p): p for p in root.rglob("*.py")}
    modules = set(files)
    edges: dict[str, list[tuple[str, str | None, bool]]] = defaultdict(list)
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node, lazy in _walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        edges[mod].append((alias.name, None, lazy))
                continue
            if node.level:
                base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    edges[mod].append((sub, None, lazy))
                else:
                    edges[mod].append((target, alias.name, lazy))
    return edges, modules


def cycles(edges: dict[str, list[tuple[str, str | None, bool]]], modules: set[str]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    graph = {m: sorted({t for t, _, _ in edges.get(m, ()) if t in modules and t != m}) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for m in sorted(modules):
        if m not in index:
            visit(m)
    return sorted(out, key=len, reverse=True)


def is_settings_class(module: str, name: str | None) -> bool:
    """Whether `module.name` is a Settings dataclass (imported to find out)."""
    if name is None:
        return False
    import importlib

    sys.path.insert(0, str(ROOT))
    try:
        from embedsae.settings import Settings

        obj = getattr(importlib.import_module(module), name, None)
    finally:
        sys.path.pop(0)
    return isinstance(obj, type) and issubclass(obj, Settings)


def front_end_names(edges: dict[str, list[tuple[str, str | None, bool]]]) -> dict[str, set[str]]:
    """Library names the front ends import beyond the door: 'module.name' -> importing modules."""
    out: dict[str, set[str]] = defaultdict(set)
    for mod, targets in edges.items():
        if not mod.startswith(FRONT_ENDS):
            continue
        for target, name, _ in targets:
            if target.startswith(FRONT_ENDS) or target in FRONT_END_ALLOWED or is_settings_class(target, name):
                continue
            out[f"{target}.{name}" if name else target].add(mod)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edges", action="store_true", help="print every edge (lazy ones marked)")
    args = parser.parse_args()
    edges, modules = collect()
    if args.edges:
        for mod in sorted(edges):
            for target, name, lazy in edges[mod]:
                print(f"{mod} -> {target}{'.' + name if name else ''}{'  (lazy)' if lazy else ''}")
    groups = cycles(edges, modules)
    names = front_end_names(edges)
    print(f"{len(modules)} modules, {sum(len(v) for v in edges.values())} imports of the package itself")
    print(f"import cycles: {len(groups)}")
    for g in groups:
        print(f"  {len(g)} modules: {', '.join(g)}")
    print(f"library names the front ends import beyond the door: {len(names)} (at most {FRONT_END_BUDGET})")
    for name in sorted(names):
        print(f"  {name}  <- {', '.join(sorted(names[name]))}")
    return 0 if not groups and len(names) <= FRONT_END_BUDGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
