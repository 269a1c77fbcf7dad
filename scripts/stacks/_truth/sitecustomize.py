"""Phase truth for scripts/validate_frameworks.py: CUDA events at phase boundaries, outside perfkit.

Loaded by Python at start-up when this folder is on PYTHONPATH (``sitecustomize``). It does
nothing unless ``PK_TRUTH_MODE`` and ``PK_TRUTH_OUT`` are set. It reads the training script's
phases from torch's own hooks, so it works unchanged for a plain loop, a Hugging Face
``Trainer``, a Lightning ``Trainer`` (``optimizer.step(closure)``) and ``torch.compile``:

* forward starts at the first module forward pre-hook (global hook) after a non-forward part;
* backward starts when ``Tensor.backward`` / ``torch.autograd.backward`` is called, and
  "other" starts when it returns (grad clipping, GradScaler's unscale, logging...);
* the optimizer starts at its step pre-hook, or, for ``step(closure)``, when the closure
  returns; "other" starts at its step post-hook, which also ends the step.

``PK_TRUTH_MODE=busy``: each boundary records an event, queues ``torch.cuda._sleep`` long
enough for the host to queue the whole next part behind it, and records the start event,
so the events bracket back-to-back kernels: the GPU busy time of each part.
``PK_TRUTH_MODE=elapsed``: one event per optimizer step and nothing else (no sleeps): the
step time the run sees. At exit, JSON goes to ``PK_TRUTH_OUT``. Without a GPU (a dry run
of the validation script) the "events" are wall-clock readings: CPU time, not GPU truth.
"""

from __future__ import annotations

import atexit
import json
import os

_MODE = os.environ.get("PK_TRUTH_MODE")
_OUT = os.environ.get("PK_TRUTH_OUT")


def _install() -> None:
    import time

    import torch
    import torch.optim.optimizer as optim_hooks  # torch.optim deletes its "optimizer" attribute

    cuda = torch.cuda.is_available()

    class _CpuEvent:  # without a GPU (a dry run of the validation script): wall time between marks
        def __init__(self, enable_timing: bool = True) -> None:
            self.t = 0.0

        def record(self) -> None:
            self.t = time.perf_counter()

        def elapsed_time(self, other: "_CpuEvent") -> float:
            return (other.t - self.t) * 1000.0

    Event = torch.cuda.Event if cuda else _CpuEvent
    sleep_ms = float(os.environ.get("PK_TRUTH_SLEEP_MS", "80"))
    st: dict = {"phase": None, "start": None, "step": 0, "segments": [], "step_events": [], "cycles": None,
                "in_backward": 0}

    def cycles() -> int:
        if st["cycles"] is None:
            a, b = Event(enable_timing=True), Event(enable_timing=True)
            a.record()
            torch.cuda._sleep(20_000_000)
            b.record()
            torch.cuda.synchronize()
            st["cycles"] = int(20_000_000 / max(a.elapsed_time(b), 1e-3) * sleep_ms)
        return st["cycles"]

    def mark(label):  # type: ignore[no-untyped-def]
        if _MODE != "busy" or label == st["phase"]:
            return
        if st["phase"] is not None:
            end = Event(enable_timing=True)
            end.record()
            st["segments"].append((st["phase"], st["step"], st["start"], end))
        st["phase"] = label
        if label is None:
            return
        if cuda:
            torch.cuda._sleep(cycles())
        start = Event(enable_timing=True)
        start.record()
        st["start"] = start

    def fwd_pre(module, args):  # type: ignore[no-untyped-def]
        if torch.compiler.is_compiling() or st["in_backward"]:
            return None
        if st["phase"] != "forward":
            mark("forward")
        return None

    torch.nn.modules.module.register_module_forward_pre_hook(fwd_pre)

    def wrap_backward(fn):  # type: ignore[no-untyped-def]
        def backward(*a, **k):  # type: ignore[no-untyped-def]
            if torch.compiler.is_compiling():
                return fn(*a, **k)
            mark("backward")
            st["in_backward"] += 1
            try:
                return fn(*a, **k)
            finally:
                st["in_backward"] -= 1
                mark("other")
        return backward

    torch.Tensor.backward = wrap_backward(torch.Tensor.backward)
    torch.autograd.backward = wrap_backward(torch.autograd.backward)

    def opt_pre(opt, args, kwargs):  # type: ignore[no-untyped-def]
        closure = kwargs.get("closure") if "closure" in kwargs else (args[0] if args else None)
        if callable(closure):
            def wrapped():  # type: ignore[no-untyped-def]
                out = closure()
                mark("optimizer")
                return out
            if "closure" in kwargs:
                kwargs = {**kwargs, "closure": wrapped}
            else:
                args = (wrapped, *args[1:])
            return args, kwargs
        mark("optimizer")
        return None

    def opt_post(opt, args, kwargs):  # type: ignore[no-untyped-def]
        mark("other")
        ev = Event(enable_timing=True)
        ev.record()
        st["step_events"].append(ev)
        st["step"] += 1

    optim_hooks.register_optimizer_step_pre_hook(opt_pre)
    optim_hooks.register_optimizer_step_post_hook(opt_post)

    def dump() -> None:
        mark(None)
        if cuda:
            torch.cuda.synchronize()
        per_step: dict[int, dict[str, float]] = {}
        for phase, step, a, b in st["segments"]:
            d = per_step.setdefault(step, {})
            d[phase] = d.get(phase, 0.0) + a.elapsed_time(b)
        ev = st["step_events"]
        doc = {
            "mode": _MODE,
            "optimizer_steps": st["step"],
            "step_ms": [ev[i].elapsed_time(ev[i + 1]) for i in range(len(ev) - 1)],
            "phase_ms_by_step": [per_step[k] for k in sorted(per_step)],
        }
        with open(_OUT, "w") as f:
            json.dump(doc, f)

    atexit.register(dump)


if _MODE in ("busy", "elapsed") and _OUT:
    try:
        _install()
    except Exception as exc:  # never break the script being measured
        print(f"phase-truth hooks not installed: {exc!r}")
