"""Several ranks, one run directory: who this process is and where the job writes.

Under ``torchrun`` (or srun, mpirun) every rank runs ``perfkit profile`` on its
own. Each writes its files into the same run directory (names: perfkit/run/layout.py):
``rank<R>.pt.trace.json.gz``, ``heartbeat_rank<R>.jsonl``, ``stall_rank<R>_*.txt``,
then, when the run is finished (perfkit/run/finish.py), ``rank<R>.analysis.json``
(its *done* marker) and ``rank<R>.report.md``; rank 0 waits for the others and
writes the job's ``analysis.json`` and ``report.md``.

The run directory must be the same for every rank without any communication
between them. ``--out`` always wins; otherwise it is
``traces/<script>-<YYYYmmdd-HHMMSS>-<pid>`` where the time is the start time of the
launcher process (the parent that all local ranks share: torchrun's agent,
slurmstepd, mpirun's daemon), read from ``/proc``, and ``<pid>`` is that
launcher's process id (two jobs started in the same second get two directories).
Ranks on other nodes have other parents: give ``--out`` on a shared filesystem
for runs on several nodes (or merge their ``rank<R>.analysis.json`` files
afterwards with ``perfkit merge``).

A single process names its directory ``traces/<script>-<YYYYmmdd-HHMMSS>`` and
creates it exclusively (:func:`claim_run_dir`): when another run took that name
in the same second, it becomes ``...-2``, ``...-3`` and so on.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional

from ..run.recording import World

#: Default seconds rank 0 waits for the other ranks' analyses.
JOB_WAIT_S = 120.0

_ENV_RANK = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
_ENV_WORLD = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
_ENV_LOCAL = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")


def world_info() -> World:
    """Rank, local rank and world size: from torch.distributed when it is initialised, else the environment."""
    local = _env_int(_ENV_LOCAL)
    try:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            return World(int(dist.get_rank()), local if local is not None else 0, int(dist.get_world_size()),
                         "torch.distributed")
    except Exception:
        pass
    rank, world = _env_int(_ENV_RANK), _env_int(_ENV_WORLD)
    if rank is None and world is None and local is None:
        return World()
    rank = rank if rank is not None else (local or 0)
    return World(rank, local if local is not None else rank, max(world or 1, rank + 1), "env")


def _env_int(names: tuple[str, ...]) -> Optional[int]:
    for var in names:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return None


#: The clock default run-directory names are stamped with (a test injects a fixed one).
_clock: Callable[[], float] = time.time


def default_run_dir(name: str, world: World) -> str:
    """``traces/<script>-<stamp>`` (relative to the current directory).

    Several ranks: the launcher's start time and process id (the same on every
    local rank, different for each job). One process: its own start time; the
    caller makes it unique with :func:`claim_run_dir`.
    """
    stamp_s = _parent_start_time() if world.multi else None
    suffix = f"-{os.getppid()}" if stamp_s is not None else ""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(stamp_s if stamp_s is not None else _clock()))
    base = os.path.splitext(os.path.basename(name))[0] or "run"
    return os.path.join("traces", f"{base}-{stamp}{suffix}")


#: How many ``-2``, ``-3`` ... names :func:`claim_run_dir` tries before giving up.
MAX_CLAIMS = 1000


def claim_run_dir(path: str, exclusive: bool) -> str:
    """Create the run directory ``path`` and return the one created.

    ``exclusive``: the directory must be new (``os.mkdir`` fails on an existing
    one, atomically, so two processes never get the same); a taken name gets
    ``-2``, ``-3`` ... appended. Otherwise an existing directory is reused.
    Raises OSError when it cannot be created.
    """
    if not exclusive:
        os.makedirs(path, exist_ok=True)
        return path
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    candidate = path
    for n in range(2, MAX_CLAIMS + 2):
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            candidate = f"{path}-{n}"
    raise FileExistsError(f"{path}: {MAX_CLAIMS} run directories of that name exist already")


def _parent_start_time() -> Optional[float]:
    """Unix start time of the parent process (Linux /proc), or None."""
    try:
        with open(f"/proc/{os.getppid()}/stat") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22: starttime, in clock ticks after boot
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
