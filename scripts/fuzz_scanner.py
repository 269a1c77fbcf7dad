#!/usr/bin/env python3
"""Fuzz the C trace scanner (perfkit/trace/_scan.c) under AddressSanitizer.

The scanner must be safe on any buffer: it returns columns or raises ValueError, never reads
or writes outside its input, and never puts NaN, inf or a negative duration into a column.

Usage (from the repository root):

    python scripts/fuzz_scanner.py --seconds 120            # builds, then fuzzes
    python scripts/fuzz_scanner.py --seconds 120 --seed-file traces/x/rank0.pt.trace.json.gz

What it does:

1. Builds the extension with AddressSanitizer into a temporary folder (it never touches the
   in-tree build); the command is

       gcc -shared -fPIC -O1 -g -fsanitize=address -fno-omit-frame-pointer \\
           -I$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])') \\
           perfkit/trace/_scan.c -o DIR/_scan$(python3-config --extension-suffix)

2. Runs itself again with the ASan runtime preloaded (``LD_PRELOAD=$(gcc
   -print-file-name=libasan.so)``, ``ASAN_OPTIONS=detect_leaks=0``: CPython's own
   allocations are not leaks), importing that build.
3. Fuzzes ``scan(data, bare)`` with atheris (libFuzzer, coverage of the Python harness) when
   it is importable, e.g. in a throwaway venv::

       python3.11 -m venv /tmp/atheris_venv && /tmp/atheris_venv/bin/pip install atheris
       /tmp/atheris_venv/bin/python scripts/fuzz_scanner.py --seconds 120

   and otherwise with a plain mutation loop (byte flips, insertions, deletions, splices of
   JSON tokens, cuts at every length) over seed events. Any ASan report aborts the run with
   its stack; a wrong result (an exception other than ValueError, NaN/inf, dur < 0) raises.
   Each input is scanned from a buffer of exactly its size (``PYTHONMALLOC=malloc``: a malloc
   block with ASan redzones), so a read one byte past the end is reported. The test suite has
   the guard-page variant (tests/test_reader_hostile.py).
"""

from __future__ import annotations

import argparse
import array
import gzip
import math
import os
import random
import subprocess
import sys
import sysconfig
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "perfkit", "trace", "_scan.c")

SEEDS = [
    b'{"ph":"X","cat":"kernel","name":"void gemm<float>(int)","pid":0,"tid":7,"ts":1699999999999.123,"dur":12.5,'
    b'"args":{"correlation":123,"External id":45,"device":0,"grid":[1,2,3],"registers per thread":32}}',
    b'{"ph":"X","cat":"cpu_op","name":"aten::mm","pid":783658,"tid":6212393379229260556,"ts":1669783704212433.0,'
    b'"dur":3,"args":{"External id":9007199254740993,"Sequence number":-9223372036854775808,"Fwd thread id":0,'
    b'"Input Dims":[[2,3],[3,4]],"Input type":["float","float"],"Call stack":"a.py(1): f;b.py(2): g"}}',
    b'{"ph":"X","cat":"python_function","name":"nn.Module: Linear_0","pid":1,"tid":"stream 7","ts":1,"dur":2,'
    b'"args":{"Python id":3,"Python parent id":null,"Python module id":0}}',
    b'{"ph":"i","name":"[memory]","pid":1,"tid":1,"ts":12,"s":"t","args":{"Bytes":-512,"Total Allocated":4096,'
    b'"Total Reserved":8192,"Device Type":1,"Device Id":0}}',
    b'{"ph":"M","name":"thread_name","pid":1,"tid":2,"args":{"name":"thread 2 (python)"}}',
    b'{"ph":"f","id":1,"pid":0,"tid":7,"ts":3,"cat":"ac2g","name":"ac2g","bp":"e"}',
    b'{"p\\u0068":"X","name":"\\u00e9\\ud83d\\ude00\\"\\\\","ts":"12.5","dur":-1,"pid":1.5,"tid":1e400}',
    b'{"ph":"X","ts":1e5',
    b'{"ph":"X","args":{"Call stack":',
]
TOKENS = [b"{", b"}", b"[", b"]", b",", b":", b'"', b"\\", b"\\u", b"\\ud800", b"0", b"-", b".", b"e", b"1e400",
          b"012", b"true", b"null", b"\xff", b"\x00", b" ", b'"ph":"X"', b'"ts":', b'"args":{', b'"name":',
          b'"Call stack":', b"99999999999999999999", b"-9223372036854775809", b"1.5"]


