"""The scaling probe: time a function at growing sizes and fit ``t = c * n^k``.

A solver that takes 52 ms on a small case can take minutes on the real one.
Instead of guessing the complexity from the code, measure it::

    from perfkit.collect.scaling import scale

    result = scale(solve, [64, 128, 256, 512], make_input=make_cost_matrix, target=1024)
    result.exponent      # 2.97: time grows as n^3
    result.label         # "O(n^3)"
    result.projections   # predicted seconds at 2x and 10x the largest size, and at n=1024

Each size ``n`` runs ``fn(make_input(n))`` (``fn(n)`` without ``make_input``):
``warmup`` untimed calls, then ``repeat`` timed calls; the median is the size's
time. The first timed call of each size follows its warm-up as the sizes grow;
the other timed calls come afterwards in rounds over all sizes, so a change in
machine load during the probe touches every size alike instead of bending the
slope. A fresh input is made for every call, outside the timed region, so a
function that changes its input in place sees the same kind of input each time.
When torch is loaded and the function has used CUDA, the device is synchronised
before and after each timed call, so queued kernels count.

The exponent ``k`` is the least-squares slope of ``log t`` against ``log n``,
fitted on the sizes whose median (or, with ``stat="min"``, fastest run) is
above 1 ms: timer noise and fixed call overhead dominate below. Sizes stop growing once a call takes longer than
``timeout_s``, or once the fit so far predicts that the next size's call would
take more than twice ``timeout_s``; the sizes left are reported as skipped.

This module needs numpy, not torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

from ..errors import UsageError
from ..units import format_seconds

SCHEMA = "perfkit.scale/1"

#: Sizes whose median time is at or below this are left out of the fit.
MIN_FIT_S = 1e-3

#: A size is skipped when the fit predicts its single call above this many timeouts.
PREDICT_SKIP_FACTOR = 2.0


# --------------------------------------------------------------------------- results


@dataclass
class SizeTiming:
    """The timed calls of one size."""

    size: int
    runs_s: list[float]
    in_fit: bool = False

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    @property
    def min_s(self) -> float:
        return min(self.runs_s)

    @property
    def max_s(self) -> float:
        return max(self.runs_s)

    def stat_s(self, stat: str) -> float:
        """The size's time by ``stat``: ``"median"`` or ``"min"``."""
        return self.min_s if stat == "min" else self.median_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "median_s": self.median_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "runs": len(self.runs_s),
            "in_fit": self.in_fit,
        }


