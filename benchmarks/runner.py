"""Running methods process against process: the child's measurements, the parent's report.

The parent runs each method as ``python -m benchmarks.bench_sigma --run-one
METHOD`` and measures the wall time around the whole child; the child
(:func:`run_one`) stacks, writes the image and prints one JSON line with its
phases, CPU time and peak RSS (``getrusage``). :func:`run_jobs` runs a list of
(workload, method) jobs ``repeat`` times, alternating (A B C A B C ...);
:func:`run_benchmark` is the standard mode (one workload, every method).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from .accuracy import RESIDUAL_SIGMAS, compare_images
from .checks import sigma_checks
from .evaluate import compare_astropy, compare_truth
from .methods import ALGORITHM_PREFIX, CALIBRATED_METHODS, get_method, parse_bytes
from .normalization import NORMALIZE_PREFIX, normalization_checks, summarize_normalization
from .stats import summarize_runs
from .system import (
    available_bytes,
    busy_cpu_s,
    evict_page_cache,
    memory_skip_reason,
    page_cache,
)
from .workload import PRESETS, Workload, manifest_files, prepare_workload

_T0 = time.perf_counter()  # child: the phases are timed from here (the parent times it all)

__all__ = [
    "MARKER",
    "Job",
    "method_info",
    "run_benchmark",
    "run_child",
    "run_jobs",
    "drop_results",
    "peak_rss_self",
    "run_facts",
    "run_one",
    "versions",
    "warm_up",
    "warmup_workload",
]

REPO = Path(__file__).resolve().parents[1]
MARKER = "BENCH_RESULT "
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_one(
    method: str,
    manifest: Path,
    out: str,
    memory_limit: str,
    ccdproc_mem_limit: int | None = None,
    warm_manifest: Path | None = None,
    stack_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run one method in this (child) process; return its measurements.

    With ``warm_manifest`` the method first runs, untimed, on that (tiny)
    frame set in the same process: the one-time costs of a process (imports,
    numba's start-up, the first use of astropy.io.fits) fall into the phase
    ``warm-up``, and the phases after it time the work alone. A manifest with
    ``calibration`` (:func:`benchmarks.calibration.calibration_manifest`) gives
    the method the masters; ``stack_args`` go to ``stackengine stack``.
    """
    warnings.simplefilter("ignore")
    files = [str(f) for f in manifest_files(manifest)]
    phases: dict[str, float] = {}
    last = [_T0]

    def mark(phase: str) -> None:
        now = time.perf_counter()
        phases[phase] = now - last[0]
        last[0] = now

    opts: dict[str, Any] = {"memory_limit": memory_limit, "ccdproc_mem_limit": ccdproc_mem_limit}
    calibration = json.loads(Path(manifest).read_text()).get("calibration")
    if calibration:  # a calibrated manifest (benchmarks.calibration): the masters
        if method not in CALIBRATED_METHODS:
            have = ", ".join(CALIBRATED_METHODS)
            raise ValueError(f"{method} has no calibrated variant (only {have})")
        opts["calibration"] = calibration
    if stack_args:
        opts["stack_args"] = list(stack_args)
    if warm_manifest is not None:
        tiny = [str(f) for f in manifest_files(warm_manifest)]
        get_method(method).run(tiny, str(Path(out).with_suffix(".warm.fits")), opts, lambda _: None)
        Path(out).with_suffix(".warm.fits").unlink(missing_ok=True)
        mark("warm-up")
    extra = get_method(method).run(files, out, opts, mark)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        **(extra or {}),
        "method": method,
        "ok": True,
        "phases_s": phases,
        "child_wall_s": time.perf_counter() - _T0,
        "cpu_s": me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime,
        "peak_rss_bytes": max(peak_rss_self(), kids.ru_maxrss * 1024),  # Linux: KiB
    }


def peak_rss_self() -> int:
    """This process's own peak RSS in bytes: ``VmHWM`` of ``/proc/self/status``.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: on Linux that also holds the
    high-water mark of the process image it replaced at ``exec`` (a child
    forked from the harness starts at the harness's own peak, which frame
    generation or an in-parent registration raise to gigabytes). ``VmHWM`` is
    the new image's alone. Falls back to ``ru_maxrss`` without ``/proc``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def run_child(
    method: str,
    manifest: Path,
    out: Path,
    memory_limit: str,
    ccdproc_mem_limit: int | None = None,
    warm_manifest: Path | None = None,
    stack_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``method`` in a fresh Python process; return its record with ``wall_s``.

    ``warm_manifest``: first run it untimed on those frames in the same
    process (see :func:`run_one`); ``stack_args``: more ``stackengine stack``
    arguments.
    """
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.bench_sigma", "--run-one", method]
    cmd += ["--manifest", str(manifest), "--out", str(out), "--memory-limit", memory_limit]
    if warm_manifest is not None:
        cmd += ["--warm-manifest", str(warm_manifest)]
    if stack_args:
        cmd += ["--stack-args", json.dumps(list(stack_args))]
    if ccdproc_mem_limit is not None:
        cmd += ["--ccdproc-mem-limit", str(ccdproc_mem_limit)]
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


