"""A run's results folder: made at the start, what is written into it before the first request (``run.json``),
the report at the end, and what a run returns (``RunResult``, whose records are read back from the folder).

Shared by a one-process run (:mod:`loadgen.run.runner`) and a run of several senders (:mod:`loadgen.run.fleet.driver`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import platform
import re
import shutil
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from loadgen.config import RunConfig
from loadgen.errors import ConfigError
from loadgen.options import mask_secrets
from loadgen.plan.schedule import GammaSchedule, TraceSchedule
from loadgen.records.columns import read_records
from loadgen.records.files import REQUESTS, RUN_JSON
from loadgen.records.record import RequestRecord, Scrubber

__all__ = [
    "ResultsDir",
    "RunResult",
    "default_output_dir",
    "run_header",
    "run_label",
    "secret_scrubber",
    "write_run_json",
]

log = logging.getLogger(__name__)


class RunResult:
    """What a run returns: its folder and summary. ``records`` are read back from ``requests.jsonl`` when first
    asked for (a run keeps none in memory while it runs: its memory stays flat however long it is), then kept."""

    def __init__(
        self, output_dir: Path, summary: dict[str, Any], interrupted: bool = False, failure: str | None = None
    ) -> None:
        self.output_dir = output_dir
        self.summary = summary
        self.interrupted = interrupted
        self.failure = failure  # why the run's requests count as failed (the CLI exits 3), else None

    @cached_property
    def records(self) -> list[RequestRecord]:
        """Every finished request, in the order they finished (the file's order)."""
        path = Path(self.output_dir) / REQUESTS
        return read_records(path) if path.exists() else []

    def __repr__(self) -> str:
        return (
            f"RunResult({str(self.output_dir)!r}, interrupted={self.interrupted}, failure={self.failure!r})"
        )


class ResultsDir:
    """The run's results folder. Made at the start; removed again, with the parents made for it, when the run
    measured nothing because the server could not be used (no empty folder for a mistyped URL or a bad key)."""

    def __init__(self, path: Path, label: str = "") -> None:
        self.path = path
        self.label = (
            label  # the run's name (``run_label``): the folder's name where it chose it, the exporter's label
        )
        self.created = [d for d in (path, *path.parents) if not d.exists()]
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = (
                path / f".loadgen-write-check-{os.getpid()}"
            )  # /sys, /proc, a read-only mount: refused now
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self.discard = True
            self.close()
            raise ConfigError(f"--output-dir {path}: cannot write there ({exc.strerror or exc})") from None
        self.discard = False

    @classmethod
    def for_run(cls, cfg: RunConfig) -> ResultsDir:
        """``--output-dir``, or a new folder under results/ named for the time and the target."""
        label = run_label(cfg)
        if cfg.output.output_dir:
            return cls(Path(cfg.output.output_dir), label)
        return cls(default_output_dir(label), label)

    def close(self) -> None:
        if self.discard and self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            for d in self.created[1:]:  # the parents made for it (results/), while empty
                with contextlib.suppress(OSError):
                    d.rmdir()


def run_label(cfg: RunConfig) -> str:
    """The run's name: ``--label``, else "sim" or the target's host (a results folder's name, the exporter's label)."""
    return cfg.output.label or (
        "sim" if cfg.endpoint.simulated else re.sub(r"^https?://", "", cfg.endpoint.base_url)
    )


def default_output_dir(label: str) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-")[:60] or "run"
    base = Path("results") / f"{stamp}-{safe}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def _versions() -> dict[str, str]:
    import aiohttp
    import numpy

    from loadgen.version import __version__

    out = {
        "loadgen": __version__,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "numpy": numpy.__version__,
        "orjson": orjson.__version__,
        "platform": platform.platform(),
    }
    with contextlib.suppress(ImportError):
        import uvloop

        out["uvloop"] = uvloop.__version__
    return out


def secret_scrubber(endpoint: Any) -> Scrubber:
    """The values no result file may hold: the API key, every --header value, the URL's password, the Basic
    credentials made of it (a server may echo the Authorization header)."""
    secrets = [endpoint.api_key, *(v for _, v in endpoint.headers)]
    basic = getattr(endpoint, "basic_auth", None)
    if basic:
        token = base64.b64encode(basic.encode()).decode("ascii")
        secrets += [basic, basic.partition(":")[2], token]
    return Scrubber(secrets)


def run_header(
    cfg: RunConfig, sched: GammaSchedule | TraceSchedule, endpoint: Any, model: str, out_dir: Path
) -> dict[str, Any]:
    """What a run is, known before its first request: written to run.json at the start and into summary.json."""
    return {
        "output_dir": str(out_dir),
        "label": cfg.output.label,
        "target": {
            "kind": "simulated" if endpoint.simulated else "endpoint",
            "base_url": endpoint.base_url,
            "model": model,
            "api": endpoint.api,
        },
        "config": cfg.public_dict(),
        "schedule": sched.describe(),
        "versions": _versions(),
        "argv": [secret_scrubber(endpoint).text(a) for a in (cfg.output.command or mask_secrets(sys.argv))],
    }


def write_run_json(out_dir: Path, header: dict[str, Any], planned: int, warmup: int) -> None:
    """run.json, before the first request: a run killed before its summary (kill -9, OOM) can still be rebuilt
    with its configuration (``python -m loadgen report DIR``). Written before t0, so its disk time delays nothing."""
    doc = {
        "loadgen_run_version": 1,
        "note": "written when the run started; summary.json is written when it ends. Without a summary.json, "
        "`python -m loadgen report DIR` rebuilds one from this file and requests.jsonl",
        **header,
        "planned_requests": planned,
        "warmup_requests": warmup,
        "started_unix_ns": time.time_ns(),
    }
    tmp = out_dir / (RUN_JSON + ".tmp")
    tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    tmp.replace(out_dir / RUN_JSON)
