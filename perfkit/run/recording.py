"""What collection hands over when a session ends: a :class:`Recording` (the run directory, the trace
if one was written, and the facts only the live process knew). :func:`perfkit.run.finish.finish_run`
turns it into ``analysis.json`` and ``report.md``.

Plain data, no torch and nothing of perfkit imported: collection (above) makes it, finishing (above
the analysis) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional


@dataclass(frozen=True)
class World:
    """Where this process stands in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    source: str = "default"  #: "torch.distributed", "env" or "default"

    @property
    def multi(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class MfuInputs:
    """What model FLOPs utilisation needs from the process (the rest comes from the analysis).

    ``dtype``: the matmul dtype seen while counting FLOPs (None: take the trace's matmul kernels, else
    ``fallback_dtype``, fp32 or tf32 as torch is set).
    """

    flops_per_step: float
    device_name: str
    fallback_dtype: str
    dtype: Optional[str] = None
    world_size: int = 1  #: devices doing the same work (the WORLD_SIZE of the environment)


@dataclass(frozen=True)
class Recording:
    """A finished recording, ready to be analysed and written (see the module docstring).

    ``runtime`` is the document's ``runtime`` section as the process knew it (finishing adds the
    analysis error, the findings error and MFU); ``no_trace_reason`` says why there is no trace, when
    there is none (the trace could not be written, the run ended before the profiled window, no step
    was seen); ``lost`` the warnings already said about files that could not be written.
    """

    run_dir: str
    world: World = World()
    trace_path: Optional[str] = None
    runtime: dict[str, Any] = field(default_factory=dict)
    mode: Literal["trace", "light"] = "trace"
    no_trace_reason: Optional[str] = None
    lost: tuple[str, ...] = ()
    mfu: Optional[MfuInputs] = None
    report: bool = True  #: print the report when done
    quiet: bool = False  #: print only the warnings that a result is partial
    job_wait_s: float = 120.0  #: several ranks: how long rank 0 waits for the others' analyses
    started_at: float = 0.0  #: time.time() at the start (older rank files are from an earlier run)
    #: says (and keeps) that a file could not be written; None: a warning line on stderr
    say_lost: Optional[Callable[[str], None]] = field(default=None, compare=False)
