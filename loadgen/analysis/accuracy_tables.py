"""Accuracy tables: the answers scored (:mod:`loadgen.analysis.accuracy`) and counted per dataset, per domain, per
token budget and per dataset × budget, plus overall, with Wilson intervals and the truncated answers beside them.

:class:`AccuracyTally` counts one record at a time. A run's summary feeds it in the pass that reads
``requests.jsonl`` as columns (it is a record reducer of :func:`loadgen.records.columns.read_requests`), in file
order; its table is the same whatever the order the records come in: where two entries tie (the scoring methods'
counts, budgets that are no number), they are listed in the order of the records' index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loadgen.analysis.accuracy import Score, checker_name, score
from loadgen.records.record import RequestRecord
from loadgen.workload.spec import RequestSpec

__all__ = ["AccuracyTally", "accuracy_table", "format_accuracy_table", "wilson_interval"]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion (95% by default); ``None`` when ``n`` is 0."""
    if n <= 0:
        return None
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class _Group:
    __slots__ = ("n", "correct", "truncated", "correct_truncated", "no_answer", "errors", "first")

    def __init__(self, first: int) -> None:
        self.n = self.correct = self.truncated = self.correct_truncated = self.no_answer = self.errors = 0
        self.first = first  # the smallest order (record index) that reached this group: its place among ties

    def add(self, s: Score) -> None:
        self.n += 1
        self.correct += s.correct
        self.no_answer += s.extracted is None
        if s.truncated:
            self.truncated += 1
            self.correct_truncated += s.correct

    def as_dict(self) -> dict[str, Any]:
        untrunc_n = self.n - self.truncated
        ci = wilson_interval(self.correct, self.n)
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": self.correct / self.n if self.n else None,
            "ci95": list(ci) if ci else None,
            "truncated": self.truncated,
            "truncated_share": self.truncated / self.n if self.n else None,
            "correct_truncated": self.correct_truncated,
            "accuracy_untruncated": (self.correct - self.correct_truncated) / untrunc_n
            if untrunc_n
            else None,
            "no_answer": self.no_answer,
            "errors": self.errors,
        }


def _budget_key(value: Any) -> str:
    return "default" if value is None else str(value)


def _sorted_budgets(groups: Mapping[str, _Group]) -> dict[str, Any]:
    """Numeric budgets in increasing order, then the others in the order they were first seen."""
    by_first = sorted(groups.items(), key=lambda kv: kv[1].first)
    return {
        k: g.as_dict()
        for k, g in sorted(
            by_first, key=lambda kv: (not kv[0].isdigit(), int(kv[0]) if kv[0].isdigit() else 0)
        )
    }


def _lookup(specs_or_refs: Any, index: int) -> Any:
    if isinstance(specs_or_refs, Mapping):
        return specs_or_refs.get(index)
    if 0 <= index < len(specs_or_refs):
        return specs_or_refs[index]
    return None


def _group(table: dict[str, _Group], key: str, order: int) -> _Group:
    g = table.get(key)
    if g is None:
        g = table[key] = _Group(order)
    else:
        g.first = min(g.first, order)
    return g


