"""The package's structure: no import cycle among its modules, and no import running back up from the engine and
the traces to the modules built on them. Read from the source with `ast` (module-level imports only: an import
inside a function, or under `if TYPE_CHECKING:`, runs later or never, and cannot make a cycle at import time)."""
from __future__ import annotations

import ast
from pathlib import Path

import fiitedsim

ROOT = Path(fiitedsim.__file__).parent


def _module(path: Path) -> str:
    parts = ["fiitedsim", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            yield from (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        elif isinstance(node, ast.Try):
            yield from (n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))


def import_graph() -> dict[str, set[str]]:
    """fiitedsim module -> the fiitedsim modules it imports at import time (a package's `__init__` counts as the
    package: importing `a.b` imports `a` first)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in _top_level_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("fiitedsim") and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def test_no_import_cycle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


#: What the lower layers may not import: the engine and the traces know nothing of the policies, the runs, the
#: reports, the sweeps, the trainer or the command line built on them.
ABOVE = ("fiitedsim.policies", "fiitedsim.replay", "fiitedsim.plan", "fiitedsim.checks", "fiitedsim.compare",
         "fiitedsim.report", "fiitedsim.sweep", "fiitedsim.train", "fiitedsim.cli", "fiitedsim.options")


def test_engine_and_traces_import_nothing_above_them():
    graph = import_graph()
    bad = [(name, target) for name, targets in graph.items()
           if name.startswith(("fiitedsim.engine", "fiitedsim.traces"))
           for target in targets if target.startswith(ABOVE)]
    assert not bad, bad
    assert not [(name, t) for name, targets in graph.items() if name.startswith("fiitedsim.engine")
                for t in targets if t.startswith("fiitedsim.traces")], "the engine reads no trace"


def test_the_graph_sees_imports():
    """The graph is not empty by mistake: known edges are in it."""
    graph = import_graph()
    assert "fiitedsim.engine.hashmap" in graph["fiitedsim.engine.store"]
    assert "fiitedsim.engine.loop" in graph["fiitedsim.policies.fiited"]
    assert "fiitedsim.config" in graph["fiitedsim.plan"]
