"""Regroup loadgen/'s flat modules into stage folders that read in the order data flows (issue 19, item 6).

Run from the repository root on a clean tree: ``python tools/regroup.py``. It

1. checks the tree against :data:`MOVES` (one table, old path -> new path) and fails, listing them, on a flat module
   of ``loadgen/`` the table does not place, a folder of ``loadgen/`` it does not know, or an entry whose file is gone;
2. ``git mv``s every file, and writes each new folder's ``__init__.py`` (a docstring; re-exports only for the old
   public paths ``loadgen.records`` and ``loadgen.run``);
3. rewrites every reference to a moved module: absolute and relative imports (``from loadgen import x`` too, lazy
   ones inside functions as well), dotted names in strings and prose (monkeypatch targets, ``-m loadgen.x``,
   docstrings) and file paths (``loadgen/records.py``), in loadgen/, server_launchers/, tests/, benchmarks/,
   docker/, workloads/, .ci/, pyproject.toml and every Markdown file;
4. writes the stage tables of tests/unit/test_imports.py and tests/unit/test_layering.py as folder names, and
   README's "Layout" as the folders in order, one line each;
5. runs ``ruff check --fix --select I`` and ``ruff format`` on the Python files it changed, and stages everything.

A second run finds every module already in place and does nothing. Nothing is committed: read ``git diff --staged``.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

# old path -> new path, in the order the stages read (the order data flows; each folder imports only from the ones
# above it). A folder moves whole; ``loadgen/fleet/merge.py`` leaves its folder before the folder moves.
MOVES: tuple[tuple[str, str], ...] = (
    # plan/: what is sent and when, decided before the run
    ("loadgen/schedule.py", "loadgen/plan/schedule.py"),
    ("loadgen/request_plan.py", "loadgen/plan/request_plan.py"),
    ("loadgen/plan.py", "loadgen/plan/planner.py"),
    ("loadgen/plan_sessions.py", "loadgen/plan/sessions.py"),
    ("loadgen/clock.py", "loadgen/plan/clock.py"),
    # records/: one request's record, the results folder's file names, the one reader of requests.jsonl
    ("loadgen/records.py", "loadgen/records/record.py"),
    ("loadgen/result_files.py", "loadgen/records/files.py"),
    ("loadgen/columns", "loadgen/records/columns"),
    # wire/: one streamed request on a socket
    ("loadgen/chunked.py", "loadgen/wire/chunked.py"),
    ("loadgen/kernel_stamps.py", "loadgen/wire/kernel_stamps.py"),
    ("loadgen/http11.py", "loadgen/wire/http11.py"),
    ("loadgen/stream.py", "loadgen/wire/stream.py"),
    ("loadgen/token_counts.py", "loadgen/wire/token_counts.py"),
    ("loadgen/client.py", "loadgen/wire/client.py"),
    # analysis/: numbers from records
    ("loadgen/distribution.py", "loadgen/analysis/distribution.py"),
    ("loadgen/metrics.py", "loadgen/analysis/metrics.py"),
    ("loadgen/catalogue.py", "loadgen/analysis/catalogue.py"),
    ("loadgen/accuracy.py", "loadgen/analysis/accuracy.py"),
    ("loadgen/engine_timings.py", "loadgen/analysis/engine_timings.py"),
    ("loadgen/selfcheck.py", "loadgen/analysis/selfcheck.py"),
    ("loadgen/client_check.py", "loadgen/analysis/client_check.py"),
    # results/: the results folder, summary.json, the senders' files merged
    ("loadgen/results_dir.py", "loadgen/results/folder.py"),
    ("loadgen/summary.py", "loadgen/results/summary.py"),
    ("loadgen/summary_turns.py", "loadgen/results/summary_turns.py"),
    ("loadgen/rebuild.py", "loadgen/results/rebuild.py"),
    ("loadgen/fleet/merge.py", "loadgen/results/merge.py"),
    # run/: pacing, senders, the fleet, and the one run path that composes a run
    ("loadgen/dispatch.py", "loadgen/run/dispatch.py"),
    ("loadgen/conversation.py", "loadgen/run/conversation.py"),
    ("loadgen/sender.py", "loadgen/run/sender.py"),
    ("loadgen/stopping.py", "loadgen/run/stopping.py"),
    ("loadgen/target.py", "loadgen/run/target.py"),
    ("loadgen/fleet", "loadgen/run/fleet"),
    ("loadgen/run.py", "loadgen/run/runner.py"),
    # commands/: what composes runs (python -m loadgen compare | sweep | experiment | fit)
    ("loadgen/compare.py", "loadgen/commands/compare.py"),
    ("loadgen/sweep.py", "loadgen/commands/sweep.py"),
    ("loadgen/experiment.py", "loadgen/commands/experiment.py"),
    ("loadgen/experiment_plan.py", "loadgen/commands/experiment_plan.py"),
    ("loadgen/fit.py", "loadgen/commands/fit.py"),
)

# what stays flat in loadgen/ (the foundation every stage imports, and the command line on top)
STAY = ("__init__.py", "__main__.py", "errors.py", "config.py", "version.py")
# folders that keep their place (besides the new ones)
KEEP = ("options", "workload", "scrape", "report", "sim")

# the stage folders in the order data flows: a folder imports only from folders above it (and the root's STAY)
STAGES: tuple[tuple[str, str], ...] = (
    ("workload", "RequestSpec; synthetic lengths, prompts files, datasets, traces, conversations, mooncake"),
    ("plan", "arrival offsets (schedule), RequestPlan (request_plan), planner, sessions, one t0 (clock)"),
    ("records", "RequestRecord, writer thread, secret scrubbing (record); file names (files); columns/"),
    ("options", "flags + environment + --config -> RunConfig (one flag table; secrets masked)"),
    ("wire", "the streamed POST: http11 pool, chunked, kernel_stamps, stream parse, token_counts, client"),
    (
        "analysis",
        "distribution, metrics (INTERVALS, summarize), catalogue, accuracy, engine_timings, selfcheck",
    ),
    ("scrape", "/metrics dialects, the poller process, series, GPU readings (NVML)"),
    (
        "results",
        "the results folder + run.json, summary.json built once (turns too), rebuild, merge by index",
    ),
    ("report", "console, live view, HTML pages and figures, the Prometheus exporter (its own process)"),
    ("run", "dispatch (pacing), conversation, sender, stopping, target, fleet/, runner (THE run path)"),
    ("commands", "compare, sweep, experiment (+ experiment_plan), fit: what composes runs"),
)

PACKAGE_DOCS = {
    "plan": "What a run sends and when, decided before it starts: arrival offsets (``schedule``), the plan as a "
    "value (``request_plan``), made from the configuration (``planner``; conversations: ``sessions``), and the "
    "run's one t0 (``clock``).",
    "records": "One request's record and where records go: ``record`` (RequestRecord, the writer thread, secret "
    "scrubbing), ``files`` (the results folder's file names, the one reader of summary.json) and ``columns`` "
    "(the one reader of requests.jsonl).",
    "wire": "One streamed request on a socket: the HTTP/1.1 pool (``http11``), chunked de-framing (``chunked``), "
    "kernel receive stamps (``kernel_stamps``), reads -> token events (``stream``), token counts "
    "(``token_counts``) and the request itself (``client``).",
    "analysis": "Numbers from records: distributions, every latency defined once (``metrics.INTERVALS``), the "
    "catalogue of run-level metrics and labels, accuracy, llama.cpp's engine timings, the client's self-check and "
    "its verdict.",
    "results": "The results folder: its directory and run.json (``folder``), summary.json built once "
    "(``summary``, ``summary_turns``), a killed run's summary rebuilt (``rebuild``), the senders' files merged by "
    "index (``merge``).",
    "run": "A run: absolute-deadline pacing (``dispatch``), the conversation driver, one sender, stopping, the "
    "target, a fleet of senders (``fleet/``) and the one run path that composes them (``runner``).",
    "commands": "What composes runs: ``compare``, ``sweep``, ``experiment`` (with ``experiment_plan``) and ``fit``; "
    "``python -m loadgen SUBCOMMAND`` runs them.",
}

# the old public paths users import: the package re-exports them (loadgen.run lazily: a sender's process imports
# loadgen.run.fleet.* and must not pay for the run path, the report and the scraper)
REEXPORT = {
    "records": (
        "from loadgen.records.record import {names}\n\n__all__ = [{quoted}]\n",
        "loadgen.records.record",
    ),
    "run": (
        "from typing import TYPE_CHECKING, Any\n\n"
        "if TYPE_CHECKING:\n    from loadgen.run.runner import {names}\n\n"
        "__all__ = [{quoted}]\n\n\n"
        "def __getattr__(name: str) -> Any:\n"
        '    """``from loadgen.run import run_async`` still works, without importing the run path with every '
        'sender."""\n'
        "    if name in __all__:\n"
        "        from loadgen.run import runner\n\n"
        "        return getattr(runner, name)\n"
        '    raise AttributeError(f"module {{__name__!r}} has no attribute {{name!r}}")\n',
        "loadgen.run.runner",
    ),
}

