"""Per-sender record files merged into the run's one ``requests.jsonl``, by request index.

Each sender's records land in ``.senders/sender-K.jsonl`` inside the results folder while the run goes (a local
worker writes its own file; a Ray actor's batches are appended by the driver), in the order its requests finished.
At the end they are merged by index into ``requests.jsonl`` (written beside, then renamed into place) and the
staging folder is removed, so the results folder looks exactly as a one-process run's.

The merge holds (index, file, offset) per line, not the lines: it reads each line's index from its first bytes
(``RequestRecord.to_json`` writes ``index`` first), sorts, and copies the lines in that order. A torn last line (a
worker killed mid-write) is left out, as ``read_records`` does.

A sender that was lost (its process or actor died, its node went away) leaves requests without a record: each one
becomes a ``worker_lost`` error record, with its planned time, so a lost sender costs its requests visibly, never
silently. In an interrupted run only requests planned before the interruption count (the rest were never to be
sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from loadgen.analysis.client_check import schedule_error
from loadgen.errors import ErrorKind
from loadgen.plan.planner import RequestPlan
from loadgen.records.files import REQUESTS, STAGING_DIR
from loadgen.records.record import STATUS_ERROR, RequestRecord

__all__ = [
    "Lost",
    "MergeResult",
    "follow_files",
    "merge_senders",
    "merge_staged",
    "remove_staging",
    "scan",
    "sender_file",
    "senders_section",
    "staging_dir",
    "staging_files",
    "worker_lost_records",
]

_PREFIX = b'{"index":'


def staging_dir(out_dir: Path) -> Path:
    return out_dir / STAGING_DIR


def sender_file(out_dir: Path, k: int) -> Path:
    return staging_dir(out_dir) / f"sender-{k}.jsonl"


def staging_files(out_dir: Path, n: int) -> list[Path]:
    """The ``n`` senders' files, in a staging folder made for them."""
    staging_dir(out_dir).mkdir(parents=True, exist_ok=True)
    return [sender_file(out_dir, k) for k in range(n)]


@dataclass(frozen=True, slots=True)
class Lost:
    """A sender that was lost: its shard of the plan and why."""

    shard: RequestPlan
    reason: str


@dataclass(slots=True)
class MergeResult:
    written: int = 0
    per_sender: list[int] = field(default_factory=list)  # records each sender's file held
    worker_lost: dict[int, int] = field(default_factory=dict)  # sender -> worker_lost records made for it
    duplicates: int = 0  # the same index twice (never expected): the first is kept
    torn: int = 0  # lines left out: cut short, or not a record


def _index_of(line: bytes) -> int | None:
    if line.startswith(_PREFIX):
        end = line.find(b",", len(_PREFIX))
        with contextlib.suppress(ValueError):
            return int(line[len(_PREFIX) : end])
    try:
        return int(orjson.loads(line)["index"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def scan(path: Path) -> tuple[list[tuple[int, int, int]], int]:
    """(index, offset, length) of every whole record line of ``path``, and how many lines were left out."""
    out: list[tuple[int, int, int]] = []
    torn = 0
    if not path.exists():
        return out, 0
    with open(path, "rb") as fh:
        off = 0
        for line in fh:
            n = len(line)
            if not line.endswith(b"\n"):  # the last line, cut short by a kill
                torn += 1
            elif line.strip():
                i = _index_of(line)
                if i is None:
                    torn += 1
                else:
                    out.append((i, off, n))
            off += n
    return out, torn


def worker_lost_records(
    shard: RequestPlan, seen: set[int], reason: str, api: str, before_ns: int | None = None
) -> list[RequestRecord]:
    """One ``worker_lost`` record per request of ``shard`` without a record (planned before ``before_ns``)."""
    out = []
    for i, off, spec in shard.requests():
        if i in seen or (before_ns is not None and off >= before_ns):
            continue
        out.append(
            RequestRecord(
                index=i,
                warmup=i < shard.warmup,
                api=api,
                tags=dict(spec.tags),
                max_tokens=spec.max_tokens,
                intended_ns=off,
                status=STATUS_ERROR,
                error_kind=ErrorKind.WORKER_LOST.value,
                error_message=reason,
            )
        )
    return out


def merge_senders(
    files: Sequence[Path],
    out_path: Path,
    *,
    lost: dict[int, Lost] | None = None,
    api: str = "chat",
    before_ns: int | None = None,
) -> MergeResult:
    """Merge the sender files into ``out_path`` by index (with worker_lost records for lost senders)."""
    res = MergeResult()
    entries: list[tuple[int, int, int, int]] = []  # index, file, offset, length
    seen: list[set[int]] = []
    for k, f in enumerate(files):
        lines, torn = scan(f)
        res.torn += torn
        res.per_sender.append(len(lines))
        seen.append({i for i, _, _ in lines})
        entries.extend((i, k, off, n) for i, off, n in lines)
    made: list[bytes] = []
    for k, item in (lost or {}).items():
        recs = worker_lost_records(
            item.shard, seen[k] if k < len(seen) else set(), item.reason, api, before_ns
        )
        res.worker_lost[k] = len(recs)
        for rec in recs:
            entries.append((rec.index, -1, len(made), 0))
            made.append(rec.to_json() + b"\n")
    entries.sort(key=lambda e: (e[0], e[1] < 0))
    tmp = out_path.with_name(out_path.name + ".merging")
    handles = [open(f, "rb") if f.exists() else None for f in files]  # noqa: SIM115 - closed below
    try:
        with open(tmp, "wb") as out:
            last = None
            for i, k, off, n in entries:
                if i == last:
                    res.duplicates += 1
                    continue
                last = i
                if k < 0:
                    out.write(made[off])
                else:
                    fh = handles[k]
                    assert fh is not None
                    fh.seek(off)
                    out.write(fh.read(n))
                res.written += 1
            out.flush()
            os.fsync(out.fileno())
    finally:
        for fh in handles:
            if fh is not None:
                fh.close()
    tmp.replace(out_path)
    return res


async def follow_files(
    files: Sequence[Path], observe: Callable[[RequestRecord], None], done: asyncio.Event, poll_s: float = 0.5
) -> None:
    """Every record the senders append to their files, observed as it lands (whole lines), until ``done`` and a
    last read: the driver's view of records written in other processes."""
    offsets = [0] * len(files)
    partial = [b""] * len(files)
    while True:
        last = done.is_set()
        for k, f in enumerate(files):
            try:
                with open(f, "rb") as fh:
                    fh.seek(offsets[k])
                    data = fh.read()
            except FileNotFoundError:
                continue
            offsets[k] += len(data)
            *lines, partial[k] = (partial[k] + data).split(b"\n")
            for line in lines:
                try:
                    rec = RequestRecord.from_dict(orjson.loads(line))
                except (orjson.JSONDecodeError, TypeError):
                    continue
                observe(rec)
        if last:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), poll_s)


