"""How far a reader walks to follow the run configuration from the command line to the sender (a measure, not a test).

The walk, defined on the source alone (AST, no import):

- a *carrier* in a function is a name that holds the configuration or a piece of it: a parameter or local named
  ``cfg``, ``config``, ``job`` or ``jobs``, a parameter annotated with ``RunConfig`` / ``ShardJob``, ``self.cfg`` /
  ``self.job(s)``, and every local assigned a carrier, a field of one or ``replace(cfg, ...)`` (to a fixed point;
  what a call computes from the configuration, a path or an endpoint, is not the configuration);
- a *hand-over* is a call inside a function whose arguments mention a carrier (or a call of a method of the same
  class, or of an object, that reads a carrier from ``self``), resolved to a function of loadgen: a name defined in the module or
  imported (imports inside functions too), ``module.name``, ``self.method``, a class (its ``__init__``), a process
  spawned with ``target=f``, and the Ray actor created from ``SenderActor`` (the one call made through Ray);
- the walk is the depth-first reading, in source order, of the hand-overs from ``loadgen.__main__:_run_main``
  until ``loadgen.run.sender:Sender.__init__``, each function read once: in a function on a way to the sender up to
  its last hand-over that leads there, in any other function (a side trip: the plan, the results folder) all of
  its hand-overs: everything the configuration passes through before it reaches the sender. A *stop* is each
  hand-over read (a call site; the same function called from two places is two stops, read once); a
  *place* each module read; a *move* a hand-over into another module; a *climb* a hand-over from a module into a
  module of a higher layer, in the order README's "Layout" lists them (LAYERS below, low to high): a call that goes
  back up the layers the data flows down.

``python benchmarks/config_walk.py`` prints the numbers and the walk itself (``--walk``).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENTRY = "loadgen.__main__:_run_main"
GOAL = "loadgen.run.sender:Sender.__init__"
CARRIER_NAMES = {"cfg", "config", "job", "jobs"}
CARRIER_TYPES = {"RunConfig", "ShardJob"}
# calls made through a library the AST cannot follow: (caller, text in the call) -> callee
INDIRECT = {
    (
        "loadgen.run.fleet.ray_fleet:RayFleet.start",
        "remote_actor",
    ): "loadgen.run.fleet.ray_actor:SenderActor.__init__"
}

# README "Layout", low to high (a module imports from the rows before its own); the longest matching prefix wins
LAYERS = [
    ("loadgen.errors", "loadgen.config", "loadgen.version", "loadgen.options"),
    ("loadgen.workload",),
    ("loadgen.plan.schedule", "loadgen.plan.planner", "loadgen.plan.request_plan", "loadgen.plan.sessions", "loadgen.plan.clock"),
    ("loadgen.records.record", "loadgen.records.files", "loadgen.records.columns"),
    ("loadgen.wire.http11", "loadgen.wire.chunked", "loadgen.wire.kernel_stamps", "loadgen.wire.stream", "loadgen.wire.token_counts",
     "loadgen.wire.client"),
    ("loadgen.analysis.distribution", "loadgen.analysis.metrics", "loadgen.analysis.catalogue", "loadgen.analysis.accuracy", "loadgen.analysis.selfcheck",
     "loadgen.analysis.client_check", "loadgen.analysis.engine_timings", "loadgen.run.fleet.verdict"),
    ("loadgen.scrape",),
    ("loadgen.results.folder", "loadgen.results.summary", "loadgen.results.summary_turns", "loadgen.results.rebuild", "loadgen.results.merge"),
    ("loadgen.report",),
    ("loadgen.run.dispatch", "loadgen.run.conversation", "loadgen.run.sender", "loadgen.run.stopping", "loadgen.run.target",
     "loadgen.run.runner", "loadgen.run.fleet"),
    ("loadgen.commands.compare", "loadgen.commands.sweep", "loadgen.commands.experiment", "loadgen.commands.fit"),
    ("loadgen.__main__",),
]  # fmt: skip


def layer(mod: str) -> int:
    best, rank = -1, 0
    for i, row in enumerate(LAYERS):
        for p in row:
            if (mod == p or mod.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class Module:
    def __init__(self, name: str, tree: ast.Module) -> None:
        self.name, self.tree = name, tree
        self.imports: dict[str, str] = {}  # local name -> "module:qualname" or "module"
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        self.classes: set[str] = set()
        self.protocols: dict[str, set[str]] = {}  # a typing.Protocol -> its methods
        self.attr_types: dict[
            str, str
        ] = {}  # "Class.attr" -> the annotated type's name (``self.fleet: Fleet``)
        package = name if name.endswith("__init__") else name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                if node.level:
                    base = ".".join(package.split(".")[: -node.level] + [node.module])
                for a in node.names:
                    self.imports[a.asname or a.name] = f"{base}:{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    self.imports[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0]
                    )
        self._collect(tree.body, "")

    def _collect(self, body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                self.classes.add(prefix + node.name)
                if any(ast.unparse(b).endswith("Protocol") for b in node.bases):
                    self.protocols[node.name] = {
                        f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                    }
                for n in ast.walk(node):
                    t = n.target if isinstance(n, ast.AnnAssign) else None
                    if (
                        isinstance(t, ast.Attribute)
                        and isinstance(t.value, ast.Name)
                        and t.value.id == "self"
                    ):
                        self.attr_types[f"{prefix}{node.name}.{t.attr}"] = ast.unparse(n.annotation)  # type: ignore[union-attr]
                self._collect(node.body, prefix + node.name + ".")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                q = prefix + node.name
                self.functions[q] = node
                self._collect(node.body, q + ".")


def load() -> dict[str, Module]:
    mods = {}
    for path in sorted((ROOT / "loadgen").rglob("*.py")):
        name = module_name(path)
        mods[name] = Module(name, ast.parse(path.read_text()))
    return mods


def _mentions(node: ast.AST, carriers: set[str]) -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and n.id in carriers:
            return True
        is_self = isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
        if is_self and f"self.{n.attr}" in carriers:  # type: ignore[attr-defined]
            return True
    return False


PASS_THROUGH = {"replace", "zip", "enumerate", "list", "tuple", "sorted", "dict", "iter"}


def _direct(node: ast.AST, carriers: set[str]) -> bool:
    """Whether ``node`` is the configuration or a piece of it, not something computed from it by a call: a carrier,
    an attribute or item of one, a choice between such (``a or b``, ``a if c else b``), or ``replace(cfg, ...)``."""
    if isinstance(node, ast.Await):
        return False
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name) and f.id in PASS_THROUGH:
            return any(_direct(a, carriers) for a in node.args)
        return False
    if isinstance(node, (ast.Attribute, ast.Subscript)):
        return (
            _mentions(node, carriers)
            and _direct(node.value, carriers)
            or _mentions(node, carriers)
            and (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            )
        )
    if isinstance(node, ast.Name):
        return node.id in carriers
    if isinstance(node, (ast.BoolOp, ast.IfExp, ast.Tuple, ast.List)):
        return any(_direct(c, carriers) for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr))
    return False


def carriers_of(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    out = {"self.cfg", "self.job", "self.jobs"}
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    for a in args:
        ann = ast.unparse(a.annotation) if a.annotation is not None else ""
        if a.arg in CARRIER_NAMES or any(t in ann for t in CARRIER_TYPES):
            out.add(a.arg)
    changed = True
    while changed:
        changed = False
        for n in ast.walk(fn):
            targets: list[ast.expr] = []
            value = None
            if isinstance(n, ast.Assign):
                targets, value = n.targets, n.value
            elif isinstance(n, (ast.AnnAssign, ast.AugAssign)) and n.value is not None:
                targets, value = [n.target], n.value
            elif isinstance(n, (ast.For, ast.AsyncFor)):
                targets, value = [n.target], n.iter
            elif isinstance(n, ast.withitem) and n.optional_vars is not None:
                targets, value = [n.optional_vars], n.context_expr
            named = any(isinstance(t, ast.Name) and t.id in CARRIER_NAMES for t in targets)
            if value is None or not (named or _direct(value, out)):
                continue
            for t in targets:
                for m in ast.walk(t):
                    name = None
                    if isinstance(m, ast.Name):
                        name = m.id
                    elif (
                        isinstance(m, ast.Attribute)
                        and isinstance(m.value, ast.Name)
                        and m.value.id == "self"
                    ):
                        name = f"self.{m.attr}"
                    if name and name not in out:
                        out.add(name)
                        changed = True
    return out


def _own_calls(fn: ast.AST) -> list[ast.Call]:
    """The calls in ``fn``'s body, in source order, not those of functions nested in it (read on their own)."""
    out: list[ast.Call] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, ast.Call):
                out.append(child)
            visit(child)

    visit(fn)
    out.sort(key=lambda c: (c.lineno, c.col_offset))
    return out


