"""Suite-wide: at the end of every run, say which real-engine tiers ran and which were skipped, and why.

They are the last lines before pytest's final count, so CI's log shows at a glance that the llama.cpp tier ran (it
can on any CPU) and whether the vLLM tier did (it needs AVX-512).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

TIERS = (  # (name, node id prefix), first match wins
    ("llama.cpp llama-server (e2e)", "tests/e2e/test_llamacpp"),
    ("vLLM on CPU (e2e)", "tests/e2e/"),
    ("browser, headless Chromium", "tests/browser/"),
    ("docker compose full run (compose)", "tests/compose/"),
)


def _tier(nodeid: str) -> str | None:
    return next((name for name, prefix in TIERS if nodeid.startswith(prefix)), None)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The tiers last: this wrapper is the outermost, so its lines follow pytest's own short summary (``-ra``)
    and warnings; only the final count line comes after them."""
    try:
        return (yield)
    finally:
        _tier_summary(terminalreporter)


def _tier_summary(terminalreporter) -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    reasons: dict[str, Counter] = defaultdict(Counter)
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            tier = _tier(getattr(rep, "nodeid", ""))
            if tier is None or (outcome == "passed" and rep.when != "call"):
                continue
            counts[tier][outcome] += 1
            if outcome == "skipped" and isinstance(rep.longrepr, tuple):
                reasons[tier][str(rep.longrepr[2]).removeprefix("Skipped: ")] += 1
            elif outcome == "error" and rep.when == "setup":  # a tier that could not be set up (CI)
                reasons[tier][(str(rep.longrepr).strip().splitlines() or ["?"])[-1][:300]] += 1
    terminalreporter.write_sep("-", "real-engine and browser tiers")
    for name, _ in TIERS:
        c = counts.get(name)
        if not c:
            terminalreporter.write_line(f"{name}: not collected")
            continue
        ran = c["passed"] + c["failed"]
        word = "RAN" if ran else "NOT SET UP" if c["error"] else "SKIPPED"
        parts = [f"{c[k]} {k}" for k in ("passed", "failed", "error", "skipped") if c[k]]
        line = f"{name}: {word} ({', '.join(parts)})"
        if reasons.get(name):
            line += " - " + "; ".join(r for r, _ in reasons[name].most_common(2))
        terminalreporter.write_line(line)
