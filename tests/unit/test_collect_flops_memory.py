"""Memory breakdown, activation tracker (CPU side), FLOP counting, peak table and MFU."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perfkit.collect import flops as pf
from perfkit.collect.flops import PEAK_TFLOPS, count_flops, mfu, peak_tflops
from perfkit.collect.memory import ActivationTracker, memory_breakdown, tensor_bytes


class Tied(nn.Module):
    """Embedding(10, 4) tied to the head, a Linear(4, 4) and a BatchNorm1d(4): sizes easy to add up by hand."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.mix = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        x = self.emb(idx)  # (B, 4)
        return self.head(self.bn(self.mix(x)))


# Hand counts (float32 = 4 bytes):
#   emb.weight 10*4 (the head shares it)  -> 160
#   mix.weight 4*4 + mix.bias 4           -> 80
#   bn.weight 4 + bn.bias 4               -> 32
WEIGHTS = 160 + 80 + 32
N_PARAM_TENSORS = 5
#   running_mean 4 + running_var 4 floats, num_batches_tracked one int64
BUFFERS = 16 + 16 + 8


def step(model, opt):
    idx = torch.tensor([1, 2, 3, 4, 5, 6])
    loss = F.cross_entropy(model(idx), idx)
    loss.backward()
    opt.step()


def test_memory_breakdown_matches_hand_count_with_tied_weights_once():
    torch.manual_seed(0)
    model = Tied()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = memory_breakdown(model, opt)
    assert before["weights_bytes"] == WEIGHTS  # not 160 more for the tied head
    assert before["gradients_bytes"] == 0
    assert before["optimizer_state_bytes"] == 0
    assert before["buffers_bytes"] == BUFFERS
    assert before["parameters"] == WEIGHTS // 4
    assert before["unit"] == "bytes"

    step(model, opt)
    after = memory_breakdown(model, opt)
    assert after["weights_bytes"] == WEIGHTS
    assert after["gradients_bytes"] == WEIGHTS  # one gradient for the tied weight
    # AdamW: exp_avg and exp_avg_sq like each parameter, plus a float32 step counter per parameter
    assert after["optimizer_state_bytes"] == 2 * WEIGHTS + 4 * N_PARAM_TENSORS
    assert after["persistent_bytes"] == WEIGHTS + WEIGHTS + 2 * WEIGHTS + 4 * N_PARAM_TENSORS + BUFFERS
    if not torch.cuda.is_available():
        assert "allocated_bytes" not in after and "device_total_bytes" not in after

    opt.zero_grad(set_to_none=True)
    assert memory_breakdown(model, opt)["gradients_bytes"] == 0


def test_memory_breakdown_counts_a_shared_storage_once():
    flat = torch.zeros(12)
    model = nn.Module()
    model.a = nn.Parameter(flat[:6].view(2, 3))
    model.b = nn.Parameter(flat[6:].view(3, 2))  # a different Parameter on the same storage
    out = memory_breakdown(model)
    assert out["weights_bytes"] == 12 * 4
    # SGD without momentum keeps no state
    model.a.grad = torch.ones(2, 3)
    model.b.grad = torch.ones(3, 2)
    assert memory_breakdown(model, torch.optim.SGD(model.parameters(), lr=0.1))["gradients_bytes"] == 12 * 4
    assert memory_breakdown(model, torch.optim.SGD(model.parameters(), lr=0.1))["optimizer_state_bytes"] == 0


def test_tensor_bytes_of_nested_outputs():
    logits = torch.zeros(2, 3, 5)
    assert tensor_bytes(logits) == 2 * 3 * 5 * 4
    assert tensor_bytes({"loss": torch.zeros((), dtype=torch.float64), "logits": logits}) == 8 + 120
    assert tensor_bytes((logits, None, "x")) == 120


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")
def test_activation_tracker_on_cpu_is_unavailable_but_records_output_and_cleans_up():
    model = Tied()
    idx = torch.tensor([1, 2, 3, 4, 5, 6])
    with ActivationTracker(model) as tracker:
        assert len(model._forward_hooks) == 1  # the output hook on the root
        tracker.begin_phase("forward")
        model(idx)
        tracker.end_phase("forward")
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    d = tracker.to_dict()
    assert d["available"] is False
    assert "CUDA" in d["reason"]
    assert d["output_bytes"] == 6 * 10 * 4  # the logits
    assert tracker.peak_forward_bytes is None and tracker.peak_backward_bytes is None
    assert tracker.summary() == []
    tracker.detach()  # idempotent


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU behaviour")
def test_activation_tracker_hooks_removed_on_exception():
    model = Tied()
    with pytest.raises(ValueError):
        with ActivationTracker(model):
            raise ValueError("x")
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --------------------------------------------------------------------------- FLOPs


