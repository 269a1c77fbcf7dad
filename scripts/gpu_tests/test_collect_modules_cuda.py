"""GPU checks of the collection hooks: run on a CUDA machine with

    python -m pytest scripts/gpu_tests -q

CI has no GPU, so these live outside tests/; results are recorded in docs/collect.md.
"""


from __future__ import annotations

import time
import warnings
from types import SimpleNamespace

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
from tests.test_collect_modules import TinyGPT  # the small model

if not torch.cuda.is_available():
    raise RuntimeError("these checks need a CUDA GPU")



def test_cuda_events_time_the_heavy_module_and_leave_results_alone():
    torch.manual_seed(0)

    class Heavy(nn.Module):
        def __init__(self):
            super().__init__()
            self.small = nn.Linear(256, 256)
            self.big = nn.Sequential(*[nn.Linear(256, 256) for _ in range(16)])  # timed as one module
            self.head = nn.Linear(256, 1)

        def forward(self, x):
            return self.head(torch.relu_(self.big(self.small(x))))

    model = Heavy().cuda()
    x = torch.randn(4096, 256, device="cuda")
    model(x).sum().backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    with ModuleTimer(model, modules=["small", "big", "head"]) as mt:
        for _ in range(pm._HARVEST_AT + 20):  # enough calls for the in-hook harvest to run
            model.zero_grad()
            model(x).sum().backward()
    for p, g in zip(model.parameters(), ref):
        torch.testing.assert_close(p.grad, g)
    d = mt.to_dict()
    assert d["timing"] == "cuda_events"
    rows = {r["name"]: r for r in d["modules"]}
    assert d["modules"][0]["name"] == "big"
    assert rows["big"]["share"] > 0.6
    for r in rows.values():
        assert r["calls"] == pm._HARVEST_AT + 20
        assert r["backward_calls"] == pm._HARVEST_AT + 20
        assert r["forward_ms_median"] > 0 and r["backward_ms_median"] > 0
    # events are recycled: what is held stays bounded by the calls in flight, not the calls made
    for st in mt._stats:
        assert len(st.fwd_pool) + 2 * len(st.fwd_pending) <= 2 * (pm._HARVEST_AT + 2)
    assert all_hooks_gone(model)


def test_cuda_gpt_rows_and_no_grad():
    torch.manual_seed(0)
    model = TinyGPT(vocab=1000, d=256, layers=4).cuda()
    idx = torch.randint(0, 1000, (8, 128), device="cuda")
    with ModuleTimer(model) as mt:
        for _ in range(5):
            out = model(idx)
            F.cross_entropy(out.reshape(-1, out.shape[-1]), idx.reshape(-1)).backward()
        with torch.no_grad():
            model(idx)
    rows = {r["name"]: r for r in mt.summary()}
    assert set(rows) == {"tok_emb", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "ln_f", "lm_head"}
    assert rows["blocks.2"]["calls"] == 6 and rows["blocks.2"]["backward_calls"] == 5
    assert rows["tok_emb"]["backward_calls"] == 5
    assert all(r["backward_ms_total"] > 0 for r in rows.values())
    assert all_hooks_gone(model)