class AccuracyTally:
    """Accuracy per dataset, per domain, per token budget and per dataset × budget, plus overall, a record at a
    time (see :func:`accuracy_table`); a record reducer of ``read_requests`` (:meth:`add_record`)."""

    def __init__(self, specs_or_refs: Sequence[RequestSpec | str | None] | Mapping[int, Any]) -> None:
        self.refs = specs_or_refs
        self.overall = _Group(0)
        self.groups: dict[str, dict[str, _Group]] = {"by_dataset": {}, "by_domain": {}, "by_budget": {}}
        self.cross: dict[str, dict[str, _Group]] = {}
        self.methods: dict[str, list[int]] = {}  # method -> [count, the smallest order that used it]
        self.unscored = 0

    def add_record(self, d: dict[str, Any]) -> None:
        """One record as parsed from requests.jsonl (warm-up ones are left out before they become records)."""
        if not d.get("warmup"):
            rec = RequestRecord.from_dict(d)
            self.add_one(rec, int(rec.index))

    def add_one(self, rec: Any, order: int) -> None:
        """One record (a RequestRecord or alike); ``order`` places it among ties (its index, or its position)."""
        if getattr(rec, "warmup", False):
            return
        item = _lookup(self.refs, int(getattr(rec, "index", -1)))
        reference = item.reference if isinstance(item, RequestSpec) else item
        if reference is None:
            self.unscored += 1
            return
        tags = dict(item.tags) if isinstance(item, RequestSpec) else {}
        tags.update(getattr(rec, "tags", None) or {})
        dataset = str(tags.get("dataset", "unknown"))
        domain = str(tags.get("domain", "unknown"))
        budget = _budget_key(
            tags.get("budget", getattr(rec, "max_tokens", None) or getattr(item, "max_tokens", None))
        )
        keys = {"by_dataset": dataset, "by_domain": domain, "by_budget": budget}
        targets = [self.overall, _group(self.cross.setdefault(dataset, {}), budget, order)]
        targets += [_group(self.groups[g], k, order) for g, k in keys.items()]
        if getattr(rec, "status", "ok") != "ok":
            for g in targets:
                g.errors += 1
            return
        s = score(rec, reference, dataset)
        seen = self.methods.setdefault(s.method, [0, order])
        seen[0] += 1
        seen[1] = min(seen[1], order)
        for g in targets:
            g.add(s)

    def finish(self, cols: Any = None) -> None:
        """Nothing to do at the end of the pass: :meth:`table` computes from what was added."""

    def table(self) -> dict[str, Any]:
        groups, cross = self.groups, self.cross
        methods = sorted(self.methods.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
        return {
            "checker": checker_name(),
            "overall": self.overall.as_dict(),
            "by_dataset": {k: g.as_dict() for k, g in sorted(groups["by_dataset"].items())},
            "by_domain": {k: g.as_dict() for k, g in sorted(groups["by_domain"].items())},
            "by_budget": _sorted_budgets(groups["by_budget"]),
            "by_dataset_budget": {ds: _sorted_budgets(per) for ds, per in sorted(cross.items())},
            "methods": {m: count for m, (count, _) in methods},
            "unscored": self.unscored,
        }


def accuracy_table(
    records: Iterable[Any], specs_or_refs: Sequence[RequestSpec | str | None] | Mapping[int, Any]
) -> dict[str, Any]:
    """Accuracy per dataset, per domain, per token budget and per dataset × budget, plus overall.

    ``specs_or_refs`` gives each record's reference by ``record.index``: the workload's RequestSpecs (tags are
    taken from them when a record has none) or plain reference strings. Warm-up records and records without a
    reference are left out; failed requests are counted as ``errors`` and kept out of the accuracy; truncated
    answers (``finish_reason == "length"``) stay in it (budgets cause them) and are counted beside it, with the
    accuracy of the untruncated ones. Ties are listed in the order of the records.
    """
    tally = AccuracyTally(specs_or_refs)
    for pos, rec in enumerate(records):
        tally.add_one(rec, pos)
    return tally.table()


def format_accuracy_table(table: Mapping[str, Any]) -> str:
    """A plain-text rendering (the console report may draw its own from the same dict)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:5.1f}%"

    lines = [f"accuracy (checker: {table['checker']})"]
    header = f"  {'group':28} {'n':>6} {'correct':>8} {'acc':>7} {'95% CI':>15} {'trunc':>6} {'acc¬trunc':>9} {'err':>4}"
    lines.append(header)

    def row(label: str, g: Mapping[str, Any]) -> str:
        ci = g["ci95"]
        ci_s = f"{100 * ci[0]:.0f}-{100 * ci[1]:.0f}%" if ci else "-"
        return (
            f"  {label[:28]:28} {g['n']:>6} {g['correct']:>8} {pct(g['accuracy']):>7} {ci_s:>15} "
            f"{g['truncated']:>6} {pct(g['accuracy_untruncated']):>9} {g['errors']:>4}"
        )

    lines.append(row("overall", table["overall"]))
    for section, prefix in (("by_dataset", "dataset"), ("by_domain", "domain"), ("by_budget", "budget")):
        for key, g in table[section].items():
            lines.append(row(f"{prefix}={key}", g))
    if len(table["by_budget"]) > 1:
        for ds, per in table["by_dataset_budget"].items():
            for b, g in per.items():
                lines.append(row(f"{ds} @ {b}", g))
    return "\n".join(lines)
