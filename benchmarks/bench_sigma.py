"""Sigma-clipped mean: stackengine against ccdproc and astropy, process against process.

``python -m benchmarks [--frames 50 --size 4096 --dir DIR --memory-limit 512MiB
--methods stackengine,ccdproc,astropy --repeat 1 --json out.json --keep]``

The parent makes (or reuses) a seeded synthetic FITS frame set, then runs each
method as a fresh child process (``python -m benchmarks.bench_sigma --run-one
METHOD ...``) that imports its libraries, stacks, writes the image as FITS and
prints one JSON line. Wall time is measured by the parent around the whole
child; CPU time and peak RSS come from the child's ``getrusage``.

Extending: add a :class:`Method` with :func:`register` (the child calls its
``run``), or new :class:`Workload` fields (they are part of the manifest key).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tomllib
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from . import Workload, compare_images, format_report, prepare_workload

_T0 = time.perf_counter()  # child: the phases are timed from here (the parent times it all)

__all__ = [
    "METHODS",
    "Method",
    "main",
    "register",
    "run_benchmark",
    "run_child",
]

REPO = Path(__file__).resolve().parents[1]
MARKER = "BENCH_RESULT "
GIB = 1024**3
#: Acceptance targets of the issue: stackengine at least this many times faster.
SPEED_TARGETS = {"ccdproc": 6.0, "astropy": 2.5}
RSS_TARGET = 1 * GIB
Mark = Callable[[str], None]


@dataclass(frozen=True)
class Method:
    """A stacking method run in a child process.

    ``run(files, out_path, options, mark)`` stacks ``files``, writes the image
    to ``out_path`` (FITS) and calls ``mark(phase)`` at the end of each phase.
    """

    name: str
    params: str
    run: Callable[[list[str], str, dict[str, Any], Mark], None]


METHODS: dict[str, Method] = {}


def register(name: str, params: str) -> Callable:
    """Register ``run(files, out_path, options, mark)`` as method ``name``."""

    def deco(func: Callable[[list[str], str, dict[str, Any], Mark], None]) -> Callable:
        METHODS[name] = Method(name, params, func)
        return func

    return deco


def _write_fits(image: Any, out_path: str) -> None:
    import numpy as np
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(image, dtype=np.float32)).writeto(out_path, overwrite=True)


@register(
    "stackengine",
    "se.stack(reject='sigma', sigma_lower=3, sigma_upper=3, maxiters=5, center='median', "
    "spread='mad_std', combine='mean', memory_limit={memory_limit}) + se.write(.fits)",
)
def _run_stackengine(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import stackengine as se

    mark("import")
    frames = se.open_frames(files)
    res = se.stack(
        frames,
        reject="sigma",
        sigma_lower=3.0,
        sigma_upper=3.0,
        maxiters=5,
        center="median",
        spread="mad_std",
        combine="mean",
        memory_limit=opts["memory_limit"],
    )
    se.write(res, out, overwrite=True)
    mark("stack+write")


@register(
    "ccdproc",
    "ccdproc.combine(method='average', sigma_clip=True, sigma_clip_func=np.ma.median, "
    "sigma_clip_dev_func=mad_std, unit='adu'); defaults: low/high thresh 3, mem_limit 16e9, "
    "float64, ONE clipping pass (Combiner.sigma_clipping maxiters=1)",
)
def _run_ccdproc(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import ccdproc
    import numpy as np
    from astropy.stats import mad_std

    mark("import")
    ccd = ccdproc.combine(
        files,
        method="average",
        sigma_clip=True,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
        unit="adu",
    )
    mark("stack")
    _write_fits(ccd.data, out)
    mark("write")


@register(
    "astropy",
    "read all frames into one (n, H, W) float32 array; astropy.stats.sigma_clip(axis=0, "
    "sigma=3, maxiters=5, cenfunc='median', stdfunc='mad_std').mean(axis=0); its final mask is "
    "'outside the last bounds', so a value clipped in an early pass can come back",
)
def _run_astropy(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import numpy as np
    from astropy.io import fits
    from astropy.stats import sigma_clip

    mark("import")
    with fits.open(files[0], memmap=False) as hdul:
        shape = hdul[0].data.shape
    cube = np.empty((len(files), *shape), dtype=np.float32)
    for i, path in enumerate(files):
        with fits.open(path, memmap=False) as hdul:
            cube[i] = hdul[0].data
    mark("read")
    clipped = sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
    image = clipped.mean(axis=0).filled(np.nan)
    mark("stack")
    _write_fits(image, out)
    mark("write")


# --------------------------------------------------------------------- child side


def _run_one(method: str, manifest: Path, out: str, memory_limit: str) -> dict[str, Any]:
    """Run one method in this (child) process; return its measurements."""
    warnings.simplefilter("ignore")
    names = json.loads(manifest.read_text())["files"]
    files = [str(manifest.parent / name) for name in names]
    phases: dict[str, float] = {}
    last = [_T0]

    def mark(phase: str) -> None:
        now = time.perf_counter()
        phases[phase] = now - last[0]
        last[0] = now

    METHODS[method].run(files, out, {"memory_limit": memory_limit}, mark)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "method": method,
        "ok": True,
        "phases_s": phases,
        "child_wall_s": time.perf_counter() - _T0,
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_bytes": max(me.ru_maxrss, kids.ru_maxrss) * 1024,  # Linux: KiB
    }


# -------------------------------------------------------------------- parent side


def run_child(method: str, manifest: Path, out: Path, memory_limit: str) -> dict[str, Any]:
    """Run ``method`` in a fresh Python process; return its record with ``wall_s``."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.bench_sigma", "--run-one", method]
    cmd += ["--manifest", str(manifest), "--out", str(out), "--memory-limit", memory_limit]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    rec: dict[str, Any] = {"method": method, "ok": False}
    if lines:
        rec.update(json.loads(lines[-1][len(MARKER) :]))
    rec.update(wall_s=wall, returncode=proc.returncode, out=str(out))
    if proc.returncode != 0 or not out.exists():
        rec["ok"] = False
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        rec.setdefault("error", " | ".join(tail) or f"exit status {proc.returncode}")
    return rec


