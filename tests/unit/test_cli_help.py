"""The command line as a new user meets it: --version, help texts, options after the script, and lines that
survive 80 columns (tests/e2e/test_cli_help_e2e.py: a script that stops in its argument parsing or
crashes behaves as under bare python)."""

from __future__ import annotations

import io
import sys

import pytest

from rich.console import Console

import perfkit
from perfkit.cli import main
from perfkit.cli.profile import misplaced_hint, misplaced_options
from perfkit.run.finish import say, shell_quote
from perfkit.report.rows import trace_parts


def _help(capsys, *args: str) -> str:
    assert main([*args, "--help"]) == 0
    return capsys.readouterr().out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"perfkit {perfkit.__version__}\n"


def test_profile_help_usage_choices_examples_and_no_bool(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = _help(capsys, "profile")
    assert "profile [OPTIONS] SCRIPT [SCRIPT_ARGS]..." in out
    assert "<bool>" not in out and "{script}" not in out
    assert "--mode <trace|light>" in out
    assert "Examples:" in out and "perfkit profile --step-fn __main__:train_step train.py" in out
    assert "go before SCRIPT" in out
    assert "[default: 5" in out  # --active: five recorded steps by default
    assert max(len(line) for line in out.splitlines()) <= 80
    assert main(["profile", "-h"]) == 0 and capsys.readouterr().out == out


def test_flags_show_no_type_in_any_command(capsys):
    for cmd in ([], ["analyze"], ["profile"], ["report"], ["diff"]):
        assert "<bool>" not in _help(capsys, *cmd), cmd


def test_perfkit_options_after_the_script_are_named():
    assert misplaced_options(["-q", "--lr", "3", "--out=x", "--active", "5", "data.txt"]) == ["-q", "--out", "--active"]
    assert misplaced_options(["--lr", "3", "--epochs", "1"]) == []
    hint = misplaced_hint(["-q"], "train.py")
    assert "train.py got it" in hint and "perfkit profile -q ... train.py" in hint


def test_perfkit_options_are_found_without_click_installed(monkeypatch):
    """typer 0.2x builds its commands with its own copy of click and does not install click: a fresh
    ``pip install perfkit`` has none, and ``perfkit profile`` read its options before running the script."""
    monkeypatch.setitem(sys.modules, "click", None)  # ``import click`` raises ImportError
    with pytest.raises(ImportError):
        import click  # noqa: F401
    assert misplaced_options(["-q", "--lr", "3", "--out=x", "--active", "5", "data.txt"]) == ["-q", "--out", "--active"]


def test_lines_keep_brackets_and_are_not_broken_at_80_columns():
    buf = io.StringIO()
    console = Console(file=buf, width=80)
    path = "/very/long/" + "directory-name/" * 6 + "rank0.pt.trace.json.gz"
    say(console, f"perfkit: re-run the analysis with:  perfkit analyze {shell_quote(path)}")
    say(console, "perfkit: the trace has no [memory] events")
    lines = buf.getvalue().splitlines()
    assert lines[0].endswith(path) and lines[0].startswith("perfkit: re-run")  # one line: the terminal wraps it
    assert lines[1] == "perfkit: the trace has no [memory] events"
    assert shell_quote("/a b/[x].gz") == "'/a b/[x].gz'"


def test_trace_size_is_the_files_size_on_disk():
    doc = {"trace": {"paths": ["t.json.gz"], "bytes": 14_300_000, "file_bytes": 2_100_000, "events": 10}}
    assert trace_parts(doc)[1] == "2.1 MB, 10 events"
    old = {"trace": {"paths": ["t.json.gz"], "bytes": 14_300_000}}  # a document from before file_bytes
    assert trace_parts(old)[1] == "14.3 MB of JSON"


def test_analysis_document_carries_the_trace_files_size(tmp_path):
    import gzip
    import json

    path = tmp_path / "t.json.gz"
    events = [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 1, "ts": i * 10.0, "dur": 5.0}
              for i in range(200)]
    with gzip.open(path, "wt") as f:
        json.dump({"traceEvents": events}, f)
    doc = perfkit.analyze(str(path)).to_dict()
    assert doc["trace"]["file_bytes"] == path.stat().st_size
    assert doc["trace"]["bytes"] > doc["trace"]["file_bytes"]  # the JSON read, inflated


def _without_torch(monkeypatch):
    """As where torch is not installed: ``import torch`` raises ImportError and no spec is found for it."""
    monkeypatch.setitem(sys.modules, "torch", None)


def test_profile_without_torch_is_one_line_with_the_install_command(tmp_path, monkeypatch, capsys):
    """Not an internal error of perfkit (exit 3, "please report it"), as it was: bad input, exit 2, one line."""
    script = tmp_path / "train.py"
    script.write_text("print('the script ran')\n")
    _without_torch(monkeypatch)
    assert main(["profile", "--out", str(tmp_path / "run"), str(script)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("perfkit: error: perfkit profile needs PyTorch"), err
    assert "pip install torch" in err and "the script ran" not in out
    assert not (tmp_path / "run").exists()


def test_the_profile_api_without_torch_raises_the_same_line(tmp_path, monkeypatch):
    from perfkit.errors import MissingDependencyError

    _without_torch(monkeypatch)
    with pytest.raises(MissingDependencyError, match=r"^perfkit\.profile needs PyTorch.*pip install torch"):
        with perfkit.profile(out=str(tmp_path / "run")):
            pass
    assert not (tmp_path / "run").exists()