def build(out_dir: str, source: str = SOURCE) -> str:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    target = os.path.join(out_dir, "_scan" + suffix)
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer",
           "-I" + sysconfig.get_paths()["include"], source, "-o", target]
    print("building:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return target


def exact(data: bytes):
    """``data`` in a buffer of exactly its size (a bytes object has a NUL after its end, which would
    hide a one-byte over-read; with PYTHONMALLOC=malloc the buffer is a malloc block ASan guards)."""
    import ctypes

    return memoryview(ctypes.create_string_buffer(data, len(data))).cast("B") if data else b""


def check(scan, data: bytes) -> None:
    buf = exact(data)
    for bare in (1, 0, -1):
        try:
            out = scan(buf, bare)
        except ValueError:
            continue
        ts = array.array("d", out["ts"])
        dur = array.array("d", out["dur"])
        assert all(math.isfinite(x) for x in ts), data
        assert all(math.isfinite(x) and x >= 0 for x in dur), data
        assert all(math.isfinite(x) for x in array.array("d", out["mem_ts"])), data
        n = len(ts)
        assert len(out["name"]) == len(out["cat"]) == 4 * n, data


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        how = rng.randrange(6)
        at = rng.randint(0, len(b))
        if how == 0 and b:
            del b[min(at, len(b) - 1)]
        elif how == 1 and b:
            b[min(at, len(b) - 1)] = rng.randrange(256)
        elif how == 2:
            b[at:at] = rng.choice(TOKENS)
        elif how == 3:
            other = rng.choice(pool)
            j = rng.randint(0, len(other))
            b[at:] = other[j:]
        elif how == 4:
            b = b[: rng.randint(0, len(b))]
        else:
            b[at:at] = b",".join(rng.sample(pool, k=min(2, len(pool))))
    return bytes(b)


def plain_loop(scan, seconds: float, pool: list[bytes], seed: int) -> int:
    rng = random.Random(seed)
    runs = 0
    end = time.time() + seconds
    for s in pool:  # every cut of every seed: a number or key at the buffer's very end
        for k in range(len(s) + 1):
            check(scan, s[:k])
            runs += 1
    corpus = list(pool)
    while time.time() < end:
        data = mutate(rng, rng.choice(corpus), pool)
        check(scan, data)
        runs += 1
        if len(corpus) < 5000 and rng.random() < 0.05:
            corpus.append(data)
    return runs


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, args.build_dir)
    import _scan  # the ASan build

    scan = _scan.scan
    try:
        scan(b"[]", 0)
    except TypeError:  # an older scanner (--source) without the mode argument
        scan = lambda data, bare: _scan.scan(data)  # noqa: E731

    pool = list(SEEDS)
    if args.seed_file:
        opener = gzip.open if args.seed_file.endswith(".gz") else open
        with opener(args.seed_file, "rb") as f:
            head = f.read(1 << 20)
        start = head.find(b"[", head.find(b'"traceEvents"')) + 1
        pieces = head[start:].split(b"}, {")
        pool += [b"{" + p.lstrip(b"{ ") + b"}" for p in pieces[1:200] if len(p) < 4000]
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        atheris = None
    if atheris is None or args.plain:
        runs = plain_loop(scan, args.seconds, pool, args.seed)
        print(f"plain mutation loop: {runs:,} inputs x 3 modes in {args.seconds:.0f} s, no ASan report, "
              "no wrong result", flush=True)
        return

    corpus_dir = tempfile.mkdtemp(prefix="scan-corpus-")
    for i, s in enumerate(pool):
        with open(os.path.join(corpus_dir, f"seed{i}"), "wb") as f:
            f.write(s)

    def one(data: bytes) -> None:
        check(scan, data)

    rng = random.Random(args.seed)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        # The C code is not libFuzzer-instrumented (gcc has no -fsanitize=fuzzer): JSON-aware
        # mutations of seeds and earlier inputs instead of blind byte flips.
        rng.seed(seed)
        return mutate(rng, data if data and rng.random() < 0.7 else rng.choice(pool), pool)[:max_size]

    sys.argv = [sys.argv[0], corpus_dir, f"-max_total_time={int(args.seconds)}", f"-seed={args.seed}",
                "-max_len=4096", "-print_final_stats=1"]
    atheris.Setup(sys.argv, one, custom_mutator=mutator)
    atheris.Fuzz()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--seed-file", help="a trace whose first events join the seeds")
    ap.add_argument("--plain", action="store_true", help="the mutation loop even where atheris is installed")
    ap.add_argument("--source", default=SOURCE, help="the scanner source to build (default: this checkout's)")
    ap.add_argument("--build-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_dir:
        child(args)
        return
    with tempfile.TemporaryDirectory(prefix="scan-asan-") as d:
        build(d, args.source)
        libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        env = dict(os.environ, LD_PRELOAD=libasan, PYTHONMALLOC="malloc", ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
        cmd = [sys.executable, os.path.abspath(__file__), "--build-dir", d, "--seconds", str(args.seconds),
               "--seed", str(args.seed)] + (["--seed-file", args.seed_file] if args.seed_file else []) + \
              (["--plain"] if args.plain else [])
        sys.exit(subprocess.run(cmd, env=env).returncode)


if __name__ == "__main__":
    main()
