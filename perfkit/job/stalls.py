"""Reading a run directory's watchdog files back: which rank is stuck, where, and why (``perfkit stalls``).

The files are written during the run by :class:`perfkit.collect.watchdog.Watchdog` (its docstring
describes them): ``heartbeat_rank<R>.jsonl``, ``stall_rank<R>_<stamp>.txt`` and
``stall_rank<R>_faulthandler.txt``. This module imports nothing heavy (no torch), so a saved run is
read anywhere.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any, Optional

__all__ = ["summarize_stalls", "SCHEMA"]

SCHEMA = "perfkit.stalls/1"

# Patterns as text, compiled on first use (re caches them): a job without watchdog files compiles none.

_HEARTBEAT_RE = r"^heartbeat_rank(\d+)\.jsonl$"
_STALL_RE = r"^stall_rank(\d+)_(\d{8}-\d{6})(?:-(\d+))?\.txt$"
_FAULT_RE = r"^stall_rank(\d+)_faulthandler\.txt$"
_WHERE_RE = r"^(.*) \((.*?)(?::(\d+))?\)$"  # the line is left out where the dumping rank did not know it
#: A main-thread frame in one of these files means the rank waits for the others: torch.distributed
#: calls (all_reduce, barrier, work.wait, FSDP), DDP, or the autograd engine (DDP's gradient
#: all-reduce blocks the backward until every rank has contributed).
COLLECTIVE_FRAME_PATTERN = r"torch/distributed/|torch/nn/parallel/distributed\.py|torch/autograd/(graph|__init__)\.py"
#: A main thread blocked on a host-device sync (on GPUs the host then waits for the queued NCCL
#: kernels, which wait for the other ranks): the code line of its innermost user frame.
HOST_SYNC_CODE_PATTERN = r"\.(item|tolist|cpu|numpy)\(|synchronize\(|\.wait\("
_FRAME_LINE_RE = r'^  File "(.*)", line (\d+|\?), in (.*)$'  # "?": a line the dumping rank did not know


def summarize_stalls(run_dir: str, *, stale_s: Optional[float] = None, now: Optional[float] = None) -> dict[str, Any]:
    """Summarise the heartbeat and stall files under ``run_dir`` (and its sub-folders, two deep).

    Each rank (by folder and rank number) gets a ``status``:

    * ``stuck``: a stack dump (Python watchdog or faulthandler) newer than its last heartbeat;
    * ``recovered``: dumps, but heartbeats came after the last one;
    * ``healthy``: no dump, and its last heartbeat is within ``stale_s`` of the newest
      activity of any rank;
    * ``silent``: no dump, but no recent heartbeat either (it ended, crashed, or
      its watchdog could not run).

    ``stale_s`` defaults to the watchdog period found in the dumps, else 60 s.
    ``ended_stalled`` marks a stuck rank whose watchdog was stopped (the run
    finished or was terminated) before another step ended.

    Raises:
        UsageError: ``run_dir`` is not a directory.
        TraceFormatError: it holds no heartbeat or stall files.
    """
    from ..errors import TraceFormatError, UsageError

    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such directory")
    found: dict[tuple[str, int], dict[str, Any]] = {}
    root_depth = os.path.abspath(run_dir).rstrip(os.sep).count(os.sep)
    for dirpath, dirnames, filenames in os.walk(run_dir):
        if os.path.abspath(dirpath).rstrip(os.sep).count(os.sep) - root_depth >= 2:
            dirnames[:] = []
        dirnames.sort()
        rel = os.path.relpath(dirpath, run_dir)
        rel = "" if rel == "." else rel
        for name in sorted(filenames):
            if not name.startswith(("heartbeat_rank", "stall_rank")):
                continue
            for kind, rx in (("heartbeat", _HEARTBEAT_RE), ("stall", _STALL_RE), ("faulthandler", _FAULT_RE)):
                m = re.match(rx, name)
                if m:
                    entry = found.setdefault((rel, int(m.group(1))), {"heartbeat": None, "stall": [], "faulthandler": None})
                    path = os.path.join(dirpath, name)
                    if kind == "stall":
                        entry["stall"].append(path)
                    else:
                        entry[kind] = path
                    break
    if not found:
        raise TraceFormatError(
            f"{run_dir}: no heartbeat_rank*.jsonl or stall_rank*.txt files (was the run started with --watchdog?)"
        )

    ranks = []
    periods = []
    for (rel, rank), files in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        hb: dict[str, Any] = _read_heartbeats(files["heartbeat"]) if files["heartbeat"] else {"count": 0, "last": None}
        dumps = [d for d in (_read_stall(p) for p in files["stall"]) if d is not None]
        dumps.sort(key=lambda d: (d["time"] or 0.0, d["file"]))
        fault = _read_faulthandler(files["faulthandler"]) if files["faulthandler"] else None
        periods += [d["watchdog_s"] for d in dumps if d.get("watchdog_s")]
        last = hb["last"] or {}
        ranks.append(
            {
                "rank": rank,
                "dir": rel,
                "heartbeat_file": files["heartbeat"],
                "heartbeats": hb["count"],
                "last_step": last.get("step"),
                "last_heartbeat_time": last.get("time"),
                "dumps": len(dumps),
                "dump_files": [d["file"] for d in dumps],
                "first_dump_time": dumps[0]["time"] if dumps else None,
                "last_dump_time": dumps[-1]["time"] if dumps else None,
                "_dumps": dumps,
                "_fault": fault,
            }
        )
    if stale_s is None:
        stale_s = max(periods) if periods else 60.0
    newest = 0.0
    for r in ranks:
        for t in (r["last_heartbeat_time"], r["last_dump_time"], (r["_fault"] or {}).get("time")):
            if isinstance(t, (int, float)):
                newest = max(newest, float(t))

    for r in ranks:
        dumps, fault = r.pop("_dumps"), r.pop("_fault")
        hb_t = r["last_heartbeat_time"]
        last_dump = dumps[-1] if dumps else None
        where = last_dump["where"] if last_dump else None
        seconds = last_dump["seconds_since_last_step"] if last_dump else None
        source = "watchdog" if last_dump else None
        r["faulthandler_dumps"] = fault["dumps"] if fault else 0
        r["faulthandler_file"] = fault["file"] if fault else None
        fault_after = bool(fault and fault["dumps"] and (hb_t is None or fault["time"] > hb_t))
        late = bool(last_dump and last_dump.get("late_s"))
        if fault_after and (last_dump is None or late or fault["time"] > (last_dump["time"] or 0) + 1.0):
            # faulthandler's C timer fired and the watchdog thread could not run in
            # time (no dump of its own since, or a late one): C code held the GIL.
            # faulthandler saw the main thread in the act.
            if fault["where"]:
                where, source = fault["where"], "faulthandler"
            if hb_t is not None:
                seconds = max(seconds or 0.0, fault["time"] - hb_t)
        stuck = (last_dump is not None and (hb_t is None or (last_dump["time"] or 0) > hb_t)) or fault_after
        if stuck:
            status = "stuck"
        elif dumps or (fault and fault["dumps"]):
            status = "recovered"
        elif hb_t is not None and newest - hb_t <= stale_s:
            status = "healthy"
        else:
            status = "silent"
        r["status"] = status
        # The watchdog was stopped (the run ended or was terminated) while this stall lasted.
        r["ended_stalled"] = bool(status == "stuck" and last_dump is not None and last_dump.get("stopped"))
        r["stopped_time"] = last_dump.get("stopped") if r["ended_stalled"] and last_dump is not None else None
        r["seconds_stalled"] = round(seconds, 3) if isinstance(seconds, (int, float)) else None
        r["where"] = where
        r["where_text"] = _where_text(where)
        r["where_source"] = source if where else None
        frames = last_dump.get("frames") if last_dump else []
        user = next((fr for fr in reversed(frames or []) if not _library_frame(fr)), None)
        r["user_where"] = user
        r["user_where_text"] = _where_text(user)
        r["waiting_in"] = _waiting_in(frames or [], user) if status == "stuck" else None

    def label(r: dict[str, Any]) -> str:
        return f"{r['dir']}/{r['rank']}" if r["dir"] else str(r["rank"])

    groups = {s: [label(r) for r in ranks if r["status"] == s] for s in ("stuck", "recovered", "healthy", "silent")}
    now = time.time() if now is None else now
    return {
        "schema": SCHEMA,
        "run_dir": run_dir,
        "stale_s": stale_s,
        "newest_activity_time": newest or None,
        "seconds_since_newest_activity": round(now - newest, 3) if newest else None,
        "ranks": ranks,
        **groups,
        "verdict": _verdict(ranks, groups, label),
    }


def _verdict(ranks: list[dict[str, Any]], groups: dict[str, list[str]], label: Any) -> str:
    parts = []
    if groups["stuck"]:
        stuck = [r for r in ranks if r["status"] == "stuck"]
        # Ranks blocked in a collective are waiting for the others; when some stuck
        # rank is elsewhere, it is the one they wait for.
        culprits = [r for r in stuck if not r.get("waiting_in")]
        waiting = [r for r in stuck if r.get("waiting_in")] if culprits else []
        places = []
        for r in culprits or stuck:
            tail = " (until its run ended)" if r.get("ended_stalled") else ""
            places.append(f"rank {label(r)} in {r['where_text'] or 'an unknown place'}{tail}")
        text = f"stuck: {'; '.join(places)}"
        if waiting:
            how = []
            for r in waiting:
                at = r["where_text"] or "an unknown place"
                if r.get("user_where_text") and r.get("user_where_text") != r.get("where_text"):
                    at += f", from {r['user_where_text']}"
                how.append(f"{label(r)} (in {at}{', a GPU sync' if r['waiting_in'] == 'gpu_sync' else ''})")
            noun = "rank" if len(waiting) == 1 else "ranks"
            text += f"; waiting for it: {noun} {', '.join(how)}"
        parts.append(text)
    else:
        parts.append("no rank is stuck")
    for key, word in (("recovered", "recovered after a stall"), ("healthy", "healthy"), ("silent", "silent (no recent heartbeat, no dump)")):
        if groups[key]:
            parts.append(f"{word}: {_rank_list(groups[key])}")
    return "; ".join(parts[:1]) + (". " + "; ".join(parts[1:]) if parts[1:] else "")


def _library_frame(fr: dict[str, Any]) -> bool:
    """Whether a dumped frame is library code, by the analysis' rule for profiler frames (one rule: the
    install folder cut by ``rules.INSTALL_PREFIX_PATTERN``, then ``rules.LIBRARY_FRAME_PATTERN``): torch,
    numpy, scipy and the standard library are library; a framework's code (transformers, Lightning)
    and the user's own are not, so a stall's user line is the line the report's source column names."""
    from ..analysis import rules

    file = re.sub(rules.INSTALL_PREFIX_PATTERN, "", fr["file"], count=1)
    return re.search(rules.LIBRARY_FRAME_PATTERN, f"{file}({fr.get('line') or 0}): {fr.get('function') or ''}") is not None


