"""Phases of ``optimizer.step(closure)``: forward and backward run inside the optimizer's range.

Lightning's automatic optimisation (and LBFGS) call ``optimizer.step(closure)``; the
closure runs the forward pass, ``zero_grad`` and the backward pass, so the
``Optimizer.step#`` range spans nearly the whole step. Only the update after the
closure's backward pass is optimizer time. The traces here are built so that every
kernel's phase is known by construction.
"""

from __future__ import annotations

import json

import perfkit

MAIN, AUTOGRAD = 1, 2


def _x(name, ts, dur, tid=MAIN, cat="cpu_op", **args):
    return {"ph": "X", "cat": cat, "name": name, "pid": 100, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _launch_and_kernel(name, ts, corr, kernel_ts, kernel_dur, tid=MAIN):
    launch = _x("cudaLaunchKernel", ts, 2, tid=tid, cat="cuda_runtime", correlation=corr)
    kernel = {
        "ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": kernel_ts, "dur": kernel_dur,
        "args": {"correlation": corr, "device": 0, "stream": 7},
    }
    return [launch, kernel]


def _closure_trace(steps=3):
    """Per step (1000 µs apart): Optimizer.step# holds forward (aten::linear), zero_grad, a backward
    pass on the autograd thread, then the update (aten::_foreach_add_) after the closure returns."""
    ev = [
        {"ph": "M", "name": "thread_name", "pid": 100, "tid": AUTOGRAD, "args": {"name": "pt_autograd_0"}},
        {"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "GPU 0"}},
    ]
    corr = 1
    truth = {"forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    for s in range(steps):
        t0 = 10_000 + s * 1000
        ev.append(_x(f"ProfilerStep#{s}", t0, 900))
        ev.append(_x("Optimizer.step#Adam.step", t0 + 10, 880))
        # forward inside the closure: two kernels of 50 µs
        ev.append(_x("aten::linear", t0 + 20, 40))
        for k in range(2):
            ev += _launch_and_kernel("ampere_sgemm_128x64_nn", t0 + 25 + k * 10, corr, t0 + 100 + k * 60, 50)
            corr += 1
            truth["forward"] += 50
        ev.append(_x("Optimizer.zero_grad#Adam.zero_grad", t0 + 70, 10))
        # backward on the autograd thread: three kernels of 40 µs
        ev.append(_x("autograd::engine::evaluate_function: AddmmBackward0", t0 + 100, 300, tid=AUTOGRAD))
        for k in range(3):
            ev += _launch_and_kernel("ampere_sgemm_64x64_tn", t0 + 110 + k * 20, corr, t0 + 250 + k * 50, 40,
                                     tid=AUTOGRAD)
            corr += 1
            truth["backward"] += 40
        # the update after the closure: one kernel of 30 µs
        ev.append(_x("aten::_foreach_add_", t0 + 500, 40))
        ev += _launch_and_kernel("vectorized_elementwise_kernel", t0 + 505, corr, t0 + 600, 30)
        corr += 1
        truth["optimizer"] += 30
    return {"traceEvents": ev}, {k: v / 1000 / steps for k, v in truth.items()}


def test_closure_step_splits_into_forward_backward_and_update(tmp_path):
    doc, truth_ms = _closure_trace()
    p = tmp_path / "closure.pt.trace.json"
    p.write_text(json.dumps(doc))
    res = perfkit.analyze(str(p)).to_dict()
    for phase, ms in truth_ms.items():
        assert abs(res["phases"][phase]["ms_per_step"] - ms) < 1e-6, (phase, res["phases"])
    assert res["phases"]["other"]["ms_per_step"] == 0.0
    assert res["phases_evidence"]["optimizer"] == {"optimizer_range": 1.0}
    assert res["phases_evidence"]["backward"] == {"autograd": 1.0}


def test_plain_optimizer_step_is_unchanged(tmp_path):
    """Without a backward pass inside it, the whole Optimizer.step# range is optimizer time."""
    doc, _ = _closure_trace()
    for e in doc["traceEvents"]:
        if e.get("name") == "Optimizer.step#Adam.step":  # shrink it to the update alone
            e["ts"], e["dur"] = e["ts"] + 480, 400
    p = tmp_path / "plain.pt.trace.json"
    p.write_text(json.dumps(doc))
    res = perfkit.analyze(str(p)).to_dict()
    assert abs(res["phases"]["optimizer"]["ms_per_step"] - 0.030) < 1e-6
    assert abs(res["phases"]["forward"]["ms_per_step"] - 0.100) < 1e-6


def test_fewer_syncs_than_steps_are_counted_not_rounded_to_zero(tmp_path):
    """The example script calls loss.item() every 10 steps: "0 host-device syncs per step" was shown."""
    doc, _ = _closure_trace(steps=5)
    t = 10_000 + 2 * 1000 + 700  # in step 2, after the update: one cudaStreamSynchronize of 50 µs
    doc["traceEvents"].append(_x("aten::item", t, 60))
    doc["traceEvents"].append(_x("cudaStreamSynchronize", t + 5, 50, cat="cuda_runtime"))
    p = tmp_path / "sync.pt.trace.json"
    p.write_text(json.dumps(doc))
    res = perfkit.analyze(str(p)).to_dict()
    sync = next(f for f in res["findings"] if f["id"] == "host_device_sync")
    assert sync["title"].startswith("1 host-device sync in 5 steps (0.010 ms blocked per step)"), sync["title"]
    assert sync["evidence"]["syncs_per_step"] == 0.2
