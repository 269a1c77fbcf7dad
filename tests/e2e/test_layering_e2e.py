"""Each module of the torch-free stages imports alone, in a fresh interpreter, without torch (the stage
table and the import graph are checked statically in tests/unit/test_layering.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from ..unit.test_layering import ROOT, STAGES, TORCH_FREE, module_files, stage_of


_ISOLATED = r"""
import importlib, json, sys

class NoTorch:
    # Records (and refuses) any import of torch, even one a module would catch.
    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            NoTorch.attempts.append(name)
            raise ImportError("torch is not allowed here")
        return None

sys.meta_path.insert(0, NoTorch())
sys.modules.pop("torch", None)
results = {}
for name in json.loads(sys.argv[1]):
    for key in [k for k in sys.modules if k == "perfkit" or k.startswith("perfkit.")]:
        del sys.modules[key]
    before = len(NoTorch.attempts)
    try:
        importlib.import_module(name)
        error = None
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
    results[name] = {"error": error, "torch": NoTorch.attempts[before:],
                     "torch_loaded": any(k == "torch" or k.startswith("torch.") for k in sys.modules)}
print(json.dumps(results))
"""


def test_each_torch_free_module_imports_alone_without_torch():
    """Each module of the torch-free stages, imported first in a clean state (no perfkit module loaded),
    imports without error and without importing torch. One interpreter for all of them."""
    mods = module_files()
    names = sorted(m for m, path in mods.items() if path is not None and m != "perfkit.__main__" and (
        STAGES[stage_of(m)][0] in TORCH_FREE or m == "perfkit"))
    assert "perfkit.job.stalls" in names and "perfkit.report.console" in names
    proc = subprocess.run([sys.executable, "-c", _ISOLATED, json.dumps(names)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(results) == names
    bad = {n: r for n, r in results.items() if r["error"] or r["torch"] or r["torch_loaded"]}
    assert bad == {}
