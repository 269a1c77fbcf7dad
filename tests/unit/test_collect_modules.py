"""ModuleTimer on CPU: which modules, hooks cleaned up, results unchanged, forward/backward times."""

from __future__ import annotations

import time
import warnings
from types import SimpleNamespace
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import perfkit
from perfkit.collect import modules as pm
from perfkit.collect import session as psession
from perfkit.collect.modules import ModuleTimer, select_modules
from perfkit.errors import UsageError
from .._clock import VirtualClock


# --------------------------------------------------------------------------- models


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln(x))
        return x + self.mlp(x)


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, layers: int = 3):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList([Block(d) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


@pytest.fixture
def clock(monkeypatch) -> VirtualClock:
    virtual = VirtualClock()
    monkeypatch.setattr(pm, "_perf_counter", virtual.perf_counter)
    return virtual


class Sleep(nn.Module):
    """Linear whose forward and/or backward sleep a fixed time (to check which side gets which time),
    through ``sleep`` (a virtual clock's, in the tests that check the numbers)."""

    def __init__(self, forward_s: float = 0.0, backward_s: float = 0.0, first_extra_s: float = 0.0,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.forward_s, self.backward_s, self.first_extra_s = forward_s, backward_s, first_extra_s
        self.sleep = sleep
        self.n = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sleep(self.forward_s + (self.first_extra_s if self.n == 0 else 0.0))
        self.n += 1
        return _SleepInBackward.apply(self.lin(x), self.backward_s, self.sleep)


class _SleepInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, seconds, sleep):  # type: ignore[override]
        ctx.seconds, ctx.sleep = seconds, sleep
        return x.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        ctx.sleep(ctx.seconds)
        return grad, None, None


def all_hooks_gone(model: nn.Module) -> bool:
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
            return False
        if getattr(m, "_forward_hooks_with_kwargs", None) or getattr(m, "_forward_pre_hooks_with_kwargs", None):
            return False
    for p in model.parameters():
        if p._post_accumulate_grad_hooks:
            return False
    return True


def train_steps(model: nn.Module, steps: int = 3, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(seed)
    idx = torch.randint(0, 50, (2, 8))
    out = None
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        out = model(idx)
        F.cross_entropy(out.reshape(-1, out.shape[-1]), idx.reshape(-1)).backward()
    assert out is not None
    return out.detach(), [p.grad.clone() for p in model.parameters()]


# --------------------------------------------------------------------------- module selection


def test_depth_one_splits_module_lists_into_rows():
    names = [n for n, _ in select_modules(TinyGPT(), 1)]
    assert names == ["tok_emb", "blocks.0", "blocks.1", "blocks.2", "ln_f", "lm_head"]


def test_depth_two_descends_and_keeps_leaves_so_the_model_is_covered():
    names = [n for n, _ in select_modules(TinyGPT(layers=2), 2)]
    assert names == [
        "tok_emb",
        "blocks.0.ln", "blocks.0.attn", "blocks.0.mlp.0", "blocks.0.mlp.1", "blocks.0.mlp.2",
        "blocks.1.ln", "blocks.1.attn", "blocks.1.mlp.0", "blocks.1.mlp.1", "blocks.1.mlp.2",
        "ln_f", "lm_head",
    ]


def test_sequential_subclass_is_a_module_not_a_container():
    class ConvBN(nn.Sequential):
        pass

    model = nn.Sequential(ConvBN(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2))
    assert [n for n, _ in select_modules(model, 1)] == ["0", "1"]
    assert [n for n, _ in select_modules(model, 2)] == ["0.0", "0.1", "1"]


def test_named_modules_and_bad_names():
    model = TinyGPT()
    mt = ModuleTimer(model, modules=["blocks.1.attn", "lm_head"])
    assert [n for n, _ in mt.targets] == ["blocks.1.attn", "lm_head"]
    assert mt.targets[0][1] is model.blocks[1].attn
    with pytest.raises(UsageError, match="blocks.9"):
        ModuleTimer(model, modules=["blocks.9"])
    with pytest.raises(UsageError):
        ModuleTimer(model, depth=0)


def test_top_level_name_is_exported():
    assert perfkit.ModuleTimer is ModuleTimer


# --------------------------------------------------------------------------- hooks lifecycle


def test_hooks_present_while_attached_and_gone_after():
    model = TinyGPT()
    with ModuleTimer(model) as mt:
        assert mt.attached
        assert len(model.blocks[0]._forward_pre_hooks) == 1 and len(model.blocks[0]._forward_hooks) == 1
        train_steps(model, 2)
        # the embedding gets no input gradient: its backward ends at its weight's gradient
        assert model.tok_emb.weight._post_accumulate_grad_hooks
        assert not all_hooks_gone(model)
    assert not mt.attached
    assert all_hooks_gone(model)
    mt.detach()  # idempotent
    mt.detach()
    assert all_hooks_gone(model)


def test_hooks_removed_when_the_block_raises():
    model = TinyGPT()
    with pytest.raises(RuntimeError, match="boom"):
        with ModuleTimer(model):
            train_steps(model, 1)
            raise RuntimeError("boom")
    assert all_hooks_gone(model)


def test_attach_twice_adds_no_second_set_and_measurements_accumulate():
    model = TinyGPT()
    mt = ModuleTimer(model)
    mt.attach()
    mt.attach()
    assert len(model.ln_f._forward_hooks) == 1
    train_steps(model, 2)
    mt.detach()
    train_steps(model, 2)  # not timed
    mt.attach()
    train_steps(model, 1)
    mt.detach()
    rows = {r["name"]: r for r in mt.summary()}
    assert rows["ln_f"]["calls"] == 3
    assert rows["ln_f"]["backward_calls"] == 3
    assert all_hooks_gone(model)


# --------------------------------------------------------------------------- results unchanged


def test_outputs_and_gradients_identical_with_and_without_timer():
    torch.manual_seed(1)
    model = TinyGPT()
    out_a, grads_a = train_steps(model, 2)
    with ModuleTimer(model, depth=2):
        out_b, grads_b = train_steps(model, 2)
    assert torch.equal(out_a, out_b)
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b):
        assert torch.equal(ga, gb)


def test_in_place_op_on_a_timed_output_works():
    # Full module backward hooks turn outputs into views that may not be modified in place
    # (ResNet: bn1 then ReLU(inplace=True)); the timer must not break such models.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(inplace=True), nn.Linear(6, 1))
    x = torch.randn(5, 6)
    model(x).sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with ModuleTimer(model) as mt:
        model(x).sum().backward()
    for p, g in zip(model.parameters(), ref):
        assert torch.equal(p.grad, g)
    rows = {r["name"]: r for r in mt.summary()}
    assert rows["0"]["backward_calls"] == 1


def test_no_grad_forward_counts_calls_and_no_backward():
    model = TinyGPT()
    idx = torch.randint(0, 50, (2, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ModuleTimer(model) as mt:
            with torch.no_grad():
                for _ in range(3):
                    model(idx)
    rows = {r["name"]: r for r in mt.summary()}
    assert rows["blocks.0"]["calls"] == 3
    assert rows["blocks.0"]["backward_calls"] == 0
    assert rows["blocks.0"]["backward_ms_total"] == 0
    assert all_hooks_gone(model)


def test_module_called_several_times_per_step():
    shared = nn.Linear(4, 4)

    class Loop(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = shared
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            for _ in range(3):
                x = torch.tanh(self.shared(x))
            return self.head(x)

    model = Loop()
    with ModuleTimer(model) as mt:
        for _ in range(4):
            model(torch.randn(2, 4)).sum().backward()
    rows = {r["name"]: r for r in mt.summary()}
    assert rows["shared"]["calls"] == 12
    assert rows["shared"]["backward_calls"] == 12
    assert rows["head"]["calls"] == 4


@pytest.mark.parametrize("early_stop", [True, False])
def test_activation_checkpoint_recompute_is_not_a_forward_call(early_stop):
    from torch.utils.checkpoint import set_checkpoint_early_stop

    class Ckpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = Sleep(backward_s=0.0)
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            y = checkpoint(self.body, x, use_reentrant=False)
            return self.head(y)

    model = Ckpt()
    x = torch.randn(3, 4, requires_grad=True)
    with set_checkpoint_early_stop(early_stop):
        with ModuleTimer(model) as mt:
            for _ in range(3):
                model(x).sum().backward()
            # a recomputation stopped early must not leave an open call behind
            assert all(not st.stack for st in mt._stats)
    rows = {r["name"]: r for r in mt.summary()}
    assert model.body.n == 6  # really recomputed in backward
    assert rows["body"]["calls"] == 3
    assert rows["body"]["backward_calls"] == 3


# --------------------------------------------------------------------------- the numbers


def test_forward_and_backward_time_go_to_the_right_module(clock):
    # slow_bwd runs first in forward, so its backward runs last: a timer that paired
    # backward starts and ends wrongly would charge its 40 ms to fast or to slow_fwd.
    model = nn.Sequential()
    model.add_module("slow_bwd", Sleep(backward_s=0.04, sleep=clock.sleep))
    model.add_module("slow_fwd", Sleep(forward_s=0.03, sleep=clock.sleep))
    model.add_module("fast", Sleep(sleep=clock.sleep))
    x = torch.randn(2, 4, requires_grad=True)
    with ModuleTimer(model) as mt:
        for _ in range(3):
            model(x).sum().backward()
    rows = {r["name"]: r for r in mt.summary()}
    assert 40 <= rows["slow_bwd"]["backward_ms_median"] < 200
    assert rows["slow_bwd"]["forward_ms_median"] < 20
    assert 30 <= rows["slow_fwd"]["forward_ms_median"] < 200
    assert rows["slow_fwd"]["backward_ms_median"] < 20
    assert rows["fast"]["forward_ms_median"] < 20 and rows["fast"]["backward_ms_median"] < 20
    # sorted by total time, shares add up
    assert [r["name"] for r in mt.summary()][-1] == "fast"
    assert abs(sum(r["share"] for r in rows.values()) - 1.0) < 1e-3
    assert rows["slow_bwd"]["backward_ms_total"] >= 3 * 40


def test_embedding_backward_is_timed_through_its_weight_gradient():
    class Emb(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.post = Sleep(backward_s=0.0)

        def forward(self, idx):
            return self.post(self.emb(idx))

    model = Emb()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "full backward hook" warning for inputs without gradient
        with ModuleTimer(model) as mt:
            for _ in range(3):
                model(torch.tensor([[1, 2, 3]])).sum().backward()
    rows = {r["name"]: r for r in mt.summary()}
    assert rows["emb"]["backward_calls"] == 3
    assert rows["emb"]["backward_ms_total"] > 0
    assert all_hooks_gone(model)


def test_first_call_is_kept_apart_and_flagged(clock):
    model = nn.Sequential()
    model.add_module("warmup", Sleep(forward_s=0.002, first_extra_s=0.08, sleep=clock.sleep))
    model.add_module("steady", Sleep(forward_s=0.006, sleep=clock.sleep))
    with ModuleTimer(model, backward=False) as mt:
        for _ in range(5):
            model(torch.randn(1, 4))
    summary = mt.summary()
    rows = {r["name"]: r for r in summary}
    # 88 ms in all against 30 ms, but the steady cost is what the share and the order show
    assert rows["warmup"]["forward_ms_total"] > rows["steady"]["forward_ms_total"]
    assert [r["name"] for r in summary] == ["steady", "warmup"]
    assert rows["steady"]["share"] > 0.6
    w, s = rows["warmup"], rows["steady"]
    assert w["first_call_ms"] >= 80
    assert w["first_call_ms"] == pytest.approx(82.0)  # read from the virtual clock: exact
    assert w["forward_ms_median"] < 40  # the median leaves the first call out
    assert w["first_call_outlier"] is True
    assert s["first_call_outlier"] is False
    assert w["forward_ms_total"] >= w["first_call_ms"] + 4 * 2
    assert w["backward_calls"] == 0


def test_per_call_times_are_bounded():
    model = nn.Sequential(nn.Linear(2, 2))
    with ModuleTimer(model, backward=False) as mt:
        x = torch.randn(1, 2)
        with torch.no_grad():
            for _ in range(pm.MAX_CALLS + 150):
                model(x)
    st = mt._stats[0]
    assert len(st.fwd) == pm.MAX_CALLS
    row = mt.summary()[0]
    assert row["calls"] == pm.MAX_CALLS + 150
    assert row["forward_ms_total"] >= sum(st.fwd)


def test_to_dict_and_reset():
    model = TinyGPT()
    with ModuleTimer(model) as mt:
        train_steps(model, 2)
    d = mt.to_dict()
    assert d["timing"] == "wall_clock" and d["unit"] == "ms" and d["depth"] == 1
    assert {r["name"] for r in d["modules"]} == {"tok_emb", "blocks.0", "blocks.1", "blocks.2", "ln_f", "lm_head"}
    keys = {"name", "type", "calls", "first_call_ms", "forward_ms_median", "forward_ms_total",
            "backward_ms_median", "backward_ms_total", "share", "first_call_outlier"}
    assert keys <= set(d["modules"][0])
    assert d["modules"][0]["calls"] == 2
    mt.reset()
    assert all(r["calls"] == 0 and r["forward_ms_total"] == 0 for r in mt.summary())


def test_registers_with_the_running_session(monkeypatch):
    fake = SimpleNamespace()
    monkeypatch.setattr(psession, "_ACTIVE", fake)
    model = TinyGPT()
    with ModuleTimer(model) as mt:
        pass
    assert fake.module_timer is mt


def test_no_session_no_registration(monkeypatch):
    monkeypatch.setattr(psession, "_ACTIVE", None)
    with ModuleTimer(TinyGPT()) as mt:
        assert psession.current() is None
    assert mt.summary()[0]["calls"] == 0


def test_wrappers_are_not_a_level():
    wrapped = nn.DataParallel(TinyGPT())  # on a machine without GPUs it just calls the model
    names = [n for n, _ in select_modules(wrapped, 1)]
    assert names == ["module.tok_emb", "module.blocks.0", "module.blocks.1", "module.blocks.2",
                     "module.ln_f", "module.lm_head"]
    assert [n for n, _ in select_modules(nn.DataParallel(nn.Linear(2, 2)), 1)] == ["module"]
