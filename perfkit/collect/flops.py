"""FLOPs of a step and model FLOPs utilisation (MFU).

:func:`count_flops` runs a function once under
``torch.utils.flop_counter.FlopCounterMode`` and returns the floating-point
operations it did (a multiply-add counts 2; matrix products, convolutions and
attention are counted, elementwise work is not). Run on a training step
function it counts forward and backward.

:data:`perfkit.peaks.PEAK_TFLOPS` holds the dense peak throughput of common
accelerators, and :func:`mfu` divides achieved by peak.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

# The datasheet table and its lookups live in perfkit.peaks (torch-free: the report reads them too).
from ..peaks import DTYPE_ALIASES, PEAK_TFLOPS, device_key, mfu, normalize_dtype, peak_tflops  # noqa: F401


class _GlobalOnly:
    """Stands in for FlopCounterMode's ModuleTracker: every count goes to "Global" (the total), and no
    global module hooks run inside the script's forward (perfkit needs the total only)."""

    parents = frozenset({"Global"})

    def __enter__(self) -> "_GlobalOnly":
        return self

    def __exit__(self, *args: Any) -> None:
        return None


def safe_flop_counter(on_error: Callable[[BaseException], None]) -> Any:
    """A ``FlopCounterMode`` whose FLOP formulas cannot raise into the code it counts.

    torch runs a formula after each counted op, inside the caller's forward or
    backward; a formula that raises (torch's ``sdpa_flop_count`` asserted on
    grouped-query attention before torch 2.13) would end the training run. Each
    formula is wrapped: the op's result is already computed and is returned
    unchanged; the first error calls ``on_error(exc)`` once, and from then on
    nothing is counted (the total is then unknown: callers must not use it).
    The module tracker is replaced by a stand-in that adds nothing (only the
    total is read), so no global module hooks run either.
    """
    import functools

    from torch.utils.flop_counter import FlopCounterMode

    mode = FlopCounterMode(display=False)
    failed: list[BaseException] = []

    def guard(formula: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(formula)
        def safe(*args: Any, **kwargs: Any) -> Any:
            if failed:
                return 0
            try:
                return formula(*args, **kwargs)
            except Exception as exc:
                failed.append(exc)
                on_error(exc)
                return 0

        return safe

    registry = getattr(mode, "flop_registry", None)
    if isinstance(registry, dict):
        mode.flop_registry = {op: guard(f) for op, f in registry.items()}
    if getattr(mode, "mod_tracker", None) is not None:
        mode.mod_tracker = _GlobalOnly()  # type: ignore[assignment]  # counts at the global level only
    mode.perfkit_failed = failed  # type: ignore[attr-defined]  # read back by the session
    return mode


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """FLOPs of running ``fn(*args, **kwargs)`` once (it really runs: an optimizer step is applied).

    Counts what ``FlopCounterMode`` knows (matrix products, convolutions,
    attention; forward and backward); elementwise and reduction work counts 0.
    Use it on an eager (not ``torch.compile``-d) function.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return int(counter.get_total_flops())
