"""summary.json's ``turns`` section: a conversations run, turn index by turn index.

Per turn index (0 first): how many turns were planned as records, how many succeeded, failed, or were never sent
because an earlier turn of their session failed (``session_aborted``); the prompt tokens the server counted
(mean, p50, p90); its prefix-cache hit rate for that turn index; and TTFT, TTFVT, TPOT and E2E (from send and,
where defined, from the intended start: the previous turn's end + think time) as percentiles. Latencies are
the catalogue's (``loadgen.analysis.metrics.INTERVALS``), never defined again here.

Hit rate: cached prompt tokens / prompt tokens of the turn index's successful requests, from what the server
reported for each request (vLLM's ``usage.prompt_tokens_details.cached_tokens`` with
``--enable-prompt-tokens-details``, llama.cpp's ``timings.cache_n``, the simulator's usage). vLLM leaves the
block out when nothing was cached, so once any request of the run reported a count, a successful request
without one counts 0. Where no request reported one, the hit rate per turn is None (aggregate server counters,
scraped per window, cannot be split by turn honestly; the run-wide server hit rate stays in ``server``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loadgen.analysis.distribution import distribution
from loadgen.analysis.metrics import interval_ms
from loadgen.errors import ErrorKind
from loadgen.records.columns import RequestColumns

TURN_LATENCIES = (
    "ttft",
    "ttft_from_intended",
    "ttfvt",
    "ttfvt_from_intended",
    "tpot",
    "e2e",
    "e2e_from_intended",
)
_POINTS = ("count", "mean", "p50", "p90", "p99")


def has_turns(cols: RequestColumns) -> bool:
    return bool(len(cols)) and bool(np.isfinite(cols.n["turn"]).any())


def turns_summary(cols: RequestColumns) -> dict[str, Any]:
    """The ``turns`` section (see the module docstring); an empty dict for a run without conversations."""
    if not has_turns(cols):
        return {}
    turn = cols.n["turn"]
    measured = cols.measured & np.isfinite(turn)
    sessions = cols.n["session_id"][measured]
    cached = cols.n["cached_tokens"]
    reported = bool(np.isfinite(cached[measured & cols.ok]).any())
    aborted = cols.error_kind.equals(ErrorKind.SESSION_ABORTED.value)
    lat = {key: interval_ms(cols, key) for key in TURN_LATENCIES}
    per_turn = []
    for k in np.unique(turn[measured]).astype(int).tolist():
        rows = measured & (turn == k)
        ok = rows & cols.ok
        prompt = cols.n["prompt_tokens"][ok]
        prompt = prompt[np.isfinite(prompt)]
        row: dict[str, Any] = {
            "turn": k,
            "requests": int(rows.sum()),
            "ok": int(ok.sum()),
            "failed": int((rows & ~cols.ok & ~aborted).sum()),
            "session_aborted": int((rows & aborted).sum()),
            "prompt_tokens": {p: distribution(prompt)[p] for p in ("count", "mean", "p50", "p90")},
            "cached_tokens_mean": None,
            "prefix_cache_hit_rate": None,
        }
        if reported and prompt.size:
            c = np.nan_to_num(cached[ok], nan=0.0)
            p_all = np.nan_to_num(cols.n["prompt_tokens"][ok], nan=0.0)
            row["cached_tokens_mean"] = float(c.mean())
            row["prefix_cache_hit_rate"] = float(c.sum() / p_all.sum()) if p_all.sum() else None
        for key in TURN_LATENCIES:
            v = lat[key][ok]
            d = distribution(v[~np.isnan(v)])
            row[key] = {p: d[p] for p in _POINTS}
        per_turn.append(row)
    return {
        "sessions": int(np.unique(sessions[np.isfinite(sessions)]).size),
        "cached_tokens_source": "per-request usage/timings" if reported else None,
        "note": "latencies in ms; from_intended: from the previous turn's end + think time (turn 0: the "
        "session's start); hit rate: cached / prompt tokens the server reported per request",
        "per_turn": per_turn,
    }


def turns_section(cols: RequestColumns, history: str | None = None) -> dict[str, Any]:
    """``{"turns": ...}`` for a conversations run (with its history policy), else nothing: merged into the
    summary as it is."""
    turns = turns_summary(cols)
    if not turns:
        return {}
    return {"turns": {"history": history, **turns}}
