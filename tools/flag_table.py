"""One-off: rewrite loadgen/options/flags.py's build_parser (its add_argument calls) and FIELD_OF into one FLAGS
table, from which the parser and FIELD_OF are built (issue 19, item 4). Mechanical, so it can be run again on a
flags.py that other branches changed: ``python tools/flag_table.py loadgen/options/flags.py && ruff check --fix
loadgen/options/flags.py && ruff format loadgen/options/flags.py``; ``python -m loadgen --help`` is the same before
and after."""

import ast
import re
import sys
from pathlib import Path

path = Path(sys.argv[1])
src = path.read_text()
tree = ast.parse(src)
fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "build_parser")
field_of_node = next(
    n
    for n in tree.body
    if isinstance(n, (ast.Assign, ast.AnnAssign))
    and getattr(n, "target", None) is not None
    and getattr(n.target, "id", "") == "FIELD_OF"
    or (isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "FIELD_OF" for t in n.targets))
)
field_of = ast.literal_eval(field_of_node.value)
rows = []
group = None
parser_setup = []
for st in fn.body:
    if (
        isinstance(st, ast.Assign)
        and isinstance(st.value, ast.Call)
        and ast.unparse(st.value.func) == "p.add_argument_group"
    ):
        group = ast.literal_eval(st.value.args[0])
        continue
    if (
        isinstance(st, ast.Expr)
        and isinstance(st.value, ast.Call)
        and ast.unparse(st.value.func) in ("p.add_argument", "g.add_argument")
    ):
        call = st.value
        names = [ast.literal_eval(a) for a in call.args]
        kws = [(k.arg, ast.unparse(k.value)) for k in call.keywords]
        g = None if ast.unparse(call.func) == "p.add_argument" else group
        rows.append((names, g, kws))
        continue
    parser_setup.append(st)


def dest_of(names):
    long = next((n for n in names if n.startswith("--")), names[0])
    return long.lstrip("-").replace("-", "_")


out = []
for names, g, kws in rows:
    d = dest_of(names)
    field = field_of.get(d, "-") if d in field_of else "-"
    args = ", ".join(repr(n) for n in names)
    parts = [args]
    parts.append(f"group={g!r}")
    if field != "-":
        parts.append(f"field={field!r}")
    for k, v in kws:
        parts.append(f"{k}={v}")
    out.append("    Flag(" + ", ".join(parts) + "),")
missing = set(field_of) - {dest_of(n) for n, _, _ in rows}
assert not missing, missing
table = "FLAGS: tuple[Flag, ...] = (\n" + "\n".join(out) + "\n)  # fmt: skip\n"
# replace FIELD_OF block with the Flag class, the table and derived FIELD_OF
a = src.index("# the config field each option sets")
b = src.index("}  # fmt: skip\n", a) + len("}  # fmt: skip\n")
flag_cls = """# THE flag table: every option once, with its config field (its default is that field's default, negated for a
# --no-... flag; no field: --base-url, absent means the built-in simulator; --trace-lengths picks the workload;
# --config names a file), its group in --help and argparse's keywords. The parser, FIELD_OF and DEFAULTS are built
# from it; loadgen.options.build turns the resolved options into the RunConfig field by field of the same table.
NO_FIELD = "-"


@dataclass(frozen=True)
class Flag:
    names: tuple[str, ...]
    group: str | None
    field: str | None
    argparse: Mapping[str, Any]

    @property
    def dest(self) -> str:
        long = next((n for n in self.names if n.startswith("--")), self.names[0])
        return long.lstrip("-").replace("-", "_")


def _flag(*names: str, group: str | None, field: str | None = NO_FIELD, **argparse_kw: Any) -> Flag:
    return Flag(names, group, field, argparse_kw)


"""
table_src = table.replace("    Flag(", "    _flag(")
derived = """
# the config field each option sets (None: no one field)
FIELD_OF: dict[str, str | None] = {f.dest: f.field for f in FLAGS if f.field != NO_FIELD}
"""
new_src = src[:a] + flag_cls + "\n" + table_src + derived + src[b:]
# the new build_parser
fa = new_src.index("def build_parser() -> argparse.ArgumentParser:")
fb = new_src.index("\ndef _finish_help(")
new_fn = '''def build_parser() -> argparse.ArgumentParser:
    """The run's parser, built from FLAGS (no defaults of its own: argument_default=SUPPRESS tells the command line
    from the environment and a file; the help shows each field's default)."""
    S = argparse.SUPPRESS
    p = OptionParser(
        allow_abbrev=False,
        prog="python -m loadgen",
        description=DESCRIPTION,
        argument_default=S,
    )
    groups: dict[str | None, Any] = {None: p}
    for f in FLAGS:
        if f.group not in groups:
            groups[f.group] = p.add_argument_group(f.group)
        groups[f.group].add_argument(*f.names, **f.argparse)
    return _finish_help(p)

'''
new_src = new_src[:fa] + new_fn + new_src[fb:]
# description constant
m = re.search(r'description="(.*?)",\n\s*argument_default=S', src, re.S)
desc = m.group(1) if m else ""
desc_src = 'DESCRIPTION = (\n    "' + desc.replace('"\n        "', '"\n    "') + '"\n)\n\n\n'
i = new_src.index("def build_parser()")
new_src = new_src[:i] + desc_src + new_src[i:]
path.write_text(new_src)
print(len(rows), "flags")
# move the argparse type converters above the table
s = path.read_text()
for name in ("_rate", "_workers"):
    a = s.index(f"def {name}(")
    b = s.find("\n\n\n", a)
    b = len(s) if b < 0 else b
    body = s[a:b].rstrip() + "\n"
    s = s[:a] + s[b:].lstrip("\n") if b < len(s) else s[:a].rstrip() + "\n"
    i = s.index("# THE flag table")
    s = s[:i] + body + "\n\n" + s[i:]
s = s.replace("from collections.abc import Sequence\n", "from collections.abc import Mapping, Sequence\n")
s = s.replace(
    "from dataclasses import MISSING, fields\n", "from dataclasses import MISSING, dataclass, fields\n"
)
path.write_text(s)
