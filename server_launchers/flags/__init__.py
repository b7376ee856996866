"""Flag tables extracted from the engines' sources (see ``extract.py``), one JSON file per engine version."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

HERE = Path(__file__).parent


@cache
def flag_table(engine: str, version: str) -> dict[str, dict]:
    """``{"--flag": {"takes_value": bool, "choices": [...] | None}}`` for ``engine`` at ``version``."""
    path = HERE / f"{engine}-{version}.json"
    return json.loads(path.read_text())["flags"]
