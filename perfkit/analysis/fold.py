"""Case-insensitive name patterns searched as case-sensitive ones in lower-cased names.

Python's ``re`` searches a case-insensitive pattern 3-4x slower than a case-sensitive one (no fast
scan for the first character), and kernel names run to hundreds of characters: the category rules
and the phase patterns spent ~20 ms of a 120 ms analysis in such searches on the 54 MB anchor trace.
For an ASCII text, a case-insensitive search of a pattern finds a match exactly when a
case-sensitive search of the pattern with its letters lower-cased finds one in the lower-cased
text. :func:`folded_pattern` makes that rewrite where it is known to be exact and refuses otherwise;
:class:`NameSearch` uses it for ASCII names and the pattern itself for any other name.
tests/unit/test_fold.py compares the two searches over every name of the committed traces.
"""

from __future__ import annotations

import functools
import re
from typing import Callable, Optional

#: Escapes that stand for no letter (classes, anchors): kept as they are. Any other letter escape
#: names a character by its code or is one (``\x41``, ``\N{...}``, ``\n``...): not rewritten.
_CLASS_ESCAPES = frozenset("dDsSwWbBAZ")


def folded_pattern(pattern: str) -> Optional[str]:
    """``pattern`` for lower-cased ASCII text, case-sensitive (a leading ``(?i)`` dropped), or None
    where the rewrite is not known to be exact: non-ASCII, escapes naming characters by code,
    backreferences, inline flags other than a leading ``(?i)``, a class range whose ends are not
    letters of one case (``[A-z]``), conditionals."""
    if not pattern.isascii():
        return None
    if pattern.startswith("(?i)"):
        pattern = pattern[4:]
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return None
            e = pattern[i + 1]
            if (e.isalpha() and e not in _CLASS_ESCAPES) or e.isdigit():
                return None
            out.append(pattern[i : i + 2])
            i += 2
        elif c == "[":
            end, body = _class(pattern, i)
            if body is None:
                return None
            out.append(body)
            i = end
        elif c == "(" and pattern.startswith("(?", i):
            end, head = _group_head(pattern, i)
            if head is None:
                return None
            out.append(head)
            i = end
        else:
            out.append(c.lower())
            i += 1
    return "".join(out)


def _group_head(pattern: str, i: int) -> tuple[int, Optional[str]]:
    """The ``(?...`` that opens a group at ``i``: (index after it, its text) or (i, None) if refused."""
    for head in ("(?:", "(?=", "(?!", "(?<=", "(?<!"):
        if pattern.startswith(head, i):
            return i + len(head), head
    if pattern.startswith("(?P<", i):  # a named group: its name is kept as written
        close = pattern.find(">", i)
        return (close + 1, pattern[i : close + 1]) if close > 0 else (i, None)
    return i, None  # inline flags, named backreferences, comments, conditionals


def _class(pattern: str, i: int) -> tuple[int, Optional[str]]:
    """The character class opening at ``i``: (index after its ``]``, its lower-cased text) or (i, None)."""
    j = i + 1
    head = "["
    if pattern.startswith("^", j):
        head += "^"
        j += 1
    items: list[str] = []  # single characters and two-character escapes
    first = True
    n = len(pattern)
    while j < n and (pattern[j] != "]" or first):
        first = False
        if pattern[j] == "\\":
            if j + 1 >= n:
                return i, None
            e = pattern[j + 1]
            if (e.isalpha() and e not in _CLASS_ESCAPES) or e.isdigit():
                return i, None
            items.append(pattern[j : j + 2])
            j += 2
        else:
            items.append(pattern[j])
            j += 1
    if j >= n:
        return i, None
    out: list[str] = []
    k = 0
    while k < len(items):
        a = items[k]
        if k + 2 < len(items) and items[k + 1] == "-":  # a range a-b
            b = items[k + 2]
            if len(a) != 1 or len(b) != 1:
                return i, None
            if (a.isalpha() or b.isalpha()) and not (a.isalpha() and b.isalpha() and a.islower() == b.islower()):
                return i, None
            out += [a.lower(), "-", b.lower()]
            k += 3
        else:
            out.append(a.lower() if len(a) == 1 else a)
            k += 1
    return j + 1, head + "".join(out) + "]"


class NameSearch:
    """``re.compile(pattern, flags).search(text) is not None``, through :func:`folded_pattern`
    where the pattern ignores case (``re.I`` or a leading ``(?i)``) and the text is ASCII. The
    pattern itself is compiled only when a text needs it (compiling costs as much as searching
    ~100 names)."""

    __slots__ = ("pattern", "flags", "folded", "_exact")

    def __init__(self, pattern: str, flags: int = 0):
        self.pattern, self.flags = pattern, flags
        insensitive = bool(flags & re.IGNORECASE) or pattern.startswith("(?i)")
        folded = folded_pattern(pattern) if insensitive and not flags & ~re.IGNORECASE else None
        self.folded = re.compile(folded).search if folded is not None else None
        self._exact: Optional[Callable[[str], Optional[re.Match[str]]]] = None

    @property
    def exact(self) -> Callable[[str], Optional[re.Match[str]]]:
        """The search of the pattern as written."""
        if self._exact is None:
            self._exact = re.compile(self.pattern, self.flags).search
        return self._exact

    def __call__(self, text: str, lowered: Optional[str] = None) -> bool:
        """Does ``text`` match? ``lowered``: ``text.lower()`` when ``text`` is ASCII, if known."""
        if self.folded is not None and text.isascii():
            return self.folded(text.lower() if lowered is None else lowered) is not None
        return self.exact(text) is not None


@functools.lru_cache(maxsize=1024)
def name_search(pattern: str, flags: int = 0) -> NameSearch:
    """The :class:`NameSearch` of ``pattern``, made once per process (parsing the rewrite costs
    ~0.1 ms a pattern, and a job's ranks search the same patterns)."""
    return NameSearch(pattern, flags)


def lowered(texts: list[str]) -> list[Optional[str]]:
    """Each text lower-cased where it is ASCII (None elsewhere), for :meth:`NameSearch.__call__`."""
    return [t.lower() if t.isascii() else None for t in texts]
