"""Sigma-clipped mean, stackengine against its peers; scaling with N; formats; algorithms.

Each method and algorithm runs as its own process on the same frames.

``python -m benchmarks [--preset quick|standard|large] [--frames 50 --size 4096]
[--dtype float32|uint16] [--format fits|tiff] [--methods all] [--repeat 3]
[--json out.json --markdown out.md --plots DIR]`` (the standard mode: one
workload, every method); ``--scaling [--scaling-frames 10,20,50,100,200,500
--scaling-size 2048]`` (time per frame and peak RSS against N);
``--compare-formats [fits:float32,tiff:uint16]`` (one workload stored several
ways); ``--calibrate [--calibration-frames 5]`` (issue 15: the stack with
master bias, dark and flat against the plain stack, :mod:`benchmarks.calibration`);
``--register [--max-shift 20 --max-rotation 2] [--no-siril]`` (issue 16: registered
stacks of shifted and rotated frames against the plain stack, with Siril as a
peer, :mod:`benchmarks.registration`);
``--algorithms all`` and ``--normalize photometric`` (stackengine's rejection
algorithms and normalizations, standard mode).

The parent makes (or reuses) a seeded synthetic frame set, then runs each
method as a fresh child process (``python -m benchmarks.bench_sigma --run-one
METHOD ...``, algorithms as ``alg:NAME``) that imports its libraries, stacks,
writes the image as FITS and prints one JSON line. Wall time is measured by the
parent around the whole child; CPU time and peak RSS come from the child's
``getrusage``. With ``--repeat R`` the runs alternate (A B C A B C ...) and the
reports give medians (and min..max). Every image is compared with the
workload's noiseless truth and with astropy's result. Normalization modes
(``--normalize``, methods ``norm:MODE``) time the measure pass next to the
stack pass (:mod:`benchmarks.normalization`).

Extending: add a method with :func:`benchmarks.methods.register` (peers live in
:mod:`benchmarks.peers`), an algorithm to :data:`benchmarks.methods.ALGORITHMS`,
or new :class:`Workload` fields (they are part of the manifest key).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import Workload, format_report
from .methods import ALGORITHMS, METHODS, parse_algorithms, parse_bytes
from .normalization import MODES, parse_modes
from .runner import MARKER, run_benchmark, run_one
from .workload import DTYPES, FORMATS, PRESETS

__all__ = ["main"]

_PRESETS = ", ".join(f"{k} = {n} x {s}^2" for k, (n, s) in PRESETS.items())


def _parser() -> argparse.ArgumentParser:
    from .calibration import DEFAULT_RAW_FRAMES
    from .formats import DEFAULT_VARIANTS
    from .registration import MAX_ROTATION_DEG, MAX_SHIFT_PX
    from .scaling import DEFAULT_FRAMES, DEFAULT_SIZE

    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    w = p.add_argument_group("workload")
    w.add_argument("--preset", choices=list(PRESETS), help=f"named workload: {_PRESETS}")
    w.add_argument("--frames", type=int, help="number of frames (default: the preset's, or 50)")
    w.add_argument("--size", type=int, help="frame height = width (default: the preset's, or 4096)")
    w.add_argument("--dtype", choices=DTYPES, default="float32", help="pixel type of the frames")
    w.add_argument("--format", choices=FORMATS, default="fits", help="file format of the frames")
    w.add_argument(
        "--stars-per-mpix",
        type=float,
        default=Workload.stars_per_mpix,
        help=f"stars per megapixel of the synthetic frames (default {Workload.stars_per_mpix:g})",
    )
    w.add_argument(
        "--dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "stackengine-bench",
        help="folder for frames (reused when the manifest matches) and results",
    )
    r = p.add_argument_group("what runs")
    r.add_argument(
        "--methods",
        help=f"comma-separated, from: {', '.join(METHODS)}; 'all' (the default; --compare-formats:"
        " stackengine) or 'none'",
    )
    r.add_argument(
        "--algorithms",
        default="",
        help="also time stackengine's rejection algorithms: 'all' or comma-separated, from: "
        f"{', '.join(ALGORITHMS)} (a stage list joins names with '+', e.g. minmax+sigma); "
        "sigma, the reference of the throughput ratios, is always included",
    )
    r.add_argument(
        "--normalize",
        default="",
        help="also time each normalization's measure pass (pass 1) next to its stack pass: "
        f"'all' or comma-separated, from: {', '.join(MODES)}",
    )
    r.add_argument("--memory-limit", default="512MiB", help="stackengine memory_limit")
    r.add_argument(
        "--ccdproc-mem-limit",
        help="mem_limit of ccdproc-tuned (bytes or a size such as 512MiB; default --memory-limit)",
    )
    r.add_argument(
        "--repeat", type=int, default=1, help="runs per method, alternating; medians reported"
    )
    m = p.add_argument_group("modes (default: the standard mode, one workload)")
    m.add_argument(
        "--scaling",
        action="store_true",
        help="time per frame and peak RSS against N (--scaling-frames at --scaling-size)",
    )
    m.add_argument(
        "--scaling-frames",
        default=",".join(map(str, DEFAULT_FRAMES)),
        help="frame counts N of --scaling (default %(default)s)",
    )
    m.add_argument(
        "--scaling-size",
        type=int,
        default=DEFAULT_SIZE,
        help="frame height = width of --scaling (default %(default)s)",
    )
    m.add_argument(
        "--compare-formats",
        nargs="?",
        const=DEFAULT_VARIANTS,
        metavar="VARIANTS",
        help=f"run the workload stored as each FORMAT:DTYPE (default {DEFAULT_VARIANTS})",
    )
    m.add_argument(
        "--calibrate",
        action="store_true",
        help="issue 15: time the stack with master bias, dark and flat (made by the harness "
        "beside the frames) against the plain stack, alternating (--methods: stackengine, the "
        "default here, ccdproc, ccdproc-tuned)",
    )
    m.add_argument(
        "--calibration-frames",
        type=int,
        default=DEFAULT_RAW_FRAMES,
        help="--calibrate: raw bias, dark and flat frames combined into each master "
        "(default %(default)s)",
    )
    m.add_argument(
        "--no-identity",
        action="store_true",
        help="--calibrate: skip the untimed runs checking that the calibrated image is "
        "bit-identical with smaller tiles and with --workers 2",
    )
    m.add_argument(
        "--register",
        action="store_true",
        help="issue 16: make a registered workload (the frames shifted and rotated, from a "
        "larger star field) and time 'stackengine stack --register stars' (lanczos3, bilinear) "
        "against the plain stack, alternating, with Siril (siril-cli) as a peer",
    )
    m.add_argument(
        "--max-shift",
        type=float,
        default=MAX_SHIFT_PX,
        help="--register: largest shift of a frame along x and y, px (default %(default)s)",
    )
    m.add_argument(
        "--max-rotation",
        type=float,
        default=MAX_ROTATION_DEG,
        help="--register: largest rotation of a frame, degrees (default %(default)s)",
    )
    m.add_argument("--no-siril", action="store_true", help="--register: leave Siril out")
    o = p.add_argument_group("output")
    o.add_argument("--json", type=Path, help="also write the full report as JSON here")
    o.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    o.add_argument("--plots", type=Path, help="also write PNG plots into this folder")
    o.add_argument("--keep", action="store_true", help="keep the result images (FITS)")
    o.add_argument("--no-warmup", action="store_true", help="skip the untimed tiny warm-up")
    o.add_argument(
        "--no-warm-cache", action="store_true", help="do not read the frames once before timing"
    )
    o.add_argument(
        "--cold-cache",
        action="store_true",
        help="evict the frames from the page cache before every timed run (reads from the disk)",
    )
    p.add_argument("--run-one", metavar="METHOD", help=argparse.SUPPRESS)
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--warm-manifest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--stack-args", default="[]", help=argparse.SUPPRESS)  # JSON list
    return p


def _child(args: argparse.Namespace) -> int:
    try:
        ccd = None if args.ccdproc_mem_limit is None else parse_bytes(args.ccdproc_mem_limit)
        rec = run_one(
            args.run_one,
            args.manifest,
            args.out,
            args.memory_limit,
            ccd,
            args.warm_manifest,
            json.loads(args.stack_args),
        )
    except Exception as exc:  # report, don't hide: the parent prints it
        traceback.print_exc()
        print(MARKER + json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    print(MARKER + json.dumps(rec), flush=True)
    return 0


def _methods(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    single = args.compare_formats or args.calibrate or args.register
    text = (args.methods or ("stackengine" if single else "all")).strip()
    if text == "none":
        return []
    methods = list(METHODS) if text == "all" else [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}, 'all' or 'none'")
    return list(dict.fromkeys(methods))


def _workload(p: argparse.ArgumentParser, args: argparse.Namespace) -> Workload:
    n, size = PRESETS[args.preset or "standard"]
    n = args.frames if args.frames is not None else n
    size = args.size if args.size is not None else size
    if n < 3 or size < 8 or args.repeat < 1 or not args.stars_per_mpix >= 0:
        p.error("need --frames >= 3, --size >= 8, --repeat >= 1 and --stars-per-mpix >= 0")
    return Workload(
        n_frames=n,
        height=size,
        width=size,
        dtype=args.dtype,
        format=args.format,
        stars_per_mpix=args.stars_per_mpix,
    )


def _run(p: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    methods = _methods(p, args)
    try:
        algorithms = parse_algorithms(args.algorithms) if args.algorithms.strip() else []
        modes = parse_modes(args.normalize) if args.normalize.strip() else []
        if args.ccdproc_mem_limit is not None:
            parse_bytes(args.ccdproc_mem_limit)
    except ValueError as exc:
        p.error(str(exc))
    wl = _workload(p, args)
    common = dict(
        memory_limit=args.memory_limit,
        repeat=args.repeat,
        warmup=not args.no_warmup,
        keep=args.keep,
        ccdproc_mem_limit=args.ccdproc_mem_limit,
        warm_cache=not args.no_warm_cache,
        cold_cache=args.cold_cache,
    )
    special = args.scaling or args.compare_formats or args.calibrate or args.register
    if special and (algorithms or modes):
        p.error("--algorithms and --normalize run in the standard mode only")
    if sum(map(bool, (args.scaling, args.compare_formats, args.calibrate, args.register))) > 1:
        p.error("choose one of --scaling, --compare-formats, --calibrate and --register")
    if special and not methods:
        p.error("nothing to run: give --methods")
    if args.scaling:
        from .scaling import parse_frames, run_scaling

        try:
            frames = parse_frames(args.scaling_frames)
        except ValueError as exc:
            p.error(f"--scaling-frames: {exc}")
        if args.scaling_size < 8:
            p.error("need --scaling-size >= 8")
        size = args.scaling_size
        base = replace(wl, height=size, width=size)
        return run_scaling(frames, base, methods, args.dir, **common)
    if args.calibrate:
        from .calibration import run_calibration
        from .methods import CALIBRATED_METHODS

        other = [m for m in methods if m not in CALIBRATED_METHODS]
        if other:
            p.error(f"--calibrate: {other} have no calibrated variant; choose from "
                    f"{list(CALIBRATED_METHODS)}")  # fmt: skip
        if args.calibration_frames < 1:
            p.error("need --calibration-frames >= 1")
        return run_calibration(
            wl, methods, args.dir, raw_frames=args.calibration_frames,
            identity=not args.no_identity, **common,
        )  # fmt: skip
    if args.register:
        from .registration import run_registration

        if methods != ["stackengine"]:
            p.error("--register times stackengine (and Siril: --no-siril leaves it out); "
                    "--methods takes only stackengine")  # fmt: skip
        if not (args.max_shift >= 0 and 0 <= args.max_rotation <= 45):
            p.error("need --max-shift >= 0 and 0 <= --max-rotation <= 45")
        return run_registration(
            wl, args.dir, max_shift=args.max_shift, max_rotation=args.max_rotation,
            siril=not args.no_siril, **common,
        )  # fmt: skip
    if args.compare_formats:
        from .formats import parse_variants, run_formats

        try:
            variants = parse_variants(args.compare_formats)
        except ValueError as exc:
            p.error(f"--compare-formats: {exc}")
        return run_formats(variants, wl, methods, args.dir, **common)
    if not methods and not algorithms and not modes:
        p.error("nothing to run: give --methods, --algorithms and/or --normalize")
    return run_benchmark(
        wl, args.dir, methods, algorithms=algorithms, normalizations=modes, **common
    )


def _all_ok(report: dict[str, Any]) -> bool:
    """No run failed (a run skipped for lack of memory is not a failure)."""
    return all(r.get("ok") or r.get("skipped") for r in report["runs"])


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if any run failed)."""
    p = _parser()
    args = p.parse_args(argv)
    if args.run_one:
        return _child(args)
    report = _run(p, args)
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        from .markdown import to_markdown

        args.markdown.write_text(to_markdown(report))
    if args.plots:
        from .plots import write_plots

        for path in write_plots(report, args.plots):
            print(f"plot: {path}")
    return 0 if _all_ok(report) else 1


if __name__ == "__main__":
    raise SystemExit(main())
