"""Sigma-clipped mean, stackengine against ccdproc and astropy; rejection algorithms vs sigma.

Each method and algorithm runs as its own process on the same frames.

``python -m benchmarks [--frames 50 --size 4096 --dir DIR --memory-limit 512MiB
--methods stackengine,ccdproc,astropy --algorithms all --normalize photometric
--repeat 1 --json out.json --keep]``

The parent makes (or reuses) a seeded synthetic FITS frame set, then runs each
method and each rejection algorithm as a fresh child process (``python -m
benchmarks.bench_sigma --run-one METHOD ...``, algorithms as ``alg:NAME``) that
imports its libraries, stacks, writes the image as FITS and prints one JSON
line. Wall time is measured by the parent around the whole child; CPU time and
peak RSS come from the child's ``getrusage``. Every image is compared with the
workload's noiseless truth. Normalization modes (``--normalize``, methods
``norm:MODE``) time the measure pass next to the stack pass
(:mod:`benchmarks.normalization`).

Extending: add a method with :func:`benchmarks.methods.register`, an algorithm
to :data:`benchmarks.methods.ALGORITHMS`, or new :class:`Workload` fields (they
are part of the manifest key).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import Workload, format_report
from .methods import ALGORITHMS, METHODS, parse_algorithms
from .normalization import MODES, parse_modes
from .runner import MARKER, run_benchmark, run_one

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=50, help="number of frames (default 50)")
    p.add_argument("--size", type=int, default=4096, help="frame height = width (default 4096)")
    p.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stackengine-bench",
        help="folder for frames (reused when the manifest matches) and results",
    )
    p.add_argument("--memory-limit", default="512MiB", help="stackengine memory_limit")
    p.add_argument(
        "--methods",
        default="stackengine,ccdproc,astropy",
        help=f"comma-separated, from: {', '.join(METHODS)}; or 'none'",
    )
    p.add_argument(
        "--algorithms",
        default="",
        help="also time stackengine's rejection algorithms: 'all' or comma-separated, from: "
        f"{', '.join(ALGORITHMS)} (a stage list joins names with '+', e.g. minmax+sigma); "
        "sigma, the reference of the throughput ratios, is always included",
    )
    p.add_argument(
        "--normalize",
        default="",
        help="also time each normalization's measure pass (pass 1) next to its stack pass: "
        f"'all' or comma-separated, from: {', '.join(MODES)}",
    )
    p.add_argument(
        "--stars-per-mpix",
        type=float,
        default=Workload.stars_per_mpix,
        help=f"stars per megapixel of the synthetic frames (default {Workload.stars_per_mpix:g})",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest counts")
    p.add_argument("--json", type=Path, help="also write the full report as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the result images (FITS)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed tiny warm-up")
    p.add_argument("--run-one", metavar="METHOD", help=argparse.SUPPRESS)
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p


def _child(args: argparse.Namespace) -> int:
    try:
        rec = run_one(args.run_one, args.manifest, args.out, args.memory_limit)
    except Exception as exc:  # report, don't hide: the parent prints it
        traceback.print_exc()
        print(MARKER + json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(MARKER + json.dumps(rec), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if any run failed)."""
    p = _parser()
    args = p.parse_args(argv)
    if args.run_one:
        return _child(args)
    text = args.methods.strip()
    methods = [] if text == "none" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {sorted(METHODS)} or 'none'")
    algorithms: list[str] = []
    if args.algorithms.strip():
        try:
            algorithms = parse_algorithms(args.algorithms)
        except ValueError as exc:
            p.error(f"--algorithms: {exc}")
    modes: list[str] = []
    if args.normalize.strip():
        try:
            modes = parse_modes(args.normalize)
        except ValueError as exc:
            p.error(f"--normalize: {exc}")
    if not methods and not algorithms and not modes:
        p.error("nothing to run: give --methods, --algorithms and/or --normalize")
    if args.frames < 3 or args.size < 8 or args.repeat < 1 or not args.stars_per_mpix >= 0:
        p.error("need --frames >= 3, --size >= 8, --repeat >= 1 and --stars-per-mpix >= 0")
    wl = Workload(
        n_frames=args.frames,
        height=args.size,
        width=args.size,
        stars_per_mpix=args.stars_per_mpix,
    )
    report = run_benchmark(
        wl,
        args.dir,
        methods,
        args.memory_limit,
        args.repeat,
        warmup=not args.no_warmup,
        keep=args.keep,
        algorithms=algorithms,
        normalizations=modes,
    )
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    rows = [*report["results"].values(), *report["algorithms"].values()]
    rows += report["normalizations"].values()
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
