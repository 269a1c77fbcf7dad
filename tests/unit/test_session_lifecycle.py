"""A profiling session's lifecycle: it runs once and leaves no global state behind (issue #14).

The reproducer: ``@perfkit.profile(out=..., mode="light")`` on a function called twice left the session
current and its optimizer hook registered after the second call (``finish()`` returned early once
finished, ``start()`` registered again). The autouse fixture in conftest.py also checks every test here.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.optim.optimizer as optimizer_module
from torch.nn.modules import module as module_module

import perfkit
from perfkit.collect import session as session_module
from perfkit._profile import ProfileSession
from perfkit.collect.session import SessionOptions


def _train(steps: int = 3, model: torch.nn.Module | None = None) -> float:
    if model is None:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 4)
    opt = getattr(model, "opt", None) or torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.zeros(())
    for _ in range(steps):
        loss = model(torch.ones(2, 4)).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return float(loss.detach())


def _global_state() -> tuple[int, int, int, object]:
    return (len(optimizer_module._global_optimizer_post_hooks), len(module_module._global_forward_pre_hooks),
            len(module_module._global_forward_hooks), torch.autograd.backward)


def test_decorated_function_called_three_times_is_profiled_once_and_leaves_nothing(tmp_path, capfd):
    out = tmp_path / "run"
    clean = _global_state()

    @perfkit.profile(out=str(out), mode="light", report=False)
    def train(steps: int) -> float:
        assert session_module.current() is not None or calls  # the first call runs profiled
        calls.append(session_module.current())
        return _train(steps)

    calls: list[object] = []
    results = [train(3), train(4), train(2)]
    assert results == [_train(3), _train(4), _train(2)]  # the script's results are unchanged
    after = _global_state()
    assert session_module.current() is None
    assert after == clean, f"global hooks before {clean}, after {after}"
    assert calls[0] is not None and calls[1:] == [None, None]  # later calls run unprofiled
    doc = json.loads((out / "analysis.json").read_text())
    assert doc["runtime"]["steps_seen"] == 3  # only the first call's steps
    assert sorted(os.listdir(tmp_path)) == ["run"]  # no second run directory
    err = capfd.readouterr().err
    assert err.count("this perfkit.profile session ran already") == 1, err
    assert str(out) in err


def test_each_call_leaves_no_session_and_no_hook(tmp_path):
    clean = _global_state()
    session = perfkit.profile(out=str(tmp_path / "r"), mode="light", report=False)
    train = session(_train)
    for n in range(3):
        train(2)
        assert session_module.current() is None, f"after call {n + 1}"
        assert _global_state() == clean, f"after call {n + 1}"


def test_a_recursive_call_is_part_of_the_run_and_the_outer_call_finishes_it(tmp_path):
    seen: list[object] = []
    model = torch.nn.Linear(4, 4)
    model.opt = torch.optim.SGD(model.parameters(), lr=0.1)  # one optimizer: its steps end the steps

    @perfkit.profile(out=str(tmp_path / "r"), mode="light", report=False)
    def train(depth: int) -> None:
        seen.append(session_module.current())
        _train(2, model)
        if depth:
            train(depth - 1)
            seen.append(session_module.current())  # still running after the inner call returned

    train(2)
    assert len(seen) == 5 and seen[0] is not None and all(s is seen[0] for s in seen)
    assert session_module.current() is None
    doc = json.loads((tmp_path / "r" / "analysis.json").read_text())
    assert doc["runtime"]["steps_seen"] == 6


def test_a_with_block_entered_again_runs_unprofiled(tmp_path, capfd):
    clean = _global_state()
    run = perfkit.profile(out=str(tmp_path / "r"), mode="light", report=False)
    with run:
        assert session_module.current() is run
        _train(2)
    with run:
        assert session_module.current() is None
        _train(2)
    assert run.steps == 2 and _global_state() == clean
    assert "ran already" in capfd.readouterr().err


def test_a_failing_teardown_still_removes_the_hooks(tmp_path):
    clean = _global_state()
    session = ProfileSession(SessionOptions(out=str(tmp_path / "r"), mode="light", report=False, quiet=True))
    session.start()
    _train(2)

    def broken() -> None:
        raise RuntimeError("teardown broke")

    session.timer.stop = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="teardown broke"):
        session.finish()
    assert session_module.current() is None and _global_state() == clean


def test_the_dtype_hook_of_flop_counting_is_removed_when_the_run_ends_before_the_next_module_call(tmp_path):
    clean = _global_state()
    session = ProfileSession(SessionOptions(out=str(tmp_path / "r"), mode="light", report=False, quiet=True,
                                            flops=True))
    session.start()
    _train(1)  # one step: flop counting starts and waits for the next module call to see the dtype
    assert len(module_module._global_forward_pre_hooks) > clean[1]
    session.finish()
    assert _global_state() == clean


def test_a_session_that_cannot_create_its_run_directory_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    clean = _global_state()

    @perfkit.profile(out=str(blocker / "run"), mode="light", report=False)
    def train() -> float:
        return _train(2)

    train()
    train()
    assert session_module.current() is None and _global_state() == clean