# where references are rewritten: these folders (text files by suffix) and files, plus every tracked *.md
ROOTS = ("loadgen", "server_launchers", "tests", "benchmarks", "docker", "workloads", ".ci")
FILES = ("pyproject.toml",)
SUFFIXES = {".py", ".md", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".txt", ".env", ".conf", ".json"}
SKIP_UNDER = ("benchmarks/results/", "tests/data/")
SELF = "tools/regroup.py"
RETIRED = ("tools/regroup_plan.md",)  # the plan this script carries out: MOVES above is its table now

LAYOUT = """\
## Layout

Each folder of `loadgen/` is one stage, and a module imports only from the folders above its own (and from the
root's `errors`, `config`, `version`), lazy imports and type hints included. The folders read in the order a
request's data flows, each after what it needs: `options/` after `records/` (it masks secrets with its `Scrubber`),
`run/` and `commands/`, which compose the rest, at the end.
`tests/unit/test_imports.py` fails on an import cycle between modules or folders, on a stage importing one below
it, and on a private name imported across modules; `tests/unit/test_layering.py` checks the main rules.

```
loadgen/
  errors, config, version   the error tree (ErrorKind: each kind's label); frozen RunConfig; the version
{stages}
  __main__                  argv -> options -> RunConfig -> run (nothing imports it)
  sim/                      the simulated OpenAI-compatible server (its own process)
server_launchers/           launch specs rendered for vLLM / SGLang / TGI / llama.cpp (flags/: each engine's flag
                            table); local_engines.py: the real engines by name, handed to lifecycle.py (cache, build
                            locks, start, health, cache reset, stop); python -m server_launchers, launch.sh ENGINE
workloads/  docker/         presets and experiments; Dockerfiles (any base), compose files with Prometheus/Grafana,
                            KubeRay; local_base.sh, full_run.sh
benchmarks/                 client ceiling, event cost, timing accuracy, schedule fidelity, simulator capacity,
                            scale-out, flat memory, bounded summary, report and compare times, the configuration's
                            walk from argv to the sender (numbers, not pass/fail; see benchmarks/README.md)
tests/                      unit, integration (real sockets on loopback), browser (headless Chromium), e2e (real CPU
                            engines; marker e2e), compose (docker/full_run.sh for real; marker compose)
```

The regrouping into these folders is `tools/regroup.py` (its `MOVES` table maps each old module to its folder).
"""

