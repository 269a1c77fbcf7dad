"""Several ranks, one run directory: who this process is, where the job writes, and the job-level files.

Under ``torchrun`` (or srun, mpirun) every rank runs ``perfkit profile`` on its
own. Each writes its files into the same run directory:

* ``rank<R>.pt.trace.json.gz``, ``heartbeat_rank<R>.jsonl``, ``stall_rank<R>_*.txt``;
* ``rank<R>.analysis.json`` (written last, atomically: it is the rank's *done*
  marker) and ``rank<R>.report.md``.

Rank 0 then waits for the other ranks' ``rank<R>.analysis.json`` (at most
``job_wait_s`` seconds, and not for a rank the watchdog shows stuck) and writes
the job's ``analysis.json`` and ``report.md``: the job view
(:func:`perfkit.analysis.ranks.job_view`), with the ranks that never finished
listed as missing.

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

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

#: Default seconds rank 0 waits for the other ranks' analyses.
JOB_WAIT_S = 120.0
#: A rank file older than this many seconds before our own start is from an earlier run.
STALE_SLACK_S = 60.0

_ENV_RANK = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID")
_ENV_WORLD = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS")
_ENV_LOCAL = ("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")


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


# --------------------------------------------------------------------- the files of one rank


def rank_doc_path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, f"rank{rank}.analysis.json")


def write_json_atomic(path: str, doc: dict[str, Any], default: Callable[[Any], Any]) -> None:
    """Write to a temporary file, fsync and rename: a reader never sees half a document.

    Raises :class:`perfkit._io.OutputError` (an OSError's message, naming the file) when it cannot.
    """
    from .._io import atomic_open

    with atomic_open(path, "w") as f:
        json.dump(doc, f, indent=2, default=default)


# --------------------------------------------------------------------- rank 0: wait, then the job view


def wait_for_ranks(run_dir: str, world: World, *, wait_s: float, started_at: float,
                   say: Callable[[str], None], poll_s: float = 0.5,
                   ) -> tuple[list[dict[str, Any]], dict[int, str], Optional[BaseException]]:
    """Collect every rank's ``rank<R>.analysis.json`` (rank 0's own is already there).

    Waits at most ``wait_s`` seconds, and stops early for ranks the watchdog
    shows stuck. Returns (documents, {missing rank: reason}, the exception that
    interrupted the wait). A SIGTERM or Ctrl-C during the wait ends it early: the
    caller writes the job files, then re-raises it.
    """
    deadline = time.monotonic() + max(wait_s, 0.0)
    have: dict[int, dict[str, Any]] = {}
    stuck: dict[int, str] = {}
    announced = False
    interrupted: Optional[BaseException] = None
    while True:
        for r in range(world.world_size):
            if r in have:
                continue
            doc = _read_rank_doc(rank_doc_path(run_dir, r), started_at)
            if doc is not None:
                have[r] = doc
        waiting = [r for r in range(world.world_size) if r not in have]
        if not waiting or time.monotonic() >= deadline or interrupted is not None:
            break
        stuck = _stuck_ranks(run_dir, waiting)
        if set(waiting) <= set(stuck):
            break  # the rest are stuck: they will not finish
        if not announced:
            say(f"perfkit: rank 0 waiting up to {wait_s:.0f} s for the analyses of rank(s) "
                f"{_short(waiting)} (--job-wait)")
            announced = True
        try:
            time.sleep(poll_s)
        except BaseException as exc:  # SIGTERM (the launcher turns it into an exception) or Ctrl-C
            interrupted = exc
    missing = {}
    for r in range(world.world_size):
        if r not in have:
            missing[r] = stuck.get(r) or (f"no rank{r}.analysis.json after {wait_s:.0f} s (crashed, killed, "
                                          "still running, or on another node)")
    if interrupted is not None:
        missing = {r: why + " (rank 0 was interrupted while waiting)" for r, why in missing.items()}
    return [have[r] for r in sorted(have)], missing, interrupted


def _read_rank_doc(path: str, started_at: float) -> Optional[dict[str, Any]]:
    try:
        if os.path.getmtime(path) < started_at - STALE_SLACK_S:
            return None  # left by an earlier run in the same directory
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _stuck_ranks(run_dir: str, ranks: list[int]) -> dict[int, str]:
    """Ranks among ``ranks`` the watchdog shows stuck, with where."""
    if not any(f.startswith(("stall_rank", "heartbeat_rank")) for f in _listdir(run_dir)):
        return {}
    try:
        from ..analysis.stalls import summarize_stalls

        doc = summarize_stalls(run_dir)
    except Exception:
        return {}
    out = {}
    for r in doc["ranks"]:
        if r["dir"] == "" and r["rank"] in ranks and r["status"] == "stuck":
            out[r["rank"]] = f"stuck in {r['where_text'] or 'an unknown place'} (watchdog)"
    return out


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _short(ranks: list[int]) -> str:
    return ", ".join(str(r) for r in ranks[:16]) + (" ..." if len(ranks) > 16 else "")


def job_document(docs: list[dict[str, Any]], missing: dict[int, str], run_dir: str, world: World) -> dict[str, Any]:
    """The job view of the ranks' documents, with the run directory's stall view."""
    from ..analysis.ranks import job_view, stall_view

    usable = [d for d in docs if (d.get("steps") or {}).get("count")]
    for d in docs:
        if d not in usable:
            r = (d.get("runtime") or {}).get("rank")
            if isinstance(r, int):
                missing.setdefault(r, (d.get("runtime") or {}).get("analysis_error") or "no kernel trace")
    if not usable:
        raise ValueError("no rank has a trace analysis")
    return job_view(usable, world_size=world.world_size, missing=missing, stalls=stall_view(run_dir))
