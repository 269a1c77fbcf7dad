"""Steps of a training loop with no torch.optim optimizer, and weights that are unknown, never 0.

A hand-written update under ``torch.no_grad()`` steps no optimizer: perfkit then ends a step at each
autograd backward (once two ran with no torch.optim.Optimizer in the process). With an optimizer,
gradient accumulation runs several backward calls per step: the optimizer's steps stay the steps.
Times come from an injected clock, never the wall clock. tests/e2e/test_steps_without_optimizer_e2e.py
runs the issue's reproducer under ``perfkit profile`` in a subprocess.
"""

from __future__ import annotations

import json

import pytest
import torch

from perfkit.collect import session as session_module
from perfkit._profile import ProfileSession
from perfkit.collect.session import Schedule, SessionOptions, no_steps_message, trained_leaves


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _session(tmp_path, clock=None, mode="light", **schedule):
    opts = SessionOptions(out=str(tmp_path / "run"), mode=mode, report=False,
                          schedule=Schedule(**{"skip_first": 2, "warmup": 1, "active": 2, **schedule}))
    return ProfileSession(opts, clock=clock)


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def _param_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _manual_sgd_step(model, clock=None, at=None):
    loss = model(torch.randn(4, 8)).pow(2).mean()
    if clock is not None:
        clock.t = at
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.01 * p.grad
            p.grad = None


def _doc(tmp_path):
    return json.loads((tmp_path / "run" / "analysis.json").read_text())


def test_manual_update_steps_found_at_each_backward_with_their_times(tmp_path, monkeypatch):
    # Other tests of this process may leave optimizers alive: this script has none (the end-to-end test
    # below runs the scan in a process of its own).
    monkeypatch.setattr(session_module, "_optimizer_in_process", lambda: False)
    model, clock = _model(), Clock()
    session = _session(tmp_path, clock)
    ends_ms = [100, 200, 300, 700, 800, 900, 1000, 1100]  # step 4 takes 400 ms, the others 100 ms
    with session:
        for end in ends_ms:
            _manual_sgd_step(model, clock, end / 1000)
    rt = _doc(tmp_path)["runtime"]
    assert rt["steps_seen"] == len(ends_ms)
    assert rt["step_source"] == "autograd backward"
    assert rt["backward_calls"] == len(ends_ms)
    # the first two steps were counted when the second backward ended, at the times each ended
    expected = [b - a for a, b in zip([0, *ends_ms], ends_ms)]
    assert rt["steps"]["wall_ms"] == pytest.approx(expected)
    mem = rt["memory"]
    assert mem["weights_bytes"] == _param_bytes(model)
    assert mem["counted_from"] == "backward"
    assert mem["gradients_bytes"] == _param_bytes(model)  # counted right after the first backward
    assert mem["optimizer_state_bytes"] is None  # no optimizer: unknown, not 0
    assert "no torch.optim optimizer" in mem["unknown"]["optimizer_state_bytes"]
    # light mode: every step past the start-up is unprofiled; step 4 (400 ms) makes them unsteady
    sp = rt["steps"]["spread"]
    assert sp["steps"] == len(ends_ms) - 2 and sp["max_step"] == 4 and sp["max_ms"] == pytest.approx(400)
    assert sp["unstable"] is True
    warnings = _doc(tmp_path)["trace"]["warnings"]
    assert any("run step 4" in w and "vary by" in w for w in warnings)


def test_gradient_accumulation_with_an_optimizer_keeps_the_optimizer_steps(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with _session(tmp_path):
        for _ in range(5):  # 4 micro-batches per optimizer step
            for _ in range(4):
                model(torch.randn(4, 8)).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    rt = _doc(tmp_path)["runtime"]
    assert rt["steps_seen"] == 5 and rt["step_source"] == "optimizer.step" and rt["backward_calls"] == 20
    assert rt["memory"]["weights_bytes"] == _param_bytes(model)
    assert rt["memory"]["optimizer_state_bytes"] == 0  # plain SGD keeps no state: a known 0


def test_an_optimizer_that_never_steps_gives_no_steps_and_says_what_to_do(tmp_path):
    model = _model()
    unused = torch.optim.SGD(model.parameters(), lr=0.01)  # noqa: F841  (exists, never steps)
    session = _session(tmp_path)
    with session:
        for _ in range(4):
            _manual_sgd_step(model)
    rt = _doc(tmp_path)["runtime"]
    assert rt["steps_seen"] == 0 and rt["step_source"] is None
    msg = rt["analysis_error"]
    assert "never stepped" in msg and "--step-fn __main__:train_step" in msg and "@perfkit.step" in msg
    assert "lower --skip-first" not in msg


def test_no_step_message_in_trace_mode_names_the_remedy_not_the_schedule(tmp_path):
    session = _session(tmp_path, mode="trace")
    with session:
        torch.randn(8, 8) @ torch.randn(8, 8)  # work, but no backward and no optimizer
    rt = _doc(tmp_path)["runtime"]
    assert rt["analysis_error"].startswith("no kernel trace: no training step was seen")
    assert "no autograd backward" in rt["analysis_error"] and "lower --skip-first" not in rt["analysis_error"]
    assert rt["memory"]["weights_bytes"] is None and "weights_bytes" in rt["memory"]["unknown"]
    assert no_steps_message(session) in rt["analysis_error"]


def test_explicit_steps_without_optimizer_count_the_weights(tmp_path):
    """--step-fn / @perfkit.step with a manual update: the weights come from the backward's graph, not 0."""
    import perfkit

    model = _model()

    @perfkit.step
    def train_step():
        _manual_sgd_step(model)

    with _session(tmp_path):
        for _ in range(4):
            train_step()
    rt = _doc(tmp_path)["runtime"]
    assert rt["steps_seen"] == 4 and rt["step_source"] == "perfkit.step"
    assert rt["memory"]["weights_bytes"] == _param_bytes(model)


def test_an_optimizer_anywhere_in_the_process_is_found():
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    assert session_module._optimizer_in_process()
    del opt


def test_trained_leaves_are_the_graphs_parameters_and_the_backward_is_unwrapped(tmp_path):
    model = _model()
    frozen = torch.nn.Linear(4, 4).requires_grad_(False)
    loss = frozen(model(torch.randn(2, 8))).sum()
    assert {id(t) for t in trained_leaves(loss)} == {id(p) for p in model.parameters()}
    original = torch.autograd.backward
    with _session(tmp_path):
        assert torch.autograd.backward is not original
    assert torch.autograd.backward is original