def _waiting_in(frames: list[dict[str, Any]], user: Optional[dict[str, Any]]) -> Optional[str]:
    """Whether a stuck main thread waits for the other ranks: "collective", "gpu_sync", or None.

    "collective": a frame in torch.distributed, DDP or the autograd engine (where
    DDP's gradient all-reduce blocks). "gpu_sync": the innermost user line syncs
    with the GPU (``.item()``, ``.cpu()``, ``synchronize()``), where a GPU rank's
    host waits for NCCL kernels that wait for the others. Heuristics on the stack
    only: a rank stuck in its own loop of ``.tolist()`` calls reads as waiting too.
    """
    if any(re.search(COLLECTIVE_FRAME_PATTERN, fr["file"]) for fr in frames):
        return "collective"
    if user is not None and re.search(HOST_SYNC_CODE_PATTERN, user.get("code") or ""):
        return "gpu_sync"
    return None


def _rank_list(labels: list[str]) -> str:
    noun = "rank" if len(labels) == 1 else "ranks"
    return f"{noun} {', '.join(labels)}"


def _where_text(where: Optional[dict[str, Any]]) -> Optional[str]:
    if not where:
        return None
    if where.get("line") is None:
        return f"{where['function']} ({where['file']})"
    return f"{where['function']} ({where['file']}:{where['line']})"


