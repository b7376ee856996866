"""Regenerate the SGLang / TGI flag tables from the engines' own sources.

The tables (``sglang-<version>.json``, ``tgi-<version>.json``) are what the renderers are
tested against, so a flag spelling or an allowed value never comes from memory. They are
extracted statically (no GPU stack needed):

    # SGLang: the unpacked wheel (pip download --no-deps sglang==X; unzip), CLI fields are
    # declared as ``name: A[type, Arg(...)]`` in sglang/srt/arg_groups/fields/*.py
    python -m server_launchers.flags.extract sglang /path/to/unpacked/sglang 0.5.23

    # TGI: launcher/src/main.rs at the release tag (clap derive ``struct Args``)
    python -m server_launchers.flags.extract tgi /path/to/launcher/src/main.rs 3.3.7

    # llama.cpp: the help of the llama-server that server_launchers.local_llamacpp builds (its version is the
    # llama-cpp-python sdist it comes from)
    llama-server --help > help.txt; python -m server_launchers.flags.extract llamacpp help.txt 0.3.36

Each table maps ``--flag`` to ``{"takes_value": bool, "choices": [...] | null}``;
``choices: null`` means any value of the right type.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent


# ---------------------------------------------------------------- SGLang (Python, AST)
def _literal_list(node: ast.AST, names: dict[str, list]) -> list | None:
    if isinstance(node, ast.Name):
        return names.get(node.id)
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return list(value) if isinstance(value, list | tuple | set) else None


def _module_lists(tree: ast.Module) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            lst = _literal_list(node.value, out)
            if lst is not None:
                out[node.targets[0].id] = lst
    return out


def _literal_choices(type_node: ast.AST) -> list | None:
    for sub in ast.walk(type_node):
        if isinstance(sub, ast.Subscript) and getattr(sub.value, "id", None) == "Literal":
            elts = sub.slice.elts if isinstance(sub.slice, ast.Tuple) else [sub.slice]
            return [ast.literal_eval(e) for e in elts]
    return None


def _is_plain_bool(type_node: ast.AST) -> bool:
    return isinstance(type_node, ast.Name) and type_node.id == "bool"


def extract_sglang(pkg: Path) -> dict[str, dict]:
    srt = pkg / "srt"
    names = _module_lists(ast.parse((srt / "arg_groups" / "choices.py").read_text()))
    flags: dict[str, dict] = {}
    for path in sorted((srt / "arg_groups" / "fields").glob("*.py")):
        tree = ast.parse(path.read_text())
        local = {**names, **_module_lists(tree)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            ann = node.annotation
            if not (isinstance(ann, ast.Subscript) and getattr(ann.value, "id", None) == "A"):
                continue
            parts = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
            if len(parts) < 2:
                continue
            type_node, meta = parts[0], parts[1]
            kw: dict[str, ast.AST] = {}
            if isinstance(meta, ast.Call) and getattr(meta.func, "id", None) == "Arg":
                kw = {k.arg: k.value for k in meta.keywords if k.arg}
            elif not (isinstance(meta, ast.Constant) and isinstance(meta.value, str)):
                continue
            if "no_cli" in kw and ast.literal_eval(kw["no_cli"]) is True:
                continue
            cli = (
                ast.literal_eval(kw["cli_name"])
                if "cli_name" in kw
                else "--" + node.target.id.replace("_", "-")
            )
            aliases = ast.literal_eval(kw["aliases"]) if "aliases" in kw else []
            choices = _literal_list(kw["choices"], local) if "choices" in kw else _literal_choices(type_node)
            takes_value = not (_is_plain_bool(type_node) and "action" not in kw)
            entry = {"takes_value": takes_value, "choices": sorted(map(str, choices)) if choices else None}
            for flag in [cli, *aliases]:
                flags[flag] = entry
    # Arguments registered by hand in ServerArgs.add_cli_args (dynamic choices, deprecated spellings).
    server_args = ast.parse((srt / "server_args.py").read_text())
    reasoning = _module_lists(ast.parse((srt / "parser" / "reasoning_parser_names.py").read_text()))
    for node in ast.walk(server_args):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        opts = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        action = kw.get("action")
        takes_value = not (isinstance(action, ast.Constant) and action.value == "store_true") and not (
            isinstance(action, ast.Name) and "StoreTrue" in action.id
        )
        choices = None
        if "--reasoning-parser" in opts:
            choices = ["auto", *reasoning.get("REASONING_PARSER_NAMES", [])]
        elif "choices" in kw:
            choices = _literal_list(kw["choices"], names)
        for flag in opts:
            flags[flag] = {
                "takes_value": takes_value,
                "choices": sorted(map(str, choices)) if choices else None,
            }
    return flags


# ---------------------------------------------------------------- TGI (Rust, clap derive)
def _kebab(ident: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", ident).lower()


def _rust_enums(src: str) -> dict[str, list[str]]:
    enums: dict[str, list[str]] = {}
    for m in re.finditer(r"enum (\w+) \{(.*?)\n\}", src, re.S):
        values, rename = [], None
        for line in m.group(2).splitlines():
            line = line.strip()
            if line.startswith("//"):
                continue
            r = re.match(r'#\[clap\(name = "([^"]+)"\)\]', line)
            if r:
                rename = r.group(1)
                continue
            v = re.match(r"([A-Z]\w*),", line)
            if v:
                values.append(rename or _kebab(v.group(1)))
                rename = None
        enums[m.group(1)] = values
    return enums


def extract_tgi(main_rs: Path) -> dict[str, dict]:
    src = main_rs.read_text()
    enums = _rust_enums(src)
    body = re.search(r"struct Args \{(.*?)\n\}", src, re.S).group(1)
    flags: dict[str, dict] = {}
    attrs: list[str] = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("#[clap("):
            attrs.append(line)
            continue
        field = re.match(r"(\w+): (.+),$", line)
        if not field:
            continue
        name, rust_type = field.groups()
        attr = " ".join(attrs)
        attrs = []
        if not re.search(r"\blong\b", attr):
            continue
        inner = re.sub(r"^Option<(.+)>$", r"\1", rust_type)
        choices = enums.get(inner)
        flags["--" + name.replace("_", "-")] = {"takes_value": rust_type != "bool", "choices": choices}
    return flags


# ---------------------------------------------------------------- llama.cpp (llama-server --help)
_HELP_FLAGS = re.compile(
    r"^((?:-{1,2}[A-Za-z0-9][\w-]*(?:,\s*|\s+(?=-)))*-{1,2}[A-Za-z0-9][\w-]*)(?: (\S+))?(?:\s{2,}|$)"
)


def _help_choices(hint: str | None, following: list[str]) -> list[str] | None:
    for line in following:
        m = re.search(r"allowed values: (.+)$", line.strip())
        if m:
            return [v.strip() for v in m.group(1).split(",")]
    if hint and hint[0] in "{[" and hint[-1] in "}]":
        return [v for v in re.split(r"[,|]", hint[1:-1]) if v]
    if hint and "," in hint and hint.replace(",", "").replace("-", "").replace("_", "").isalnum():
        return hint.split(",")  # --spec-type a,b,c: a comma-separated list of these
    return None


def extract_llamacpp(help_txt: Path) -> dict[str, dict]:
    """Every flag of ``llama-server --help``: names (aliases share an entry each), whether a value follows,
    and its allowed values where the help lists them (``allowed values: ...``, ``{a,b}``, ``[on|off]``)."""
    lines = help_txt.read_text().splitlines()
    flags: dict[str, dict] = {}
    for i, line in enumerate(lines):
        m = _HELP_FLAGS.match(line)
        if not m or line.startswith("-----"):
            continue
        names = re.findall(r"-{1,2}[A-Za-z0-9][\w-]*", m.group(1))
        hint = m.group(2)
        optional = bool(hint) and hint.startswith("[")  # -fa [on|off|auto]: a value may follow
        following = []
        for nxt in lines[i + 1 : i + 6]:
            if not nxt.startswith(" "):
                break
            following.append(nxt)
        entry = {"takes_value": bool(hint) and not optional, "choices": _help_choices(hint, following)}
        if optional:
            entry["optional_value"] = True
        for n in names:
            flags[n] = entry
    return flags


def main(argv: list[str]) -> None:
    engine, source, version = argv
    extract = {"sglang": extract_sglang, "tgi": extract_tgi, "llamacpp": extract_llamacpp}[engine]
    flags = extract(Path(source))
    table = {"engine": engine, "version": version, "extracted_from": Path(source).name, "flags": flags}
    out = HERE / f"{engine}-{version}.json"
    out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"{out}: {len(flags)} flags")


if __name__ == "__main__":
    main(sys.argv[1:])
