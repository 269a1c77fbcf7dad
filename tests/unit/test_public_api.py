"""The public API of ``import perfkit`` (issue #14): the names it exports, their signatures and types,
and that the package ships its annotations (PEP 561); tests/e2e/test_public_api_e2e.py imports it in a
fresh interpreter (no torch, no pandas) and builds its egg-info."""

from __future__ import annotations

import inspect
import pathlib
import typing

import pytest

import perfkit
from perfkit.errors import PerfkitError, TraceFormatError, UsageError

from ..conftest import REPO

SMALL = REPO / "tests" / "data" / "traces" / "nv-rtx2080ti-param-linear-train" / "linear_kineto.json.gz"

EXPORTED = {
    # name: (module that defines it, attribute there)
    "analyze": ("perfkit", "analyze"),
    "load_trace": ("perfkit", "load_trace"),
    "profile": ("perfkit._profile", "profile"),
    "step": ("perfkit.collect.markers", "step"),
    "phase": ("perfkit.collect.markers", "phase"),
    "ModuleTimer": ("perfkit.collect.modules", "ModuleTimer"),
    "Watchdog": ("perfkit.collect.watchdog", "Watchdog"),
    "scale": ("perfkit.collect.scaling", "scale"),
    "Analysis": ("perfkit.analysis.result", "Analysis"),
    "JobAnalysis": ("perfkit.analysis.result", "JobAnalysis"),
    "Trace": ("perfkit.trace.model", "Trace"),
    "PerfkitError": ("perfkit.errors", "PerfkitError"),
}


def test_all_lists_the_public_names_and_each_is_the_real_object():
    import importlib

    assert set(perfkit.__all__) == set(EXPORTED) | {"__version__"}
    assert len(perfkit.__all__) == len(set(perfkit.__all__))
    for name, (module, attr) in EXPORTED.items():
        assert getattr(perfkit, name) is getattr(importlib.import_module(module), attr), name
        assert name in dir(perfkit)
    assert issubclass(perfkit.PerfkitError, Exception)
    assert issubclass(perfkit.JobAnalysis, perfkit.Analysis)
    with pytest.raises(AttributeError, match="no attribute 'Merge'"):
        perfkit.Merge  # noqa: B018  (not a public name)


def test_analyze_takes_its_real_options_as_typed_keywords_and_no_catch_all():
    from perfkit.job import analyze_paths

    sig = inspect.signature(perfkit.analyze)
    kinds = {p.name: p.kind for p in sig.parameters.values()}
    assert kinds == {"path": inspect.Parameter.POSITIONAL_OR_KEYWORD,
                     "workers": inspect.Parameter.KEYWORD_ONLY, "progress": inspect.Parameter.KEYWORD_ONLY,
                     "engine": inspect.Parameter.KEYWORD_ONLY, "address": inspect.Parameter.KEYWORD_ONLY}
    # the same options as the function it calls, which takes no **kwargs either
    inner = inspect.signature(analyze_paths).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in inner.values())
    assert set(inner) - {"path_or_paths"} == set(kinds) - {"path"}
    hints = typing.get_type_hints(perfkit.analyze, localns={"Analysis": perfkit.Analysis})
    assert hints["return"] is perfkit.Analysis
    assert hints["workers"] == typing.Optional[int]
    assert hints["engine"] == typing.Optional[str] == hints["address"]
    with pytest.raises(TypeError, match="unexpected keyword argument 'worker'"):
        perfkit.analyze(str(SMALL), worker=2)


def test_analyze_accepts_a_path_object_and_a_sequence_of_one():
    by_str = perfkit.analyze(str(SMALL))
    assert isinstance(by_str, perfkit.Analysis)
    by_path = perfkit.analyze(pathlib.Path(SMALL))
    by_tuple = perfkit.analyze((pathlib.Path(SMALL),))
    assert by_path.to_dict()["steps"] == by_str.to_dict()["steps"] == by_tuple.to_dict()["steps"]
    seen: list[tuple[str, int, int]] = []
    perfkit.analyze(SMALL, progress=lambda what, done, total: seen.append((what, done, total)), workers=0)
    assert seen[-1] == ("analysed", 2, 2)


def test_load_trace_returns_the_columnar_trace_and_fails_with_one_perfkit_error(tmp_path):
    trace = perfkit.load_trace(pathlib.Path(SMALL))
    assert isinstance(trace, perfkit.Trace) and len(trace) > 0
    assert inspect.signature(perfkit.load_trace).return_annotation == "Trace"
    missing = tmp_path / "missing.json"
    with pytest.raises(perfkit.PerfkitError) as info:
        perfkit.load_trace(missing)
    assert isinstance(info.value, TraceFormatError) and str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_profile_mode_is_a_literal_and_a_wrong_mode_is_one_usage_error(tmp_path):
    from perfkit import _profile
    from perfkit.collect import session

    literal = typing.Literal["trace", "light"]
    assert typing.get_type_hints(_profile.profile, localns=vars(_profile))["mode"] == literal
    assert typing.get_type_hints(session.SessionOptions)["mode"] == literal
    with pytest.raises(UsageError, match="mode must be 'trace' or 'light'") as info:
        perfkit.profile(out=str(tmp_path / "r"), mode="heavy")  # type: ignore[arg-type]
    assert isinstance(info.value, PerfkitError)


def test_the_package_ships_py_typed():
    from perfkit.budget.spec import _toml_loads  # tomllib, or tomli on Python 3.10

    assert (REPO / "perfkit" / "py.typed").is_file()
    # declared, for setuptools before 69 (which does not add py.typed by itself); pyproject allows >= 68
    config = _toml_loads((REPO / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["perfkit"]
    # tests/e2e/test_public_api_e2e.py checks what setuptools puts in the distribution
