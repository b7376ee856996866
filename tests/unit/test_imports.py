"""Imports run one way: no cycle between modules or between folders, no private name imported across modules.

Every import of ``loadgen/`` and ``server_launchers/`` counts, read from the source (AST): at the top, inside
functions (a lazy import closes a cycle as surely at run time) and under ``if TYPE_CHECKING`` (a cycle in the
types is one in the design). Folders are checked among the subpackages (``loadgen.report``, ``loadgen.run.fleet``,
...), and the stage folders against their order (README's "Layout").
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
    """A module's folder (its package); None for a module flat in a top package (``loadgen.config``)."""
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


# the stage folders of loadgen/, in the order data flows (README's "Layout"): a folder imports only from folders
# above it and from the root's foundation (errors, config, version); sim/ stands beside the flow
STAGES = (
    "workload",
    "plan",
    "records",
    "options",
    "wire",
    "analysis",
    "scrape",
    "results",
    "report",
    "run",
    "commands",
)


def planned_folder(mod: str, graph: dict[str, set[str]]) -> str | None:
    """The stage folder ``mod`` lives in, else its folder."""
    for stage in STAGES:
        if mod == f"loadgen.{stage}" or mod.startswith(f"loadgen.{stage}."):
            return f"loadgen.{stage}"
    return folder_of(mod, graph)


def test_every_module_is_in_a_stage_folder():
    graph, _ = scan()
    flat = sorted(m for m in graph if m.startswith("loadgen.") and folder_of(m, graph) is None)
    assert flat == ["loadgen.__main__", "loadgen.config", "loadgen.errors", "loadgen.version"]
    loose = sorted(
        {
            f
            for m in graph
            if (f := planned_folder(m, graph)) and f.startswith("loadgen.") and f.count(".") == 1
        }
        - {f"loadgen.{s}" for s in STAGES}
    )
    assert loose in ([], ["loadgen.sim"])


def test_stages_import_only_from_the_stages_above():
    graph, _ = scan()
    rank = {f"loadgen.{s}": i for i, s in enumerate(STAGES)}
    wrong = []
    for mod, deps in graph.items():
        f = planned_folder(mod, graph)
        if f not in rank:
            continue
        for d in deps:
            g = planned_folder(d, graph)
            if g in rank and rank[g] > rank[f]:
                wrong.append(f"{mod} imports {d}")
    assert wrong == []


def test_no_import_cycle_between_modules():
    graph, _ = scan()
    assert len(graph) > 100 and "loadgen.run.runner" in graph and "server_launchers.lifecycle" in graph
    assert cycles(graph) == []


def test_no_import_cycle_between_folders():
    graph, _ = scan()
    folders = folder_graph(graph)
    assert {"loadgen.report", "loadgen.run.fleet", "loadgen.scrape"} <= set(folders)
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
    assert {f"loadgen.{s}" for s in STAGES} <= set(planned)
    assert cycles(planned) == []


def test_no_private_name_is_imported_across_modules():
    _, private = scan()
    assert private == []


def test_the_checks_see_a_cycle():
    graph, _ = scan()
    graph["loadgen.analysis.metrics"] = {
        *graph["loadgen.analysis.metrics"],
        "loadgen.results.summary",
    }  # summary imports metrics
    assert any({"loadgen.analysis.metrics", "loadgen.results.summary"} <= set(c) for c in cycles(graph))
    graph, _ = scan()
    graph["loadgen.scrape.poller"] = {*graph["loadgen.scrape.poller"], "loadgen.report.console"}
    graph["loadgen.report.console"] = {*graph["loadgen.report.console"], "loadgen.scrape.summary"}
    assert any({"loadgen.report", "loadgen.scrape"} <= set(c) for c in cycles(folder_graph(graph)))
