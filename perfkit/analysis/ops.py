"""Top ops, top kernels, copies, and the Python source lines behind them."""

from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np
import pandas as pd

from ..trace import model as m
from . import intervals, rules
from .attribute import CATEGORY_CODES, DeviceWork
from .timeline import Timeline, name_mask

_FRAME = re.compile(rules.FRAME_PATTERN)


def format_frame(frame: str) -> str:
    """``path/train.py(42): step`` -> ``path/train.py:42 step``."""
    mt = _FRAME.match(frame.strip())
    if not mt:
        return frame.strip()
    return f"{mt['file']}:{mt['line']} {mt['func']}"


class Sources:
    """Finds the innermost user-code Python frame around a point on a thread."""

    def __init__(self, tl: Timeline):
        self.tl = tl
        names = tl.trace.names
        py = tl.rows(m.Kind.PYTHON)
        user = ~name_mask(names, rules.LIBRARY_FRAME_PATTERN) & name_mask(names, rules.FRAME_PATTERN)
        self.frames = py[user[tl.name[py]]] if len(py) else py
        self._s = tl.offset(self.frames)
        self._e = tl.thread[self.frames] * tl.span_us + tl.end[self.frames]
        self._user_stack = user

    def at(self, rows: np.ndarray, t: Optional[np.ndarray] = None) -> np.ndarray:
        """String-table code of the user frame around each row (or time t on its thread), -1 if none."""
        out = np.full(len(rows), -1, dtype=np.int64)
        if len(rows) == 0:
            return out
        if len(self.frames):
            idx = intervals.innermost_containing(self._s, self._e, self.tl.offset(rows, t))
            out = np.where(idx >= 0, self.tl.name[self.frames[np.maximum(idx, 0)]], -1).astype(np.int64)
        # 2021 traces: a "Call stack" arg on the op itself.
        stack = self.tl.col(m.STACK)[rows]
        need = (out < 0) & (stack >= 0)
        if need.any():
            out[need] = [self._first_user_frame(int(c)) for c in stack[need]]
        return out

    def _first_user_frame(self, code: int) -> int:
        names = self.tl.trace.names
        lib = re.compile(rules.LIBRARY_FRAME_PATTERN)
        for frame in names[code].split(";"):
            frame = frame.strip()
            if frame and _FRAME.match(frame) and not lib.search(frame):
                try:
                    return names.index(frame)
                except ValueError:
                    names.append(frame)
                    return len(names) - 1
        return -1


def _name(tl: Timeline, code: int) -> Optional[str]:
    return format_frame(tl.trace.names[code]) if code >= 0 else None


def _best_source(keys: np.ndarray, sources: np.ndarray, weights: np.ndarray) -> dict[int, int]:
    """For each key, the source code carrying the most weight (ignoring -1)."""
    ok = sources >= 0
    if not ok.any():
        return {}
    df = pd.DataFrame({"k": keys[ok], "s": sources[ok], "w": weights[ok]})
    g = df.groupby(["k", "s"], sort=False)["w"].sum().reset_index()
    g = g.sort_values("w", ascending=False).drop_duplicates("k")
    return dict(zip(g["k"].tolist(), g["s"].tolist()))


def top_kernels(
    tl: Timeline, dw: DeviceWork, kept: np.ndarray, n_steps: int, busy_us: float, src: Sources, limit: int = 15
) -> list[dict[str, Any]]:
    sel = np.flatnonzero(kept)
    if len(sel) == 0:
        return []
    name = dw.name[sel]
    df = pd.DataFrame({"name": name, "share": dw.share_us[sel], "dur": dw.end[sel] - dw.start[sel],
                       "cat": dw.category[sel]})
    g = df.groupby("name").agg(share=("share", "sum"), calls=("share", "size"), dur=("dur", "mean"),
                               cat=("cat", "first"))
    g = g.sort_values("share", ascending=False).head(limit)
    top = g.index.to_numpy()
    in_top = np.isin(name, top)
    rows = sel[in_top]
    op_names = np.where(dw.op[rows] >= 0, tl.name[np.maximum(dw.op[rows], 0)], -1)
    best_op = _best_source(name[in_top], op_names, dw.share_us[rows])
    linked = dw.launch[rows] >= 0
    srcs = np.full(len(rows), -1, dtype=np.int64)
    if linked.any():
        srcs[linked] = src.at(dw.launch[rows][linked])
    best_src = _best_source(name[in_top], srcs, dw.share_us[rows])
    out = []
    for code, r in g.iterrows():
        out.append({
            "name": tl.trace.names[int(code)],
            "category": rules.CATEGORIES[int(r["cat"])],
            "gpu_ms_per_step": float(r["share"]) / 1000.0 / n_steps,
            "share": float(r["share"]) / busy_us if busy_us else 0.0,
            "calls_per_step": float(r["calls"]) / n_steps,
            "avg_us": float(r["dur"]),
            "op": tl.trace.names[best_op[code]] if code in best_op else None,
            "source": _name(tl, best_src.get(code, -1)),
        })
    return out


