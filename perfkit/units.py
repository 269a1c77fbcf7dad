"""Numbers for people, shared by every stage (standard library only)."""

from __future__ import annotations

_MINUTE, _HOUR, _DAY, _YEAR = 60.0, 3600.0, 86400.0, 365 * 86400.0


def format_seconds(s: float, *, exact: bool = True, digits: int = 3) -> str:
    """A duration for people: ``0.42 ms``, ``52 ms``, ``53 s``, ``9.0 min (540 s)``, ``15 h (5.3e+04 s)``.

    Args:
        s: seconds.
        exact: add the seconds in parentheses to minutes and longer.
        digits: significant digits of the leading figure.
    """
    if s != s or s < 0:
        return "?"
    if s < 1e-3:
        return f"{_sig(s * 1e6, digits)} us"
    if s < 1.0:
        return f"{_sig(s * 1e3, digits)} ms"
    if s < 2 * _MINUTE:
        return f"{_sig(s, digits)} s"
    tail = f" ({s:.3g} s)" if exact else ""
    if s < 2 * _HOUR:
        return f"{s / _MINUTE:.2g} min{tail}"
    if s < 3 * _DAY:
        return f"{s / _HOUR:.2g} h{tail}"
    if s < 2 * _YEAR:
        return f"{s / _DAY:.2g} days{tail}"
    return f"{s / _YEAR:.2g} years{tail}"


def _sig(x: float, digits: int) -> str:
    """``digits`` significant digits, never in exponent form (400, not 4e+02)."""
    return f"{x:.0f}" if x >= 10**digits else f"{x:.{digits}g}"


def compress_ids(ids: list[int], max_chars: int | None = None) -> str:
    """Sorted distinct integer ids as runs: ``[5, 6, 7, 9]`` -> ``"5-7, 9"``.

    With ``max_chars``, the runs that fit in that many characters, then ``... (N more)`` counting the ids
    left out (every other rank of 1,000 is otherwise a 2,000-character text).
    """
    values = sorted(set(ids))
    parts: list[str] = []
    used = shown = 0
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        part = str(values[i]) if i == j else f"{values[i]}-{values[j]}"
        if max_chars is not None and parts and used + 2 + len(part) > max_chars:
            return ", ".join(parts) + f" ... ({len(values) - shown} more)"
        used += len(part) + (2 if parts else 0)
        shown += j - i + 1
        parts.append(part)
        i = j + 1
    return ", ".join(parts)
