"""Data flows one way: workload -> plan -> run (dispatch, sender) -> wire -> records -> analysis -> results ->
report, with run.runner / run.fleet / commands composing them and __main__ on top. A module never imports
one that composes it: these rules are checked on the source (every import, lazy ones included)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# a module of the left-hand group never imports one of the right-hand group
RULES = {
    "the records, the analysis and the results never import what sends, reports or composes": (
        ("loadgen.records", "loadgen.analysis", "loadgen.results"),
        ("loadgen.wire", "loadgen.run", "loadgen.report", "loadgen.commands"),
    ),
    "what sends never imports the analysis, the results or the report": (
        ("loadgen.plan", "loadgen.wire", "loadgen.run.dispatch", "loadgen.run.conversation", "loadgen.run.sender"),
        ("loadgen.analysis.metrics", "loadgen.results", "loadgen.report", "loadgen.run.runner", "loadgen.run.fleet",
         "loadgen.commands"),
    ),
    "the senders of a fleet never import the run path": (("loadgen.run.fleet",), ("loadgen.run.runner",)),
    "the report never imports what runs": (
        ("loadgen.report",),
        ("loadgen.run", "loadgen.wire", "loadgen.commands"),
    ),
    "no library module imports the command line": (("loadgen",), ("loadgen.__main__",)),
}  # fmt: skip

# run in a process of its own: CPython 3.11's ast.parse keeps its recursion count in state shared by threads
_SCAN = """
import ast, json, pathlib, sys
root = pathlib.Path(sys.argv[1])
out = {}
for path in sorted((root / "loadgen").rglob("*.py")):
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    mod = ".".join(parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    out[mod] = sorted(m for m in found if m.split(".")[0] == "loadgen")
print(json.dumps(out))
"""


def _imports() -> dict[str, list[str]]:
    r = subprocess.run([sys.executable, "-c", _SCAN, str(ROOT)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def _in(mod: str, group: tuple[str, ...]) -> bool:
    return any(mod == g or mod.startswith(g + ".") for g in group)


def _violations(imports: dict[str, list[str]]) -> list[str]:
    bad = []
    for rule, (left, right) in RULES.items():
        for mod, deps in imports.items():
            if not _in(mod, left) or mod == "loadgen.__main__":
                continue
            bad += [f"{rule}: {mod} imports {d}" for d in deps if _in(d, right) and not _in(mod, right)]
    return bad


def test_data_flows_one_way():
    imports = _imports()
    assert len(imports) > 60 and "loadgen.analysis.metrics" in imports
    assert _violations(imports) == []


def test_the_check_sees_a_wrong_way_import():
    imports = _imports()
    imports["loadgen.analysis.metrics"] = [*imports["loadgen.analysis.metrics"], "loadgen.report.html"]
    imports["loadgen.run.fleet.local"] = [*imports["loadgen.run.fleet.local"], "loadgen.run.runner"]
    bad = _violations(imports)
    assert any("loadgen.analysis.metrics imports loadgen.report.html" in b for b in bad)
    assert any("loadgen.run.fleet.local imports loadgen.run.runner" in b for b in bad)
