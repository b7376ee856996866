"""llama.cpp's ``GET /slots``: per-slot state turned into vocabulary gauges, since its /metrics has no KV usage.

Each slot reports ``n_ctx`` (its context), ``is_processing`` and, once it has served a task, ``n_prompt_tokens``:
the tokens its cache holds (prompt and generated so far; an idle slot keeps its last prompt for reuse). So:

* ``slots_busy`` / ``slots_total``: slots processing a request / all slots;
* ``kv_cache_usage``: tokens held by the busy slots / all slots' summed context: the cache in use by requests,
  as vLLM's gauge counts it (an idle slot's kept prompt is reusable, not in use). Exact with per-slot caches (the
  default with an explicit ``-np``, and what loadgen's launcher uses); with a unified cache (``--kv-unified``)
  every slot reports the whole context as its own, so this is the share of ``n_slots x context`` and reads low.

Runs in a worker thread (the body carries each slot's prompt text and can be large).
"""

from __future__ import annotations

from typing import Any

import orjson


def slots_values(body: bytes) -> dict[str, dict[str, float]]:
    """Vocabulary values from a /slots body; ValueError if it is not a list of slots."""
    slots = orjson.loads(body)
    if not isinstance(slots, list) or not all(isinstance(s, dict) and "n_ctx" in s for s in slots):
        raise ValueError("GET /slots did not answer a list of slots")
    busy = sum(1 for s in slots if s.get("is_processing"))
    held = sum(int(s.get("n_prompt_tokens") or 0) for s in slots if s.get("is_processing"))
    ctx = sum(int(s.get("n_ctx") or 0) for s in slots)
    out: dict[str, dict[str, Any]] = {"slots_busy": {"": float(busy)}, "slots_total": {"": float(len(slots))}}
    if ctx > 0:
        out["kv_cache_usage"] = {"": min(1.0, held / ctx)}
    return out
