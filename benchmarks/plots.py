"""PNG plots of a benchmark report (matplotlib, Agg backend: no display needed).

Standard mode: ``standard.png``, bars of throughput and peak RSS per method
(median, the whiskers the fastest and slowest run). Scaling mode:
``scaling_throughput.png`` and ``scaling_memory.png``, Mpix-frames/s and peak
RSS against N per method (log N), and ``scaling_time_per_frame.png``.
Formats mode: ``formats.png``, throughput per variant and method. Calibration
mode: ``calibration.png`` (:func:`benchmarks.calibration.calibration_plot`), wall
time and peak RSS of the plain and calibrated stacks.
matplotlib is imported inside the functions (it is in the ``bench`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_plots"]

GIB = 1024**3


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(report: dict[str, Any]) -> str:
    wl = report["workload"]
    return f"{wl['height']}x{wl['width']} {wl['dtype']} {wl['format'].upper()}, " + (
        f"memory_limit={report['memory_limit']}, {report['cpu_count']} CPUs"
    )


def _bars(ax: Any, names: list[str], rows: list[dict[str, Any]], key: str, scale: float) -> None:
    values = [r[key] * scale for r in rows]
    lo = [r.get(f"{key}_min", r[key]) * scale for r in rows]
    hi = [r.get(f"{key}_max", r[key]) * scale for r in rows]
    err = [[v - a for v, a in zip(values, lo, strict=True)]]
    err.append([b - v for v, b in zip(values, hi, strict=True)])
    ax.barh(names, values, xerr=err, color="tab:blue", capsize=3)
    ax.invert_yaxis()
    for y, (v, b) in enumerate(zip(values, hi, strict=True)):
        ax.annotate(f" {v:.3g}", (max(v, b), y), va="center", fontsize=8)


def _standard(report: dict[str, Any], folder: Path) -> list[Path]:
    plt = _pyplot()
    rows = {**report["results"], **{f"alg:{a}": r for a, r in report["algorithms"].items()}}
    good = {n: r for n, r in rows.items() if r["ok"]}
    if not good:
        return []
    median_only = set(report.get("median_only", ()))
    names = [f"{n} (median only)" if n in median_only else n for n in good]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 1.2 + 0.45 * len(good)), layout="constrained")
    _bars(a1, names, list(good.values()), "mpix_frames_per_s", 1.0)
    a1.set_xlabel("Mpixel-frames / s (whole process; higher is better)")
    _bars(a2, names, list(good.values()), "peak_rss_bytes", 1 / GIB)
    a2.set_xlabel("peak RSS, GiB (lower is better)")
    a2.set_yticklabels([])
    n = report["workload"]["n_frames"]
    fig.suptitle(f"{n} frames of {_title(report)}; median of {report.get('repeat', 1)} run(s)")
    path = folder / "standard.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def _scaling(report: dict[str, Any], folder: Path) -> list[Path]:
    plt = _pyplot()
    panels = [
        ("scaling_throughput.png", "mpix_frames_per_s", 1.0, "Mpixel-frames / s (whole process)"),
        ("scaling_memory.png", "peak_rss_bytes", 1 / GIB, "peak RSS, GiB"),
        ("scaling_time_per_frame.png", "work_per_frame_s", 1e3, "ms per frame"),
    ]
    paths = []
    for name, key, scale, label in panels:
        fig, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        for m in report["methods"]:
            pts = [p for p in report["points"][m] if p.get("ok") and p.get(key) is not None]
            if pts:
                tag = " (median only)" if m in report.get("median_only", ()) else ""
                xs = [p["n_frames"] for p in pts]
                ax.plot(xs, [p[key] * scale for p in pts], "o-", label=m + tag)
            steady = [p for p in report["points"][m] if p.get("steady_per_frame_s")]
            if key == "work_per_frame_s" and steady:  # the subject's steady time as well
                ys = [p["steady_per_frame_s"] * scale for p in steady]
                ax.plot([p["n_frames"] for p in steady], ys, "s--", label=f"{m} (steady)")
        ax.set_xscale("log")
        ax.set_xticks(report["frames"], [str(n) for n in report["frames"]])
        ax.minorticks_off()
        ax.set_xlabel("N (frames)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(_title(report), fontsize=9)
        fig.savefig(folder / name, dpi=100)
        plt.close(fig)
        paths.append(folder / name)
    return paths


def _formats(report: dict[str, Any], folder: Path) -> list[Path]:
    plt = _pyplot()
    names, rows = [], []
    for v in report["variants"]:
        for m, r in report["results"][v].items():
            if r["ok"]:
                names.append(f"{v} {m}")
                rows.append(r)
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows)), layout="constrained")
    _bars(ax, names, rows, "mpix_frames_per_s", 1.0)
    ax.set_xlabel("Mpixel-frames / s (whole process; higher is better)")
    wl = report["workload"]
    ax.set_title(f"{wl['n_frames']} frames of {wl['height']}x{wl['width']}", fontsize=9)
    path = folder / "formats.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """Write the PNG plots of ``report`` (any mode) into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    from .calibration import calibration_plot
    from .registration import registration_plot

    make = {
        "scaling": _scaling,
        "formats": _formats,
        "calibration": calibration_plot,
        "registration": registration_plot,
    }.get(report.get("benchmark"), _standard)
    return make(report, folder)