# test_imports.py: the stages as folders, in order, and a check of that order
IMPORTS_STAGES = '''\
# the stage folders of loadgen/, in the order data flows (README's "Layout"): a folder imports only from folders
# above it and from the root's foundation (errors, config, version); sim/ stands beside the flow
STAGES = ({stages})


def planned_folder(mod: str, graph: dict[str, set[str]]) -> str | None:
    """The stage folder ``mod`` lives in, else its folder."""
    for stage in STAGES:
        if mod == f"loadgen.{{stage}}" or mod.startswith(f"loadgen.{{stage}}."):
            return f"loadgen.{{stage}}"
    return folder_of(mod, graph)


def test_every_module_is_in_a_stage_folder():
    graph, _ = scan()
    flat = sorted(m for m in graph if m.startswith("loadgen.") and folder_of(m, graph) is None)
    assert flat == ["loadgen.__main__", "loadgen.config", "loadgen.errors", "loadgen.version"]
    loose = sorted({{f for m in graph if (f := planned_folder(m, graph)) and f.startswith("loadgen.") and f.count(".") == 1}} - {{
        f"loadgen.{{s}}" for s in STAGES}})
    assert loose in ([], ["loadgen.sim"])


def test_stages_import_only_from_the_stages_above():
    graph, _ = scan()
    rank = {{f"loadgen.{{s}}": i for i, s in enumerate(STAGES)}}
    wrong = []
    for mod, deps in graph.items():
        f = planned_folder(mod, graph)
        if f not in rank:
            continue
        for d in deps:
            g = planned_folder(d, graph)
            if g in rank and rank[g] > rank[f]:
                wrong.append(f"{{mod}} imports {{d}}")
    assert wrong == []
'''

