"""Summaries of repeated runs: medians, minima and maxima of wall, CPU and peak RSS.

Runs alternate the methods (A B C A B C ...); a method's summary is the
median over its successful runs (``statistics.median``: the mean of the two
middle values for an even count), with the minimum and maximum. Its phases,
output file and any extra fields come from the *median run*, the run whose
wall time is closest to the median (the faster one on a tie). Imports only
the standard library.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["STATS", "median_run", "steady_seconds", "summarize_runs", "work_seconds"]

#: Run fields summarized as ``KEY`` (median), ``KEY_min`` and ``KEY_max``.
STATS = (
    "wall_s",
    "cpu_s",
    "peak_rss_bytes",
    "child_wall_s",
    "work_s",
    "steady_s",
    "other_cpu_s",
)
#: Fields copied from the median run.
_COPIED = ("phases_s", "out", "normalization")


def work_seconds(run: dict[str, Any]) -> float | None:
    """The child's time after its imports: ``child_wall_s`` minus the ``import`` phase.

    Interpreter start and imports are a fixed cost per process; what is left
    is reading, stacking and writing. None when the child did not report.
    """
    phases = run.get("phases_s") or {}
    if run.get("child_wall_s") is None or "import" not in phases or "warm-up" in phases:
        return None
    return run["child_wall_s"] - phases["import"]


def steady_seconds(run: dict[str, Any]) -> float | None:
    """The work phase of a child that ran a warm-up first (phase ``warm-up``):
    everything after it, i.e. ``child_wall_s`` minus the warm-up and import phases.

    The warm-up (the same method on a tiny frame set, in the same process)
    takes the one-time costs of a process: imports, numba's start-up, the
    first use of astropy.io.fits. What is left is what each further stack in
    a long-running process (a pipeline) costs. None without a warm-up.
    """
    phases = run.get("phases_s") or {}
    if run.get("child_wall_s") is None or "warm-up" not in phases:
        return None
    return run["child_wall_s"] - phases["warm-up"] - phases.get("import", 0.0)


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run whose wall time is closest to the median wall time (faster on a tie)."""
    med = statistics.median(r["wall_s"] for r in runs)
    return min(runs, key=lambda r: (abs(r["wall_s"] - med), r["wall_s"]))


def summarize_runs(runs: Sequence[dict[str, Any]], mpix_frames: float) -> dict[str, Any]:
    """Median, min and max of each :data:`STATS` field over the successful runs.

    Parameters
    ----------
    runs : sequence of dict
        One method's run records (``ok``, ``wall_s``, ``cpu_s``, ...; a
        skipped run has ``skipped``).
    mpix_frames : float
        The workload's megapixel-frames; ``mpix_frames_per_s`` = it / median wall.

    Returns
    -------
    dict
        ``ok`` (at least one run succeeded), ``n_runs``, ``n_ok``; per field
        ``KEY``, ``KEY_min``, ``KEY_max``; ``mpix_frames_per_s`` (and its
        ``_min``/``_max`` from the slowest and fastest run); the median run's
        ``phases_s``, ``out`` and extra fields; ``errors`` of failed runs. All
        runs failed: ``ok`` False with ``error`` (and ``skipped`` when skipped).
    """
    for run in runs:
        if run.get("ok") and "work_s" not in run:
            run["work_s"] = work_seconds(run)
        if run.get("ok") and "steady_s" not in run:
            run["steady_s"] = steady_seconds(run)
    good = [r for r in runs if r.get("ok")]
    errors = [r.get("skipped") or r.get("error", "failed") for r in runs if not r.get("ok")]
    if not good:
        out = {"ok": False, "error": errors[-1] if errors else "not run", "n_runs": len(runs)}
        if runs and all(r.get("skipped") for r in runs):
            out["skipped"] = errors[-1]
        return out
    summary: dict[str, Any] = {"ok": True, "n_runs": len(runs), "n_ok": len(good)}
    for key in STATS:
        values = [r[key] for r in good if r.get(key) is not None]
        if not values:
            continue
        med = statistics.median(values)
        summary[key] = int(round(med)) if key == "peak_rss_bytes" else med
        summary[f"{key}_min"], summary[f"{key}_max"] = min(values), max(values)
    rep = median_run(good)
    for key in _COPIED:
        if key in rep:
            summary[key] = rep[key]
    summary["mpix_frames_per_s"] = mpix_frames / summary["wall_s"]
    summary["mpix_frames_per_s_min"] = mpix_frames / summary["wall_s_max"]
    summary["mpix_frames_per_s_max"] = mpix_frames / summary["wall_s_min"]
    if errors:
        summary["errors"] = errors
    return summary
