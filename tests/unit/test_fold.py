"""Case-insensitive name patterns are searched as case-sensitive ones in lower-cased ASCII names
(perfkit.analysis.fold, issue #15). The rewrite must never change an answer: every case-insensitive
pattern of perfkit's rules is compared, folded against as written, over the names of real traces,
those names with their letters' case shuffled, and generated names built from the patterns' own
words; the rewrite's refusals are checked one by one."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from perfkit.analysis import rules
from perfkit.analysis.fold import NameSearch, folded_pattern
from perfkit.trace import read_trace

from .._split import cases
from ..conftest import REPO


def _insensitive_patterns() -> list[tuple[str, int]]:
    """Every pattern perfkit searches ignoring case: (pattern, flags)."""
    out = [(v, 0) for k, v in vars(rules).items() if isinstance(v, str) and v.startswith("(?i)")]
    out += [(p, re.I) for r in rules.CATEGORY_RULES for p in (r.kernel, r.op) if p]
    out += [(p, re.I) for _, p in [*rules.COLLECTIVE_KINDS, *rules.COPY_DIRECTIONS]]
    return out


PATTERNS = _insensitive_patterns()


def test_every_rule_pattern_is_folded() -> None:
    """A rule written so that the rewrite refuses it would silently lose the speed: none is."""
    assert len(PATTERNS) >= 40
    assert [p for p, _ in PATTERNS if folded_pattern(p) is None] == []


@pytest.mark.parametrize("pattern, folded", [
    (r"(?i)Cijk_|\bGEMM\b|[A-F]x\d+", r"cijk_|\bgemm\b|[a-f]x\d+"),
    (r"(?<!fb)Gemm|conv(?!ert)", r"(?<!fb)gemm|conv(?!ert)"),
    (r"(?P<Name>Ab)(?:Cd)\.\(E\)", r"(?P<Name>ab)(?:cd)\.\(e\)"),
    (r"[^A-Z0-9_\]-]+X{2,3}$", r"[^a-z0-9_\]-]+x{2,3}$"),
])
def test_rewrites(pattern: str, folded: str) -> None:
    assert folded_pattern(pattern) == folded


@pytest.mark.parametrize("pattern", [
    r"\x41b", r"\N{LATIN SMALL LETTER A}", r"a\nb", r"(a)\1", r"(?P<x>a)(?P=x)", r"a(?i)b", r"(?s)a.b",
    r"(?i:a)b", r"[A-z]", r"[0-Z]", r"é", r"(?#c)a", r"(?(1)a|b)", "a\\",
])
def test_refusals(pattern: str) -> None:
    assert folded_pattern(pattern) is None


def _shuffled_case(rng: random.Random, text: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in text)


def _words(pattern: str) -> list[str]:
    return [w for w in re.split(r"[^A-Za-z0-9_:]+", pattern) if w]


def _compare(names: list[str], rng: random.Random) -> int:
    texts = [n for n in dict.fromkeys(names) if n.isascii()]
    texts += [_shuffled_case(rng, t) for t in texts]
    for pattern, _ in PATTERNS:  # the patterns' own words in random company and case
        for _ in range(20):
            parts = rng.sample(_words(pattern), min(3, len(_words(pattern))))
            texts.append(_shuffled_case(rng, rng.choice(["", "x", " ", "::", "_"]).join(
                [rng.choice(["void ", "at::", "fb", "k_", ""]) + w + rng.choice(["", "_", "<", " ", "ert", "s"]) for w in parts])))
    checked = 0
    for pattern, flags in PATTERNS:
        exact = re.compile(pattern, flags)
        search = NameSearch(pattern, flags)
        assert search.folded is not None
        for t in texts:
            assert search(t) == (exact.search(t) is not None), (pattern, t)
            checked += 1
    return checked


TRACE_FILES = sorted(p for p in (REPO / "tests" / "data" / "traces").glob("*/*.json*") if p.name != "expected.json")
UNIT = [p for p in TRACE_FILES if p.parent.name in ("nv-rtx2080ti-param-linear-train", "amd-mi300x-xdit-flux-aiter")]


@cases("path", TRACE_FILES, UNIT, ids=lambda p: f"{p.parent.name}/{p.name[:24]}")
def test_folded_search_answers_as_the_pattern(path: Path) -> None:
    names = read_trace(str(path)).names
    assert _compare(names, random.Random(path.name)) > 1000


def test_non_ascii_names_use_the_pattern_itself() -> None:
    """The Kelvin sign matches k ignoring case, and Turkish dotless i does not lower to i: non-ASCII
    names are searched with the pattern as written."""
    search = NameSearch("kernel", re.I)
    assert search("\u212aernel") and re.search("kernel", "\u212aernel", re.I)
    assert search("KERNEL") and not search("kernal")