def _line(text: Optional[str]) -> Optional[int]:
    """A dumped line number; None where the dump says it was not known (left out, or "?")."""
    return int(text) if text and text.isdigit() else None


def _read_heartbeats(path: str) -> dict[str, Any]:
    count, last = 0, None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if not isinstance(rec, dict) or not isinstance(rec.get("time"), (int, float)):
                    continue
                count += 1
                if last is None or rec["time"] >= last["time"]:
                    last = rec
    except OSError as exc:
        from ..errors import TraceFormatError

        raise TraceFormatError(f"{path}: cannot read: {exc}") from None
    return {"count": count, "last": last}


def _read_stall(path: str) -> Optional[dict[str, Any]]:
    head: dict[str, str] = {}
    stopped = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
            if not first.startswith("perfkit stall dump"):
                return None
            for line in f:
                line = line.rstrip("\n")
                if not line:
                    break
                key, sep, value = line.partition(": ")
                if sep:
                    head[key.strip()] = value.strip()
            frames: list[dict[str, Any]] = []
            in_main = None  # the first thread block is the watched (main) thread
            for line in f:
                if line.startswith("watchdog_stopped: "):
                    stopped = _float(line.split()[1])
                elif line.startswith("Thread "):
                    in_main = in_main is None
                elif in_main and not line.strip():
                    in_main = False
                elif in_main:
                    fm = re.match(_FRAME_LINE_RE, line.rstrip("\n"))
                    if fm:
                        frames.append({"function": fm.group(3), "file": fm.group(1), "line": _line(fm.group(2))})
                    elif frames and line.startswith("    ") and "code" not in frames[-1]:
                        frames[-1]["code"] = line.strip()
    except OSError:
        return None
    m = re.match(_WHERE_RE, head.get("where", ""))
    where = {"function": m.group(1), "file": m.group(2), "line": _line(m.group(3))} if m else None
    return {
        "file": path,
        "time": _float(head.get("unix_time")) or os.path.getmtime(path),
        "last_step": _int(head.get("last_step")),
        "seconds_since_last_step": _float(head.get("seconds_since_last_step", "").split(" ")[0]),
        "watchdog_s": _float(head.get("watchdog_s")),
        "where": where,
        "stopped": stopped,
        "late_s": _float(head.get("late_s")),
        "frames": frames,
    }


