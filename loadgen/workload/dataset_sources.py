"""Where a dataset's rows come from: a local file or folder in the hub dataset's own layout, or the hub itself.

Local: JSONL, JSON (a list, or an object holding one list), CSV/TSV or Parquet (pyarrow, else pandas); a folder
gives the files its dataset's name hints and split pick (shards concatenated in name order). The hub: through the
optional ``datasets`` package, and only after a quick check that the hub can be reached at all
(:func:`hub_offline_reason`); every way it fails says how to go on with ``--dataset-path``. Rows are plain dicts;
``loadgen.workload.datasets`` turns them into requests.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol

import orjson

from loadgen.errors import WorkloadError
from loadgen.workload.prompts_file import json_lines

__all__ = ["DatasetDef", "hub_offline_reason", "read_rows", "rows_from_hub", "rows_from_path"]


class DatasetDef(Protocol):
    """Where a known dataset lives (``workload.datasets.DatasetDef`` is one): what reading its rows needs."""

    name: str
    hub_id: str | None
    hub_split: str | None
    hub_config: str | None
    gated: bool
    note: str
    path_hints: tuple[str, ...]


SUPPORTED_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON (a list, or an object holding one list), CSV/TSV or Parquet file."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return _read_parquet(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise WorkloadError(f"cannot read dataset file {p}: {exc.strerror or exc}") from None
    if suffix in (".csv", ".tsv"):
        return _read_csv(p, raw, "\t" if suffix == ".tsv" else ",")
    if suffix == ".json":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _read_jsonl(p, raw)  # JSON lines under a .json name (common)
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise WorkloadError(f"{p}: a JSON object, but not one holding a single list of rows")
            data = lists[0]
        if not isinstance(data, list):
            raise WorkloadError(f"{p}: expected a JSON list of objects")
        return [r for r in data if isinstance(r, dict)]
    return _read_jsonl(p, raw)


def _read_jsonl(p: Path, raw: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for lineno, row in json_lines(p, raw, invalid="not a JSON object"):
        if not isinstance(row, dict):
            raise WorkloadError(f"{p}:{lineno}: expected a JSON object per line")
        rows.append(row)
    return rows


def _read_csv(p: Path, raw: bytes, delimiter: str) -> list[dict[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    text = raw.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    if not reader.fieldnames:
        raise WorkloadError(f"{p}: an empty CSV file (no header row)")
    return [dict(r) for r in reader]


def _read_parquet(p: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is not None:
        try:
            return pq.read_table(p).to_pylist()
        except OSError as exc:
            raise WorkloadError(f"cannot read Parquet file {p}: {exc}") from None
    try:
        import pandas as pd
    except ImportError:
        raise WorkloadError(
            f"{p} is Parquet, which needs pyarrow: pip install 'loadgen[datasets]' (or pip install pyarrow), "
            "or convert the file to JSONL"
        ) from None
    try:
        return pd.read_parquet(p).to_dict("records")
    except (ImportError, ValueError) as exc:
        raise WorkloadError(f"cannot read Parquet file {p} ({exc}); pip install pyarrow") from None


def _files_for(folder: Path, defn: DatasetDef | None) -> list[Path]:
    """The files of ``defn`` inside ``folder``: name hints first, then the split's files, one format only (no
    hints and no split without a definition)."""
    hints, hub_split = (defn.path_hints, defn.hub_split) if defn is not None else ((), "")
    files = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise WorkloadError(f"{folder}: no {', '.join(SUPPORTED_SUFFIXES)} files in this folder")

    def rel(f: Path) -> str:
        return str(f.relative_to(folder)).lower()

    hinted = [f for f in files if any(h in rel(f) for h in hints)]
    if hinted:
        files = hinted
    if hub_split:
        split = [f for f in files if re.search(rf"(^|[/_.-]){re.escape(hub_split)}([/_.-]|$)", rel(f))]
        if split:
            files = split
    for suffix in SUPPORTED_SUFFIXES:  # one format: a folder may hold test.jsonl and test.parquet
        same = [f for f in files if f.suffix.lower() == suffix]
        if same:
            return same
    return files


def rows_from_path(path: str | os.PathLike[str], defn: DatasetDef | None = None) -> list[dict[str, Any]]:
    """Rows from a file, or from the dataset's files inside a folder (shards are concatenated in name order)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise WorkloadError(f"dataset path {p} does not exist")
    if p.is_dir():
        rows: list[dict[str, Any]] = []
        for f in _files_for(p, defn):
            rows.extend(read_rows(f))
        return rows
    return read_rows(p)


