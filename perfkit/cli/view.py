"""``perfkit view RUN``: open a run's traces in TensorBoard (torch-tb-profiler) or say how to open them in Perfetto UI."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from typing import List, Optional

import typer

from ..errors import TraceFormatError
from ._app import app

PERFETTO_URL = "https://ui.perfetto.dev"
TENSORBOARD_EXTRA = "pip install 'perfkit[tensorboard]'"
DEPRECATION_NOTE = (
    "note: torch-tb-profiler is deprecated upstream and its last release (0.4.3, 2023) misreads traces "
    "written since 2024 (Runtime and operator device time shown as 0, step boundaries off); use it to browse, "
    "not for numbers (perfkit analyze / perfkit report)."
)


def tensorboard_available() -> bool:
    """True when both ``tensorboard`` and the ``torch_tb_profiler`` plugin can be imported (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("tensorboard", "torch_tb_profiler"))


def find_traces(run: str) -> tuple[str, List[str]]:
    """(log directory, trace files) of a run directory, a trace file, or an analysis.json (its traces)."""
    from ..run.resolve import resolve

    r = resolve(run)
    if os.path.isdir(run):
        return run, list(r.need_traces())
    if r.kind == "document":
        from ..documents import load_analysis

        paths = (load_analysis(run).get("trace") or {}).get("paths") or []
        base = os.path.dirname(os.path.abspath(run))
        # As recorded, else beside the analysis.json (a run directory copied from the training machine).
        candidates = [p if os.path.exists(p) else os.path.join(base, os.path.basename(p)) for p in paths]
        found = [p for p in candidates if os.path.exists(p)]
        if not found:
            raise TraceFormatError(f"{run}: the traces it was made from are not there ({', '.join(paths) or 'none named'})")
        return os.path.dirname(os.path.abspath(found[0])), found
    return os.path.dirname(os.path.abspath(run)), [run]


def tensorboard_command(logdir: str, port: int) -> List[str]:
    exe = shutil.which("tensorboard")
    base = [exe] if exe else [sys.executable, "-m", "tensorboard.main"]
    return [*base, "--logdir", logdir, "--port", str(port)]


@app.command("view")
def view_cmd(
    run: str = typer.Argument(..., help="A run directory, a trace file, or an analysis.json."),
    port: int = typer.Option(6006, "--port", min=1, max=65535, help="TensorBoard port."),
    perfetto: bool = typer.Option(False, "--perfetto", help="Only print how to open the traces in Perfetto UI."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the TensorBoard command instead of running it."),
) -> Optional[int]:
    """Open the run's traces: TensorBoard with torch-tb-profiler when installed, else Perfetto UI instructions."""
    logdir, traces = find_traces(run)
    if perfetto or not tensorboard_available():
        print_perfetto_help(traces, tensorboard_hint=not perfetto)
        return None
    cmd = tensorboard_command(logdir, port)
    print(DEPRECATION_NOTE, file=sys.stderr)
    url = f"http://localhost:{port}/#pytorch_profiler"
    if dry_run:
        print(" ".join(_quote(c) for c in cmd))
        print(f"then open {url}")
        return None
    print(f"TensorBoard with the PyTorch Profiler plugin: {url}  (Ctrl-C to stop)", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # TensorBoard takes this process's place: Ctrl-C or a kill reaches it directly, no orphan is left.
    os.execv(cmd[0], cmd)
    return None  # not reached (os.execv does not return)


def print_perfetto_help(traces: List[str], *, tensorboard_hint: bool = True) -> None:
    """How to open the traces in Perfetto UI (or chrome://tracing), with their paths."""
    print(f"Open {PERFETTO_URL} in a browser, click \"Open trace file\" and choose:")
    for t in traces:
        print(f"  {os.path.abspath(t)}")
    print("(.json.gz opens as is; chrome://tracing -> Load reads the same files.)")
    if tensorboard_hint:
        print(f"For TensorBoard's PyTorch Profiler view: {TENSORBOARD_EXTRA}, then perfkit view again.")
        print(DEPRECATION_NOTE)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
