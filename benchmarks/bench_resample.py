"""Micro-benchmark of the resampling kernel: ns per output pixel, old against new.

The old kernel (for the comparison only) is the file at a git revision, loaded from a
copy in the temp folder:

    python benchmarks/bench_resample.py [--old-rev HEAD~1] [--size 1024] [--repeats 5]

Each case times the old and the new kernel alternately in this one process (the
machine is shared: the best of several repeats), and reports the largest difference
between their outputs (bits and float32 ulps).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stackengine.kernels import resample as new

ROOT = Path(__file__).resolve().parents[1]


def load_old(rev: str):
    """The module ``stackengine/kernels/resample.py`` at git revision ``rev``."""
    text = subprocess.run(
        ["git", "show", f"{rev}:stackengine/kernels/resample.py"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    text = text.replace("from .._numba_cache import", "from stackengine._numba_cache import")
    text = text.replace("check_caches(__name__)", "pass")
    path = Path(tempfile.gettempdir()) / f"resample_old_{rev.replace('~', '_')}.py"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    spec = importlib.util.spec_from_file_location("resample_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["resample_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def rotation(angle_deg, tx, ty, centre):
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    cx, cy = centre
    return np.array(
        [[c, -s, cx - c * cx + s * cy + tx], [s, c, cy - s * cx - c * cy + ty], [0.0, 0.0, 1.0]]
    )


def ulps(a, b):
    """Largest float32 ulp distance between a and b where both are finite; NaN masks
    must agree (returns -1 if they do not)."""
    na, nb = np.isnan(a), np.isnan(b)
    if not np.array_equal(na, nb):
        return -1
    ia = a[~na].view(np.int32).astype(np.int64)
    ib = b[~nb].view(np.int32).astype(np.int64)
    ia = np.where(ia < 0, -(ia & 0x7FFFFFFF), ia)
    ib = np.where(ib < 0, -(ib & 0x7FFFFFFF), ib)
    return int(np.abs(ia - ib).max(initial=0))


def compile_time(which: str, args) -> float:
    """Seconds of the first ``resample`` call (C-contiguous arrays) of the old or new
    kernel, compiled in a fresh process into an empty numba cache."""
    code = (
        "import sys, time, numpy as np\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import bench_resample as b\n"
        f"mod = b.load_old({args.old_rev!r}) if {which == 'old'} else b.new\n"
        "f = np.zeros((20, 20), np.float32); o = np.zeros((10, 10), np.float32)\n"
        "t = time.perf_counter()\n"
        "mod.resample(f, 0, 0, np.eye(3), o, 0, 0, 'lanczos3')\n"
        "print(time.perf_counter() - t)\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
        )
    return float(done.stdout.split()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-rev", default="HEAD")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default="lanczos3,bicubic,bilinear,nearest")
    ap.add_argument(
        "--compile", action="store_true", help="time the first call's compilation instead"
    )
    args = ap.parse_args(argv)

    if args.compile:
        for which in ("old", "new"):
            print(f"{which}: first call (compiled, empty cache) {compile_time(which, args):.1f} s")
        return
    old = load_old(args.old_rev)
    n = args.size
    rng = np.random.default_rng(0)
    frame = rng.normal(100, 5, (n + 80, n + 80)).astype(np.float32)
    frame[rng.random(frame.shape) < 1e-4] = np.nan  # a few missing pixels
    out_a = np.empty((n, n), np.float32)
    out_b = np.empty((n, n), np.float32)
    centre = (n / 2, n / 2)
    cases = {
        "rot 2deg + shift": rotation(2.0, 40.37, 39.71, centre),
        "pure shift": np.array([[1.0, 0, 40.37], [0, 1, 39.71], [0, 0, 1]]),
        "rot 180deg + shift": rotation(180.0, 40.37, 39.71, centre),
        "rot 30deg + shift": rotation(30.0, 40.37, 39.71, centre),
        "homography": rotation(2.0, 40.37, 39.71, centre)
        + np.array([[0, 0, 0], [0, 0, 0], [1e-6, -2e-6, 0]]),
    }
    print(f"output {n}x{n}, frame {frame.shape}, best of {args.repeats}; old = {args.old_rev}")
    print(f"{'case':18s} {'method':9s} {'old ns/px':>10s} {'new ns/px':>10s} {'speedup':>8s} "
          f"{'max |diff|':>11s} {'ulps':>5s} {'bits equal':>10s}")  # fmt: skip
    for cname, m in cases.items():
        for method in args.methods.split(","):
            code = new.METHODS[method]
            for mod in (old, new):  # compile outside the timing
                mod.resample(frame, 0, 0, m, out_a[:4, :4], 0, 0, code)
            best = {"old": math.inf, "new": math.inf}
            for r in range(args.repeats):
                order = (("old", old, out_a), ("new", new, out_b))
                for name, mod, out in order if r % 2 == 0 else order[::-1]:
                    t = time.thread_time()
                    mod.resample(frame, 0, 0, m, out, 0, 0, code)
                    best[name] = min(best[name], time.thread_time() - t)
            ok = ~np.isnan(out_a) & ~np.isnan(out_b)
            diff = float(np.abs(out_a[ok] - out_b[ok]).max(initial=0))
            same = np.array_equal(out_a.view(np.uint32), out_b.view(np.uint32))
            o, w = best["old"] / out_a.size * 1e9, best["new"] / out_a.size * 1e9
            print(f"{cname:18s} {method:9s} {o:10.2f} {w:10.2f} {o / w:7.2f}x {diff:11.3g} "
                  f"{ulps(out_a, out_b):5d} {str(same):>10s}")  # fmt: skip


if __name__ == "__main__":
    main()