LAYERING_RULES = """\
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
"""

# exact text replaced before the general rewrite (file, old, new): sentences the move makes untrue
EDITS: tuple[tuple[str, str, str], ...] = (
    (
        "tests/unit/test_imports.py",
        "None for a module flat in a top package (``loadgen.run``)",
        "None for a module flat in a top package (``loadgen.config``)",
    ),
    (
        "tests/unit/test_imports.py",
        'assert {"loadgen.wire", "loadgen.run", "loadgen.results", "loadgen.report"} <= set(planned)',
        'assert {f"loadgen.{s}" for s in STAGES} <= set(planned)',
    ),
    (
        "tests/unit/test_imports.py",
        'assert ["loadgen.report", "loadgen.scrape"] in cycles(folder_graph(graph))',
        'assert any({"loadgen.report", "loadgen.scrape"} <= set(c) for c in cycles(folder_graph(graph)))',
    ),
    (
        "tests/unit/test_layering.py",
        '"""Data flows one way: workload -> plan/schedule -> sender (dispatch, client) -> records -> columns -> '
        "metrics ->\nsummary -> report, with run / fleet / sweep / experiment composing them and __main__ on top.",
        '"""Data flows one way: workload -> plan -> run (dispatch, sender) -> wire -> records -> analysis -> '
        "results ->\nreport, with run.runner / run.fleet / commands composing them and __main__ on top.",
    ),
)


# exact text replaced after the general rewrite (file, old, new): where a name was a string prefix, not a module
# (config_walk's "loadgen.plan" also matched loadgen.plan_sessions: the same modules, so the same numbers)
POST_EDITS: tuple[tuple[str, str, str], ...] = (
    (
        "tests/unit/test_imports.py",
        "Folders are checked among the subpackages (``loadgen.report``, ``loadgen.run.fleet``,\n...): the modules still "
        "flat in ``loadgen/`` are one folder with everything, until they are grouped by stage.",
        "Folders are checked among the subpackages (``loadgen.report``, ``loadgen.run.fleet``,\n...), and the stage "
        'folders against their order (README\'s "Layout").',
    ),
    (
        "benchmarks/config_walk.py",
        'side = ("loadgen.plan.planner", "loadgen.workload", "loadgen.plan.schedule")',
        'side = ("loadgen.plan.planner", "loadgen.plan.sessions", "loadgen.workload", "loadgen.plan.schedule")',
    ),
)