class Graph:
    def __init__(self, mods: dict[str, Module]) -> None:
        self.mods = mods
        self.edges: dict[str, list[str]] = defaultdict(list)
        for m in mods.values():
            for q, fn in m.functions.items():
                self._edges(m, q, fn)

    def _resolve_ref(self, ref: str) -> str | None:
        if ":" not in ref:
            return None
        mod, name = ref.split(":", 1)
        if mod in self.mods:
            m = self.mods[mod]
            if name in m.classes:
                return f"{mod}:{name}.__init__" if f"{name}.__init__" in m.functions else None
            if name in m.functions:
                return f"{mod}:{name}"
            if name in m.imports:  # re-exported
                return self._resolve_ref(m.imports[name])
        sub = f"{mod}.{name}"
        return sub if sub in self.mods else None

    def _resolve(self, m: Module, q: str, func: ast.expr, types: dict[str, str]) -> str | None:
        cls = q.rsplit(".", 1)[0] if "." in q else None
        if isinstance(func, ast.Name):
            name = func.id
            scope = q
            while True:  # nested functions, then the module
                cand = f"{scope}.{name}" if scope else name
                if cand in m.functions:
                    return f"{m.name}:{cand}"
                if not scope:
                    break
                scope = scope.rsplit(".", 1)[0] if "." in scope else ""
            if name in m.classes:
                return f"{m.name}:{name}.__init__" if f"{name}.__init__" in m.functions else None
            if name in m.imports:
                return self._resolve_ref(m.imports[name])
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute):
            inner = func.value  # self.x.method(), self.x annotated with a class of loadgen
            if isinstance(inner.value, ast.Name) and inner.value.id == "self" and cls is not None:
                ann = m.attr_types.get(f"{cls}.{inner.attr}", "").replace(" | None", "").strip("'\"")
                init = self._resolve(m, q, ast.Name(ann), types) if ann.isidentifier() else None
                if init and init.endswith(".__init__"):
                    mod, klass = init.rsplit(".", 1)[0].split(":")
                    if f"{klass}.{func.attr}" in self.mods[mod].functions:
                        return f"{mod}:{klass}.{func.attr}"
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            base = func.value.id
            if base in types:
                mod, klass = types[base].split(":")
                if f"{klass}.{func.attr}" in self.mods[mod].functions:
                    return f"{mod}:{klass}.{func.attr}"
            if base == "self" and cls is not None:
                owner = cls
                while owner:
                    if f"{owner}.{func.attr}" in m.functions:
                        return f"{m.name}:{owner}.{func.attr}"
                    owner = owner.rsplit(".", 1)[0] if "." in owner else ""
            if base in m.imports:
                target = m.imports[base]
                mod = target.replace(":", ".")
                if mod in self.mods:
                    return self._resolve_ref(f"{mod}:{func.attr}")
                owner, _, klass = target.partition(":")  # Class.method(): a classmethod of an imported class
                if owner in self.mods and f"{klass}.{func.attr}" in self.mods[owner].functions:
                    return f"{owner}:{klass}.{func.attr}"
        return None

    def _types(self, m: Module, q: str, fn: ast.AST) -> dict[str, str]:
        """Locals made by calling a class of loadgen: name -> "module:Class" (to follow ``fleet.start()``)."""
        out = {}
        for n in ast.walk(fn):
            if isinstance(n, (ast.Assign, ast.AnnAssign)) and isinstance(n.value, ast.Call):
                init = self._resolve(m, q, n.value.func, {})
                if init and init.endswith(".__init__"):
                    for t in n.targets if isinstance(n, ast.Assign) else [n.target]:
                        if isinstance(t, ast.Name):
                            out[t.id] = init.rsplit(".", 1)[0]
        return out

    def implementations(self, m: Module, q: str, func: ast.expr) -> list[str]:
        """``self.x.method`` where ``self.x`` is annotated with a Protocol: every class of loadgen that implements
        the protocol (has all its methods), since the reader must look at each."""
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Attribute)):
            return []
        inner = func.value
        if not (isinstance(inner.value, ast.Name) and inner.value.id == "self" and "." in q):
            return []
        cls = q.rsplit(".", 1)[0]
        proto = m.attr_types.get(f"{cls}.{inner.attr}")
        methods = next((p[proto] for mm in self.mods.values() for p in [mm.protocols] if proto in p), None)
        if not methods or func.attr not in methods:
            return []
        out = []
        for mm in self.mods.values():
            for c in sorted(mm.classes):
                if c not in mm.protocols and all(f"{c}.{name}" in mm.functions for name in methods):
                    out.append(f"{mm.name}:{c}.{func.attr}")
        return out

    def _edges(self, m: Module, q: str, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        carriers = carriers_of(fn)
        types = self._types(m, q, fn)
        me = f"{m.name}:{q}"
        for call in _own_calls(fn):
            args = [*call.args, *(k.value for k in call.keywords)]
            receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
            if receiver is not None and _mentions(receiver, carriers):
                args.append(receiver)  # a method of an object that holds the configuration
            callee = None
            target_kw = next((k.value for k in call.keywords if k.arg == "target"), None)
            if target_kw is not None and any(_mentions(a, carriers) for a in args):
                callee = self._resolve(m, q, target_kw, types)
            if callee is None and any(_mentions(a, carriers) for a in args):
                for impl in self.implementations(m, q, call.func):
                    if impl != me and impl not in self.edges[me]:
                        self.edges[me].append(impl)
            if callee is None:
                callee = self._resolve(m, q, call.func, types)
                if callee is None:
                    for (caller, text), to in INDIRECT.items():
                        if (
                            caller == me
                            and text in ast.unparse(call.func)
                            and any(_mentions(a, carriers) for a in args)
                        ):
                            callee = to
                    if callee is None:
                        continue
                elif not any(_mentions(a, carriers) for a in args) and not self._reads_self(callee, m, q):
                    continue
            if callee != me and callee not in self.edges[me]:
                self.edges[me].append(callee)

    def _reads_self(self, callee: str, m: Module, q: str) -> bool:
        """A method of an object that holds the configuration (reads it from ``self``), called from outside it or
        from another of its methods."""
        mod, cq = callee.split(":")
        fn = self.mods[mod].functions.get(cq)
        if fn is None or "." not in cq or cq.endswith(".__init__"):
            return False
        return _mentions(fn, {"self.cfg", "self.job", "self.jobs"})

    def reaching(self, goal: str) -> set[str]:
        rev: dict[str, set[str]] = defaultdict(set)
        for a, bs in self.edges.items():
            for b in bs:
                rev[b].add(a)
        seen, todo = {goal}, [goal]
        while todo:
            for a in rev[todo.pop()]:
                if a not in seen:
                    seen.add(a)
                    todo.append(a)
        return seen


def walk(graph: Graph, entry: str = ENTRY, goal: str = GOAL) -> list[tuple[str, str]]:
    useful = graph.reaching(goal)
    if entry not in useful:
        raise SystemExit(f"{goal} cannot be reached from {entry}")
    steps: list[tuple[str, str]] = []
    seen = {entry}

    def visit(fn: str) -> None:
        calls = graph.edges.get(fn, [])
        if fn in useful:  # read up to the last hand-over that leads on to the sender
            calls = calls[: max(i for i, c in enumerate(calls) if c in useful) + 1]
        for callee in calls:
            steps.append((fn, callee))  # every hand-over is read, a function already read is not read again
            if callee not in seen:
                seen.add(callee)
                if callee != goal:
                    visit(callee)

    visit(entry)
    return steps


def _mod(f: str) -> str:
    return f.split(":")[0]


def climbs_of(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(from, back to): each time the reading, done with a call, goes back to a caller in another module of a
    higher layer to follow its next hand-over."""
    out = []
    at = None
    for a, b in steps:
        if at is not None and at != a and _mod(at) != _mod(a) and layer(_mod(a)) > layer(_mod(at)):
            out.append((at, a))
        at = b
    return out


def measure(steps: list[tuple[str, str]]) -> dict[str, int]:
    places = {_mod(a) for a, _ in steps} | {_mod(b) for _, b in steps}
    moves = [(a, b) for a, b in steps if _mod(a) != _mod(b)]
    up_calls = [(a, b) for a, b in moves if layer(_mod(b)) > layer(_mod(a))]
    return {
        "stops": len(steps),
        "places": len(places),
        "moves": len(moves),
        "climbs": len(climbs_of(steps)),
        "calls_up": len(up_calls),
    }


def main(argv: list[str]) -> int:
    steps = walk(Graph(load()))
    side = ("loadgen.plan.planner", "loadgen.plan.sessions", "loadgen.workload", "loadgen.plan.schedule")
    run_only = [(a, b) for a, b in steps if not _mod(b).startswith(side)]
    print("          whole walk   without the plan's side trip (plan, schedule, workload)")
    whole, short = measure(steps), measure(run_only)
    for k, v in whole.items():
        print(f"{k:9} {v:10}   {short[k]:10}")
    if "--walk" in argv:
        back = dict(climbs_of(steps))
        at = None
        for a, b in steps:
            if at is not None and back.get(at) == a:
                print(f"    (climb back to {a})")
            ma, mb = _mod(a), _mod(b)
            mark = "" if ma == mb else ("  move UP" if layer(mb) > layer(ma) else "  move")
            print(f"  {a} -> {b}{mark}")
            at = b
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
