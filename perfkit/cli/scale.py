"""``perfkit scale MODULE:FUNCTION --sizes 32,64,128,256``: the scaling probe.

Times the function at each size, fits ``t = c * n^k`` and projects the time at
larger sizes. See docs/scaling.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ._app import app


@app.command("scale")
def scale_cmd(
    target: str = typer.Argument(
        ..., metavar="MODULE:FUNCTION", help="The function to time: module:function or path/to/file.py:function."
    ),
    sizes: str = typer.Option(..., "--sizes", help="Comma-separated sizes n, e.g. 32,64,128,256."),
    input_fn: Optional[str] = typer.Option(
        None, "--input", metavar="MODULE:FUNCTION", help="Builds the argument from n (default: the function gets n)."
    ),
    repeat: int = typer.Option(3, "--repeat", min=1, help="Timed calls per size (the median is used)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed calls per size before timing."),
    timeout: float = typer.Option(
        60.0, "--timeout", min=0.001, help="Seconds: a call slower than this stops the sizes from growing."
    ),
    target_size: Optional[int] = typer.Option(None, "--target", min=1, help="Also project the time at this size."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a log-log plot (PNG) here; needs matplotlib."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result document (JSON) here."),
    stat: str = typer.Option(
        "median", "--stat", help="Time of a size for the fit: median of the runs, or min (steadier on a busy machine)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table."),
) -> None:
    """Measure how a function's time grows with its input size, and project it."""
    from rich.console import Console

    from ..collect.scaling import load_target, parse_sizes, scale
    from ..errors import UsageError
    from ..report import write_json
    from ..report.scaling import render_scale

    size_list = parse_sizes(sizes)  # before importing anything: bad input fails fast
    if stat not in ("median", "min"):
        raise UsageError(f"--stat must be median or min (got {stat!r})")
    if plot is not None:
        from ..report.scaling_plot import require_matplotlib

        require_matplotlib()  # fail now, not after a long probe
    fn = load_target(target)
    make_input = load_target(input_fn) if input_fn else None

    out = Console()
    err = Console(stderr=True)
    if not quiet:
        err.print(
            f"timing {target} at n = {', '.join(map(str, size_list))} "
            f"({warmup} warm-up + {repeat} timed call(s) each, timeout {timeout:g} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    result = scale(
        fn,
        size_list,
        make_input=make_input,
        repeat=repeat,
        warmup=warmup,
        timeout_s=timeout,
        target=target_size,
        name=target,
        stat=stat,
    )
    doc = result.to_dict()
    if not quiet:
        render_scale(doc, out)
    else:
        out.print(result.summary(), markup=False, highlight=False, soft_wrap=True)
    if json_out is not None:
        write_json(doc, str(json_out))
        err.print(f"wrote {json_out}", markup=False, highlight=False)
    if plot is not None:
        from ..report.scaling_plot import plot_scaling

        plot_scaling(doc, str(plot))
        err.print(f"wrote {plot}", markup=False, highlight=False)

