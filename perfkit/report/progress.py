"""A rich progress bar for long analyses: shown on a terminal, silent otherwise.

``progress_bar(enabled)`` yields a callback ``progress(description, done, total)``
(the protocol of ``perfkit.job.analyze_paths(..., progress=...)``) or None
when disabled, so output piped to a file or read by CI carries no bar. The bar
draws on stderr and disappears when done (``transient``), so stdout holds only
the report.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Optional

ProgressCallback = Callable[[str, int, int], None]


@contextlib.contextmanager
def progress_bar(enabled: bool, console: Any = None) -> Iterator[Optional[ProgressCallback]]:
    """A progress callback drawing a bar while the block runs; None when not ``enabled``.

    ``console``: a rich Console to draw on (default: one on stderr).
    """
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console if console is not None else Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def update(description: str, done: int, total: int) -> None:
            bar.update(task, description=description, completed=done, total=total, refresh=True)

        yield update
