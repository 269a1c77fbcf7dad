"""Shared fixtures: where the real traces live; and, for every test, a check that it leaves no
perfkit session running and no global torch hook registered (:func:`no_leaked_session_or_hooks`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ANCHORS = SHARED / "anchors" / "traces"
TRACES = REPO / "traces"
BF16 = TRACES / "gpt100m_bf16_adamw" / "rank0.pt.trace.json.gz"
FP32 = TRACES / "gpt100m_fp32_sgd" / "rank0.pt.trace.json.gz"


def anchor(rel: str) -> Path:
    path = ANCHORS / rel
    if not path.exists():
        pytest.fail(f"anchor trace missing: {path} (the shared folder must sit beside the repo)")
    return path


def all_anchor_traces() -> list[Path]:
    """Every Kineto trace file under shared/anchors/traces (not the raw memory timeline)."""
    files = sorted(p for p in ANCHORS.rglob("*") if p.is_file() and p.name.endswith((".json", ".json.gz")))
    return files


# ---------------------------------------------------------------------- leaked global state

#: torch's process-wide hook registries a profiling session may add to (module, attribute).
_HOOK_REGISTRIES = (
    ("torch.nn.modules.module", "_global_forward_pre_hooks"),
    ("torch.nn.modules.module", "_global_forward_hooks"),
    ("torch.nn.modules.module", "_global_forward_hooks_with_kwargs"),
    ("torch.nn.modules.module", "_global_forward_hooks_always_called"),
    ("torch.nn.modules.module", "_global_backward_pre_hooks"),
    ("torch.nn.modules.module", "_global_backward_hooks"),
    ("torch.nn.modules.module", "_global_buffer_registration_hooks"),
    ("torch.nn.modules.module", "_global_module_registration_hooks"),
    ("torch.nn.modules.module", "_global_parameter_registration_hooks"),
    ("torch.optim.optimizer", "_global_optimizer_pre_hooks"),
    ("torch.optim.optimizer", "_global_optimizer_post_hooks"),
)


def _torch_state() -> dict[str, Any]:
    """Identity of torch's global hooks and backward functions, when torch is imported (never imports it)."""
    import sys

    if "torch" not in sys.modules:
        return {}
    import importlib

    import torch

    state: dict[str, Any] = {}
    for module_name, attr in _HOOK_REGISTRIES:
        registry = getattr(importlib.import_module(module_name), attr, None)
        if isinstance(registry, dict):
            state[f"{module_name}.{attr}"] = dict(registry)
    state["torch.autograd.backward"] = torch.autograd.backward
    state["torch.Tensor.backward"] = torch.Tensor.__dict__.get("backward")
    return state


def _perfkit_session() -> Any:
    import sys

    module = sys.modules.get("perfkit.collect.session")
    if module is None:
        return None
    return getattr(module, "_ACTIVE", None) or module.current()


def _describe(fn: Any) -> str:
    """``module.Qualified.name`` of a hook or function (a bound method names its class)."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    text = f"{module}.{name}" if module else name
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    if getattr(fn, "__wrapped__", None) is not None and code is not None:  # functools.wraps copies the name
        text += f" (a wrapper defined at {code.co_filename}:{code.co_firstlineno})"
    return text


def _leaks(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What ``after`` holds that ``before`` did not (a test that first imported torch: against a pristine torch)."""
    found = []
    for key, value in after.items():
        if isinstance(value, dict):
            old = before.get(key, {})
            added = [fn for handle_id, fn in value.items() if handle_id not in old]
            if added:
                found.append(f"{key} gained {', '.join(_describe(fn) for fn in added)}")
        elif key in before:
            if value is not before[key]:
                found.append(f"{key} was replaced by {_describe(value)}")
        elif getattr(value, "__wrapped__", None) is not None:  # torch imported by this test: a wrapper is a leak
            found.append(f"{key} is a wrapper ({_describe(value)})")
    return found


def _restore(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Put torch's global state back as it was, so that one leaking test does not fail the tests after it."""
    import importlib

    import torch

    for module_name, attr in _HOOK_REGISTRIES:
        key = f"{module_name}.{attr}"
        registry = getattr(importlib.import_module(module_name), attr, None)
        if isinstance(registry, dict) and key in after:
            for handle_id in [h for h in registry if h not in before.get(key, {})]:
                del registry[handle_id]
    for key, owner, attr in (("torch.autograd.backward", torch.autograd, "backward"),
                             ("torch.Tensor.backward", torch.Tensor, "backward")):
        value = after.get(key)
        original = before.get(key) or getattr(value, "__wrapped__", None)
        if original is not None and value is not original:
            setattr(owner, attr, original)


def leaked_state(before: dict[str, Any], session_before: Any) -> list[str]:
    """What was leaked since ``before`` (:func:`_torch_state`) and ``session_before``, one phrase each;
    each leak found is undone, so that later tests start clean."""
    after = _torch_state()
    problems = _leaks(before, after)
    session = _perfkit_session()
    if session is not None and session is not session_before:
        problems.insert(0, f"a perfkit session is still current (run directory {getattr(session, 'run_dir', '?')})")
        import sys

        sys.modules["perfkit.collect.session"]._ACTIVE = session_before
    if problems and after:
        _restore(before, after)
    return problems


@pytest.fixture(autouse=True)
def no_leaked_session_or_hooks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a live perfkit session or a global torch hook behind (checked after
    every other fixture of the test is torn down). Never imports torch itself."""
    before = _torch_state()
    session_before = _perfkit_session()
    yield
    problems = leaked_state(before, session_before)
    if problems:
        pytest.fail(f"{request.node.nodeid} leaked global state: " + "; ".join(problems), pytrace=False)