def top_ops(
    tl: Timeline, dw: DeviceWork, kept: np.ndarray, n_steps: int, busy_us: float, src: Sources,
    step_of_time: Any, limit: int = 15,
) -> list[dict[str, Any]]:
    """CPU ops ranked by the GPU time of the kernels they and their children launched."""
    sel = np.flatnonzero(kept & (dw.launch >= 0))
    if len(sel) == 0:
        return []
    # Launch points on thread-offset time, with a running sum of their GPU share.
    lt = tl.offset(dw.launch[sel])
    order = np.argsort(lt)
    lt = lt[order]
    cum = np.concatenate([[0.0], np.cumsum(dw.share_us[sel][order])])
    ops = tl.rows(m.Kind.CPU_OP)
    skip = name_mask(tl.trace.names, rules.STEP_PATTERN + "|^autograd::engine::evaluate_function: ")
    ops = ops[~skip[tl.name[ops]]]
    # Count only op instances inside kept steps.
    ops = ops[step_of_time(tl.start[ops])]
    o_s = tl.offset(ops)
    o_e = tl.thread[ops] * tl.span_us + tl.end[ops]
    incl = cum[np.searchsorted(lt, o_e, side="left")] - cum[np.searchsorted(lt, o_s, side="left")]
    self_ms = pd.Series(dw.share_us[sel]).groupby(
        np.where(dw.op[sel] >= 0, tl.name[np.maximum(dw.op[sel], 0)], -1)).sum()
    df = pd.DataFrame({"name": tl.name[ops], "incl": incl})
    g = df.groupby("name").agg(incl=("incl", "sum"), calls=("incl", "size"))
    g = g[g["incl"] > 0].sort_values("incl", ascending=False).head(limit)
    top_rows = ops[np.isin(tl.name[ops], g.index.to_numpy())]
    top_incl = incl[np.isin(tl.name[ops], g.index.to_numpy())]
    best_src = _best_source(tl.name[top_rows].astype(np.int64), src.at(top_rows), top_incl)
    out = []
    for code, r in g.iterrows():
        code = int(code)
        out.append({
            "name": tl.trace.names[code],
            "gpu_ms_per_step": float(r["incl"]) / 1000.0 / n_steps,
            "self_gpu_ms_per_step": float(self_ms.get(code, 0.0)) / 1000.0 / n_steps,
            "share": float(r["incl"]) / busy_us if busy_us else 0.0,
            "calls_per_step": float(r["calls"]) / n_steps,
            "source": _name(tl, best_src.get(code, -1)),
        })
    return out


def copies(
    tl: Timeline, dw: DeviceWork, kept: np.ndarray, n_steps: int, src: Sources
) -> dict[str, Any]:
    """Copy time by direction (memcpy engine + copy kernels) and by issuing op."""
    copy = kept & (dw.category == CATEGORY_CODES[rules.COPY])
    rows = np.flatnonzero(copy)
    names = tl.trace.names
    direction = np.full(len(rows), "d2d", dtype=object)
    memcpy = dw.kind[rows] == m.Kind.MEMCPY
    dir_of_name: dict[int, str] = {}
    for code in np.unique(dw.name[rows][memcpy]):
        label = "other"
        for d, pattern in rules.COPY_DIRECTIONS:
            if re.search(pattern, names[int(code)], re.I):
                label = d
                break
        dir_of_name[int(code)] = label
    direction[memcpy] = [dir_of_name[int(c)] for c in dw.name[rows][memcpy]]
    nbytes = tl.col(m.BYTES)[dw.row[rows]]
    out: dict[str, Any] = {}
    for d in ("h2d", "d2h", "d2d"):
        s = direction == d
        b = nbytes[s]
        out[d] = {
            "count_per_step": float(s.sum()) / n_steps,
            "bytes_per_step": float(b[b > 0].sum()) / n_steps,
            "gpu_ms_per_step": float(dw.share_us[rows][s].sum()) / 1000.0 / n_steps,
            "memcpy_engine_count_per_step": float((s & memcpy).sum()) / n_steps,
        }
    # Which ops issue the copy time, with the source line.
    op_code = np.where(dw.op[rows] >= 0, tl.name[np.maximum(dw.op[rows], 0)], -1).astype(np.int64)
    share = dw.share_us[rows]
    srcs = np.full(len(rows), -1, dtype=np.int64)
    linked = dw.launch[rows] >= 0
    if linked.any():
        srcs[linked] = src.at(dw.launch[rows][linked])
    by = pd.DataFrame({"op": op_code, "src": srcs, "share": share, "dir": direction})
    sources = []
    if len(by):
        g = by.groupby(["op", "src"]).agg(share=("share", "sum"), n=("share", "size"),
                                          dir=("dir", lambda x: x.value_counts().index[0]))
        for (op, s), r in g.sort_values("share", ascending=False).head(8).iterrows():
            sources.append({
                "op": names[int(op)] if op >= 0 else "(unknown: launched before the trace)",
                "source": _name(tl, int(s)),
                "direction": r["dir"],
                "gpu_ms_per_step": float(r["share"]) / 1000.0 / n_steps,
                "count_per_step": float(r["n"]) / n_steps,
            })
    out["sources"] = sources
    return out
