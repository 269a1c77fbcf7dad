"""Same outputs before and after a change of the analysis document: analyse every committed trace with
an earlier perfkit (a git revision) and with this checkout, and compare.

For each trace (a single trace, or the ranks of one job folder):

* **document**: the earlier revision's document, read by this checkout (a ``perfkit.analysis/1``
  document goes through :func:`perfkit.analysis.document.upgrade`), must equal this checkout's
  document key for key; floats may differ by 1e-9 relative (none do in practice);
  ``trace.paths`` and ``stalls.seconds_since_newest_activity`` (the age of a watchdog file when it
  was read) are not compared;
* **reports**: the terminal report (100 columns, no colour) and the Markdown report of the earlier
  revision's document rendered by the earlier revision, against this checkout's rendering of its own
  document, with the renamed keys read as their new names where a report quotes the document (a
  finding's raw evidence). Differences are listed line by line; a change of wording the new revision
  makes on purpose shows up here, and the summary counts the documents and reports that match.

Usage::

    python scripts/check_schema_upgrade.py --before 1ad37d6 [--out DIR] [TRACE_OR_FOLDER ...]

Without paths it takes every trace under ``traces/`` and ``tests/data/traces/`` (each folder of
``rank*`` traces as one job). The earlier revision is checked out with ``git worktree`` into a
temporary folder (its C scanner is built there when a compiler is available; the pure-Python
reader is used otherwise, with the same results). Exit status 0 when every document matches.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Run in the checkout given as argv[1]: analyse the inputs in argv[3:] (JSON list of path lists),
#: write <out>/<i>.json and the reports <out>/<i>.txt, <out>/<i>.md.
_WORKER = r"""
import io, json, os, sys
sys.path.insert(0, sys.argv[1])
import perfkit
from perfkit.report import render_console, render_markdown
from rich.console import Console
out = sys.argv[2]
jobs = json.loads(sys.argv[3])
for i, paths in enumerate(jobs):
    try:
        doc = perfkit.analyze(paths if len(paths) > 1 else paths[0]).to_dict()
    except Exception as exc:
        with open(os.path.join(out, f"{i}.error"), "w") as fh:
            fh.write(f"{type(exc).__name__}: {exc}")
        continue
    text = json.dumps(doc, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    doc = json.loads(text)
    with open(os.path.join(out, f"{i}.json"), "w") as fh:
        fh.write(text)
    buf = io.StringIO()
    render_console(doc, Console(file=buf, width=100, color_system=None, force_terminal=False))
    with open(os.path.join(out, f"{i}.txt"), "w") as fh:
        fh.write(buf.getvalue())
    with open(os.path.join(out, f"{i}.md"), "w") as fh:
        fh.write(render_markdown(doc))
"""


def default_inputs() -> list[list[str]]:
    jobs: list[list[str]] = []
    for root in ("traces", os.path.join("tests", "data", "traces")):
        for folder, _, files in sorted(os.walk(os.path.join(REPO, root))):
            traces = sorted(os.path.join(folder, f) for f in files
                            if (f.endswith(".json.gz") or f.endswith(".json")) and "trace" in f.lower()
                            and "stacks" not in f and "analysis" not in f)
            ranks = [t for t in traces if os.path.basename(t).startswith("rank")]
            if len(ranks) > 1:
                jobs.append(ranks)
                traces = [t for t in traces if t not in ranks]
            jobs.extend([t] for t in traces)
    return jobs


def run_worker(checkout: str, jobs: list[list[str]], out: str) -> None:
    os.makedirs(out, exist_ok=True)
    # The same empty working directory for both revisions: the reports shorten source paths under it.
    with tempfile.TemporaryDirectory(prefix="perfkit-cwd-") as cwd:
        subprocess.run([sys.executable, "-c", _WORKER, checkout, out, json.dumps(jobs)], check=True,
                       env={**os.environ, "PYTHONPATH": checkout}, cwd=cwd)


def differences(a: object, b: object, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append(f"{where}.{k}: only after")
            elif k not in b:
                out.append(f"{where}.{k}: only before")
            else:
                out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items before, {len(b)} after"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return [] if abs(a - b) <= 1e-9 * max(1.0, abs(a)) else [f"{where}: {a!r} before, {b!r} after"]
    return [] if a == b else [f"{where}: {str(a)[:60]!r} before, {str(b)[:60]!r} after"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="git revision of the earlier perfkit")
    ap.add_argument("--out", help="folder for the documents and reports of both revisions")
    ap.add_argument("--reuse", action="store_true",
                    help="compare the documents and reports already in --out (no new analyses)")
    ap.add_argument("paths", nargs="*", help="traces, or folders of one job's rank traces")
    args = ap.parse_args()
    jobs = [sorted(glob.glob(os.path.join(p, "rank*trace*.json*"))) if os.path.isdir(p) else [p]
            for p in args.paths] or default_inputs()
    jobs = [[os.path.abspath(p) for p in j if "stacks" not in p] for j in jobs if j]
    out = args.out or tempfile.mkdtemp(prefix="perfkit-upgrade-")
    before = os.path.join(out, "checkout")
    if args.reuse:
        pass
    elif not os.path.isdir(before):
        subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", "-q", before, args.before], check=True)
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=before,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not args.reuse:
        try:
            run_worker(before, jobs, os.path.join(out, "before"))
            run_worker(REPO, jobs, os.path.join(out, "after"))
        finally:
            if not args.out:
                subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", before], check=False)
    sys.path.insert(0, REPO)
    from perfkit.analysis.document import ROW_KEYS, upgrade

    def renamed(lines: list[str]) -> list[str]:
        # a report that quotes the document's rows (a finding's raw evidence) quotes the new names
        for old, new in ROW_KEYS.items():
            lines = [line.replace(f'"{old}"', f'"{new}"') for line in lines]
        return lines

    def words(lines: list[str]) -> list[str]:
        # the report's text with line breaks and table padding ignored (a shorter key re-wraps a line)
        return " ".join(lines).replace("│", " ").split()

    same_docs = same_txt = same_md = wrapped_txt = wrapped_md = compared = 0
    for i, paths in enumerate(jobs):
        name = os.path.relpath(paths[0], REPO) + (f" (+{len(paths) - 1} ranks)" if len(paths) > 1 else "")
        files = {side: os.path.join(out, side, f"{i}") for side in ("before", "after")}
        if not all(os.path.exists(f + ".json") for f in files.values()):
            errors = [open(f + ".error").read() for f in files.values() if os.path.exists(f + ".error")]
            print(f"{name}: not analysed ({'; '.join(errors)})")
            continue
        compared += 1
        a = upgrade(json.load(open(files["before"] + ".json")))
        b = json.load(open(files["after"] + ".json"))
        for d in (a, b):
            d.get("trace", {}).pop("paths", None)
            # the age of a run's newest watchdog file: the clock moved between the two analyses
            (d.get("stalls") or {}).pop("seconds_since_newest_activity", None)
        diffs = differences(a, b)
        same_docs += not diffs
        txt = [open(files[s] + ".txt").read().splitlines() for s in ("before", "after")]
        md = [open(files[s] + ".md").read().splitlines() for s in ("before", "after")]
        txt[0], md[0] = renamed(txt[0]), renamed(md[0])
        same_txt += txt[0] == txt[1]
        same_md += md[0] == md[1]
        wrapped_txt += txt[0] != txt[1] and words(txt[0]) == words(txt[1])
        wrapped_md += md[0] != md[1] and words(md[0]) == words(md[1])
        status = "same" if not diffs else f"{len(diffs)} differences: {diffs[:4]}"
        def verdict(x: list[str], y: list[str]) -> str:
            return "same" if x == y else "same words, wrapped differently" if words(x) == words(y) else "differs"

        print(f"{name}: document {status}; terminal {verdict(*txt)}; Markdown {verdict(*md)}")
        for kind, (x, y) in (("terminal", txt), ("Markdown", md)):
            if words(x) == words(y):
                continue
            changed = [(u, v) for u, v in zip(x, y) if u != v][:3]
            for u, v in changed:
                print(f"    {kind} before: {u.strip()[:110]}\n    {kind} after:  {v.strip()[:110]}")
    print(f"\n{compared} analyses compared: {same_docs} documents identical after the upgrade; "
          f"terminal reports: {same_txt} identical, {wrapped_txt} the same words wrapped differently; "
          f"Markdown reports: {same_md} identical, {wrapped_md} the same words wrapped differently "
          f"(outputs in {out})")
    return 0 if same_docs == compared else 1


if __name__ == "__main__":
    sys.exit(main())