def remove_staging(out_dir: Path) -> None:
    shutil.rmtree(staging_dir(out_dir), ignore_errors=True)


def merge_staged(out_dir: Path) -> MergeResult | None:
    """The staged sender files of a run killed before its own merge (``kill -9`` of the driver), merged into
    ``requests.jsonl`` for ``python -m loadgen report DIR``; None when there are none (or it exists already)."""
    staged = staging_dir(out_dir)
    target = out_dir / REQUESTS
    if target.exists() or not staged.is_dir():
        return None
    files = sorted(staged.glob("sender-*.jsonl"), key=lambda f: int(f.stem.rsplit("-", 1)[1]))
    res = merge_senders(files, target)
    remove_staging(out_dir)
    return res


def senders_section(
    fleet: Any,
    sizing_line: str | None,
    jobs: Sequence[Any],
    infos: Sequence[dict[str, Any]],
    outcomes: Sequence[dict[str, Any] | None],
    lost: dict[int, str],
    merged: MergeResult,
) -> dict[str, Any]:
    """summary.json's ``senders``: how many, where, each one's clock and counts, and who was lost."""
    rows = []
    for k, info in enumerate(infos):
        o = outcomes[k]
        clock = dict(info.get("clock") or {})
        if o is not None and o.get("clock_end") and clock:
            clock["drift_ns"] = int(o["clock_end"]["offset_ns"]) - int(clock["offset_ns"])
            clock["end"] = o["clock_end"]
        rows.append(
            {
                "sender": k,
                "host": info.get("host"),
                "node_ip": info.get("node_ip"),
                "node_id": info.get("node_id"),
                "actor": info.get("actor"),
                "pid": info.get("pid"),
                "clock": clock,
                "planned": len(jobs[k].plan),
                "max_concurrency": jobs[k].cfg.schedule.max_concurrency,
                "sent": o.get("sent") if o else None,
                "records": merged.per_sender[k] if k < len(merged.per_sender) else 0,
                "worker_lost": merged.worker_lost.get(k, 0),
                "stopped_early": o.get("stopped_early") if o else None,
                "lost": lost.get(k),
            }
        )
    out: dict[str, Any] = {
        "mode": fleet.kind,
        "count": len(infos),
        "sizing": sizing_line,
        "nodes": len({r["node_ip"] or r["host"] for r in rows}),
        "lost": sorted(lost),
        "schedule_error": schedule_error(infos),
        "list": rows,
        "merge": {"duplicates": merged.duplicates, "torn_lines": merged.torn},
    }
    if fleet.kind == "ray":
        out["ray"] = {k: v for k, v in fleet.cluster.items() if k != "driver_node_id"}
    return out
