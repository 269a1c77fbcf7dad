"""perfkit profile never loses the run, or the profile: faults injected into perfkit's own parts.

Each test injects one fault (an instrument that raises, a working directory
that changes, a run directory that cannot be created, a full disk, Ctrl-C) and
checks that the script's results and exit code are those of the bare script,
that one warning says what was lost or switched off, and that no file of the
run is ever left half-written. All run in this process (torch is imported
once); tests/e2e/test_profile_faults_e2e.py compares ``python SCRIPT`` with
``perfkit profile SCRIPT`` where only a whole interpreter shows the difference
(an interpreter's death by SIGINT, torch's C++ lines on fd 2).
"""

from __future__ import annotations

import errno
import gzip
import json
import os
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch

import perfkit
from perfkit.collect import job as pjob
from perfkit.collect import memory as pmemory
from perfkit.collect import modules as pmodules
from perfkit.collect import session as psession
from perfkit.collect.launcher import run_script
from perfkit.collect.runtime import MemoryCounters, PhaseTimer, StepTimer
from perfkit._profile import ProfileSession
from perfkit.collect.session import Schedule, SessionOptions
from perfkit.collect.stacks import StackSampler
from perfkit.collect.watchdog import Watchdog

from .. import _split

SWITCHED_OFF = "failed and is switched off"


# --------------------------------------------------------------------- a deterministic training loop


def train(steps: int = 8, *, step_marker: bool = False, pause_s: float = 0.0) -> tuple[list[float], list[torch.Tensor]]:
    """Losses and final weights of a small seeded run (with perfkit.phase markers; no-ops unprofiled)."""
    import time

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def one() -> float:
        x = torch.randn(8, 16)
        with perfkit.phase("forward"):
            loss = model(x).pow(2).mean()
        with perfkit.phase("backward"):
            loss.backward()
        opt.step()
        opt.zero_grad()
        if pause_s:
            time.sleep(pause_s)
        return loss.item()

    if step_marker:
        one = perfkit.step(one)
    losses = [one() for _ in range(steps)]
    return losses, [p.detach().clone() for p in model.parameters()]


def options(out: Path, **kw: Any) -> SessionOptions:
    kw.setdefault("schedule", Schedule(skip_first=2, warmup=1, active=2))
    return SessionOptions(out=str(out), report=False, **kw)


def profiled(opts: SessionOptions, **train_kw: Any) -> tuple[list[float], list[torch.Tensor], ProfileSession]:
    session = ProfileSession(opts)
    with session:
        losses, weights = train(**train_kw)
    return losses, weights, session


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("perfkit: warning:")]


def boom(message: str = "injected fault") -> Callable[..., Any]:
    def raiser(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(message)

    return raiser


# --------------------------------------------------------------------- 1. instruments that raise


def _old_sdpa_formula() -> Callable[..., Any]:
    """torch's sdpa FLOP formula before it knew grouped-query attention: asserts on fewer key/value heads."""
    from torch.utils.flop_counter import shape_wrapper

    def sdpa_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                  **kwargs: Any) -> int:
        b, h, s_q, d_q = query_shape
        _b2, _h2, s_k, _d2 = key_shape
        _b3, _h3, _s3, d_v = value_shape
        if not (b == _b2 == _b3 and h == _h2 == _h3 and d_q == _d2 and s_k == _s3):
            raise AssertionError("sdpa_flop_count: query/key/value shapes are incompatible")
        return 4 * b * h * s_q * s_k * d_q

    return shape_wrapper(sdpa_flop)


def _flop_formula_raises(monkeypatch: Any) -> None:
    # Linear on CPU runs aten.addmm: its formula now asserts as torch's sdpa formula did on GQA.
    from torch.utils.flop_counter import flop_registry

    def formula(*args: Any, **kwargs: Any) -> int:
        raise AssertionError("sdpa_flop_count: query/key/value shapes are incompatible")

    monkeypatch.setitem(flop_registry, torch.ops.aten.addmm, formula)


