"""Real training stacks under ``perfkit profile`` (CPU, tiny models, a handful of steps).

Each script in ``examples/frameworks/`` runs unchanged under ``perfkit profile`` in a
subprocess. The checks do not trust perfkit's own reading of the trace:

* steps: the ``ProfilerStep#N`` ranges in the raw trace are the recorded window
  (``--active 3``), and the analysis's kept and excluded steps are exactly those;
  the run counted every step the script ran;
* phases: each of forward / backward / optimizer / other is within ``TOL`` of the
  step's CPU busy time of an independent reading of the raw events
  (``tests/_framework_oracle.py``: self times, ``autograd::engine::evaluate_function``
  ranges, the update after the closure inside ``Optimizer.step#``);
* lines: the stack sampler (on by default) gives the forward's matmul row the
  script line that called the model, found by searching the script's text.

``TOL`` is 3% of the step's CPU busy time: on the runs written while building these
tests the two readings agreed to 0.3% (ops that touch at whole-µs boundaries nest
differently), while the bug they guard against (Lightning's closure: "Optimizer
99.6%") is off by the forward and backward share, tens of percent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .._framework_oracle import PHASES, load_events, phases_per_step, step_ranges
from ..conftest import REPO

EXAMPLES = REPO / "examples" / "frameworks"
TOL = 0.03  #: phase error allowed, as a share of the step's CPU busy time
SCHEDULE = ("--skip-first", "1", "--warmup", "1", "--active", "3")
ACTIVE = 3

pytestmark = pytest.mark.slow


def profile_script(tmp_path: Path, script: str, *script_args: str, options: tuple[str, ...] = ()):
    """``perfkit profile -q`` on an example script; returns (process, run directory, analysis document)."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run(
        [sys.executable, "-m", "perfkit", "profile", "-q", "-o", str(out), *SCHEDULE, *options,
         str(EXAMPLES / script), *script_args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "analysis.json", "rank0.pt.trace.json.gz", "rank0.pt.trace.stacks.json.gz", "report.md"]
    return proc, out, json.loads((out / "analysis.json").read_text())


def check_steps(doc: dict, events: list, steps_run: int) -> None:
    recorded = set(step_ranges(events))
    assert len(recorded) == ACTIVE, sorted(recorded)
    assert doc["steps"]["total"] == ACTIVE
    found = set(doc["steps"]["ids"]) | {x["id"] for x in doc["steps"]["excluded"]}
    assert found == recorded
    assert doc["steps"]["count"] >= 1
    assert doc["runtime"]["steps_seen"] == steps_run


def check_phases(doc: dict, events: list, merge: tuple[str, ...] = ()) -> dict:
    """perfkit's phases against the oracle on the same kept steps; returns the oracle's (ms per step).

    ``merge``: phases compared as their sum only (see test_dataloader_fetch_is_not_forward)."""
    ref = phases_per_step(events, doc["steps"]["ids"])
    busy_ms = sum(ref.values())
    assert busy_ms > 0
    assert doc["trace"]["time_basis"] == "cpu"
    assert doc["device"]["busy_ms_per_step"] == pytest.approx(busy_ms, rel=0.01)
    got = {p: doc["phases"][p]["ms_per_step"] for p in PHASES}
    groups = [merge] if merge else []
    groups += [(p,) for p in PHASES if p not in merge]
    for group in groups:
        diff = sum(got[p] for p in group) - sum(ref[p] for p in group)
        assert abs(diff) <= TOL * busy_ms + 0.05, (group, got, ref)
    assert doc["phases"]["unknown"]["ms_per_step"] <= TOL * busy_ms, doc["phases"]
    return ref


def line_of(script, pattern: str) -> int:
    """The one line of the script (a name in examples/frameworks, or a path) matching ``pattern`` (1-based)."""
    lines = (EXAMPLES / script).read_text().splitlines()
    hits = [i for i, text in enumerate(lines, 1) if re.search(pattern, text)]
    assert len(hits) == 1, (pattern, hits)
    return hits[0]


def check_line(doc: dict, op: str, script, line: int) -> None:
    """The top-ops row of ``op`` names ``script:line``, from the stack samples."""
    rows = [r for r in doc["top_ops"] if r["name"] == op]
    assert rows, [r["name"] for r in doc["top_ops"]]
    source = rows[0].get("source") or ""
    m = re.match(r"(.+):(\d+)(?: |$)", source)
    assert m, source
    assert Path(m.group(1)).name == Path(script).name and int(m.group(2)) == line, source
    assert rows[0].get("source_basis") == "sampled"


def test_lightning_trainer_closure_phases_and_lines(tmp_path):
    """Lightning's automatic optimisation runs forward and backward inside optimizer.step(closure):
    the optimizer phase is the update alone (the bug: "Optimizer 99.6%, Forward 0.0%, Backward 0.0%")."""
    # --width 2048: the matmuls last milliseconds, so the 1 ms stack samples land inside them (a
    # microsecond op is matched only to a sample within 0.1 ms, which a loaded machine often misses)
    _, out, doc = profile_script(tmp_path, "lightning_tiny.py", "--steps", "6", "--width", "2048")
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=6)
    assert doc["runtime"]["step_source"] == "optimizer.step"
    ref = check_phases(doc, events)
    assert ref["forward"] > 0 and ref["backward"] > 0 and ref["optimizer"] > 0
    # The forward's matmuls ran under the training_step line that calls the network.
    line = line_of("lightning_tiny.py", r"loss = .*self\.net\(x\)")
    for op in ("aten::linear", "aten::addmm"):
        check_line(doc, op, "lightning_tiny.py", line)


