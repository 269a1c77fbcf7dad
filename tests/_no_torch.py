"""perfkit's command line run in this process as in an environment without torch."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys


def cli_without_torch(*args: str) -> subprocess.CompletedProcess:
    """``perfkit ARGS`` in this process with torch made unimportable (any ``import torch`` or
    ``from torch... import`` it makes fails, as in an environment without torch); its exit status and
    output captured. torch's modules already imported are put back afterwards."""
    from perfkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {name: sys.modules[name] for name in list(sys.modules) if name == "torch" or name.startswith("torch.")}
    for name in saved:
        del sys.modules[name]
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        del sys.modules["torch"]
        sys.modules.update(saved)
    return subprocess.CompletedProcess(["perfkit", *args], code, out.getvalue(), err.getvalue())
