"""Analyses and reference facts of committed trace files, computed once per test session.

Many test modules analyse the same trace files (the public corpus, the committed fixtures);
this module computes each (document, reference facts) once and hands every caller its own
deep copy, so that a test that changes what it got cannot change what another test sees.
Only for files that do not change during the session: a test that writes its own trace
analyses it directly.
"""

from __future__ import annotations

import copy
import functools
import os
from typing import Any

import perfkit

from . import _evidence


@functools.lru_cache(maxsize=None)
def _document(path: str) -> dict[str, Any]:
    return perfkit.analyze(path).to_dict()


@functools.lru_cache(maxsize=None)
def _facts(path: str) -> dict[str, Any]:
    return _evidence.facts(path)


def document(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """``perfkit.analyze(path).to_dict()`` (default options), a fresh copy on every call."""
    return copy.deepcopy(_document(os.path.abspath(os.fspath(path))))


def facts(path: "str | os.PathLike[str]") -> dict[str, Any]:
    """``_evidence.facts(path)``, the slow reference reading, a fresh copy on every call."""
    return copy.deepcopy(_facts(os.path.abspath(os.fspath(path))))
