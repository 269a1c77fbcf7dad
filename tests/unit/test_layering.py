"""Imports run one way: a lower stage never imports a higher one, no module imports torch outside
collection, and the import graph has no cycle (issue #14, "Imports run backwards").

The stages, lowest first, are the table :data:`STAGES`. A module may import modules of its own stage
or of a lower one, at module level or inside a function. The graph is read from the source with
:mod:`ast` (every ``import``, relative imports resolved), so an import inside a function that runs
only on some path is checked too.
"""

from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple, Optional

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "perfkit"

#: The stages, lowest first: (name, module prefixes). A module belongs to the stage of the longest
#: prefix it matches (``perfkit`` alone is the package's ``__init__``: the public API, top stage).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    # Shared basics; they import nothing of perfkit but each other.
    ("base", ("perfkit.errors", "perfkit.units", "perfkit._json", "perfkit._io", "perfkit._version",
              "perfkit.peaks", "perfkit.variation", "perfkit.arrays", "perfkit.threads",
              "perfkit._indent", "perfkit.cpus")),
    # The run directory's file names, what a path stands for, and what collection hands over (plain
    # data: perfkit/run/layout.py, resolve.py, recording.py); the trace reader and collection use them.
    ("run paths", ("perfkit.run", "perfkit.run.layout", "perfkit.run.resolve", "perfkit.run.recording")),
    # The trace format and its in-memory model.
    ("trace", ("perfkit.trace",)),
    # The analysis document's contract (types, vocabularies, the schema-1 upgrade), and reading and
    # checking saved JSON documents (analysis.json, diff): the analysis stage loads documents too
    # (perfkit.analysis.result.read_document, perfkit diff), so it sits below it.
    ("documents", ("perfkit.analysis.document", "perfkit.documents")),
    # Trace -> analysis document.
    ("analysis", ("perfkit.analysis",)),
    # Several traces: the job view of a job's ranks, merges, the worker pool, stall-file reading.
    ("job", ("perfkit.job",)),
    # One document from any path (a run's analysis.json, or traces analysed now): the budget loads runs with it.
    ("run loading", ("perfkit.run.load",)),
    # What is made from a document: budgets and reports.
    ("products", ("perfkit.budget", "perfkit.report")),
    # Finishing a run: analyse the recording, write analysis.json and report.md, rank 0's job view.
    ("run", ("perfkit.run.finish",)),
    # In-process recording (torch) and the training-framework callbacks built on it.
    ("collect", ("perfkit.collect", "perfkit.integrations")),
    # The command line and the public API (perfkit._profile: the session that finishes its run).
    ("top", ("perfkit.cli", "perfkit.__main__", "perfkit", "perfkit._profile")),
]

#: Stages that must work without torch: none of their modules may import it, even inside a function.
TORCH_FREE = {"base", "run paths", "trace", "documents", "run loading", "analysis", "job", "products", "run"}

#: Imports allowed against the table, each with its reason: (importer, imported) -> reason. Empty.
EXCEPTIONS: dict[tuple[str, str], str] = {}


class Import(NamedTuple):
    importer: str
    target: str  # absolute module name (a perfkit module, or the top-level name of another package)
    line: int
    in_function: bool
    type_checking: bool  # under ``if TYPE_CHECKING:`` (never executed)