@dataclass(frozen=True)
class Job:
    """One method on one frame set; ``label`` names the set in the output file names."""

    method: str
    manifest: Path
    workload: Workload
    label: str = ""
    #: a tiny frame set to run first, untimed, in the same process (steady-state timing)
    warm_manifest: Path | None = None
    #: this job's memory_limit (default: run_jobs's)
    memory_limit: str | None = None
    #: more ``stackengine stack`` arguments (e.g. ``("--workers", "2")``)
    stack_args: tuple[str, ...] = ()


def out_name(method: str, label: str = "") -> str:
    """File name of a method's result image."""
    name = method.replace(ALGORITHM_PREFIX, "alg_").replace(NORMALIZE_PREFIX, "norm_")
    name = name.replace("+", "_").replace(":", "_")
    return (f"{label}_" if label else "") + name + ".fits"


def run_jobs(
    jobs: Sequence[Job],
    outdir: Path,
    memory_limit: str,
    repeat: int = 1,
    ccdproc_mem_limit: int | None = None,
    log: Log = _stderr,
    available: int | None = None,
    cold: bool = False,
) -> list[dict[str, Any]]:
    """Run every job ``repeat`` times, alternating: all jobs, then all jobs again, ...

    ``cold``: each job's frames are evicted from the page cache before each run
    (:func:`benchmarks.system.evict_page_cache`).

    A job whose method would not fit in ``available`` bytes
    (:func:`benchmarks.system.memory_skip_reason`) is not run; its record has
    ``skipped``. Each record gets ``label``, ``repeat`` and ``other_cpu_s``
    (CPU time the rest of the machine used meanwhile).
    """
    runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        for job in jobs:
            name = f"{job.label} {job.method}".strip()
            skip = memory_skip_reason(job.method, job.workload, available)
            if skip:
                log(f"run {rep + 1}/{repeat}: {name}: {skip}")
                runs.append(dict(method=job.method, label=job.label, repeat=rep, ok=False))
                runs[-1]["skipped"] = skip
                continue
            log(f"run {rep + 1}/{repeat}: {name} ...")
            if cold:
                evict_page_cache(manifest_files(job.manifest))
            busy = busy_cpu_s()
            out = outdir / out_name(job.method, job.label)
            rec = run_child(
                job.method,
                job.manifest,
                out,
                job.memory_limit or memory_limit,
                ccdproc_mem_limit,
                job.warm_manifest,
                job.stack_args,
            )
            if busy is not None and rec.get("cpu_s") is not None:
                rec["other_cpu_s"] = max(0.0, busy_cpu_s() - busy - rec["cpu_s"])
            rec.update(label=job.label, repeat=rep)
            state = f"{rec['wall_s']:.2f} s" if rec["ok"] else f"FAILED: {rec.get('error')}"
            log(f"  {name}: {state}")
            runs.append(rec)
    return runs


def warmup_workload(workload: Workload, method: str) -> Workload:
    """The tiny untimed frame set of a method: 3x64x64; normalizations get enough stars."""
    if method.startswith(NORMALIZE_PREFIX):  # photometric needs >= 8 matched stars
        return replace(workload, n_frames=3, height=256, width=256, stars_per_mpix=1000.0)
    return replace(workload, n_frames=3, height=64, width=64)


def warm_up(
    methods: Sequence[str],
    workload: Workload,
    root: Path,
    outdir: Path,
    memory_limit: str,
    ccdproc_mem_limit: int | None = None,
    log: Log = _stderr,
) -> None:
    """Run each method once, untimed, on a tiny frame set (numba/pyc caches, OS file cache)."""
    for m in methods:
        tiny_wl = warmup_workload(workload, m)
        tiny, _ = prepare_workload(tiny_wl, root / "warmup" if tiny_wl.height > 64 else root)
        log(f"warm-up {m}")
        run_child(m, tiny, outdir / f"warmup_{out_name(m)}", memory_limit, ccdproc_mem_limit)


def drop_results(outdir: Path, keep: bool) -> None:
    """Delete the result images (FITS) in ``outdir`` unless ``keep``."""
    if not keep:
        for path in outdir.glob("*.fits"):
            path.unlink()


def run_facts(cache: str, memory_limit: str, ccd_limit: int, repeat: int) -> dict[str, Any]:
    """The report fields every mode shares: page cache, limits, repeats, CPUs, versions."""
    return {
        "page_cache": cache,
        "memory_limit": memory_limit,
        "ccdproc_mem_limit": ccd_limit,
        "repeat": repeat,
        "cpu_count": os.cpu_count(),
        "versions": versions(),
    }


