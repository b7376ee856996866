"""Issue 19's "small pieces": no function in loadgen/ or server_launchers/ is longer than 80 lines (read off the
source, nested functions counted inside the one that holds them as well as on their own)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 80


def test_no_function_is_over_80_lines() -> None:
    long = []
    files = [p for d in ("loadgen", "server_launchers") for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 50  # the walk found the code
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)