def rows_from_hub(defn: DatasetDef) -> list[dict[str, Any]]:
    """Rows through the optional ``datasets`` package; every way this fails says how to go on without it."""
    local = f"download it and pass --dataset {defn.name} --dataset-path FILE_OR_FOLDER"
    if defn.hub_id is None:
        raise WorkloadError(f"dataset {defn.name!r} has no hub copy loadgen knows of: {local} ({defn.note})")
    no_extra = WorkloadError(
        f"dataset {defn.name!r} needs a local copy or the hub extra: {local} "
        f"(the {defn.hub_id} files, same fields), or pip install 'loadgen[datasets]'"
    )
    if not _have_datasets_package():
        raise no_extra
    offline = hub_offline_reason()
    if offline and not _env_offline():
        # datasets reads these when imported: a cached copy still loads, and nothing retries the network
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets as hf_datasets
    except ImportError:
        raise no_extra from None
    try:
        ds = hf_datasets.load_dataset(defn.hub_id, defn.hub_config, split=defn.hub_split)
    except Exception as exc:  # the hub raises many types: gated, offline, not found
        text = f"{type(exc).__name__}: {exc}"
        if offline:
            raise WorkloadError(
                f"{defn.hub_id} is not in the local hub cache and the hub cannot be reached ({offline}): "
                f"download it elsewhere and pass --dataset {defn.name} --dataset-path FILE_OR_FOLDER"
            ) from None
        if defn.gated or "gated" in text.lower() or "401" in text or "403" in text:
            raise WorkloadError(
                f"{defn.hub_id} is gated: accept its terms on the dataset's hub page, log in (huggingface-cli "
                f"login, or HF_TOKEN), then retry; or {local} ({text[:160]})"
            ) from None
        raise WorkloadError(f"cannot load {defn.hub_id} from the hub ({text[:200]}); or {local}") from None
    return [dict(r) for r in ds]


_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
HUB_PROBE_TIMEOUT_S = 2.0


def _env_offline() -> str | None:
    for name in _OFFLINE_VARS:
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return name
    return None


def _have_datasets_package() -> bool:
    """Whether ``import datasets`` can work, without importing it (slow) yet."""
    if "datasets" in sys.modules:
        return sys.modules["datasets"] is not None
    import importlib.util

    return importlib.util.find_spec("datasets") is not None


def hub_offline_reason() -> str | None:
    """Why the hub is out of reach, or None when it may be reached. ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``
    say so outright; otherwise one TCP connection to the hub (``HF_ENDPOINT``; through the HTTPS proxy when one is
    set) must open within HUB_PROBE_TIMEOUT_S. Without this, an offline ``load_dataset`` retries for about 30 s
    and prints every warning twice before failing."""
    name = _env_offline()
    if name:
        return f"{name}=1"
    import socket
    import threading
    from urllib.parse import urlsplit

    via = next(
        (
            os.environ[v]
            for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
            if os.environ.get(v)
        ),
        None,
    )
    url = urlsplit(via or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = url.hostname or "huggingface.co"
    port = url.port or (443 if url.scheme == "https" else 80)
    result: list[BaseException | None] = []

    def probe() -> None:  # getaddrinfo has no timeout of its own: the thread bounds the whole attempt
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
            result.append(None)
        except OSError as exc:
            result.append(exc)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(HUB_PROBE_TIMEOUT_S)
    where = f"{host}:{port}" + (" (proxy)" if via else "")
    if not result:
        return f"no answer from {where} within {HUB_PROBE_TIMEOUT_S:g} s"
    if result[0] is not None:
        return f"cannot connect to {where}: {result[0].strerror or result[0]}"
    return None