def die(msg: str, items: list[str] | None = None) -> None:
    print(f"regroup: {msg}", file=sys.stderr)
    for item in items or []:
        print(f"  {item}", file=sys.stderr)
    sys.exit(1)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def state() -> str:
    """'todo' (every old path there, no new one), 'done' (the reverse); anything else fails, saying why."""
    old_there = [o for o, _ in MOVES if Path(o).exists()]
    new_there = [n for _, n in MOVES if Path(n).exists()]
    if not old_there and len(new_there) == len(MOVES):
        return "done"
    problems = []
    flat = sorted(p.name for p in Path("loadgen").glob("*.py"))
    known = {Path(o).name for o, _ in MOVES if o.count("/") == 1} | set(STAY)
    problems += [f"loadgen/{f}: a flat module MOVES does not place" for f in flat if f not in known]
    dirs = sorted(p.name for p in Path("loadgen").iterdir() if p.is_dir() and (p / "__init__.py").exists())
    known_dirs = {Path(o).name for o, _ in MOVES if o.count("/") == 1 and not o.endswith(".py")} | set(KEEP)
    problems += [f"loadgen/{d}/: a folder MOVES does not know" for d in dirs if d not in known_dirs]
    problems += [f"{o}: in MOVES but not in the tree" for o, _ in MOVES if not Path(o).exists()]
    problems += [f"{n}: the destination already exists" for _, n in MOVES if Path(n).exists()]
    new_pkgs = {Path(n).parts[1] for _, n in MOVES}
    problems += [
        f"loadgen/{p}/: a new folder already exists" for p in sorted(new_pkgs) if Path("loadgen", p).is_dir()
    ]
    if problems:
        die("the tree does not match the table (tools/regroup.py MOVES):", problems)
    return "todo"


def renames() -> dict[str, str]:
    """old dotted name -> new dotted name (a folder's submodules follow their folder)."""
    return {dotted(o): dotted(n) for o, n in MOVES}


def dotted_pattern(names: dict[str, str]) -> re.Pattern[str]:
    alts = "|".join(re.escape(k) for k in sorted(names, key=len, reverse=True))
    # not inside a longer dotted name; not followed by a word character; ``loadgen.run(`` is the function
    return re.compile(rf"(?<![\w.])({alts})(?![\w(])")


def path_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    table = {}
    for o, n in MOVES:
        table[o] = n
        if not o.endswith(".py"):
            table[o + "/"] = n + "/"
    alts = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
    return re.compile(rf"(?<![\w/.])({alts})(?![\w])"), table


def resolve_relative(path: str, text: str, names: dict[str, str]) -> str:
    """``from .x import y`` / ``from . import x`` -> absolute, where they name a module that moves."""
    parts = Path(path).with_suffix("").parts
    pkg = list(parts[:-1])

    def absolute(m: re.Match[str]) -> str:
        dots, base, what = m.group(2), m.group(3), m.group(4)
        up = pkg[: len(pkg) - (len(dots) - 1)]
        full = ".".join([*up, base] if base else up)
        targets = [full] + [
            f"{full}.{w.split(' as ')[0].strip()}" for w in what.strip("()").split(",") if w.strip()
        ]
        if any(t == k or t.startswith(k + ".") for t in targets for k in names):
            return f"{m.group(1)}from {full} import {what}"
        return m.group(0)

    return re.sub(r"(?m)^(\s*)from (\.+)([\w.]*) import (\([^)]*\)|[^\n]+)", absolute, text)


def split_package_imports(text: str, names: dict[str, str], own: set[str]) -> str:
    """``from loadgen import dispatch`` -> ``from loadgen.run import dispatch`` (names loadgen itself defines stay)."""

    def split(m: re.Match[str]) -> str:
        indent, body = m.group(1), m.group(2)
        items = [i.strip() for i in body.strip("()").replace("\n", " ").split(",") if i.strip()]
        keep, lines = [], []
        for item in items:
            name, _, alias = item.partition(" as ")
            old = f"loadgen.{name.strip()}"
            if name.strip() in own or old not in names:
                keep.append(item)
                continue
            pkg, _, leaf = names[old].rpartition(".")
            bound = alias.strip() or name.strip()
            lines.append(f"{indent}from {pkg} import {leaf}" + (f" as {bound}" if bound != leaf else ""))
        if not lines:
            return m.group(0)
        if keep:
            lines.insert(0, f"{indent}from loadgen import {', '.join(keep)}")
        return "\n".join(lines)

    return re.sub(r"(?m)^([ \t]*)from loadgen import (\([^)]*\)|[^\n(]+?)[ \t]*$", split, text)