def versions() -> dict[str, str]:
    """Versions of Python and the libraries the methods use."""
    found = {"python": platform.python_version()}
    dists = ("numpy", "astropy", "ccdproc", "bottleneck", "tifffile", "dask", "numba")
    for dist in (*dists, "stackengine"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    pyproject = REPO / "pyproject.toml"
    if found["stackengine"] == "not installed" and pyproject.is_file():  # a source checkout
        project = tomllib.loads(pyproject.read_text()).get("project", {})
        found["stackengine"] = f"{project.get('version', '?')} (source tree)"
    return found


def method_info(methods: Sequence[str], memory_limit: str, ccdproc_mem_limit: int) -> dict:
    """Per method: its parameter line (limits filled in) and whether it is a plain median."""
    fill = {"memory_limit": memory_limit, "ccdproc_mem_limit": ccdproc_mem_limit}
    info = {}
    for m in methods:
        meth = get_method(m)
        info[m] = {"params": meth.params.format_map(fill), "median_only": meth.median_only}
    return info


def preset_of(wl: Workload) -> str | None:
    """The preset whose frames and size ``wl`` has (any dtype and format), or None."""
    for name, (n, size) in PRESETS.items():
        if (wl.n_frames, wl.height, wl.width) == (n, size, size):
            return name
    return None


def run_benchmark(
    workload: Workload,
    root: Path,
    methods: Sequence[str],
    memory_limit: str = "512MiB",
    repeat: int = 1,
    warmup: bool = True,
    keep: bool = False,
    log: Log = _stderr,
    algorithms: Sequence[str] = (),
    normalizations: Sequence[str] = (),
    ccdproc_mem_limit: str | int | None = None,
    warm_cache: bool = True,
    cold_cache: bool = False,
) -> dict[str, Any]:
    """Make or reuse the frames, run every method, algorithm and mode ``repeat`` times, compare.

    ``methods`` are registered method names; ``algorithms`` are algorithm specs
    (:func:`benchmarks.methods.parse_algorithms`), run as methods ``alg:SPEC``;
    ``normalizations`` are normalization modes, run as methods ``norm:MODE``
    (:mod:`benchmarks.normalization`). ``ccdproc_mem_limit``: the
    ``ccdproc-tuned`` method's ``mem_limit`` (default: ``memory_limit``).
    Returns the report as a plain dict (printed by :func:`benchmarks.format_report`).
    """
    root = Path(root).resolve()  # the children run in the repository folder
    ccd_limit = parse_bytes(ccdproc_mem_limit if ccdproc_mem_limit is not None else memory_limit)
    manifest, generated = prepare_workload(workload, root, log=log)
    outdir = root / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    runnable = [*methods, *(ALGORITHM_PREFIX + a for a in algorithms)]
    runnable += [NORMALIZE_PREFIX + mode for mode in normalizations]
    available = available_bytes()
    cache = page_cache(manifest_files(manifest), available, warm_cache, cold_cache)
    log(f"page cache: {cache}")
    if warmup:
        warm_up(runnable, workload, root, outdir, memory_limit, ccd_limit, log)
    jobs = [Job(m, manifest, workload) for m in runnable]
    runs = run_jobs(jobs, outdir, memory_limit, repeat, ccd_limit, log, available, cold_cache)

    def summary(m: str) -> dict[str, Any]:
        return summarize_runs([r for r in runs if r["method"] == m], workload.mpix_frames)

    results = {m: summary(m) for m in methods}
    algs = {a: summary(ALGORITHM_PREFIX + a) for a in algorithms}
    norms = {
        mode: summarize_normalization(summary(NORMALIZE_PREFIX + mode), workload)
        for mode in normalizations
    }
    subject = ("stackengine" if "stackengine" in methods else methods[0]) if methods else None
    accuracy = {}
    for ref in methods:
        if ref != subject and results[subject]["ok"] and results[ref]["ok"]:
            accuracy[ref] = compare_images(
                Path(results[subject]["out"]), Path(results[ref]["out"]), workload.adu_noise
            )
    log("comparing the images with the noiseless truth and with astropy")
    n_cr = compare_truth([*results.values(), *algs.values(), *norms.values()], workload)
    rows = {**results, **{ALGORITHM_PREFIX + a: r for a, r in algs.items()}}
    reference = compare_astropy(rows, workload, manifest, results.get("astropy"), log)
    drop_results(outdir, keep)
    info = method_info(runnable, memory_limit, ccd_limit)
    return {
        "benchmark": "sigma",
        "workload": asdict(workload),
        "preset": preset_of(workload),
        "data_dir": str(manifest.parent),
        "generated": generated,
        **run_facts(cache, memory_limit, ccd_limit, repeat),
        "params": {m: info[m]["params"] for m in methods},
        "median_only": [m for m in methods if info[m]["median_only"]],
        "subject": subject,
        "results": results,
        "accuracy": accuracy,
        "astropy_reference": reference,
        "algorithms": algs,
        "algorithm_params": {a: info[ALGORITHM_PREFIX + a]["params"] for a in algorithms},
        "algorithm_reference": "sigma",
        "normalizations": norms,
        "normalization_params": {
            mode: info[NORMALIZE_PREFIX + mode]["params"] for mode in normalizations
        },
        "truth": {
            "ideal_noise_adu": workload.ideal_noise,
            "residual_sigmas": RESIDUAL_SIGMAS,
            "threshold_adu": RESIDUAL_SIGMAS * workload.ideal_noise,
            "n_cr_pixels": n_cr,
        },
        "checks": sigma_checks(results, subject, algs) + normalization_checks(norms),
        "runs": runs,
    }