def test_hf_trainer_gpt2_phases_and_lines(tmp_path):
    """A tiny GPT-2 fine-tuned by transformers' Trainer (random init, in-memory data, use_cpu)."""
    # --embd 512: the matmuls outweigh the elementwise ops, so aten::addmm stays among the top ops on a
    # loaded machine (at n_embd=64 a CI run ranked it below the 15 shown, and the check below had no row)
    proc, out, doc = profile_script(tmp_path, "hf_trainer_tiny.py", "--steps", "5", "--embd", "512")
    assert "done: 5 steps" in proc.stdout
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=5)
    ref = check_phases(doc, events)
    assert ref["forward"] > 0 and ref["backward"] > 0 and ref["optimizer"] > 0
    # The script never calls the model itself: the lines are transformers' and accelerate's code that ran
    # the ops, named as torch's Python tracer names them (the install folder cut: rules.INSTALL_PREFIX_PATTERN),
    # not the script's trainer.train() line that every sample holds further out.
    sources = [str(r.get("source")) for r in doc["top_ops"] if r.get("source")] + [str(f["source"]) for f in doc["frames"]]
    assert sources and not [x for x in sources if "site-packages" in x or "dist-packages" in x], sources
    model = [f for f in doc["frames"] if str(f["source"]).startswith("transformers/models/gpt2/modeling_gpt2.py:")]
    assert model and model[0]["source_basis"] == "sampled", doc["frames"]
    forward_ops = [r for r in doc["top_ops"] if r["name"] in ("aten::addmm", "aten::linear", "aten::mm")
                   and str(r.get("source")).startswith("transformers/")]
    assert forward_ops, [(r["name"], r.get("source")) for r in doc["top_ops"]]
    line = line_of("hf_trainer_tiny.py", r"trainer\.train\(\)")
    assert not [f for f in doc["frames"] if str(f["source"]).endswith(f"hf_trainer_tiny.py:{line} main")], doc["frames"]


def test_torch_compile_loop_steps_and_phases(tmp_path):
    """torch.compile on a CPU: the compiled forward and backward graphs' time lands in their phases.

    The categories of compiled graphs (cpp_fused_*, extern kernels) and short names for them
    are for a test beside this one (``test_torch_compile_categories``, issue 13 item 4): this one
    asserts only the steps and the phases.
    """
    _, out, doc = profile_script(tmp_path, "compile_loop.py", "--steps", "6")
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=6)
    ref = check_phases(doc, events)
    compiled = [e for e in events if e.get("ph") == "X" and "CompiledFxGraph" in str(e.get("name"))]
    assert compiled, "no compiled graph ran in the recorded steps"
    assert ref["forward"] > 0 and ref["backward"] > 0


def test_gradient_accumulation_autocast_gradscaler(tmp_path):
    """4 micro-batches per optimizer step, bf16 autocast, GradScaler (disabled on a CPU): one step per
    optimizer step, every micro-batch's forward in forward, and the model line for the matmuls."""
    _, out, doc = profile_script(tmp_path, "accum_amp.py", "--steps", "5", "--accum", "4", "--width", "2048")
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=5)
    ref = check_phases(doc, events)
    assert ref["forward"] > 0 and ref["backward"] > 0 and ref["optimizer"] > 0
    # 4 backward passes per recorded step, independently of perfkit: the loss's backward roots.
    roots = [e for e in events if e.get("ph") == "X" and str(e.get("name", "")).startswith(
        "autograd::engine::evaluate_function: MseLossBackward")]
    assert len(roots) == 4 * ACTIVE
    line = line_of("accum_amp.py", r"loss = .*model\(x\)")
    for op in ("aten::linear", "aten::addmm"):
        check_line(doc, op, "accum_amp.py", line)


def test_manual_sgd_with_step_fn(tmp_path):
    """No torch.optim: ``--step-fn __main__:train_step`` (docs/collect.md) finds the steps, and the
    phases agree with the trace (no Optimizer.step# range: the update is not optimizer time).

    What perfkit says *without* --step-fn, and the memory figures it gives with it, are issue 13
    item 3 (steps without an optimizer; unknown never shown as zero): not asserted here."""
    _, out, doc = profile_script(tmp_path, "manual_sgd.py", "--steps", "6",
                                 options=("--step-fn", "__main__:train_step"))
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=6)
    assert doc["runtime"]["step_source"] == "perfkit.step"
    ref = check_phases(doc, events)
    assert ref["optimizer"] == 0 and doc["phases"]["optimizer"]["ms_per_step"] == 0


def test_dataloader_fetch_is_not_forward(tmp_path):
    """A plain loop over a DataLoader (num_workers=0) whose samples cost real work: the fetch runs in
    the step under ``enumerate(DataLoader)#...`` before the forward. It is data loading, not forward
    (the Overview's DataLoader role says so too); the oracle counts it as other."""
    import perfkit

    class Augmented(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 6 * 16

        def __getitem__(self, i: int):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(64, 64, generator=g)
            for _ in range(6):  # an augmentation heavy enough to outweigh the forward on a loaded machine
                x = torch.tanh(x @ x / 8)
            return x.mean(0), torch.randn(1, generator=g)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    out = tmp_path / "run"
    with perfkit.profile(out=str(out), skip_first=1, warmup=1, active=ACTIVE, report=False):
        for x, y in torch.utils.data.DataLoader(Augmented(), batch_size=16):
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad()
    doc = json.loads((out / "analysis.json").read_text())
    events = load_events(out / "rank0.pt.trace.json.gz")
    check_steps(doc, events, steps_run=6)
    ref = check_phases(doc, events)
    assert ref["other"] > ref["forward"]  # the fixture does what it says: the fetch outweighs the forward
