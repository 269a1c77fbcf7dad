"""Write the profiling options table of docs/collect.md from the options' one definition
(perfkit/collect/options.py: :func:`perfkit.collect.options.markdown_table`).

    python scripts/options_table.py          # rewrite the table in docs/collect.md
    python scripts/options_table.py --check  # exit 1 when the table differs (tests/unit/test_options.py checks it too)

The table sits between the two marker comments :data:`BEGIN` and :data:`END`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "collect.md"
BEGIN = "<!-- options table: written by scripts/options_table.py from perfkit/collect/options.py; do not edit -->"
END = "<!-- end of the options table -->"


def splice(text: str, table: str) -> str:
    """``text`` with the table between the markers replaced by ``table``."""
    head, sep, rest = text.partition(BEGIN + "\n")
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{DOC}: the markers of the options table are missing")
    return head + BEGIN + "\n" + table + END + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether the table is current")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from perfkit.collect.options import markdown_table

    text = DOC.read_text(encoding="utf-8")
    new = splice(text, markdown_table())
    if args.check:
        if new != text:
            print(f"{DOC}: the options table is out of date: python scripts/options_table.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
