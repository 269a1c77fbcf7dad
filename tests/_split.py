"""Parametrized tests whose cases are split between the fast suite (tests/unit) and tests/e2e.

In a unit module, :func:`cases` parametrizes a test over a representative subset of its cases and
remembers all of them on the function; in an e2e module, ``test_x = rest_of(unit.test_x)`` runs the
same function over every other case. A hypothesis test that runs fewer examples here says so with
``split_examples = (here, in e2e)``; its e2e twin (same strategies, the full count) with ``split_of``.
tests/e2e/test_suite_split.py checks, through pytest's own collection, that every split unit test has
such an e2e counterpart and that together they run every case exactly once.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pytest


@dataclass(frozen=True)
class Split:
    argnames: str
    all: list[Any]
    unit: list[Any]
    ids: Callable[[Any], str]

    @property
    def rest(self) -> list[Any]:
        return [c for c in self.all if not any(c is u or c == u for u in self.unit)]

    def id_list(self, values: Sequence[Any]) -> list[str]:
        return [self.ids(v) for v in values]


def cases(argnames: str, all_cases: Sequence[Any], unit: Sequence[Any],
          ids: Callable[[Any], str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``pytest.mark.parametrize(argnames, unit)``, remembering ``all_cases`` (``unit`` must be some of them)."""
    all_list, unit_list = list(all_cases), list(unit)
    missing = [u for u in unit_list if not any(u is c or u == c for c in all_list)]
    if missing or not unit_list:
        raise ValueError(f"the unit cases must be some of all the cases (not among them: {missing!r})")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        split = Split(argnames, all_list, unit_list, ids)
        fn.split_cases = split  # type: ignore[attr-defined]
        return pytest.mark.parametrize(argnames, unit_list, ids=split.id_list(unit_list))(fn)

    return decorate


def rest_of(unit_test: Callable[..., Any]) -> Callable[..., Any]:
    """A test that runs ``unit_test`` (decorated with :func:`cases`) over the cases the unit suite leaves out."""
    split: Split = unit_test.split_cases  # type: ignore[attr-defined]
    if not split.rest:
        raise ValueError(f"{unit_test.__name__}: the unit suite already runs every case")

    def test(**kwargs: Any) -> Any:
        return unit_test(**kwargs)

    test.__name__ = test.__qualname__ = unit_test.__name__
    test.__doc__ = unit_test.__doc__
    test.__signature__ = inspect.signature(unit_test)  # type: ignore[attr-defined]  # the same fixtures
    test.split_of = unit_test  # type: ignore[attr-defined]
    for mark in getattr(unit_test, "pytestmark", []):  # the unit test's other marks (another parametrize)
        if not (mark.name == "parametrize" and mark.args[0] == split.argnames):
            test = getattr(pytest.mark, mark.name)(*mark.args, **mark.kwargs)(test)
    return pytest.mark.parametrize(split.argnames, split.rest, ids=split.id_list(split.rest))(test)
