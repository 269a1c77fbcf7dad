"""Performance budgets for CI (``perfkit budget``; the file format is in docs/budget.md).

* ``spec.load_budget(path)`` reads and validates a budget file (TOML) into a ``Budget``;
* ``check.load_runs(paths)`` and ``check.evaluate(budget, runs, baseline)`` return
  the result as plain data (schema ``perfkit.budget/1``);
* ``metrics`` says how each measure is read from an analysis document;
* ``stats.mann_whitney_u`` is the significance test; ``init.starting_budget``
  writes a first budget file from one run.

Rendering (terminal, JUnit XML, GitHub) is in ``perfkit.report.budget``.
"""

from .check import evaluate, load_runs
from .spec import Budget, Limit, load_budget, parse_budget

__all__ = ["Budget", "Limit", "evaluate", "load_budget", "load_runs", "parse_budget"]