def module_files() -> dict[str, Optional[Path]]:
    """Every perfkit module: dotted name -> source file (None for a C extension, which imports nothing of perfkit)."""
    mods: dict[str, Optional[Path]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    for path in sorted(PACKAGE.rglob("*.c")):  # C extensions (setup.py), built or not
        mods[".".join(path.relative_to(ROOT).with_suffix("").parts)] = None
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, mods: dict[str, Optional[Path]]) -> list[Import]:
    """Every import in one module's source, resolved to absolute names."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(Import(name, alias.name, child.lineno, in_function, type_checking))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    assert base, f"{name}:{child.lineno}: relative import beyond the top-level package"
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:
                    sub = f"{target}.{alias.name}"
                    # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod.
                    found.append(Import(name, sub if sub in mods else target, child.lineno, in_function,
                                        type_checking))
            visit(child,
                  in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)),
                  type_checking or (isinstance(child, ast.If) and _is_type_checking(child.test)))

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False, False)
    return found


@functools.lru_cache(maxsize=1)  # the package's sources do not change during a test session: parsed once
def all_imports() -> tuple[dict[str, Optional[Path]], list[Import]]:
    """Every perfkit module and every import in them (the same objects on every call: callers only read them)."""
    mods = module_files()
    out: list[Import] = []
    for name, path in mods.items():
        if path is not None:
            out.extend(imports_of(name, path, mods))
    return mods, out


def stage_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


# ----------------------------------------------------------------------------------------- tests


def test_every_module_has_a_stage():
    mods = module_files()
    assert "perfkit.job.ranks" in mods and "perfkit.trace._scan" in mods  # the walk sees the tree
    assert [m for m in mods if stage_of(m) < 0] == []


def test_lower_stages_never_import_higher_ones():
    mods, imports = all_imports()
    bad = []
    for imp in imports:
        if imp.target.split(".")[0] != "perfkit":
            continue
        assert imp.target in mods, f"{imp.importer}:{imp.line}: imports {imp.target}, which is not a perfkit module"
        if stage_of(imp.target) > stage_of(imp.importer) and (imp.importer, imp.target) not in EXCEPTIONS:
            bad.append(f"{imp.importer}:{imp.line} ({STAGES[stage_of(imp.importer)][0]}) imports "
                       f"{imp.target} ({STAGES[stage_of(imp.target)][0]})"
                       + (" inside a function" if imp.in_function else ""))
    assert bad == []
    # Every listed exception is still needed (a stale one would hide nothing but mislead).
    used = {(i.importer, i.target) for i in imports}
    assert [e for e in EXCEPTIONS if e not in used] == []


#: What collection (perfkit.collect) still imports from above the trace stage, each with its reason.
COLLECT_ABOVE_TRACE: dict[tuple[str, str], str] = {}


def test_collect_imports_nothing_above_trace():
    """Collection hands over a Recording (perfkit/run/recording.py) and never analyses, renders or
    finishes a run: perfkit.collect imports the base, run-paths and trace stages only, but for
    :data:`COLLECT_ABOVE_TRACE`."""
    mods, imports = all_imports()
    trace = [name for name, _ in STAGES].index("trace")
    found = {(i.importer, i.target) for i in imports
             if (i.importer == "perfkit.collect" or i.importer.startswith("perfkit.collect."))
             and i.target.split(".")[0] == "perfkit" and stage_of(i.target) > trace
             and not i.target.startswith("perfkit.collect.")}
    assert sorted(found - set(COLLECT_ABOVE_TRACE)) == []
    assert sorted(set(COLLECT_ABOVE_TRACE) - found) == []  # a stale entry would mislead


def test_torch_free_stages_never_import_torch():
    _, imports = all_imports()
    bad = [f"{i.importer}:{i.line}" for i in imports
           if i.target.split(".")[0] == "torch" and STAGES[stage_of(i.importer)][0] in TORCH_FREE]
    assert bad == []


def test_no_import_cycles():
    """Imports inside functions are edges too (they run; a cycle through them works only by the order
    of calls); imports under ``if TYPE_CHECKING:`` are not, as they never run."""
    mods, imports = all_imports()
    graph: dict[str, set[str]] = defaultdict(set)
    for name in mods:
        graph[name]
    for imp in imports:
        if imp.target in mods and imp.target != imp.importer and not imp.type_checking:
            graph[imp.importer].add(imp.target)
    assert cycles(graph) == []


def test_cycle_finder_finds_cycles():
    """The check above can fail: a known graph with two cycles (one through three modules)."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}, "g": {"g"}}
    assert sorted(cycles(graph)) == [["a", "b", "c"], ["e", "f"]]


def test_import_resolution(tmp_path):
    """Relative imports resolve to absolute names; ``from pkg import mod`` names the module."""
    source = tmp_path / "x.py"
    source.write_text("from . import model as m\nfrom .reader import read_trace\nfrom .. import units\n"
                      "from ..job import ranks\nimport torch\n"
                      "def f():\n    from ..errors import PerfkitError\n"
                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..collect import session\n")
    mods = {"perfkit.trace.model": None, "perfkit.job.ranks": None, "perfkit.units": None,
            "perfkit.collect.session": None}
    got = [(i.target, i.in_function, i.type_checking) for i in imports_of("perfkit.trace.x", source, mods)]
    assert got == [("perfkit.trace.model", False, False), ("perfkit.trace.reader", False, False),
                   ("perfkit.units", False, False), ("perfkit.job.ranks", False, False),
                   ("torch", False, False), ("perfkit.errors", True, False), ("typing", False, False),
                   ("perfkit.collect.session", False, True)]
