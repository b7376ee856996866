"""Imports run one way: no cycle between modules or between folders, no private name imported across modules.

Every import of ``loadgen/`` and ``server_launchers/`` counts, read from the source (AST): at the top, inside
functions (a lazy import closes a cycle as surely at run time) and under ``if TYPE_CHECKING`` (a cycle in the
types is one in the design). Folders are checked among the subpackages (``loadgen.report``, ``loadgen.fleet``,
...): the modules still flat in ``loadgen/`` are one folder with everything, until they are grouped by stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("loadgen", "server_launchers")


def _module(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_pkg else parts), is_pkg


def scan() -> tuple[dict[str, set[str]], list[str]]:
    """module -> the modules of these packages it imports; and every private name imported across modules."""
    found: dict[str, set[str]] = {}
    private: list[str] = []
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            mod, is_pkg = _module(path)
            names: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                        pkg = pkg[: len(pkg) - (node.level - 1)]
                        base = ".".join([*pkg, base] if base else pkg)
                    names.add(base)
                    for a in node.names:
                        names.add(f"{base}.{a.name}")
                        private_name = a.name.startswith("_") and not a.name.startswith("__")
                        if private_name and base.split(".")[0] in PACKAGES and base != mod:
                            private.append(f"{mod}:{node.lineno} imports {a.name} from {base}")
                elif isinstance(node, ast.Import):
                    names.update(a.name for a in node.names)
            found[mod] = names
    graph = {}
    for mod, names in found.items():
        deps = {n if n in found else n.rsplit(".", 1)[0] for n in names}
        graph[mod] = {d for d in deps if d in found and d != mod}
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def folder_of(mod: str, graph: dict[str, set[str]]) -> str | None:
    """A module's folder (its package); None for a module flat in a top package (``loadgen.run``)."""
    is_pkg = any(m.startswith(mod + ".") for m in graph)
    folder = mod if is_pkg else mod.rsplit(".", 1)[0]
    return None if folder in PACKAGES else folder


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        f = folder_of(mod, graph)
        if f is None:
            continue
        out.setdefault(f, set())
        for d in deps:
            g = folder_of(d, graph)
            if g is not None and g != f and not g.startswith(f + ".") and not f.startswith(g + "."):
                out[f].add(g)
    return out


# the stage folder each module of loadgen/ will live in once the flat modules are grouped (tools/regroup_plan.md),
# in the order data flows: imports must already run one way between them, so that the move is mechanical
STAGES = {
    "plan": ("loadgen.schedule", "loadgen.plan", "loadgen.plan_sessions", "loadgen.clock"),
    "records": ("loadgen.records", "loadgen.result_files", "loadgen.columns"),
    "wire": ("loadgen.chunked", "loadgen.kernel_stamps", "loadgen.http11", "loadgen.stream", "loadgen.token_counts",
             "loadgen.client"),
    "analysis": ("loadgen.distribution", "loadgen.metrics", "loadgen.catalogue", "loadgen.accuracy",
                 "loadgen.engine_timings", "loadgen.selfcheck", "loadgen.client_check"),
    "results": ("loadgen.results_dir", "loadgen.summary", "loadgen.summary_turns", "loadgen.rebuild",
                "loadgen.fleet.merge"),
    "run": ("loadgen.dispatch", "loadgen.conversation", "loadgen.sender", "loadgen.stopping", "loadgen.target", "loadgen.run",
            "loadgen.fleet"),
    "commands": ("loadgen.compare", "loadgen.sweep", "loadgen.experiment", "loadgen.experiment_plan", "loadgen.fit"),
}  # fmt: skip


def planned_folder(mod: str, graph: dict[str, set[str]]) -> str | None:
    """Where ``mod`` goes (the longest matching prefix of STAGES), else its folder today."""
    best, where = "", None
    for stage, prefixes in STAGES.items():
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and len(p) > len(best):
                best, where = p, f"loadgen.{stage}"
    return where or folder_of(mod, graph)


def test_no_import_cycle_between_modules():
    graph, _ = scan()
    assert len(graph) > 100 and "loadgen.run" in graph and "server_launchers.lifecycle" in graph
    assert cycles(graph) == []


def test_no_import_cycle_between_folders():
    graph, _ = scan()
    folders = folder_graph(graph)
    assert {"loadgen.report", "loadgen.fleet", "loadgen.scrape"} <= set(folders)
    assert cycles(folders) == []


def test_planned_stages_flow_one_way():
    graph, _ = scan()
    planned: dict[str, set[str]] = {}
    for mod, deps in graph.items():
        f = planned_folder(mod, graph)
        if f is None:
            continue
        planned.setdefault(f, set())
        planned[f] |= {g for d in deps if (g := planned_folder(d, graph)) is not None and g != f}
    assert {"loadgen.wire", "loadgen.run", "loadgen.results", "loadgen.report"} <= set(planned)
    assert cycles(planned) == []


def test_no_private_name_is_imported_across_modules():
    _, private = scan()
    assert private == []


def test_the_checks_see_a_cycle():
    graph, _ = scan()
    graph["loadgen.metrics"] = {*graph["loadgen.metrics"], "loadgen.summary"}  # summary imports metrics
    assert any({"loadgen.metrics", "loadgen.summary"} <= set(c) for c in cycles(graph))
    graph, _ = scan()
    graph["loadgen.scrape.poller"] = {*graph["loadgen.scrape.poller"], "loadgen.report.console"}
    graph["loadgen.report.console"] = {*graph["loadgen.report.console"], "loadgen.scrape.summary"}
    assert ["loadgen.report", "loadgen.scrape"] in cycles(folder_graph(graph))
