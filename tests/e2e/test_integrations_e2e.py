"""perfkit.integrations: the Lightning Callback and the Hugging Face TrainerCallback, in-process.

With the real frameworks (CPU, tiny models, a handful of steps): the run directory
holds what ``perfkit profile`` writes (same names), steps come from the framework's
hooks (one per optimizer step under gradient accumulation), phases agree with an
independent reading of the raw trace (``tests/_framework_oracle.py``, tolerance as in
``tests/e2e/test_frameworks.py``), memory accounting reads the framework's model and
optimizer, and an error inside the callback switches profiling off with one warning
while training goes on. The framework-free parts (only rank 0 prints, a session
already running, a failure at start) run on a plain torch loop in tests/unit/test_integrations.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from .._framework_oracle import load_events
from .test_frameworks import ACTIVE, check_line, check_phases, check_steps, line_of

RUN_FILES = ["analysis.json", "rank0.pt.trace.json.gz", "rank0.pt.trace.stacks.json.gz", "report.md"]
SCHEDULE = dict(skip_first=1, warmup=1, active=ACTIVE)


def _param_bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in {id(p): p for p in params}.values())


def _state_bytes(optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if isinstance(v, torch.Tensor))


# ---------------------------------------------------------------------- Lightning


def _lightning_fit(tmp_path, batches, accumulate=1, **callback_options):
    """Trainer.fit of a small MLP (Adam, automatic optimisation) with the callback; returns (trainer, callback)."""
    import lightning.pytorch as pl

    from perfkit.integrations.lightning import PerfkitCallback

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            # wide enough that the forward's matmul lasts a few ms: the 1 ms stack samples then land inside it
            # (a microsecond op is matched only to a sample within 0.1 ms, often one in Lightning's own code)
            self.net = nn.Sequential(nn.Linear(256, 2048), nn.ReLU(), nn.Linear(2048, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)  # the model's line
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(batches * 128, 256), torch.randn(batches * 128, 1))
    callback = PerfkitCallback(out=str(tmp_path / "run"), quiet=True, **callback_options)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=accumulate,
                         callbacks=[callback])
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=128))
    return trainer, callback


@pytest.mark.slow
def test_lightning_callback_writes_the_profile_run(tmp_path):
    trainer, callback = _lightning_fit(tmp_path, batches=6, **SCHEDULE)
    out = tmp_path / "run"
    assert callback.run_dir == str(out)
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    doc = json.loads((out / "analysis.json").read_text())
    assert trainer.global_step == 6
    assert doc["runtime"]["step_source"] == "Lightning on_train_batch_end"
    assert doc["runtime"]["instrument_errors"] == {}
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=6)
    ref = check_phases(doc, events)  # Lightning's closure: forward and backward inside optimizer.step
    assert ref["forward"] > 0 and ref["backward"] > 0 and ref["optimizer"] > 0
    # Memory from the framework's model and optimizer: Adam keeps two moments (and a step count) per weight.
    model, (opt,) = trainer.lightning_module, trainer.optimizers
    mem = doc["runtime"]["memory"]
    assert mem["weights_bytes"] == mem["gradients_bytes"] == _param_bytes(model.parameters())
    assert mem["optimizer_state_bytes"] == _state_bytes(opt)
    assert mem["optimizer_state_bytes"] >= 2 * mem["weights_bytes"]
    # The stack samples point the forward's matmul at the line of training_step that calls the network.
    line = line_of(Path(__file__), r"loss = .*self\.net\(x\).*# the model's line")
    check_line(doc, "aten::addmm", Path(__file__), line)
    assert "Lightning on_train_batch_end" in (out / "report.md").read_text()


@pytest.mark.slow
def test_lightning_callback_one_step_per_accumulated_optimizer_step(tmp_path):
    trainer, _ = _lightning_fit(tmp_path, batches=8, accumulate=2, skip_first=0, warmup=1, active=ACTIVE)
    doc = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert trainer.global_step == 4
    events = load_events(tmp_path / "run" / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=4)
    # The first micro-batch's DataLoader fetch is counted as forward today: forward and other are
    # compared as their sum here, and the fetch itself in test_frameworks.test_dataloader_fetch_is_not_forward.
    check_phases(doc, events, merge=("forward", "other"))
    roots = [e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith(
        "autograd::engine::evaluate_function: MseLossBackward")]
    assert len(roots) == 2 * ACTIVE  # two micro-batches in each recorded step


@pytest.mark.slow
def test_lightning_callback_error_switches_profiling_off(tmp_path, monkeypatch, capfd):
    """An error inside the callback (here: its step boundary, after the recorded window) costs the
    profile, never the training: one warning, the run so far written, every step run."""
    from perfkit.integrations._core import CallbackSession

    real = CallbackSession.mark_step
    last = sum(SCHEDULE.values())

    def flaky(self, *a, **k):
        if self.steps == last + 1:
            raise RuntimeError("injected")
        return real(self, *a, **k)

    monkeypatch.setattr(CallbackSession, "mark_step", flaky)
    trainer, _ = _lightning_fit(tmp_path, batches=8, **SCHEDULE)
    assert trainer.global_step == 8
    err = capfd.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("perfkit:")]
    assert warnings == ["perfkit: warning: Lightning callback failed and is switched off for the rest of the run "
                        "(RuntimeError: injected); the script goes on"], err
    doc = json.loads((tmp_path / "run" / "analysis.json").read_text())
    assert doc["runtime"]["instrument_errors"] == {"Lightning callback": "RuntimeError: injected"}
    assert doc["runtime"]["steps_seen"] == last + 1
    assert doc["steps"]["total"] == ACTIVE


# ---------------------------------------------------------------------- Hugging Face


@pytest.mark.slow
def test_hf_trainer_callback_writes_the_profile_run(tmp_path):
    """A tiny GPT-2 (random init) under transformers' Trainer with gradient accumulation 2."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from perfkit.integrations.transformers import PerfkitCallback

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=64,
                                       bos_token_id=0, eos_token_id=0))
    ids = torch.randint(0, 256, (5 * 2 * 4, 32), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]
    callback = PerfkitCallback(out=str(tmp_path / "run"), quiet=True, **SCHEDULE)
    args = TrainingArguments(output_dir=str(tmp_path / "scratch"), per_device_train_batch_size=4,
                             gradient_accumulation_steps=2, max_steps=5, use_cpu=True, report_to=[],
                             save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train()
    out = tmp_path / "run"
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    assert not (tmp_path / "scratch").exists() or not any((tmp_path / "scratch").iterdir())
    doc = json.loads((out / "analysis.json").read_text())
    assert trainer.state.global_step == 5
    assert doc["runtime"]["step_source"] == "Trainer on_step_end"
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=5)
    ref = check_phases(doc, events)
    assert ref["forward"] > 0 and ref["backward"] > 0 and ref["optimizer"] > 0
    roots = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op"
             and str(e.get("name", "")).startswith("autograd::engine::evaluate_function: NllLossBackward")]
    assert len(roots) == 2 * ACTIVE  # two micro-batches in each recorded step
    mem = doc["runtime"]["memory"]
    # GPT-2 ties lm_head to the token embedding: counted once, as the optimizer holds it once.
    assert mem["weights_bytes"] == mem["gradients_bytes"] == _param_bytes(model.parameters())
    assert mem["optimizer_state_bytes"] == _state_bytes(trainer.optimizer)
