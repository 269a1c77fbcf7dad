"""The autouse leak fixture of tests/conftest.py, run by pytest in a subprocess on tests that leak."""

from __future__ import annotations

import os


def test_the_leak_fixture_fails_a_leaking_test_names_the_leak_and_never_imports_torch_itself(tmp_path):
    """The autouse fixture of conftest.py, run by pytest on three tests: a torch-free one (torch is not
    imported for it), one that leaves a session running (fails, naming what leaked) and one after it
    (passes: the leak was undone)."""
    import subprocess
    import sys

    from ..conftest import REPO

    (tmp_path / "conftest.py").write_text("from tests.conftest import no_leaked_session_or_hooks  # noqa: F401\n")
    (tmp_path / "test_a.py").write_text(
        "import sys\n"
        "def test_torch_free():\n"
        "    assert 'torch' not in sys.modules\n")
    (tmp_path / "test_b.py").write_text(  # torch imported by the tests, not at collection
        "def test_leaks(tmp_path):\n"
        "    from perfkit._profile import ProfileSession\n"
        "    from perfkit.collect.session import SessionOptions\n"
        "    ProfileSession(SessionOptions(out=str(tmp_path / 'r'), mode='light', report=False)).start()\n"
        "def test_registers_a_module_hook():\n"
        "    import torch\n"
        "    torch.nn.modules.module.register_module_forward_hook(lambda m, a, o: None)\n"
        "def test_after():\n"
        "    import torch\n"
        "    import torch.optim.optimizer as o\n"
        "    assert not o._global_optimizer_post_hooks and not torch.nn.modules.module._global_forward_hooks\n"
        "    assert getattr(torch.autograd.backward, '__wrapped__', None) is None\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "4 passed, 2 errors" in out, out
    leak = next(line for line in out.splitlines() if "test_leaks leaked global state" in line)
    assert "a perfkit session is still current" in leak
    assert "_global_optimizer_post_hooks gained perfkit.collect.session.Session._on_optimizer_step" in leak
    assert "torch.autograd.backward is a wrapper" in leak and "perfkit/collect/session.py" in leak  # torch new here
    hook = next(line for line in out.splitlines() if "test_registers_a_module_hook leaked" in line)
    assert "_global_forward_hooks gained" in hook and "<lambda>" in hook
