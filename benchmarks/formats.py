"""Formats mode: the same workload as float32 FITS, uint16 TIFF, ... side by side.

``python -m benchmarks --compare-formats [fits:float32,tiff:uint16]``: one frame
set per ``FORMAT:DTYPE`` variant (the same seeded pixels; uint16 mapped as in
:mod:`benchmarks.workload`), each method (default stackengine) on each variant,
all runs alternating, ``repeat`` rounds, medians. Every image is compared with
its variant's truth. The check (:func:`benchmarks.checks.format_checks`):
stackengine on uint16 TIFF at least as fast as on float32 FITS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .checks import format_checks
from .evaluate import compare_truth
from .methods import parse_bytes
from .runner import Job, _stderr, drop_results, method_info, run_facts, run_jobs, warm_up
from .stats import summarize_runs
from .system import available_bytes, page_cache
from .workload import DTYPES, FORMATS, Workload, manifest_files, prepare_workload

__all__ = ["DEFAULT_VARIANTS", "format_formats", "parse_variants", "run_formats"]

DEFAULT_VARIANTS = "fits:float32,tiff:uint16"
GIB = 1024**3


def parse_variants(text: str) -> list[str]:
    """``"fits:float32,tiff:uint16"`` -> the variants, checked, duplicates dropped.

    Raises
    ------
    ValueError
        A variant that is not ``FORMAT:DTYPE`` of :data:`~benchmarks.workload.FORMATS`
        and :data:`~benchmarks.workload.DTYPES`, or fewer than two.
    """
    variants = list(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    for v in variants:
        fmt, _, dtype = v.partition(":")
        if fmt not in FORMATS or dtype not in DTYPES:
            raise ValueError(
                f"bad variant {v!r}: want FORMAT:DTYPE, FORMAT in {FORMATS}, DTYPE in {DTYPES}"
            )
    if len(variants) < 2:
        raise ValueError(f"need at least two variants to compare: {text!r}")
    return variants


def _workload(base: Workload, variant: str) -> Workload:
    fmt, _, dtype = variant.partition(":")
    return replace(base, format=fmt, dtype=dtype)


def run_formats(
    variants: Sequence[str],
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
    """Run every method on ``base`` stored as each variant; returns the report dict.

    ``results[variant][method]`` are the summaries (with ``truth``);
    ``benchmark`` = ``"formats"``; printed by :func:`format_formats`.
    """
    log = log or _stderr
    root = Path(root).resolve()
    ccd_limit = parse_bytes(ccdproc_mem_limit if ccdproc_mem_limit is not None else memory_limit)
    outdir = root / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    wls = {v: _workload(base, v) for v in variants}
    manifests = {v: prepare_workload(wl, root, log=log)[0] for v, wl in wls.items()}
    available = available_bytes()
    files = [f for m in manifests.values() for f in manifest_files(m)]
    cache = page_cache(files, available, warm_cache, cold_cache)
    log(f"page cache: {cache}")
    if warmup:  # each variant: its own reading code path
        for wl in wls.values():
            warm_up(methods, wl, root, outdir, memory_limit, ccd_limit, log)
    label = {v: v.replace(":", "_") for v in variants}
    jobs = [Job(m, manifests[v], wls[v], label[v]) for v in variants for m in methods]
    runs = run_jobs(jobs, outdir, memory_limit, repeat, ccd_limit, log, available, cold_cache)
    results: dict[str, dict[str, Any]] = {}
    for v in variants:
        results[v] = {
            m: summarize_runs(
                [r for r in runs if r["method"] == m and r["label"] == label[v]],
                wls[v].mpix_frames,
            )
            for m in methods
        }
        log(f"comparing the {v} images with the truth")
        compare_truth(results[v].values(), wls[v])
    drop_results(outdir, keep)
    subject = "stackengine" if "stackengine" in methods else methods[0]
    info = method_info(methods, memory_limit, ccd_limit)
    return {
        "benchmark": "formats",
        "workload": asdict(base),
        "variants": list(variants),
        "workloads": {v: asdict(wl) for v, wl in wls.items()},
        "data_dirs": {v: str(m.parent) for v, m in manifests.items()},
        **run_facts(cache, memory_limit, ccd_limit, repeat),
        "methods": list(methods),
        "params": {m: info[m]["params"] for m in methods},
        "median_only": [m for m in methods if info[m]["median_only"]],
        "subject": subject,
        "results": results,
        "checks": format_checks({v: results[v][subject] for v in variants}, subject),
        "runs": runs,
    }


def format_formats(report: dict[str, Any]) -> str:
    """The human-readable table of a formats report (see :func:`run_formats`)."""
    from .report import format_checks, truth_cells, wall_range

    wl = Workload(**report["workload"])
    first = report["variants"][0]
    lines = [
        f"formats benchmark: {wl.n_frames} frames of {wl.height}x{wl.width}, memory_limit="
        f"{report['memory_limit']}, {report['cpu_count']} CPUs",
        f"page cache: {report['page_cache']}; {report['repeat']} run(s) per variant and method,"
        " alternating; medians shown",
        "",
    ]
    width = max(14, *(len(v) + 1 for v in report["variants"]))
    head = f"{'variant':<{width}} {'method':<18} {'wall s':>8} {'CPU s':>8} {'peak RSS GiB':>13}"
    head += f" {'Mpix-frames/s':>14} {'vs ' + first:>16} {'GB read':>8}"
    lines.append(head + f" {'residuals':>10} {'CR left':>8} {'noise/ideal':>11} {'wall range':>12}")
    for v in report["variants"]:
        gb = Workload(**report["workloads"][v]).nbytes / 1e9
        for m, r in report["results"][v].items():
            if not r["ok"]:
                lines.append(f"{v:<{width}} {m:<18} {r.get('skipped') or 'FAILED: ' + r['error']}")
                continue
            base = report["results"][first][m]
            ratio = "-"
            if base["ok"]:
                ratio = f"{r['mpix_frames_per_s'] / base['mpix_frames_per_s']:.2f}x"
            lines.append(
                f"{v:<{width}} {m:<18} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} "
                f"{r['peak_rss_bytes'] / GIB:>13.3f} {r['mpix_frames_per_s']:>14.1f} {ratio:>16} "
                f"{gb:>8.3g} {truth_cells(r)} {wall_range(r):>12}"
            )
    lines += [
        "",
        f"vs {first} = throughput / throughput on {first} (same method). GB read = the frames'",
        f"pixel bytes. uint16 = round({wl.int_gain:g} x float frame + {wl.int_offset:g}); truth"
        " columns as in the standard report, against each variant's own truth.",
        "",
        "data: " + "; ".join(f"{v}: {d}" for v, d in report["data_dirs"].items()),
        "",
        "parameters:",
        *(f"  {m}: {p}" for m, p in report["params"].items()),
    ]
    if report["checks"]:
        lines += ["", "targets (issue 6):", *format_checks(report["checks"])]
    return "\n".join(lines)