def test_count_flops_linear_forward_and_backward():
    b, i, o = 8, 32, 16
    lin = nn.Linear(i, o, bias=False)
    x = torch.randn(b, i, requires_grad=True)

    def fwd_bwd():
        lin(x).sum().backward()

    # forward x@W^T, backward grad@W (input grad) and grad^T@x (weight grad): 3 matmuls of 2*B*I*O
    assert count_flops(fwd_bwd) == 2 * b * i * o * 3
    # without an input gradient, backward has only the weight-gradient matmul
    x2 = torch.randn(b, i)
    assert count_flops(lambda: lin(x2).sum().backward()) == 2 * b * i * o * 2
    # forward alone, with arguments passed through
    assert count_flops(lin, x2) == 2 * b * i * o


def test_count_flops_of_a_training_step_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32, bias=False), nn.ReLU(), nn.Linear(32, 4, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 8)
    w0 = model[0].weight.detach().clone()

    def train_step(inp):
        opt.zero_grad()
        model(inp).pow(2).mean().backward()
        opt.step()

    flops = count_flops(train_step, x)
    # layer 1: forward + weight grad (its input needs no grad); layer 2: forward + weight grad + input grad
    assert flops == 2 * 5 * 8 * 32 * 2 + 2 * 5 * 32 * 4 * 3
    assert not torch.equal(model[0].weight, w0)  # the step really ran


# --------------------------------------------------------------------------- peak table and MFU


def test_peak_lookup_by_device_name():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.5
    assert peak_tflops("NVIDIA H100 80GB HBM3", torch.bfloat16) == 989.5
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.5
    assert peak_tflops("NVIDIA H200", "bf16") == 989.5
    assert peak_tflops("NVIDIA H200", "fp8") == 1979.0
    assert peak_tflops("Tesla V100-SXM2-32GB", "fp16") == 125.0
    assert peak_tflops("Tesla V100-PCIE-16GB", "fp16") == 112.0
    assert peak_tflops("Tesla V100S-PCIE-32GB", "fp16") == 130.0
    assert peak_tflops("Tesla V100-SXM2-32GB", "bf16") is None  # no BF16 tensor cores
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert peak_tflops("NVIDIA A100-SXM4-40GB", "tf32") == 156.0
    assert peak_tflops("NVIDIA A10", "bf16") == 125.0  # not the A100's figure
    assert peak_tflops("NVIDIA L4", "fp16") == 121.0
    assert peak_tflops("NVIDIA L40S", "fp16") == 362.05  # not the L4's
    assert peak_tflops("NVIDIA B200", "bf16") == 2250.0
    assert peak_tflops("AMD Instinct MI300X", "bfloat16") == 1307.4
    assert peak_tflops("AMD Instinct MI250X", "half") == 383.0
    assert peak_tflops("NVIDIA GH200 480GB", "bf16") == 989.5


def test_unknown_device_or_dtype_gives_none():
    assert peak_tflops("NVIDIA GeForce GTX 1080", "fp32") is None
    assert peak_tflops("NVIDIA A10G", "bf16") is None  # a different chip from the A10
    assert peak_tflops("", "bf16") is None
    assert peak_tflops("NVIDIA H100 80GB HBM3", "int4") is None


def test_table_is_dense_and_complete():
    for key, row in PEAK_TFLOPS.items():
        assert row, key
        assert set(row) <= {"fp32", "tf32", "bf16", "fp16", "fp8"}, key
        if "bf16" in row and "fp16" in row:
            assert row["bf16"] == row["fp16"], key
        if "fp8" in row:
            assert row["fp8"] == pytest.approx(2 * row["bf16"], rel=0.02), key  # L40S datasheet: 362.05 vs 733
    for name in ["V100", "A100", "A10", "L4", "L40S", "H100", "H100 PCIe", "H200", "B200", "MI250X", "MI300X"]:
        assert name in PEAK_TFLOPS


def test_mfu_arithmetic():
    # 1 PFLOP per step in 2 s on one H100 (989.5 TFLOP/s bf16): 500 / 989.5
    assert mfu(1e15, 2.0, "NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(500 / 989.5)
    assert mfu(1e15, 2.0, "NVIDIA H100 80GB HBM3", "bf16", n_devices=4) == pytest.approx(125 / 989.5)
    assert mfu(312e12, 1.0, "NVIDIA A100-SXM4-80GB", "bf16") == pytest.approx(1.0)
    assert mfu(1e15, 2.0, "mystery accelerator", "bf16") is None
    assert mfu(1e15, 0.0, "NVIDIA H100 80GB HBM3", "bf16") is None
    assert pf.normalize_dtype("torch.float8_e4m3fn") == "fp8"