def _sampler_raises(monkeypatch: Any) -> None:
    monkeypatch.setattr(StackSampler, "_sample", boom())


def _watchdog_raises(monkeypatch: Any) -> None:
    monkeypatch.setattr(Watchdog, "beat", boom())


def _profiler_step_raises(monkeypatch: Any) -> None:
    monkeypatch.setattr(torch.profiler.profile, "step", boom())


# instrument named in the warning, how to break it, session options, train() arguments
FAULTS: list[tuple[str, Callable[[Any], None], dict[str, Any], dict[str, Any]]] = [
    ("FLOP counting", _flop_formula_raises, {"flops": True, "modules": True}, {}),
    ("module timers", lambda mp: mp.setattr(pmodules._Stats, "add_fwd", boom()), {"modules": True}, {}),
    ("activation memory", lambda mp: mp.setattr(pmemory, "tensor_bytes", boom()), {"modules": True}, {}),
    ("memory accounting", lambda mp: mp.setattr(MemoryCounters, "mark_step", boom()), {}, {}),
    ("memory accounting", lambda mp: mp.setattr(MemoryCounters, "account_optimizer", boom()), {}, {}),
    ("step timer", lambda mp: mp.setattr(StepTimer, "mark", boom()), {}, {}),
    ("phase markers", lambda mp: mp.setattr(PhaseTimer, "begin", boom()), {}, {}),
    ("phase markers", lambda mp: mp.setattr(PhaseTimer, "end", boom()), {}, {}),
    ("step markers", lambda mp: mp.setattr(ProfileSession, "mark_step", boom()), {}, {"step_marker": True}),
    ("stack sampler", _sampler_raises, {}, {"pause_s": 0.02}),
    ("watchdog", _watchdog_raises, {"watchdog_s": 600.0}, {}),
    ("kernel trace", _profiler_step_raises, {}, {}),
]


#: one fault of each kind here: a hook in the user's model, a session counter, a thread, the profiler;
#: tests/e2e/test_profile_faults_full.py runs the others
UNIT_FAULTS = [FAULTS[0], FAULTS[3], FAULTS[9], FAULTS[11]]


def _fault_id(fault: tuple[str, Any, Any, Any]) -> str:
    return f"{fault[0]}-{FAULTS.index(fault)}".replace(" ", "_")


@_split.cases("instrument,inject,opts,train_kw", FAULTS, UNIT_FAULTS, ids=_fault_id)
def test_a_failing_instrument_is_switched_off_and_the_run_goes_on(tmp_path, monkeypatch, capsys, instrument, inject,
                                                                   opts, train_kw):
    bare_losses, bare_weights = train(**train_kw)
    capsys.readouterr()
    inject(monkeypatch)
    losses, weights, session = profiled(options(tmp_path / "run", **opts), **train_kw)
    err = capsys.readouterr().err
    # The script's results are those of the bare run.
    assert losses == bare_losses
    assert all(torch.equal(a, b) for a, b in zip(weights, bare_weights))
    # One warning, naming the instrument.
    off = [w for w in warnings_of(err) if SWITCHED_OFF in w]
    assert len(off) == 1, err
    assert off[0].startswith(f"perfkit: warning: {instrument} failed"), off
    # The run directory is written, and says what was switched off.
    rt = json.loads((tmp_path / "run" / "analysis.json").read_text())["runtime"]
    assert list(rt["instrument_errors"]) == [instrument]
    # Steps are counted on (the step markers counted none: they are the steps' only source once used).
    assert rt["steps_seen"] == (0 if instrument == "step markers" else len(bare_losses))
    if instrument == "FLOP counting":
        assert "flops_per_step" not in rt and "AssertionError" in rt["flops_error"]  # unknown, never a low count
    if instrument == "module timers":
        assert "modules" not in rt and rt["modules_error"]
    if instrument == "step timer":
        assert rt["steps"] == {"error": "RuntimeError: injected fault"}  # no medians of some of the steps
    if instrument == "phase markers":
        assert rt["phases"] == {} and rt["phases_error"] == "RuntimeError: injected fault"
    if instrument == "memory accounting":
        assert set(rt["memory"]) == {"error"}  # a partial byte count is not shown as the count
    # Every hook perfkit put on the model is gone.
    assert not torch.nn.modules.module._global_forward_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks


def test_flop_formula_that_asserts_on_gqa_in_the_users_forward(tmp_path, monkeypatch, capsys):
    """The reproducer: grouped-query attention under --modules --flops, with the FLOP formula torch had
    before 2.13 (it asserted on fewer key/value heads, inside the user's forward). torch 2.13 counts GQA
    and has no formula for CPU attention, so the old formula is registered for the CPU kernel here."""
    from torch.utils.flop_counter import flop_registry

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q = torch.nn.Linear(32, 32)
            self.kv = torch.nn.Linear(32, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, s, _ = x.shape
            q = self.q(x).view(b, s, 4, 8).transpose(1, 2)  # 4 query heads
            k, v = self.kv(x).view(b, s, 2, 8).transpose(1, 2).chunk(2, dim=1)  # 1 key/value head
            y = torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            return y.transpose(1, 2).reshape(b, s, 32)

    def run() -> list[float]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(Attention(), torch.nn.Linear(32, 1))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        out = []
        for _ in range(6):
            loss = model(torch.randn(2, 8, 32)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            out.append(loss.item())
        return out

    bare = run()
    monkeypatch.setitem(flop_registry, torch.ops.aten._scaled_dot_product_flash_attention_for_cpu,
                        _old_sdpa_formula())
    session = ProfileSession(options(tmp_path / "run", modules=True, flops=True))
    with session:
        losses = run()
    assert losses == bare
    off = [w for w in warnings_of(capsys.readouterr().err) if SWITCHED_OFF in w]
    assert len(off) == 1 and "FLOP counting" in off[0] and "query/key/value shapes are incompatible" in off[0]
    rt = json.loads((tmp_path / "run" / "analysis.json").read_text())["runtime"]
    assert "flops_per_step" not in rt
    assert [r["name"] for r in rt["modules"]]  # the module timers stayed on


def test_module_timer_alone_warns_once_and_keeps_the_model_running(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    x = torch.randn(3, 4)
    want = model(x)
    monkeypatch.setattr(pmodules._Stats, "add_fwd", boom())
    with pytest.warns(RuntimeWarning, match="switched off") as record:
        with pmodules.ModuleTimer(model) as mt:
            for _ in range(3):
                got = model(x)
    assert torch.equal(got, want)
    assert len([w for w in record if "ModuleTimer" in str(w.message)]) == 1
    assert mt.error == "RuntimeError: injected fault" and mt.to_dict()["error"] == mt.error


def test_watchdog_thread_error_stops_it_with_one_report(tmp_path, monkeypatch):
    import perfkit._io as pio

    def full(path: Any, text: str) -> None:
        raise pio.OutputError(f"{path}: cannot write (No space left on device); the file was not changed")

    monkeypatch.setattr(pio, "write_text", full)
    errors: list[BaseException] = []
    wd = Watchdog(str(tmp_path), 0.05, on_error=errors.append).start()
    wd._thread.join(timeout=30)  # the first stall dump fails: the thread reports it and ends
    alive = wd.running
    wd.stop()
    assert not alive
    assert len(errors) == 1 and "No space left" in str(errors[0])
    assert not list(tmp_path.glob("stall_rank0_*"))  # no half-written dump


# --------------------------------------------------------------------- 2. os.chdir() in the script


def test_relative_and_default_run_dirs_survive_chdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    # A relative --out ...
    session = ProfileSession(options(Path("runs/exp"), mode="light"))
    with session:
        os.chdir(tmp_path / "elsewhere")  # Hydra-style
        train(3)
    assert (tmp_path / "runs" / "exp" / "analysis.json").is_file()
    assert not (tmp_path / "elsewhere" / "runs").exists()
    # ... and the default traces/<script>-<time>.
    os.chdir(tmp_path)
    session = ProfileSession(SessionOptions(name="train.py", mode="light", report=False))
    with session:
        os.chdir(tmp_path / "elsewhere")
        train(3)
    made = list((tmp_path / "traces").glob("train-*/analysis.json"))
    assert len(made) == 1 and Path(session.run_dir) == made[0].parent
    assert not (tmp_path / "elsewhere" / "traces").exists()


# --------------------------------------------------------------------- 3. a run directory that cannot be created

SCRIPT = """
import sys, torch
torch.manual_seed(0)
model = torch.nn.Linear(8, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for i in range(4):
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward(); opt.step(); opt.zero_grad()
print("final loss", round(loss.item(), 6))
sys.exit(3)
"""


def _unwritable(tmp_path: Path, how: str) -> Path:
    if how == "existing file":
        (tmp_path / "taken").write_text("a file, not a folder")
        return tmp_path / "taken"
    if how == "under a file":
        (tmp_path / "taken").write_text("a file, not a folder")
        return tmp_path / "taken" / "run"
    ro = tmp_path / "readonly"  # only when not root: chmod does not bind root
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "run"


UNWRITABLE = ["existing file", "under a file"] + (["read-only folder"] if os.geteuid() != 0 else [])


@pytest.mark.parametrize("how", UNWRITABLE)
def test_run_dir_that_cannot_be_created_runs_the_script_unrecorded(tmp_path, capsys, how):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = _unwritable(tmp_path, how)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = run_script(ProfileSession(options(out)), str(script), [])
    captured = capsys.readouterr()
    assert code == 3
    assert captured.out.startswith("final loss ")
    warned = warnings_of(captured.err)
    assert len(warned) == 1 and "nothing will be recorded" in warned[0] and str(out) in warned[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing was written anywhere
    assert psession.current() is None


# --------------------------------------------------------------------- 4. two runs in the same second


def test_two_runs_in_the_same_second_get_two_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pjob, "_clock", lambda: 1_700_000_000.0)  # both start at the same instant
    dirs = []
    for _ in range(3):
        session = ProfileSession(SessionOptions(name="train.py", mode="light", report=False))
        with session:
            train(2)
        dirs.append(Path(session.run_dir))
    assert len(set(dirs)) == 3
    assert dirs[1].name == dirs[0].name + "-2" and dirs[2].name == dirs[0].name + "-3"
    assert all((d / "analysis.json").is_file() for d in dirs)


def test_ranks_of_one_launcher_share_a_name_and_jobs_do_not(monkeypatch):
    world = pjob.World(rank=1, local_rank=1, world_size=2, source="env")
    monkeypatch.setattr(pjob, "_parent_start_time", lambda: 1_700_000_000.0)
    monkeypatch.setattr(os, "getppid", lambda: 4242)
    a = pjob.default_run_dir("train.py", world)
    assert a == pjob.default_run_dir("train.py", pjob.World(0, 0, 2, "env"))  # same launcher: same directory
    monkeypatch.setattr(os, "getppid", lambda: 4243)
    assert pjob.default_run_dir("train.py", world) != a  # another job started in the same second


# --------------------------------------------------------------------- 5. a full disk


class _FullDisk:
    """A file that takes ``room`` bytes, then fails as a full file system does (ENOSPC)."""

    def __init__(self, f: Any, room: int):
        self._f, self._room = f, room

    def write(self, data: Any) -> int:
        if len(data) > self._room:
            self._f.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._f.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> "_FullDisk":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


def _fill_disk(monkeypatch: Any, room: int, only: Optional[str] = None) -> None:
    """Every atomic write (perfkit._io opens its temporary file with os.fdopen) fails after ``room`` bytes;
    with ``only``, just the files whose temporary name contains it."""
    real = os.fdopen

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        f = real(fd, *args, **kwargs)
        name = os.readlink(f"/proc/self/fd/{fd}")
        return _FullDisk(f, room) if only is None or only in os.path.basename(name) else f

    monkeypatch.setattr(os, "fdopen", fdopen)


def _no_partial_files(run: Path) -> None:
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_full_disk_leaves_no_truncated_file_and_names_what_was_lost(tmp_path, capsys, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    _fill_disk(monkeypatch, room=512)  # every file of the run is larger
    code = run_script(ProfileSession(options(run)), str(script), [])
    captured = capsys.readouterr()
    assert code == 3 and captured.out.startswith("final loss ")
    warned = warnings_of(captured.err)
    assert any(w.startswith("perfkit: warning: the trace could not be written: ") and "No space left" in w
               for w in warned), warned
    assert any(w.startswith("perfkit: warning: analysis.json could not be written") for w in warned), warned
    assert any(w.startswith("perfkit: warning: report.md could not be written") for w in warned), warned
    # Nothing was half-written: each file is whole, or absent.
    for name in ("rank0.pt.trace.json.gz", "rank0.pt.trace.stacks.json.gz", "analysis.json", "report.md"):
        assert not (run / name).exists()
    _no_partial_files(run)


def test_lost_trace_is_said_in_the_run_document(tmp_path, capsys, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run = tmp_path / "run"
    _fill_disk(monkeypatch, room=100, only="rank0.pt.trace.json.gz.")
    assert run_script(ProfileSession(options(run)), str(script), []) == 3
    warned = warnings_of(capsys.readouterr().err)
    assert len(warned) == 1 and warned[0].startswith("perfkit: warning: the trace could not be written: ")
    assert not (run / "rank0.pt.trace.json.gz").exists()
    _no_partial_files(run)
    doc = json.loads((run / "analysis.json").read_text())
    assert doc["runtime"]["lost"] == [warned[0][len("perfkit: warning: "):]]
    assert doc["runtime"]["analysis_error"].startswith("the trace could not be written: ")
    assert doc["runtime"]["steps_seen"] == 4


# --------------------------------------------------------------------- 7. -q: partial results are never quiet


def test_quiet_still_says_the_trace_is_truncated(tmp_path, capsys, monkeypatch):
    real = psession.export_trace

    def export_then_cut(prof: Any, path: str) -> None:  # as a crash mid-write would leave a plain writer's file
        real(prof, path)
        data = gzip.decompress(Path(path).read_bytes())
        Path(path).write_bytes(gzip.compress(data[: len(data) * 2 // 3]))

    monkeypatch.setattr(psession, "export_trace", export_then_cut)
    session = ProfileSession(SessionOptions(out=str(tmp_path / "run"), quiet=True, schedule=Schedule(2, 0, 1, 2)))
    with session:
        train(6)
    warned = warnings_of(capsys.readouterr().err)
    assert len(warned) == 1 and "trace is truncated" in warned[0], warned


def test_fd2_filter_drops_only_torchs_profiler_lines(capfd):
    with psession.filter_fd2(psession._PROFILER_NOISE):
        os.write(2, b"USDT:2026-01-01 10:00:00 1:1 SyncActivityProfilerHandler.cpp:52] profiler_start\n")
        os.write(2, b"the user's own line\n")
        os.write(2, b"perfkit: warning: a line\n")
        os.write(2, b"USDT:2026-01-01 10:00:01 1:1 SyncActivityProfilerHandler.cpp:59] profiler_stop\n")
        os.write(2, b"last words, no newline")
    assert capfd.readouterr().err == "the user's own line\nperfkit: warning: a line\nlast words, no newline"