@dataclass
class ScaleResult:
    """What :func:`scale` measured and fitted. ``to_dict()`` is the JSON document."""

    function: str
    timings: list[SizeTiming]
    skipped: list[int] = field(default_factory=list)
    skip_reason: Optional[str] = None
    exponent: Optional[float] = None
    r2: Optional[float] = None
    coefficient_s: Optional[float] = None
    label: Optional[str] = None
    fit_sizes: list[int] = field(default_factory=list)
    projections: list[dict[str, Any]] = field(default_factory=list)
    target: Optional[int] = None
    warnings: list[str] = field(default_factory=list)
    repeat: int = 3
    warmup: int = 1
    timeout_s: float = 60.0
    stat: str = "median"

    @property
    def sizes(self) -> list[int]:
        """The sizes that were measured (skipped ones excluded)."""
        return [t.size for t in self.timings]

    @property
    def fitted(self) -> bool:
        return self.exponent is not None

    def predict_s(self, n: float) -> Optional[float]:
        """The fitted time of one call at size ``n`` (None without a fit)."""
        if self.exponent is None or self.coefficient_s is None:
            return None
        return self.coefficient_s * float(n) ** self.exponent

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "function": self.function,
            "sizes": self.sizes,
            "timings": [t.to_dict() for t in self.timings],
            "skipped_sizes": list(self.skipped),
            "skip_reason": self.skip_reason,
            "exponent": self.exponent,
            "r2": self.r2,
            "coefficient_s": self.coefficient_s,
            "label": self.label,
            "fit_sizes": list(self.fit_sizes),
            "min_fit_s": MIN_FIT_S,
            "projections": [dict(p) for p in self.projections],
            "target": self.target,
            "repeat": self.repeat,
            "warmup": self.warmup,
            "timeout_s": self.timeout_s,
            "stat": self.stat,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line: ``time grows as n^2.98 (O(n^3)), r2 0.999; at n=1024: ~53 s``."""
        if not self.fitted:
            return (
                f"no fit: {len(self.fit_sizes)} size(s) above {MIN_FIT_S * 1e3:g} ms, 2 needed; "
                "use larger sizes"
            )
        assert self.exponent is not None and self.r2 is not None
        line = f"time grows as n^{self.exponent:.2f} ({self.label}), r2 {self.r2:.3f}"
        at = [p for p in self.projections if p["size"] == self.target] or self.projections[-1:]
        if at:
            line += f"; at n={at[0]['size']}: ~{format_seconds(at[0]['predicted_s'])}"
        return line


# --------------------------------------------------------------------------- fitting


def fit_power_law(sizes: Sequence[float], seconds: Sequence[float]) -> tuple[float, float, float]:
    """Least squares of ``log t = log c + k log n``: returns ``(k, c, r2)``.

    ``r2`` is measured in log space. With all ``log t`` equal it is 1.0.
    """
    import numpy as np

    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.asarray(seconds, dtype=float))
    if x.size < 2 or float(np.ptp(x)) == 0.0:
        raise ValueError("a fit needs at least two different sizes")
    k, log_c = np.polyfit(x, y, 1)
    resid = y - (k * x + log_c)
    ss_res = float(np.sum(resid**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(k), float(math.exp(log_c)), float(r2)


def nlogn_exponent(n_lo: float, n_hi: float) -> float:
    """The log-log slope that ``n log n`` shows between two sizes: ``1 + ln(ln b / ln a) / ln(b / a)``.

    It depends on the range (about 1.1 to 1.3 for usual sizes), which is why a
    power-law fit can only suggest, never prove, ``O(n log n)``.
    """
    a, b = max(float(n_lo), 3.0), max(float(n_hi), 3.0)
    if b <= a:
        return 1.0 + 1.0 / math.log(a)
    return 1.0 + math.log(math.log(b) / math.log(a)) / math.log(b / a)


def complexity_label(exponent: float, n_lo: float = 100.0, n_hi: float = 1000.0) -> str:
    """The common complexity class nearest to a fitted exponent.

    Candidates: O(1), O(n), O(n log n)? (at its slope over ``n_lo..n_hi``), O(n^2),
    O(n^3), O(n^m). The question mark says that a power-law fit cannot tell
    ``n log n`` from ``n^1.1`` apart.
    """
    candidates: list[tuple[float, str]] = [(0.0, "O(1)"), (1.0, "O(n)"), (nlogn_exponent(n_lo, n_hi), "O(n log n)?")]
    top = max(3, int(math.ceil(exponent)) + 1)
    candidates += [(float(m), f"O(n^{m})") for m in range(2, top + 1)]
    return min(candidates, key=lambda c: abs(exponent - c[0]))[1]


# --------------------------------------------------------------------------- targets


def load_target(spec: str) -> Callable[..., Any]:
    """Resolve ``"module:function"`` or ``"path/to/file.py:function"`` to the callable.

    A dotted function part (``module:Class.method``) is followed attribute by
    attribute. A file is imported as a module named after it, not as
    ``__main__``, so its ``if __name__ == "__main__":`` block does not run; its
    folder is put first on ``sys.path`` (as ``python file.py`` does) so its
    sibling imports work. For a module, the current directory is on
    ``sys.path`` (as with ``python -m``). Problems raise :class:`UsageError`.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise UsageError(f"{spec!r}: expected module:function or path/to/file.py:function")
    mod_part, _, fn_part = spec.rpartition(":")
    mod_part, fn_part = mod_part.strip(), fn_part.strip()
    if not mod_part or not fn_part:
        raise UsageError(f"{spec!r}: expected module:function or path/to/file.py:function")
    if mod_part.endswith(".py") or os.sep in mod_part or "/" in mod_part:
        module = _import_file(mod_part)
    else:
        module = _import_module(mod_part)
    obj: Any = module
    for attr in fn_part.split("."):
        if not hasattr(obj, attr):
            raise UsageError(f"{mod_part} has no function {fn_part!r}")
        obj = getattr(obj, attr)
    if not callable(obj):
        raise UsageError(f"{mod_part}:{fn_part} is a {type(obj).__name__}, not a function")
    return obj