def _summarize(runs: list[dict[str, Any]], wl: Workload) -> dict[str, Any]:
    """The fastest successful run of a method, with throughput; or its failure."""
    good = [r for r in runs if r["ok"]]
    if not good:
        return {"ok": False, "error": runs[-1].get("error", "failed"), "n_runs": len(runs)}
    best = min(good, key=lambda r: r["wall_s"])
    keys = ("wall_s", "cpu_s", "peak_rss_bytes", "child_wall_s", "phases_s", "out")
    summary = {"ok": True, **{k: best.get(k) for k in keys}, "n_runs": len(runs)}
    summary["mpix_frames_per_s"] = wl.mpix_frames / best["wall_s"]
    return summary


def _checks(results: dict[str, dict[str, Any]], subject: str) -> list[dict[str, Any]]:
    sub = results.get(subject, {})
    if subject != "stackengine" or not sub.get("ok"):
        return []
    out = []
    for peer, target in SPEED_TARGETS.items():
        if results.get(peer, {}).get("ok"):
            ratio = results[peer]["wall_s"] / sub["wall_s"]
            name = f"stackengine faster than {peer}"
            out.append(dict(name=name, value=ratio, target=target, unit="x", ok=ratio >= target))
    rss = sub["peak_rss_bytes"] / GIB
    limit = RSS_TARGET / GIB
    out.append(
        dict(name="stackengine peak RSS", value=rss, target=limit, unit="GiB", ok=rss <= limit)
    )
    return out


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("numpy", "astropy", "ccdproc", "dask", "numba", "stackengine"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    pyproject = REPO / "pyproject.toml"
    if found["stackengine"] == "not installed" and pyproject.is_file():  # a source checkout
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        found["stackengine"] = f"{project.get('version', '?')} (source tree)"
    return found


def run_benchmark(
    workload: Workload,
    root: Path,
    methods: Sequence[str],
    memory_limit: str = "512MiB",
    repeat: int = 1,
    warmup: bool = True,
    keep: bool = False,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Make or reuse the frames, run every method ``repeat`` times, compare images.

    Returns the report as a plain dict (printed by :func:`benchmarks.format_report`).
    """
    root = Path(root).resolve()  # the children run in the repository folder
    manifest, generated = prepare_workload(workload, root, log=log)
    outdir = root / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    if warmup:  # numba/pyc caches and OS file cache, untimed, on a tiny frame set
        tiny, _ = prepare_workload(replace(workload, n_frames=3, height=64, width=64), root)
        for m in methods:
            log(f"warm-up {m}")
            run_child(m, tiny, outdir / f"warmup_{m}.fits", memory_limit)
    runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        for m in methods:
            log(f"run {rep + 1}/{repeat}: {m} ...")
            rec = run_child(m, manifest, outdir / f"{m}.fits", memory_limit)
            rec["repeat"] = rep
            state = f"{rec['wall_s']:.2f} s" if rec["ok"] else f"FAILED: {rec.get('error')}"
            log(f"  {m}: {state}")
            runs.append(rec)
    results = {m: _summarize([r for r in runs if r["method"] == m], workload) for m in methods}
    subject = "stackengine" if "stackengine" in methods else methods[0]
    accuracy = {}
    for ref in methods:
        if ref != subject and results[subject]["ok"] and results[ref]["ok"]:
            accuracy[ref] = compare_images(
                Path(results[subject]["out"]), Path(results[ref]["out"]), workload.noise
            )
    if not keep:
        for path in outdir.glob("*.fits"):
            path.unlink()
    return {
        "benchmark": "sigma",
        "workload": asdict(workload),
        "data_dir": str(manifest.parent),
        "generated": generated,
        "memory_limit": memory_limit,
        "cpu_count": os.cpu_count(),
        "versions": _versions(),
        "params": {m: METHODS[m].params.format(memory_limit=memory_limit) for m in methods},
        "subject": subject,
        "results": results,
        "accuracy": accuracy,
        "checks": _checks(results, subject),
        "runs": runs,
    }


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
        help=f"comma-separated, from: {', '.join(METHODS)}",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest counts")
    p.add_argument("--json", type=Path, help="also write the full report as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the result images (FITS)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed tiny warm-up")
    p.add_argument("--run-one", metavar="METHOD", help=argparse.SUPPRESS)
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if any run failed)."""
    p = _parser()
    args = p.parse_args(argv)
    if args.run_one:  # child mode
        try:
            rec = _run_one(args.run_one, args.manifest, args.out, args.memory_limit)
        except Exception as exc:  # report, don't hide: the parent prints it
            traceback.print_exc()
            print(MARKER + json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
            return 1
        print(MARKER + json.dumps(rec), flush=True)
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        p.error(f"unknown method(s) {unknown}; choose from {sorted(METHODS)}")
    if args.frames < 3 or args.size < 8 or args.repeat < 1:
        p.error("need --frames >= 3, --size >= 8 and --repeat >= 1")
    wl = Workload(n_frames=args.frames, height=args.size, width=args.size)
    report = run_benchmark(
        wl,
        args.dir,
        methods,
        args.memory_limit,
        args.repeat,
        warmup=not args.no_warmup,
        keep=args.keep,
    )
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if all(r["ok"] for r in report["results"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