_FH_THREAD_RE = r"^(?:Current thread|Thread) (0x[0-9a-fA-F]+)"
_FH_FRAME_RE = r'^\s+File "(.*)", line (\d+) in (.*)$'


def _read_faulthandler(path: str) -> Optional[dict[str, Any]]:
    """faulthandler's text: 'Timeout (h:mm:ss)!', then per thread 'Thread 0x...' and frames, newest first."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        mtime = os.path.getmtime(path)
    except OSError:
        return None
    main_ident = None
    m = re.search(r"main thread 0x([0-9a-fA-F]+)", text.split("\n", 1)[0])
    if m:
        main_ident = int(m.group(1), 16)
    dumps = text.count("Timeout (")
    where = None
    current = None
    first_frame = False
    for line in text.splitlines():
        tm = re.match(_FH_THREAD_RE, line)
        if tm:
            current = int(tm.group(1), 16)
            first_frame = True
            continue
        fm = re.match(_FH_FRAME_RE, line)
        if fm and first_frame:
            first_frame = False
            if main_ident is None or current == main_ident:
                where = {"function": fm.group(3), "file": fm.group(1), "line": int(fm.group(2))}
    return {"file": path, "dumps": dumps, "time": mtime, "where": where}


def _float(s: Optional[str]) -> Optional[float]:
    try:
        return float(s) if s not in (None, "", "none") else None
    except ValueError:
        return None


def _int(s: Optional[str]) -> Optional[int]:
    try:
        return int(s) if s not in (None, "", "none") else None
    except ValueError:
        return None