def _import_module(name: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UsageError(f"cannot import {name!r}: no such module (is its folder on PYTHONPATH?)") from None
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {_one_line(exc)}") from exc


def _import_file(path: str) -> Any:
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise UsageError(f"{path}: no such file")
    stem = os.path.splitext(os.path.basename(full))[0]
    mod_name = f"_perfkit_target_{abs(hash(full)):x}_{stem}".replace("-", "_")
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(mod_name, full)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise UsageError(f"importing {path} failed: {type(exc).__name__}: {_one_line(exc)}") from exc
    return module


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _name_of(fn: Callable[..., Any]) -> str:
    mod = getattr(fn, "__module__", None) or ""
    qual = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    if mod.startswith("_perfkit_target_"):
        mod = mod.split("_", 4)[-1]  # the file's stem
    return f"{mod}:{qual}" if mod and mod not in ("__main__", "builtins") else str(qual)


# --------------------------------------------------------------------------- timing


class _Sync:
    """Synchronises CUDA around timed calls when the function under test has used it.

    torch is never imported here: if the code under test did not load it, it
    queued no CUDA work. Nor is CUDA initialised: a process that has not used
    the device has nothing to wait for.
    """

    def __init__(self) -> None:
        self._fn: Optional[Callable[[], None]] = None
        self._checked_available = False
        self._available = False

    def __call__(self) -> None:
        if self._fn is None:
            self._fn = self._resolve()
        if self._fn is not None:
            self._fn()

    def _resolve(self) -> Optional[Callable[[], None]]:
        torch = sys.modules.get("torch")
        if torch is None:
            return None
        try:
            if not self._checked_available:
                self._checked_available = True
                self._available = bool(torch.cuda.is_available())
            if self._available and torch.cuda.is_initialized():
                return torch.cuda.synchronize
        except Exception:
            return None
        return None


def _call(
    fn: Callable[..., Any], make_input: Optional[Callable[[int], Any]], n: int, name: str, sync: "_Sync"
) -> float:
    """One timed call; the input is made before the clock starts."""
    if make_input is not None:
        try:
            arg = make_input(n)
        except Exception as exc:
            raise UsageError(
                f"{_name_of(make_input)}({n}) raised {type(exc).__name__}: {_one_line(exc)}"
            ) from exc
    else:
        arg = n
    sync()
    t0 = time.perf_counter()
    try:
        fn(arg)
        sync()
    except Exception as exc:
        raise UsageError(f"{name}({n}) raised {type(exc).__name__}: {_one_line(exc)}") from exc
    t1 = time.perf_counter()
    del arg
    return t1 - t0


def parse_sizes(text: Union[str, Sequence[int]]) -> list[int]:
    """``"32,64,128"`` (or a sequence of ints) to sorted distinct positive ints; :class:`UsageError` if not."""
    items: list[Any]
    if isinstance(text, str):
        items = [p.strip() for p in text.replace(" ", ",").split(",") if p.strip()]
    else:
        try:
            items = list(text)
        except TypeError:
            raise UsageError(f"sizes: expected a list of whole numbers, got {type(text).__name__}") from None
    out: list[int] = []
    for item in items:
        try:
            if isinstance(item, bool):
                raise ValueError
            if isinstance(item, str):
                value = int(item.replace("_", ""))
            elif isinstance(item, float) and not item.is_integer():
                raise ValueError
            else:
                value = int(item)
        except (TypeError, ValueError):
            raise UsageError(f"sizes: {item!r} is not a whole number (expected e.g. 32,64,128,256)") from None
        if value <= 0:
            raise UsageError(f"sizes: {value} is not positive")
        out.append(value)
    if not out:
        raise UsageError("sizes: none given (expected e.g. 32,64,128,256)")
    return sorted(set(out))


def scale(
    fn: Union[Callable[..., Any], str],
    sizes: Union[Sequence[int], str],
    *,
    make_input: Union[Callable[[int], Any], str, None] = None,
    repeat: int = 3,
    warmup: int = 1,
    timeout_s: float = 60.0,
    target: Optional[int] = None,
    name: Optional[str] = None,
    stat: str = "median",
) -> ScaleResult:
    """Time ``fn`` at each size and fit ``t = c * n^k``; see the module docstring.

    ``fn`` and ``make_input`` may be callables or ``"module:function"`` strings.
    ``target`` adds a projection at that size (say the production size).
    ``stat`` is the time of a size used by the fit: ``"median"`` of its timed
    runs (the typical call, right when inputs vary from call to call), or
    ``"min"``, the fastest run (steadier on a machine shared with other work,
    which slows long calls more often than short ones).
    A call of ``fn`` or ``make_input`` that raises ends the probe with a
    :class:`UsageError` naming the size, the exception type and its message
    (the original exception is its ``__cause__``).
    """
    size_list = parse_sizes(sizes)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"repeat must be a whole number >= 1 (got {repeat!r})")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise UsageError(f"warmup must be a whole number >= 0 (got {warmup!r})")
    try:
        timeout_s = float(timeout_s)
    except (TypeError, ValueError):
        raise UsageError(f"timeout must be a number of seconds (got {timeout_s!r})") from None
    if not timeout_s > 0:
        raise UsageError(f"timeout must be > 0 seconds (got {timeout_s!r})")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or target <= 0):
        raise UsageError(f"target must be a positive whole number (got {target!r})")
    if stat not in ("median", "min"):
        raise UsageError(f"stat must be 'median' or 'min' (got {stat!r})")
    if isinstance(fn, str):
        name = name or fn
        fn = load_target(fn)
    if isinstance(make_input, str):
        make_input = load_target(make_input)
    if not callable(fn):
        raise UsageError(f"scale: fn must be callable, got {type(fn).__name__}")
    if make_input is not None and not callable(make_input):
        raise UsageError(f"scale: make_input must be callable, got {type(make_input).__name__}")
    label = name or _name_of(fn)

    sync = _Sync()
    result = ScaleResult(
        function=label, timings=[], target=target, repeat=repeat, warmup=warmup, timeout_s=timeout_s, stat=stat
    )
    # Pass 1 grows the sizes: warm-up calls and the first timed call of each,
    # stopping at the timeout. Pass 2 takes the other timed calls in rounds over
    # all sizes, so a change of machine load (another job starting, clocks
    # throttling) spreads over every size instead of bending the slope.
    over_sizes: set[int] = set()
    for i, n in enumerate(size_list):
        predicted = _predict_next(result.timings, n, stat)
        if predicted is not None and predicted > PREDICT_SKIP_FACTOR * timeout_s:
            result.skipped = size_list[i:]
            result.skip_reason = (
                f"n={n} predicted at ~{format_seconds(predicted)} per call, over "
                f"{PREDICT_SKIP_FACTOR:g} x the {timeout_s:g} s timeout"
            )
            break
        t = None
        for _ in range(warmup):
            t = _call(fn, make_input, n, label, sync)
            if t > timeout_s:
                break  # kept as the size's only run: repeating it would cost more than it tells
        else:
            t = _call(fn, make_input, n, label, sync)
        result.timings.append(SizeTiming(size=n, runs_s=[t]))
        if t > timeout_s:
            over_sizes.add(n)
            if i + 1 < len(size_list):
                result.skipped = size_list[i + 1 :]
                result.skip_reason = f"n={n} took {format_seconds(t)} per call, over the {timeout_s:g} s timeout"
            break
    for _ in range(repeat - 1):
        for timing in result.timings:
            if timing.size in over_sizes:
                continue
            t = _call(fn, make_input, timing.size, label, sync)
            timing.runs_s.append(t)
            if t > timeout_s:
                over_sizes.add(timing.size)  # no more runs of it
    _fit(result)
    return result


