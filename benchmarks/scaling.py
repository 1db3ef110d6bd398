"""Scaling mode: time per frame and peak RSS of each method against the number of frames N.

``python -m benchmarks --scaling [--scaling-frames 10,20,50,100,200,500
--scaling-size 2048]``. One frame set of the largest N is generated; the
smaller N take its first N frames (:func:`benchmarks.workload.subset_manifest`:
frame ``i`` does not depend on N). All (N, method) runs alternate, ``repeat``
rounds, and each point is the median over its runs. An in-memory method is
skipped at an N whose stack would not fit (:mod:`benchmarks.system`).

Per point: ``wall_per_frame_s`` (whole process / N), ``work_per_frame_s``
(after the interpreter start and imports / N), ``peak_rss_bytes`` and
``mpix_frames_per_s``. The checks (:func:`benchmarks.checks.scaling_checks`)
apply to stackengine (or the first method). No accuracy is computed here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .checks import scaling_checks
from .methods import parse_bytes
from .runner import (
    Job,
    _stderr,
    drop_results,
    method_info,
    run_facts,
    run_jobs,
    warm_up,
    warmup_workload,
)
from .stats import summarize_runs
from .system import available_bytes, page_cache
from .workload import Workload, manifest_files, prepare_workload, subset_manifest

__all__ = ["DEFAULT_FRAMES", "DEFAULT_SIZE", "format_scaling", "parse_frames", "run_scaling"]

DEFAULT_FRAMES = (10, 20, 50, 100, 200, 500)
DEFAULT_SIZE = 2048
GIB = 1024**3


def parse_frames(text: str) -> list[int]:
    """``"10,20,50"`` -> ``[10, 20, 50]`` (sorted, unique).

    Raises
    ------
    ValueError
        Not a list of at least two integers >= 3.
    """
    try:
        frames = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise ValueError(f"not a comma list of integers: {text!r}") from None
    if len(frames) < 2 or frames[0] < 3:
        raise ValueError(f"need at least two frame counts, each >= 3: {text!r}")
    return frames


def run_scaling(
    frames: Sequence[int],
    base: Workload,
    methods: Sequence[str],
    root: Path,
    memory_limit: str = "512MiB",
    repeat: int = 1,
    warmup: bool = True,
    keep: bool = False,
    log: Callable[[str], None] | None = None,
    ccdproc_mem_limit: str | int | None = None,
    warm_cache: bool = True,
    cold_cache: bool = False,
) -> dict[str, Any]:
    """Run every method at every N of ``frames`` on ``base`` (its size, dtype, format).

    Returns the report as a plain dict (``benchmark`` = ``"scaling"``; printed
    by :func:`format_scaling`): ``points[method]`` is the list of summaries
    by N, ``checks`` the scaling targets.
    """
    log = log or _stderr
    root = Path(root).resolve()
    frames = sorted(frames)
    ccd_limit = parse_bytes(ccdproc_mem_limit if ccdproc_mem_limit is not None else memory_limit)
    full = replace(base, n_frames=frames[-1])
    manifest, generated = prepare_workload(full, root, log=log)
    outdir = root / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    available = available_bytes()
    cache = page_cache(manifest_files(manifest), available, warm_cache, cold_cache)
    log(f"page cache: {cache}")
    if warmup:
        warm_up(methods, full, root, outdir, memory_limit, ccd_limit, log)
    subject = "stackengine" if "stackengine" in methods else methods[0]
    tiny, _ = prepare_workload(warmup_workload(base, subject), root, log=log)
    jobs = []
    for n in frames:
        sub = manifest if n == frames[-1] else subset_manifest(manifest, n)
        wl = replace(base, n_frames=n)
        jobs += [Job(m, sub, wl, f"n{n}") for m in methods]
        # the subject again, after an untimed tiny stack in the same process
        jobs.append(Job(subject, sub, wl, f"n{n}-steady", warm_manifest=tiny))
    runs = run_jobs(jobs, outdir, memory_limit, repeat, ccd_limit, log, available, cold_cache)
    points: dict[str, list[dict[str, Any]]] = {}
    for m in methods:
        points[m] = []
        for n in frames:
            wl = replace(base, n_frames=n)
            mine = [r for r in runs if r["method"] == m and r["label"] == f"n{n}"]
            point = {"n_frames": n, **summarize_runs(mine, wl.mpix_frames)}
            if point["ok"]:
                point["wall_per_frame_s"] = point["wall_s"] / n
                if point.get("work_s") is not None:
                    point["work_per_frame_s"] = point["work_s"] / n
            if m == subject:
                steady = [r for r in runs if r["label"] == f"n{n}-steady"]
                summary = summarize_runs(steady, wl.mpix_frames)
                if summary["ok"] and summary.get("steady_s") is not None:
                    point["steady_per_frame_s"] = summary["steady_s"] / n
                    point["steady_mpix_frames_per_s"] = wl.mpix_frames / summary["steady_s"]
            points[m].append(point)
    drop_results(outdir, keep)
    info = method_info(methods, memory_limit, ccd_limit)
    return {
        "benchmark": "scaling",
        "workload": asdict(full),
        "frames": list(frames),
        "size": [base.height, base.width],
        "data_dir": str(manifest.parent),
        "generated": generated,
        **run_facts(cache, memory_limit, ccd_limit, repeat),
        "methods": list(methods),
        "params": {m: info[m]["params"] for m in methods},
        "median_only": [m for m in methods if info[m]["median_only"]],
        "subject": subject,
        "points": points,
        "checks": scaling_checks(points[subject], subject),
        "runs": runs,
    }


def _cell(point: dict[str, Any], key: str, spec: str) -> str:
    if point.get("skipped"):
        return "skipped"
    if not point.get("ok"):
        return "FAILED"
    value = point.get(key)
    return "-" if value is None else format(value, spec)


def _grid(report: dict[str, Any], title: str, key: str, spec: str, scale: float = 1.0) -> list[str]:
    width = max([12, *(len(m) + 1 for m in report["methods"])])
    head = f"{title:<{width}}" + "".join(f" {'N=' + str(n):>10}" for n in report["frames"])
    lines = [head]
    for m in report["methods"]:
        cells = []
        for p in report["points"][m]:
            scaled = dict(p, **{key: p[key] * scale}) if p.get(key) is not None else p
            cells.append(f" {_cell(scaled, key, spec):>10}")
        tag = "  [median only]" if m in report.get("median_only", ()) else ""
        lines.append(f"{m:<{width}}" + "".join(cells) + tag)
    return lines


def format_scaling(report: dict[str, Any]) -> str:
    """The human-readable tables of a scaling report (see :func:`run_scaling`)."""
    from .report import format_checks

    wl = Workload(**report["workload"])
    frames = report["frames"]
    lines = [
        f"scaling benchmark: N = {', '.join(map(str, frames))} frames of "
        f"{wl.height}x{wl.width} {wl.dtype} ({wl.format.upper()}), memory_limit="
        f"{report['memory_limit']}, {report['cpu_count']} CPUs; frames in {report['data_dir']}",
        f"page cache: {report['page_cache']}; {report['repeat']} run(s) per point, "
        "alternating; medians shown",
        "",
    ]
    if any(p.get("steady_per_frame_s") for p in report["points"][report["subject"]]):
        lines += _grid(
            {**report, "methods": [report["subject"]]},
            "ms/frame steady",
            "steady_per_frame_s",
            ".1f",
            1e3,
        )
        lines.append("")
    lines += _grid(report, "ms per frame", "work_per_frame_s", ".1f", 1e3)
    lines += ["", *_grid(report, "ms/frame whole", "wall_per_frame_s", ".1f", 1e3)]
    lines += ["", *_grid(report, "peak RSS GiB", "peak_rss_bytes", ".3f", 1 / GIB)]
    lines += ["", *_grid(report, "Mpix-frames/s", "mpix_frames_per_s", ".1f")]
    lines += [
        "",
        "ms/frame steady = the stack's time / N in a process that stacked a tiny frame set",
        "first (untimed): without the one-time costs of a process (imports, numba's start-up,",
        "astropy.io.fits's first use); what each further stack in a pipeline's process costs.",
        "ms per frame = (child wall - its import phase) / N: reading, stacking, writing, without",
        "the interpreter start and imports; ms/frame whole = the whole process's wall / N.",
        "Mpix-frames/s = N x megapixels / whole wall. skipped = would not fit in memory.",
    ]
    if report.get("median_only"):
        lines.append("[median only]: a plain median, no clipping.")
    lines += ["", "parameters:"]
    lines += [f"  {name}: {params}" for name, params in report["params"].items()]
    if report["checks"]:
        lines += ["", "targets (issue 6: N = 10 .. 500 at 2048x2048):"]
        lines += format_checks(report["checks"])
    return "\n".join(lines)
