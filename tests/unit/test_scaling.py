"""The scaling probe: fitted exponents, the timeout, target loading, the CLI and the plot. CPU only, fast.

No assertion here reads the wall clock: the probe's clock is a :class:`VirtualClock` (the ``clock``
fixture stands it in for the ``time`` module of perfkit.collect.scaling) that only the probed
functions move, by ``clock.sleep(seconds)``; so every timing, fit and timeout below is exact."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types

import pytest

from perfkit.collect import scaling as scaling_module
from perfkit.collect.scaling import (
    complexity_label,
    fit_power_law,
    format_seconds,
    load_target,
    parse_sizes,
    scale,
)
from perfkit.errors import MissingDependencyError, UsageError
from .._clock import VirtualClock


@pytest.fixture
def clock(monkeypatch) -> VirtualClock:
    virtual = VirtualClock()
    monkeypatch.setattr(scaling_module, "time", virtual)
    return virtual


# The target module sleeps through the probe's own ``time``: the virtual one when the ``clock``
# fixture is in use.
HELPER = textwrap.dedent(
    """
    from perfkit.collect import scaling as _scaling

    def fn(n):
        _scaling.time.sleep(1e-6 * n * n)      # O(n^2), 1.6 ms at n=40

    def make(n):
        return n * 2

    def takes_input(x):
        _scaling.time.sleep(1e-6 * x * x)

    def boom(n):
        raise ValueError(f"no size {n} for you")

    NOT_A_FUNCTION = 3

    if __name__ == "__main__":
        raise SystemExit("the __main__ block ran")
    """
)


@pytest.fixture
def helper(tmp_path):
    (tmp_path / "scale_helper_mod.py").write_text(HELPER)
    return tmp_path


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("timing ")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- fitting


def test_quadratic_cost_fits_n2(clock):
    result = scale(lambda n: clock.sleep(2e-8 * n * n), [400, 800, 1600, 3200], repeat=7, warmup=1, stat="min")
    assert result.exponent == pytest.approx(2.0, abs=1e-9), result.to_dict()
    assert result.coefficient_s == pytest.approx(2e-8, rel=1e-6)
    assert result.label == "O(n^2)"
    assert result.r2 == pytest.approx(1.0)
    assert result.fit_sizes == [400, 800, 1600, 3200]
    assert clock.readings == 2 * 4 * (7 + 1)  # one start and one end reading per call: 4 sizes, 7 runs + 1 warm-up


def test_linear_cost_fits_n1(clock):
    result = scale(lambda n: clock.sleep(1e-8 * n), [100_000, 200_000, 400_000, 800_000, 1_600_000], repeat=5,
                   warmup=1, stat="min")
    assert result.exponent == pytest.approx(1.0, abs=1e-9), result.to_dict()
    assert result.label == "O(n)"


def test_fit_power_law_exact():
    sizes = [64, 128, 256, 512]
    k, c, r2 = fit_power_law(sizes, [2e-9 * n**3 for n in sizes])
    assert k == pytest.approx(3.0)
    assert c == pytest.approx(2e-9)
    assert r2 == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fit_power_law([10], [1.0])


@pytest.mark.parametrize(
    "k, label",
    [(0.05, "O(1)"), (0.97, "O(n)"), (1.2, "O(n log n)?"), (1.9, "O(n^2)"), (2.98, "O(n^3)"), (4.1, "O(n^4)")],
)
def test_complexity_label(k, label):
    assert complexity_label(k, 100, 10_000) == label


def test_format_seconds():
    assert format_seconds(0.0525) == "52.5 ms"
    assert format_seconds(53.0) == "53 s"
    assert "min" in format_seconds(540.0)
    assert "h" in format_seconds(5.4e4)
    assert format_seconds(540.0, exact=False) == "9 min"  # plot labels, "... ago"
    assert format_seconds(0.0004, exact=False, digits=2) == "400 us"  # never 4e+02


def test_projection_and_document(helper, monkeypatch, clock):
    monkeypatch.syspath_prepend(str(helper))
    monkeypatch.delitem(sys.modules, "scale_helper_mod", raising=False)
    result = scale("scale_helper_mod:fn", [40, 80, 160], repeat=1, warmup=0, target=1024)
    monkeypatch.delitem(sys.modules, "scale_helper_mod")
    doc = result.to_dict()
    json.dumps(doc, allow_nan=False)
    assert doc["schema"] == "perfkit.scale/1"
    assert doc["function"] == "scale_helper_mod:fn"
    assert doc["sizes"] == [40, 80, 160]
    assert [t["size"] for t in doc["timings"]] == [40, 80, 160]
    for t in doc["timings"]:
        assert t["min_s"] <= t["median_s"] <= t["max_s"]
        assert t["runs"] == 1
    assert doc["skipped_sizes"] == [] and doc["skip_reason"] is None
    assert doc["exponent"] == pytest.approx(2.0, abs=1e-9)
    assert [p["size"] for p in doc["projections"]] == [320, 1600, 1024]
    at_target = doc["projections"][-1]["predicted_s"]
    assert at_target == pytest.approx(doc["coefficient_s"] * 1024 ** doc["exponent"])
    assert at_target == pytest.approx(1e-6 * 1024**2, rel=1e-6)  # 1.05 s for 1e-6 * n^2
    assert "at n=1024: ~" in result.summary() and "O(n^2)" in result.summary()


def test_sizes_below_a_millisecond_are_left_out_of_the_fit(clock):
    result = scale(lambda n: clock.sleep(n * 1e-3) if n > 1 else None, [1, 2, 4, 8], repeat=1, warmup=0)
    assert result.fit_sizes == [2, 4, 8]
    assert [t.in_fit for t in result.timings] == [False, True, True, True]
    assert any("left out of the fit" in w for w in result.warnings)


def test_no_fit_when_everything_is_fast(clock):
    result = scale(lambda n: None, [1, 2, 3], repeat=1, warmup=0)
    assert result.exponent is None and result.projections == []
    assert "no fit" in result.summary()
    assert result.to_dict()["exponent"] is None


# --------------------------------------------------------------------------- timeout


def test_timeout_stops_growth(clock):
    calls: list[int] = []

    def sleepy(n):
        calls.append(n)
        clock.sleep(0.01 * n)

    result = scale(sleepy, [1, 2, 4, 8, 16, 32], repeat=2, warmup=1, timeout_s=0.05)
    elapsed = clock.now
    assert result.sizes == [1, 2, 4, 8]
    assert result.skipped == [16, 32]
    assert "8" in (result.skip_reason or "") and "timeout" in result.skip_reason
    assert 16 not in calls and 32 not in calls
    assert calls.count(8) == 1  # the warm-up call was already over: kept as the only run
    assert result.timings[-1].runs_s and len(result.timings[-1].runs_s) == 1
    assert elapsed < 1.5
    assert result.to_dict()["skipped_sizes"] == [16, 32]


def test_predicted_overrun_is_skipped_before_running(clock):
    calls: list[int] = []

    def cubic_sleep(n):
        calls.append(n)
        clock.sleep(0.002 * n**3)  # 2 ms, 16 ms, then 1 s at n=8

    result = scale(cubic_sleep, [1, 2, 8, 16], repeat=1, warmup=0, timeout_s=0.05)
    assert 8 not in calls and 16 not in calls
    assert result.skipped == [8, 16]
    assert "predicted" in (result.skip_reason or "")


# --------------------------------------------------------------------------- inputs and errors


def test_make_input_fresh_per_call_and_untimed(clock):
    made: list[int] = []

    def make(n):
        made.append(n)
        clock.sleep(0.02)  # slow input building must not count
        return list(range(n))

    seen: list[int] = []

    def consume(xs):
        seen.append(len(xs))
        xs.clear()  # mutates its input: the next call still gets a full one

    result = scale(consume, [3, 5], make_input=make, repeat=2, warmup=1)
    assert sorted(made) == [3, 3, 3, 5, 5, 5]
    assert seen == made
    assert all(t.max_s == 0.0 for t in result.timings)  # the clock moved only while inputs were made
    assert clock.now == pytest.approx(6 * 0.02)


def test_function_that_raises_names_type_and_message():
    def bad(n):
        raise KeyError(f"missing {n}")

    with pytest.raises(UsageError) as info:
        scale(bad, [7], repeat=1, warmup=0)
    assert "KeyError" in str(info.value) and "missing 7" in str(info.value) and "(7)" in str(info.value)
    assert isinstance(info.value.__cause__, KeyError)


def test_cuda_sync_only_when_torch_used_cuda(monkeypatch):
    counts = {"sync": 0}
    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        synchronize=lambda: counts.__setitem__("sync", counts["sync"] + 1),
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    scale(lambda n: None, [1, 2], repeat=3, warmup=1)
    assert counts["sync"] == 2 * 2 * 4  # before and after each of the 4 calls of 2 sizes
    monkeypatch.setitem(sys.modules, "torch", None)  # torch not importable
    scale(lambda n: None, [1], repeat=1, warmup=0)


@pytest.mark.parametrize("text", ["32,abc", "", "0,4", "-3", "1.5"])
def test_parse_sizes_rejects(text):
    with pytest.raises(UsageError):
        parse_sizes(text)


def test_parse_sizes_sorts_and_dedups():
    assert parse_sizes("256, 32,64,64") == [32, 64, 256]
    assert parse_sizes([8, 4, 4.0]) == [4, 8]


def test_load_target_module_and_file(helper):
    path = helper / "scale_helper_mod.py"
    fn = load_target(f"{path}:fn")  # must not run the __main__ block
    assert callable(fn) and fn.__name__ == "fn"
    with pytest.raises(UsageError, match="no function 'nope'"):
        load_target(f"{path}:nope")
    with pytest.raises(UsageError, match="not a function"):
        load_target(f"{path}:NOT_A_FUNCTION")
    with pytest.raises(UsageError, match="no such file"):
        load_target(f"{helper / 'missing.py'}:fn")
    with pytest.raises(UsageError, match="no such module"):
        load_target("perfkit_no_such_module_xyz:fn")
    with pytest.raises(UsageError, match="module:function"):
        load_target("just_a_name")
    assert load_target("os.path:join") is os.path.join


# --------------------------------------------------------------------------- CLI


def _main_in_process(helper, monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from perfkit.cli import main

    monkeypatch.syspath_prepend(str(helper))
    monkeypatch.delitem(sys.modules, "scale_helper_mod", raising=False)
    try:
        code = main(list(args))
    finally:
        sys.modules.pop("scale_helper_mod", None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_scale_prints_fit_and_writes_json(helper, tmp_path, monkeypatch, capsys, clock):
    out = tmp_path / "scale.json"
    code, stdout, stderr = _main_in_process(
        helper, monkeypatch, capsys, "scale", "scale_helper_mod:fn", "--sizes", "40,80,160", "--repeat", "1",
        "--warmup", "0", "--target", "1024", "--json", str(out),
    )
    assert code == 0, stderr
    assert "time grows as n^" in stdout and "O(n^2)" in stdout
    assert "at n=1024: ~" in stdout
    assert "median s" in stdout
    doc = json.loads(out.read_text())
    assert doc["sizes"] == [40, 80, 160] and doc["exponent"] == pytest.approx(2.0, abs=1e-9)


def test_cli_input_function(helper, monkeypatch, capsys, clock):
    code, stdout, stderr = _main_in_process(
        helper, monkeypatch, capsys, "scale", "scale_helper_mod:takes_input", "--input", "scale_helper_mod:make",
        "--sizes", "20,40,80", "--repeat", "1", "--warmup", "0",
    )
    assert code == 0, stderr
    assert "time grows as n^" in stdout
    assert clock.now == pytest.approx(sum(1e-6 * (2 * n) ** 2 for n in (20, 40, 80)))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["scale_helper_mod:fn", "--sizes", "32,abc"], "'abc' is not a whole number"),
        (["scale_helper_mod:nope", "--sizes", "1,2"], "no function 'nope'"),
        (["no_such_module_for_scale:fn", "--sizes", "1,2"], "no such module"),
        (["scale_helper_mod:boom", "--sizes", "3,4"], "ValueError: no size 3 for you"),
    ],
)
def test_cli_bad_input_exit_2_one_line(helper, monkeypatch, capsys, clock, args, expected):
    code, stdout, stderr = _main_in_process(helper, monkeypatch, capsys, "scale", *args)
    proc = subprocess.CompletedProcess(["perfkit", "scale", *args], code, stdout, stderr)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert expected in one_error_line(proc)


# --------------------------------------------------------------------------- plot


def _block_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)


def test_plot_without_matplotlib_names_the_install(monkeypatch, tmp_path, clock):
    from perfkit.report.scaling_plot import plot_scaling

    _block_matplotlib(monkeypatch)
    doc = scale(lambda n: clock.sleep(2e-3 * n), [1, 2], repeat=1, warmup=0).to_dict()
    with pytest.raises(MissingDependencyError, match=r"pip install 'perfkit\[plots\]'"):
        plot_scaling(doc, str(tmp_path / "p.png"))


def test_cli_plot_without_matplotlib_fails_before_probing(monkeypatch, tmp_path, capsys):
    from perfkit.cli import main

    _block_matplotlib(monkeypatch)
    mod = tmp_path / "plot_probe_mod.py"
    marker = tmp_path / "ran"
    mod.write_text(f"def fn(n):\n    open({str(marker)!r}, 'w').close()\n")
    code = main(["scale", f"{mod}:fn", "--sizes", "1,2", "--plot", str(tmp_path / "p.png")])
    assert code == 2
    assert "pip install 'perfkit[plots]'" in capsys.readouterr().err
    assert not marker.exists()


