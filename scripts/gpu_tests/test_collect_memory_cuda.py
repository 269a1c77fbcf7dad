"""GPU checks of the collection hooks: run on a CUDA machine with

    python -m pytest scripts/gpu_tests -q

CI has no GPU, so these live outside tests/; results are recorded in docs/collect.md.
"""


from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from perfkit.collect import flops as pf
from perfkit.collect.flops import PEAK_TFLOPS, count_flops, mfu, peak_tflops
from perfkit.collect.memory import ActivationTracker, memory_breakdown, tensor_bytes
from tests.test_collect_flops_memory import N_PARAM_TENSORS, WEIGHTS, Tied  # the small models and constants

if not torch.cuda.is_available():
    raise RuntimeError("these checks need a CUDA GPU")



def test_cuda_memory_breakdown_counters():
    model = Tied().cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    idx = torch.tensor([1, 2, 3, 4, 5, 6], device="cuda")
    F.cross_entropy(model(idx), idx).backward()
    opt.step()
    out = memory_breakdown(model, opt)
    assert out["weights_bytes"] == WEIGHTS and out["gradients_bytes"] == WEIGHTS
    assert out["optimizer_state_bytes"] == 2 * WEIGHTS + 4 * N_PARAM_TENSORS
    assert out["device"] == f"cuda:{torch.cuda.current_device()}"
    assert 0 < out["allocated_bytes"] <= out["reserved_bytes"] <= out["device_total_bytes"]
    assert out["peak_allocated_bytes"] >= out["allocated_bytes"]


def test_cuda_activation_tracker():
    torch.manual_seed(0)
    d, vocab, n = 512, 4096, 2048
    model = nn.Sequential(nn.Embedding(vocab, d), nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, vocab)).cuda()
    idx = torch.randint(0, vocab, (n,), device="cuda")
    with ActivationTracker(model) as tracker:
        for _ in range(2):
            tracker.begin_phase("forward")
            logits = model(idx)
            tracker.end_phase("forward")
            tracker.begin_phase("backward")
            F.cross_entropy(logits, idx).backward()
            del logits
            tracker.end_phase("backward")
    d_ = tracker.to_dict()
    assert d_["available"] is True
    assert d_["output_bytes"] == n * vocab * 4
    rows = {r["name"]: r for r in d_["modules"]}
    assert rows["1"]["calls"] == 2
    # the fc output (n x 4d floats) stays allocated: GELU saves it for backward
    assert rows["1"]["activation_bytes"] >= n * 4 * d * 4
    assert rows["3"]["activation_bytes"] >= n * vocab * 4  # the logits
    assert d_["peak_forward_bytes"] > 0 and d_["peak_backward_bytes"] > 0
    assert d_["phases"]["forward"]["count"] == 2
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
