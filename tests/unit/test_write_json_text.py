"""``write_json`` writes the standard library's compact text indented by perfkit's C layout
(perfkit._indent) or, where it is not built, by msgspec (issue #15, 3x faster than
``json.dumps(indent=2)``): the file must be exactly what ``json.dumps(doc, indent=2,
allow_nan=False)`` wrote before, with either layout, on every committed document and on generated
ones (non-ASCII and control characters, quotes, backslashes and brackets in strings, floats of
every magnitude, large integers, empty and nested containers)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfkit.report import write_json

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["c", "msgspec"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each layout in turn: perfkit's C one (built by setup.py), then msgspec's."""
    if request.param == "msgspec":
        monkeypatch.setitem(sys.modules, "perfkit._indent", None)  # an import of it fails
    else:
        import perfkit._indent  # noqa: F401  (built: setup.py build_ext)
    return str(request.param)


def _documents() -> list[Path]:
    """Committed JSON files that are perfkit documents (golden and stored analyses)."""
    out = []
    for path in sorted((REPO / "tests" / "data").rglob("*.json")):
        if path.stat().st_size > 5_000_000:
            continue
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("perfkit."):
            out.append(path)
    return out


def _expected(doc: Any) -> str:
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def test_committed_documents_are_written_as_json_dumps_wrote_them(tmp_path: Path, layout: str) -> None:
    paths = _documents()
    assert len(paths) >= 4
    for path in paths:
        doc = json.loads(path.read_text())
        write_json(doc, tmp_path / "out.json")
        assert (tmp_path / "out.json").read_text() == _expected(doc), path


def test_a_fresh_analysis_is_written_as_json_dumps_wrote_it(tmp_path: Path, layout: str) -> None:
    import perfkit

    traces = sorted((REPO / "tests" / "data" / "traces").rglob("*.json.gz"))[:3]
    assert traces
    for trace in traces:
        doc = perfkit.analyze(str(trace)).to_dict()
        write_json(doc, tmp_path / "out.json")
        assert (tmp_path / "out.json").read_text() == _expected(doc), trace


_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from([1e16, 1e-05, 1e-4, 0.0001, 1.5e300, -0.0, 5e-324, 1e22, 123456789.123])
            | st.text(max_size=12)
            | st.text(alphabet='{}[],:"\\ \n\tab', max_size=10))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=25)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(doc=_values)
def test_generated_documents(tmp_path_factory: pytest.TempPathFactory, doc: Any) -> None:
    out = tmp_path_factory.mktemp("w") / "out.json"
    write_json(doc, out)
    assert out.read_text() == _expected(doc)
    # and the msgspec layout, where perfkit._indent is not built
    saved = sys.modules.get("perfkit._indent")
    sys.modules["perfkit._indent"] = None  # type: ignore[assignment]
    try:
        write_json(doc, out)
    finally:
        if saved is None:
            del sys.modules["perfkit._indent"]
        else:
            sys.modules["perfkit._indent"] = saved
    assert out.read_text() == _expected(doc)


def test_the_c_layout_refuses_what_is_not_compact_ascii_json() -> None:
    from perfkit._indent import indent2

    assert indent2('{"a":[1,{}],"b":"x,{"}') == json.dumps({"a": [1, {}], "b": "x,{"}, indent=2)
    for bad in ['{"a":1', '["x]', "é", '"\\']:
        with pytest.raises(ValueError):
            indent2(bad)


def test_numpy_values_and_non_finite_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """numpy scalars and arrays become plain values; a NaN or infinity (also inside an array)
    becomes null with one warning, as before."""
    out = tmp_path / "out.json"
    write_json({"a": np.int64(3), "b": np.float64(0.25), "c": np.array([1.5, 2.0]), "d": np.bool_(True)}, out)
    assert out.read_text() == _expected({"a": 3, "b": 0.25, "c": [1.5, 2.0], "d": True})
    assert capsys.readouterr().err == ""
    write_json({"x": [1.0, math.nan], "y": np.array([math.inf, 2.0]), "z": "é"}, out)
    assert out.read_text() == _expected({"x": [1.0, None], "y": [None, 2.0], "z": "é"})
    err = capsys.readouterr().err
    assert "2 number(s) not finite" in err and "x[1]" in err and "y[0]" in err