def own_names() -> set[str]:
    """What loadgen/__init__.py itself defines or imports: ``from loadgen import run`` is its function."""
    tree = ast.parse(Path("loadgen/__init__.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.ImportFrom):
            out.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Assign):
            out.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return out


def files_to_rewrite() -> list[str]:
    out = []
    for f in git("ls-files").splitlines():
        p = Path(f)
        if f == SELF or f in RETIRED or f.startswith(SKIP_UNDER) or not p.is_file():
            continue
        in_root = f.split("/")[0] in ROOTS and (p.suffix in SUFFIXES or p.name.startswith("Dockerfile"))
        if in_root or f in FILES or p.suffix == ".md":
            out.append(f)
    return out


def move() -> None:
    for _, n in MOVES:
        Path(n).parent.mkdir(parents=True, exist_ok=True)
    for o, n in MOVES:
        git("mv", o, n)


def write_inits() -> list[str]:
    written = []
    for pkg, doc in PACKAGE_DOCS.items():
        path = Path("loadgen", pkg, "__init__.py")
        body = '"""' + textwrap.fill(doc, 116) + '"""\n'
        if pkg in REEXPORT:
            template, module = REEXPORT[pkg]
            names = reexported(module)
            quoted = ", ".join(f'"{n}"' for n in names)
            body += "\n" + template.format(names=", ".join(names), quoted=quoted)
        path.write_text(body)
        written.append(str(path))
    return written


def reexported(module: str) -> list[str]:
    """The module's ``__all__`` (the names it says it exports), else its public names."""
    tree = ast.parse(Path(module.replace(".", "/") + ".py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]  # type: ignore[attr-defined]
    out = []  # no __all__: its public classes, functions and constants
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.append(node.name)
        elif isinstance(node, ast.Assign):
            out += [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
    return sorted(n for n in out if not n.startswith("_"))


def rewrite(files: list[str], old_of: dict[str, str]) -> list[str]:
    """Every reference to a moved module, in every file; returns the files changed."""
    names = renames()
    own = own_names()
    dotted_re = dotted_pattern(names)
    path_re, path_table = path_pattern()
    changed = []
    for f in files:
        text = Path(f).read_text()
        new = text
        for where, old, repl in EDITS:
            if where == f:
                if old not in new:
                    print(f"regroup: warning: {f}: an expected sentence is gone; not edited: {old[:60]!r}")
                new = new.replace(old, repl)
        if f.endswith(".py"):
            new = resolve_relative(old_of.get(f, f), new, names)
        new = dotted_re.sub(lambda m: names[m.group(1)], new)
        if f.endswith(".py"):  # after the dotted names: its output already names the new modules
            new = split_package_imports(new, names, own)
        new = path_re.sub(lambda m: path_table[m.group(1)], new)
        for where, old, repl in POST_EDITS:
            if where == f:
                if old not in new:
                    print(f"regroup: warning: {f}: an expected line is gone; not edited: {old[:60]!r}")
                new = new.replace(old, repl)
        if new != text:
            Path(f).write_text(new)
            changed.append(f)
    return changed


def old_paths() -> dict[str, str]:
    """new file path -> its old path (files inside a moved folder included), for resolving relative imports."""
    out = {}
    for o, n in MOVES:
        if o.endswith(".py"):
            out[n] = o
        else:
            for p in Path(n).rglob("*.py"):
                out[str(p)] = o + str(p)[len(n) :]
    return out


def write_tests() -> None:
    path = Path("tests/unit/test_imports.py")
    text = path.read_text()
    stages = ", ".join(f'"{s}"' for s, _ in STAGES)
    block = IMPORTS_STAGES.format(stages=stages)
    pattern = re.compile(
        r"# the stage folder each module of loadgen/ will live in.*?\n\n\ndef planned_folder.*?return where or "
        r"folder_of\(mod, graph\)\n",
        re.S,
    )
    text, n = pattern.subn(lambda _: block, text)
    if n != 1:
        die(f"{path}: STAGES and planned_folder not found where expected; update the script's pattern")
    path.write_text(text)
    path = Path("tests/unit/test_layering.py")
    text, n = re.subn(
        r"RULES = \{.*?\}  # fmt: skip\n", lambda _: LAYERING_RULES, path.read_text(), flags=re.S
    )
    if n != 1:
        die(f"{path}: RULES not found where expected; update the script's pattern")
    path.write_text(text)


def write_layout() -> None:
    path = Path("README.md")
    text = path.read_text()
    width = 24
    lines = [f"  {s + '/':<{width}}  {line}" for s, line in STAGES]
    layout = LAYOUT.replace("{stages}", "\n".join(lines))
    text, n = re.subn(
        r"(?ms)^## Layout\n.*?(?=^## |\Z)", lambda m: layout + ("\n" if m.end() < len(text) else ""), text
    )
    if n != 1:
        die("README.md: no '## Layout' section")
    path.write_text(text)


def leftovers() -> list[str]:
    """References the rewrite could not see: dotted names built at run time (``"loadgen." + name``)."""
    out = []
    for f in files_to_rewrite():
        if f == "tests/unit/test_imports.py":  # its stage tables are written anew
            continue
        for i, line in enumerate(Path(f).read_text().splitlines(), 1):
            if re.search(r"""["']loadgen\.["']\s*\+|f["']loadgen\.\{""", line):
                out.append(f"{f}:{i}: {line.strip()}")
    return out


def top_names(path: Path) -> set[str]:
    """What a module defines at its top (or under ``if``/``try``), and what its ``__getattr__`` serves (``__all__``)."""
    out: set[str] = set()
    nodes = list(ast.parse(path.read_text()).body)
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.If, ast.Try)):
            nodes += [
                *node.body,
                *node.orelse,
                *getattr(node, "finalbody", []),
                *getattr(node, "handlers", []),
            ]
        elif isinstance(node, ast.ExceptHandler):
            nodes += node.body
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                out.update(
                    e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name)
                )
            if any(getattr(t, "id", "") == "__all__" for t in targets) and isinstance(node.value, ast.List):
                out.update(ast.literal_eval(e) for e in node.value.elts)
    return out


def unresolved(files: list[str]) -> list[str]:
    """Every ``from loadgen... import name`` / ``import loadgen...`` in these files that names nothing in the tree."""

    def module_file(mod: str) -> Path | None:
        base = Path(*mod.split("."))
        for p in (base.with_suffix(".py"), base / "__init__.py"):
            if p.is_file():
                return p
        return None

    bad = []
    for f in files:
        for node in ast.walk(ast.parse(Path(f).read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and not node.level
                and (node.module or "").split(".")[0] == "loadgen"
            ):
                where = module_file(node.module)
                if where is None:
                    bad.append(f"{f}:{node.lineno}: no module {node.module}")
                    continue
                known = top_names(where)
                for a in node.names:
                    if a.name not in known and module_file(f"{node.module}.{a.name}") is None:
                        bad.append(f"{f}:{node.lineno}: {node.module} has no {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "loadgen" and module_file(a.name) is None:
                        bad.append(f"{f}:{node.lineno}: no module {a.name}")
    return bad


def main() -> None:
    if not Path("loadgen/__init__.py").is_file() or not Path(".git").exists():
        die("run me from the repository root")
    if state() == "done":
        print("regroup: every module is already in its stage folder; nothing to do")
        return
    if git("status", "--porcelain", "--untracked-files=no").strip():
        die("the tree has uncommitted changes; commit or stash them first")
    for f in RETIRED:
        if Path(f).exists():
            git("rm", "-q", f)
    by_hand = leftovers()
    move()
    old_of = old_paths()
    changed = rewrite(files_to_rewrite(), old_of)
    write_tests()
    write_layout()
    inits = write_inits()
    py = sorted({*(f for f in changed if f.endswith(".py")), *inits, "tests/unit/test_imports.py",
                 "tests/unit/test_layering.py"})  # fmt: skip
    subprocess.run(["ruff", "check", "--fix", "--select", "I", "--quiet", *py], check=False)
    subprocess.run(["ruff", "format", "--quiet", *py], check=True)
    broken = unresolved([f for f in files_to_rewrite() if f.endswith(".py")])
    if broken:
        die(
            "imports that name nothing after the move (fix the script's rewrite, then re-run on a clean tree):",
            broken,
        )
    git("add", "-u")
    git("add", *inits)
    print(f"regroup: moved {len(MOVES)} paths, rewrote {len(changed)} files; review with git diff --staged")
    for line in by_hand:
        print(f"regroup: check by hand (built at run time): {line}")


if __name__ == "__main__":
    main()
