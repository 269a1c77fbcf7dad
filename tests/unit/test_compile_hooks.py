"""perfkit's module hooks must not break torch.compile's graphs (profiling must not change the run).

A hook that records a CUDA event or reads the clock cannot be traced by Dynamo: it splits the
user's compiled model into several graphs at every timed module. ``--modules`` on a compiled
MLP gave 8 compiled graphs in 4 regions instead of one forward and one backward graph.
"""

from __future__ import annotations

import torch
from torch import nn

from perfkit.collect import modules as modules_mod
from perfkit.collect.modules import ModuleTimer


def _breaks(model: nn.Module) -> int:
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model)(torch.randn(4, 16))
    return int(explanation.graph_break_count)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


def test_module_timer_hooks_leave_compiled_graphs_whole():
    model = _model()
    assert _breaks(model) == 0  # the bare model compiles to one graph
    timer = ModuleTimer(model, depth=1).attach()
    try:
        assert _breaks(model) == 0
    finally:
        timer.detach()


def test_without_the_guard_the_hooks_break_the_graph(monkeypatch):
    """The check above can fail: with the hooks traced, Dynamo breaks the graph at them."""
    monkeypatch.setattr(modules_mod, "_compiling", lambda: False)
    model = _model()
    timer = ModuleTimer(model, depth=1).attach()
    try:
        assert _breaks(model) > 0
    finally:
        timer.detach()
