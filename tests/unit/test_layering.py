"""Imports point one way: ``scanbridge`` (the CLI) -> ``actors`` -> ``common`` -> ``broker``.

Reads every module of the four packages with ``ast`` (nothing is imported or run), builds
the graph of imports between them, function-local imports included, and fails on an
import against that direction or on any cycle: between modules, between actor packages,
between the four packages.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("broker", "common", "actors", "scanbridge")
# What each package may not import, with the reason the test prints.
FORBIDDEN = {
    "broker": ({"common", "actors", "scanbridge"}, "broker/ is the messaging core"),
    "common": ({"actors", "scanbridge"}, "common/ serves several actors and the CLI"),
    "actors": ({"scanbridge"}, "the CLI reads what actors register in common.commands"),
}

Graph = dict[str, dict[str, str]]  # module -> {imported module: "path:line"}


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package's __init__)."""
    found = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if package else parts)] = (path, package)
    return found


def import_graph() -> Graph:
    known = modules()

    def resolve(name: str) -> str | None:
        """The longest known module ``name`` starts with (an imported name may be a
        function or a class of it); None outside the four packages."""
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: Graph = {}
    for name, (path, package) in known.items():
        found = graph.setdefault(name, {})
        where = path.relative_to(ROOT)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name if package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        here = here.rpartition(".")[0]
                    base = f"{here}.{base}" if base else here
                # ``from pkg import mod`` imports the module pkg.mod; else a name of pkg.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                           for alias in node.names]
            for target in map(resolve, targets):
                if target is not None and target != name:
                    found.setdefault(target, f"{where}:{node.lineno}")
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def grouped(graph: Graph, depth: int) -> dict[str, set[str]]:
    """The graph between packages: names cut to their first ``depth`` parts."""
    cut: dict[str, set[str]] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = (".".join(n.split(".")[:depth]) for n in (source, target))
            if a != b:
                cut.setdefault(a, set()).add(b)
    return cut


def explain(graph: Graph, component: list[str], depth: int) -> list[str]:
    """The imports that close a cycle, as ``path:line: a -> b`` (the first 30)."""
    inside = set(component)
    return [f"{where}: {source} -> {target}"
            for source, targets in sorted(graph.items()) for target, where in targets.items()
            if ".".join(source.split(".")[:depth]) in inside
            and ".".join(target.split(".")[:depth]) in inside
            and ".".join(source.split(".")[:depth]) != ".".join(target.split(".")[:depth])][:30]


def test_every_package_is_read():
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(PACKAGES)
    assert "scanbridge.main" in graph and "common.commands" in graph


def test_imports_point_from_the_cli_to_actors_to_common_to_broker():
    wrong = []
    for source, targets in sorted(import_graph().items()):
        banned, why = FORBIDDEN.get(source.split(".")[0], (set(), ""))
        wrong += [f"{where}: {source} imports {target} ({why})"
                  for target, where in sorted(targets.items())
                  if target.split(".")[0] in banned]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    found = cycles({name: set(targets) for name, targets in graph.items()})
    assert not found, "\n".join(line for component in found
                                for line in [" <-> ".join(component),
                                             *explain(graph, component, 99)])


def test_no_package_imports_itself_through_others():
    graph = import_graph()
    for depth in (1, 2):  # broker, common, actors, scanbridge; then actors.scanner, ...
        found = cycles(grouped(graph, depth))
        assert not found, "\n".join(line for component in found
                                    for line in [" <-> ".join(component),
                                                 *explain(graph, component, depth)])


def test_the_check_finds_a_cycle_and_a_wrong_import():
    # The rules above pass on a clean tree; this shows they would not pass on a bad one.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    bad = grouped({"broker.cli": {"actors.ocr.commands": "x:1"},
                   "actors.ocr.commands": {"broker.cli": "y:2"}}, 1)
    assert cycles(bad) == [["actors", "broker"]]