def _predict_next(timings: list[SizeTiming], n: int, stat: str) -> Optional[float]:
    """The fitted time at ``n`` from the sizes measured so far (None below two fit points)."""
    pts = [(t.size, t.stat_s(stat)) for t in timings if t.stat_s(stat) > MIN_FIT_S]
    if len(pts) < 2:
        return None
    try:
        k, c, _ = fit_power_law([p[0] for p in pts], [p[1] for p in pts])
    except ValueError:
        return None
    return c * float(n) ** max(k, 0.0)


def _fit(result: ScaleResult) -> None:
    stat = result.stat
    usable = [t for t in result.timings if t.stat_s(stat) > MIN_FIT_S]
    for t in usable:
        t.in_fit = True
    result.fit_sizes = [t.size for t in usable]
    below = [t.size for t in result.timings if not t.in_fit]
    if below:
        result.warnings.append(
            f"size(s) {', '.join(map(str, below))} ran at or under {MIN_FIT_S * 1e3:g} ms and were left out of the fit"
        )
    if len(usable) < 2:
        result.warnings.append(
            f"only {len(usable)} size(s) above {MIN_FIT_S * 1e3:g} ms: no fit; use larger sizes"
        )
        return
    k, c, r2 = fit_power_law([t.size for t in usable], [t.stat_s(stat) for t in usable])
    result.exponent, result.coefficient_s, result.r2 = k, c, r2
    result.label = complexity_label(k, usable[0].size, usable[-1].size)
    if len(usable) == 2:
        result.warnings.append("only 2 sizes in the fit: r2 is 1 by construction; add sizes to check the fit")
    elif r2 < 0.9:
        result.warnings.append(
            f"r2 {r2:.2f}: the times do not follow one power law (noise, caches, or a change of regime)"
        )
    if stat == "median" and any(len(t.runs_s) > 1 and t.median_s > 1.5 * t.min_s for t in usable):
        result.warnings.append(
            "the median of some size is over 1.5x its fastest run: a busy machine? "
            "more repeats help, or fit the fastest runs (stat 'min')"
        )
    largest = max(t.size for t in result.timings)
    sizes = [2 * largest, 10 * largest]
    if result.target is not None and result.target not in sizes:
        sizes.append(result.target)
    result.projections = [
        {"size": s, "predicted_s": c * float(s) ** k, "x_largest": s / largest} for s in sizes
    ]


__all__ = [
    "ScaleResult",
    "SizeTiming",
    "scale",
    "load_target",
    "parse_sizes",
    "fit_power_law",
    "complexity_label",
    "format_seconds",
]
