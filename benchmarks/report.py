"""Printing a benchmark report (a plain dict made by :func:`benchmarks.runner.run_benchmark`)."""

from __future__ import annotations

from typing import Any

from .workload import Workload

__all__ = ["format_report"]


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _truth_cells(r: dict[str, Any]) -> str:
    acc = r.get("truth")
    if not acc or "error" in acc:
        return f"{'-':>10} {'-':>8} {'-':>11}"
    cr = acc.get("n_cr_left")
    return f"{acc['n_residual']:>10d} {_fmt(cr, 'd'):>8} {acc['noise_ratio']:>11.3f}"


def _table(title: str, rows: dict[str, dict[str, Any]], ratios: list[tuple[str, Any]]) -> list[str]:
    """Rows of wall, CPU, RSS, throughput, then ``ratios`` (header, f(row) -> str), truth."""
    width = max([12, *(len(name) + 1 for name in rows)])
    head = f"{title:<{width}} {'wall s':>9} {'CPU s':>9} {'peak RSS GiB':>13} {'Mpix-frames/s':>14}"
    head += "".join(f" {h:>{max(len(h) + 1, 10)}}" for h, _ in ratios)
    lines = [head + f" {'residuals':>10} {'CR left':>8} {'noise/ideal':>11}"]
    for name, r in rows.items():
        if not r["ok"]:
            lines.append(f"{name:<{width}} FAILED: {r.get('error')}")
            continue
        line = (
            f"{name:<{width}} {r['wall_s']:>9.2f} {r['cpu_s']:>9.2f} "
            f"{r['peak_rss_bytes'] / 1024**3:>13.3f} {r['mpix_frames_per_s']:>14.1f}"
        )
        line += "".join(f" {func(r):>{max(len(h) + 1, 10)}}" for h, func in ratios)
        lines.append(line + " " + _truth_cells(r))
    return lines


def _ratio(rows: dict[str, dict[str, Any]], ref: str | None, key: str, inverse: bool = False):
    base = rows.get(ref or "", {})

    def cell(r: dict[str, Any]) -> str:
        if not base.get("ok"):
            return "-"
        value = base[key] / r[key] if inverse else r[key] / base[key]
        return _fmt(value, ".2f") + "x"

    return cell


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables of a benchmark report (as made by ``run_benchmark``)."""
    wl = Workload(**report["workload"])
    subject = report["subject"]
    results = report["results"]
    algorithms = report.get("algorithms", {})
    reference = report.get("algorithm_reference", "sigma")
    lines = [
        f"{report['benchmark']} benchmark: {wl.describe()}, memory_limit={report['memory_limit']}"
        f", {report['cpu_count']} CPUs; frames in {report['data_dir']}",
    ]
    if results:
        lines += [""] + _table(
            "method",
            results,
            [
                (f"{subject} speed-up", _ratio(results, subject, "wall_s")),
                ("RSS ratio", _ratio(results, subject, "peak_rss_bytes")),
            ],
        )
    if algorithms:
        lines += ["", "stackengine rejection algorithms (combine='mean'), each a fresh process:"]
        lines += _table(
            "algorithm",
            algorithms,
            [(f"throughput / {reference}", _ratio(algorithms, reference, "wall_s", inverse=True))],
        )
    lines.append("")
    if results:
        lines.append(f"speed-up = wall(method) / wall({subject});")
    if algorithms:
        lines.append(f"throughput / {reference} = wall({reference}) / wall(algorithm);")
    lines += [
        "wall = whole child process (interpreter start, imports, reading, stacking, writing",
        "the FITS image). Mpix-frames/s = frames x megapixels / wall.",
    ]
    truth = report.get("truth")
    if truth:
        lines += [
            f"residuals = pixels where |image - truth| > {truth['residual_sigmas']:g} x "
            f"{wl.noise:g}/sqrt({wl.n_frames}) = {truth['threshold_adu']:.3g} ADU, or not finite",
            "(cosmic rays let through, biased values, noise tails); truth = the noiseless sky +",
            "stars x the mean frame scale. CR left = the residuals among the "
            f"{_fmt(truth.get('n_cr_pixels'), 'd')} pixels",
            "a cosmic ray hit in at least one frame. noise/ideal = mad_std(image - truth) /",
            "(noise/sqrt(N)): 1 for a plain mean of clean frames, about 1.25 for a median.",
        ]
    if results:
        lines += ["", "parameters:"]
    lines += [f"  {name}: {params}" for name, params in report["params"].items()]
    if algorithms:
        lines += ["", "rejection algorithm parameters:"]
    lines += [f"  {name}: {params}" for name, params in report.get("algorithm_params", {}).items()]
    if report["accuracy"]:
        lines += ["", f"accuracy of {subject} (per-frame sky noise = {wl.noise:g} ADU):"]
    for ref, acc in report["accuracy"].items():
        if "error" in acc:
            lines.append(f"  vs {ref}: {acc['error']}")
            continue
        lines.append(
            f"  vs {ref}: max |diff| = {acc['max_abs']:.3g} ADU = {acc['max_abs_over_noise']:.3g}"
            f" sigma; pixels differing > 1e-4 relative: {acc['n_differ']} of {acc['n_pixels']}"
            f" ({acc['frac_differ']:.2e}); NaN in one only: {acc['n_nan_mismatch']}"
        )
    if report["checks"]:
        lines += ["", "targets (set for 50 frames of 4096x4096, memory_limit=512MiB):"]
    for c in report["checks"]:
        verdict = "PASS" if c["ok"] else "FAIL"
        relation = c.get("relation", "<=" if c["unit"] == "GiB" else ">=")
        note = f" ({c['note']})" if c.get("note") else ""
        lines.append(
            f"  {c['name']}: {c['value']:.2f} {c['unit']} ({relation} {c['target']:g}) {verdict}"
            + note
        )
    return "\n".join(lines)
