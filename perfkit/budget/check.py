"""Evaluating a budget against runs: plain data in, plain data out (schema ``perfkit.budget/1``).

``evaluate(budget, runs, baseline)`` compares each limit with the **median**
over the runs of a side (one run: that run's own figure, as its report shows
it). A relative limit compares the medians of the two sides; when both sides
have at least ``settings.min_samples`` samples, a breach also has to pass a
one-sided Mann-Whitney U test at level ``settings.alpha`` before it counts:
the test asks whether the current samples exceed the baseline samples moved
to the limit (``baseline x (1 + 5%)`` for ``"+5%"``). A breach that does not
pass is reported with status ``noise`` and does not fail the check.

Samples for the test: with at least ``min_samples`` runs on both sides, one
value per run; otherwise the per-step values of the runs pooled per side
(``metrics.step_samples``), for the metrics that have them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from ..errors import PerfkitError
from . import metrics
from .spec import Budget, Limit
from .stats import mann_whitney_u

SCHEMA = "perfkit.budget/1"
STATUSES = ("pass", "noise", "warn", "fail", "skip")


@dataclass(frozen=True)
class Run:
    path: str
    doc: dict[str, Any]


def load_runs(paths: list[str]) -> list[Run]:
    """Each run as an analysis document (run directory, analysis.json, trace, or a folder of runs:
    :func:`perfkit.run.resolve.run_paths`, :func:`perfkit.run.load.load_document`)."""
    from ..run.load import load_document
    from ..run.resolve import run_paths

    return [Run(p, load_document(p)) for p in run_paths(paths)]


def evaluate(budget: Budget, runs: list[Run], baseline: Optional[list[Run]] = None) -> dict[str, Any]:
    """Check every limit of ``budget``; see the module docstring. Returns the result document."""
    if not runs:
        raise PerfkitError("no run to check: give at least one RUN")
    baseline = baseline or []
    if budget.has_relative and not baseline:
        raise PerfkitError(f"{budget.path}: [budget.relative] limits need a baseline: --baseline RUN...")
    missing = _missing_metrics(budget, runs, baseline)
    if missing:
        err = metrics.MissingMetric(missing[0])
        err.lines = missing  # type: ignore[attr-defined]  # one line per missing measure (perfkit.cli.main)
        raise err
    results = [_evaluate_limit(lim, budget, runs, baseline) for lim in budget.limits]
    counts = {s: sum(1 for r in results if r["status"] == s) for s in STATUSES}
    return {
        "schema": SCHEMA,
        "budget": budget.path,
        "runs": [r.path for r in runs],
        "baseline": [r.path for r in baseline],
        "settings": {"min_samples": budget.settings.min_samples, "alpha": budget.settings.alpha},
        "results": results,
        "summary": counts,
        "ok": counts["fail"] == 0,
    }


def _missing_metrics(budget: Budget, runs: list[Run], baseline: list[Run]) -> list[str]:
    """One line per (run, measure) a non-optional limit needs and the run lacks (or has as NaN/infinity).

    A budget check fails closed: an unknown is never compared with a limit, so it is an error (exit 2)
    unless the limit says ``optional = true``; then the limit is skipped (status ``skip``).
    """
    units = _units(budget)
    lines: list[str] = []
    seen: set[tuple[str, str]] = set()
    for lim in budget.limits:
        if lim.optional:
            continue
        for r in runs + (baseline if lim.kind == "relative" else []):
            if (r.path, lim.key) in seen:
                continue
            seen.add((r.path, lim.key))
            try:
                metrics.run_value(r.doc, lim.key, r.path, **units)
            except metrics.MissingMetric as exc:
                where = f" (limit on line {lim.line} of {budget.path})" if lim.line else f" (limit in {budget.path})"
                lines.append(f"{exc}{where}; mark the limit optional = true to skip it when it is unknown")
    return lines


def _units(budget: Budget) -> dict[str, Optional[float]]:
    return {"tokens_per_step": budget.settings.tokens_per_step, "samples_per_step": budget.settings.samples_per_step}


def _side_values(runs: list[Run], key: str, units: dict[str, Optional[float]]) -> list[float]:
    return [metrics.run_value(r.doc, key, r.path, **units) for r in runs]


def _evaluate_limit(lim: Limit, budget: Budget, runs: list[Run], baseline: list[Run]) -> dict[str, Any]:
    m = lim.metric
    units = _units(budget)
    row: dict[str, Any] = {
        "key": lim.key, "label": m.label, "unit": m.unit, "better": m.better,
        "kind": lim.kind, "bound": lim.bound, "limit": lim.text, "severity": lim.severity, "line": lim.line,
        "optional": lim.optional,
    }
    unknown = [r.path for r in runs + (baseline if lim.kind == "relative" else [])
               if metrics.known_value(r.doc, lim.key, **units) is None]
    if unknown:  # only an optional limit gets here (the others were refused in evaluate)
        row.update(value=None, run_values=[], allowed=lim.threshold if lim.kind == "absolute" else None, baseline=None, change=None, test=None, status="skip",
                   reason=f"unknown in {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''}")
        return row
    values = _side_values(runs, lim.key, units)
    value = metrics.median(values)
    assert value is not None  # evaluate() refuses a check without runs
    row.update(value=value, run_values=values)
    if lim.kind == "absolute":
        allowed = lim.threshold
        row.update(allowed=allowed, baseline=None, change=None, test=None)
        breach = _beyond(value, allowed, lim.bound)
        row["status"] = lim.severity if breach else "pass"
        return row
    base_values = _side_values(baseline, lim.key, units)
    base = metrics.median(base_values)
    assert base is not None  # evaluate() refuses relative limits without a baseline
    allowed = base * (1.0 + lim.threshold)
    # The change against a zero baseline has no finite value: unknown (None), never infinity.
    change = (value / base - 1.0) if base else (0.0 if value == base else None)
    test = _test(lim, budget, runs, baseline, units)
    row.update(allowed=allowed, baseline=base, baseline_values=base_values, change=change, test=test)
    breach = _beyond(value, allowed, lim.bound)
    if not breach:
        row["status"] = "pass"
    elif test["p_value"] is not None and not test["significant"]:
        row["status"] = "noise"
    else:
        row["status"] = lim.severity
    return row


def _beyond(value: float, allowed: float, bound: str) -> bool:
    # A relative tolerance of 1e-9 keeps round-off (0.1 + 0.2) from breaching an equal limit.
    slack = 1e-9 * max(abs(allowed), 1e-12)
    return value > allowed + slack if bound == "max" else value < allowed - slack


def _test(lim: Limit, budget: Budget, runs: list[Run], baseline: list[Run],
          units: dict[str, Optional[float]]) -> dict[str, Any]:
    """The one-sided Mann-Whitney U test of "current is beyond the baseline moved to the limit"."""
    need = budget.settings.min_samples
    x: list[float] = []
    y: list[float] = []
    kind = "runs"
    if len(runs) < need or len(baseline) < need:
        x = [s for r in runs for s in metrics.step_samples(r.doc, lim.key, **units)]
        y = [s for r in baseline for s in metrics.step_samples(r.doc, lim.key, **units)]
        kind = "steps"
    if not x or not y:
        x, y, kind = _side_values(runs, lim.key, units), _side_values(baseline, lim.key, units), "runs"
    out: dict[str, Any] = {"samples": kind, "n": [len(x), len(y)], "min_samples": need,
                           "alpha": budget.settings.alpha, "p_value": None, "significant": None, "method": None}
    if len(x) < need or len(y) < need:
        return out
    moved = [v * (1.0 + lim.threshold) for v in y]
    res = mann_whitney_u(x, moved, "greater" if lim.bound == "max" else "less")
    out.update(p_value=res.p_value, significant=res.p_value < budget.settings.alpha, method=res.method, u=res.u)
    return out

