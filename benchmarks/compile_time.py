"""First run against a warm run: what compiling the kernels costs (issue 18, item 4).

``python -m benchmarks.compile_time [--cases demo-stack,standard,demo] [--data DIR]
[--json out.json]``

stackengine's kernels are compiled by numba the first time a process needs them
and cached on disk (:mod:`stackengine._numba_cache`). For each case, two child
processes run the same work twice each, timed around the call:

* **fresh**: an empty cache folder (``XDG_CACHE_HOME`` pointed at a new folder), as
  on a fresh install: the first run compiles what it needs;
* **cached**: a new process with the cache the fresh one left: the first run loads
  the kernels from the cache.

The second run in each process is the warm one. The fresh child also records
numba's compile events: the seconds spent compiling each kernel the run called
from Python (with what they compile of their callees).

Cases: ``demo-stack``, the old ``stackengine demo`` stack step (16 frames of 512^2
from FITS files, sigma clipping, written); ``standard``, the standard benchmark's
stack (50 x 4096^2 float32 FITS, ``stackengine stack`` as ``python -m benchmarks``
runs it); ``demo``, the run step of ``stackengine demo`` (a whole raw night:
masters, calibration, registration, stack).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["CASES", "main", "measure"]

CASES = ("demo-stack", "standard", "demo")


def _op(case: str, data: Path, out: Path):
    """The work of ``case``, as a function of no arguments that returns nothing."""
    if case == "demo-stack":
        import stackengine as se

        paths = sorted(str(p) for p in data.glob("*.fits"))
        return lambda: se.write(se.stack(se.open_frames(paths), reject="sigma"), out / "o.fits",
                                overwrite=True)  # fmt: skip
    if case == "standard":
        from stackengine import cli

        paths = sorted(str(p) for p in data.glob("frame_*.fits"))
        argv = ["stack", *paths, "-o", str(out / "o.fits"), "--overwrite", "--quiet"]
        argv += ["--reject", "sigma", "--sigma-lower", "3", "--sigma-upper", "3"]
        argv += ["--maxiters", "5", "--memory-limit", "2GiB"]
        return lambda: cli.run(argv)
    from stackengine.demo import run_demo

    return lambda: run_demo(output=out / "demo")


def _child(case: str, data: str, out: str) -> None:
    """Run ``case`` twice in this process; print one JSON line."""
    from numba.core import event

    t0 = time.perf_counter()
    import stackengine  # noqa: F401

    record: dict[str, Any] = {"import": time.perf_counter() - t0}
    op = _op(case, Path(data), Path(out))
    with event.install_recorder("numba:compile") as rec:
        t = time.perf_counter()
        op()
        record["first"] = time.perf_counter() - t
    t = time.perf_counter()
    op()
    record["warm"] = time.perf_counter() - t
    kernels: dict[str, float] = {}
    starts: list[float] = []
    for ts, ev in rec.buffer:  # the outermost compiles: kernels called from Python
        if ev.is_start:
            starts.append(ts)
            continue
        begun = starts.pop()
        if not starts:
            fn = ev.data["dispatcher"].py_func
            name = f"{fn.__module__.removeprefix('stackengine.')}.{fn.__qualname__}"
            kernels[name] = kernels.get(name, 0.0) + ts - begun
    record["compile"] = sum(kernels.values())
    record["kernels"] = kernels
    print(json.dumps(record))


def measure(case: str, data: Path) -> dict[str, Any]:
    """The fresh and cached children of ``case``; returns their records."""
    with tempfile.TemporaryDirectory(prefix="se-compile-") as tmp:
        env = dict(os.environ, XDG_CACHE_HOME=str(Path(tmp) / "cache"))
        env.pop("NUMBA_CACHE_DIR", None)
        result = {}
        for mode in ("fresh", "cached"):
            out = Path(tmp) / mode
            out.mkdir()
            cmd = [sys.executable, "-m", "benchmarks.compile_time", "--child", case, str(data),
                   str(out)]  # fmt: skip
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{case} ({mode}) failed:\n{done.stderr[-3000:]}")
            result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        return result


def _data(case: str, root: Path, tmp: Path) -> Path:
    if case == "demo-stack":
        from stackengine.demo import make_frames

        make_frames(tmp, n_frames=16, size=512)
        return tmp
    if case == "standard":
        from .workload import Workload, prepare_workload

        manifest, _ = prepare_workload(Workload(), root)
        return manifest.parent
    return tmp


def _table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| case | fresh: first | warm | first - warm | cached: first | warm | first - warm |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, r in results.items():
        f, c = r["fresh"], r["cached"]
        lines.append(
            f"| {case} | {f['first']:.2f} s | {f['warm']:.2f} s | {f['first'] - f['warm']:+.2f} s "
            f"| {c['first']:.2f} s | {c['warm']:.2f} s | {c['first'] - c['warm']:+.2f} s |"
        )
    lines += ["", "Compiled in the fresh first run (seconds, kernels called from Python):", ""]
    for case, r in results.items():
        kernels = sorted(r["fresh"]["kernels"].items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} {sec:.2f}" for name, sec in kernels if sec >= 0.05)
        lines.append(f"- {case}: {r['fresh']['compile']:.1f} s in all: {shown}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.compile_time",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    p.add_argument("--data", default="bench_data", help="folder of the benchmark frame sets")
    p.add_argument("--json", help="write the records here")
    p.add_argument("--child", nargs=3, metavar=("CASE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    results = {}
    for case in args.cases.split(","):
        if case not in CASES:
            p.error(f"unknown case {case!r}; choose from {', '.join(CASES)}")
        with tempfile.TemporaryDirectory(prefix="se-frames-") as tmp:
            results[case] = measure(case, _data(case, Path(args.data), Path(tmp)))
        print(f"{case}: done", file=sys.stderr, flush=True)
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
