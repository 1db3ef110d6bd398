"""Printing a benchmark report (a plain dict made by :func:`benchmarks.runner.run_benchmark`).

:func:`format_report` prints any mode: the standard report here, the scaling
and formats reports through :mod:`benchmarks.scaling` and :mod:`benchmarks.formats`.
"""

from __future__ import annotations

from typing import Any

from .workload import Workload

__all__ = ["format_checks", "format_report", "truth_cells", "wall_range"]

TARGET_WORKLOAD = "50 frames of 4096x4096 float32 FITS, memory_limit=512MiB"


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def truth_cells(r: dict[str, Any]) -> str:
    """The ``residuals``, ``CR left`` and ``noise/ideal`` cells of a summary row."""
    acc = r.get("truth")
    if not acc or "error" in acc:
        return f"{'-':>10} {'-':>8} {'-':>11}"
    cr = acc.get("n_cr_left")
    return f"{acc['n_residual']:>10d} {_fmt(cr, 'd'):>8} {acc['noise_ratio']:>11.3f}"


def wall_range(r: dict[str, Any]) -> str:
    """``min..max`` of a summary's wall times, or ``-``."""
    if r.get("wall_s_min") is None:
        return "-"
    return f"{r['wall_s_min']:.2f}..{r['wall_s_max']:.2f}"


def _astropy_cells(r: dict[str, Any]) -> str:
    acc = r.get("vs_astropy")
    if not acc or "error" in acc:
        return f"{'-':>13} {'-':>10}"
    return f"{acc['max_abs']:>13.3g} {acc['frac_differ']:>10.2e}"


def _table(
    title: str,
    rows: dict[str, dict[str, Any]],
    ratios: list[tuple[str, Any]],
    median_only: tuple[str, ...] | list[str] = (),
    ranges: bool = False,
) -> list[str]:
    """Rows of wall, CPU, RSS, throughput, then ``ratios`` (header, f(row) -> str), the
    deviation from astropy (when measured), truth, and with ``ranges`` the wall range."""
    width = max([12, *(len(name) + 1 for name in rows)])
    vs_astropy = any("vs_astropy" in r for r in rows.values())
    head = f"{title:<{width}} {'wall s':>9} {'CPU s':>9} {'peak RSS GiB':>13} {'Mpix-frames/s':>14}"
    head += "".join(f" {h:>{max(len(h) + 1, 10)}}" for h, _ in ratios)
    head += f" {'max|d| astr.':>13} {'differ':>10}" if vs_astropy else ""
    head += f" {'residuals':>10} {'CR left':>8} {'noise/ideal':>11}"
    lines = [head + (f" {'wall min..max':>14}" if ranges else "") + f" {'others CPU s':>12}"]
    for name, r in rows.items():
        if not r["ok"]:
            state = r.get("skipped") or f"FAILED: {r.get('error')}"
            lines.append(f"{name:<{width}} {state}")
            continue
        line = (
            f"{name:<{width}} {r['wall_s']:>9.2f} {r['cpu_s']:>9.2f} "
            f"{r['peak_rss_bytes'] / 1024**3:>13.3f} {r['mpix_frames_per_s']:>14.1f}"
        )
        line += "".join(f" {func(r):>{max(len(h) + 1, 10)}}" for h, func in ratios)
        line += " " + _astropy_cells(r) if vs_astropy else ""
        line += " " + truth_cells(r)
        line += f" {wall_range(r):>14}" if ranges else ""
        line += f" {_fmt(r.get('other_cpu_s'), '.1f'):>12}"
        lines.append(line + ("  [median only]" if name in median_only else ""))
    return lines


def _ratio(rows: dict[str, dict[str, Any]], ref: str | None, key: str, inverse: bool = False):
    base = rows.get(ref or "", {})

    def cell(r: dict[str, Any]) -> str:
        if not base.get("ok"):
            return "-"
        value = base[key] / r[key] if inverse else r[key] / base[key]
        return _fmt(value, ".2f") + "x"

    return cell


def _normalization_tables(rows: dict[str, dict[str, Any]], wl: Workload) -> list[str]:
    """Measure pass next to stack pass, then what each mode found against the known scales."""
    width = max([12, *(len(name) + 1 for name in rows)])
    lines = [
        "normalization: pass 1 (measure) next to the stack pass, each mode a fresh process:",
        f"{'mode':<{width}} {'measure s':>9} {'stack s':>8} {'measure/stack':>13} "
        f"{'replan s':>8} {'scale range found':>17} {'(expected)':>17} {'n_stars':>7} "
        f"{'peak RSS GiB':>12} {'wall s':>7} {'others CPU s':>12}",
    ]
    for name, r in rows.items():
        if not r["ok"]:
            lines.append(f"{name:<{width}} FAILED: {r.get('error')}")
            continue
        q = r.get("quality", {})
        found = f"{q['scale_min']:.4f}..{q['scale_max']:.4f}" if q else "-"
        expected = f"{q['expected_min']:.4f}..{q['expected_max']:.4f}" if q else "-"
        lines.append(
            f"{name:<{width}} {r['measure_s']:>9.2f} {r['stack_s']:>8.2f} "
            f"{_fmt(r['ratio'], '.2f') + 'x':>13} {r['replan_s']:>8.3f} {found:>17} "
            f"{expected:>17} {_fmt(q.get('n_stars_median'), '.0f'):>7} "
            f"{r['peak_rss_bytes'] / 1024**3:>12.3f} {r['wall_s']:>7.1f} "
            f"{_fmt(r.get('other_cpu_s'), '.1f'):>12}"
        )
    lines += ["", "phases (s):"]
    for name, r in rows.items():
        if r["ok"]:
            phases = ", ".join(f"{k} {v:.3f}" for k, v in r["phases_s"].items())
            rss = (r.get("normalization") or {}).get("measure_peak_rss_bytes")
            rss_gib = _fmt(rss and rss / 1024**3, ".3f")
            lines.append(f"  {name}: {phases}; peak RSS after pass 1 {rss_gib} GiB")
    lines += [
        "",
        f"{'mode':<{width}} {'scale err med':>13} {'scale err max':>13} {'sky err med':>11} "
        f"{'sky err max':>11} {'grad range med':>14} {'grad range max':>14} {'min stars':>9}"
        f" {'residuals':>10} {'CR left':>8} {'noise/ideal':>11}",
    ]
    for name, r in rows.items():
        q = r.get("quality")
        if not r["ok"] or not q:
            continue
        lines.append(
            f"{name:<{width}} {q['scale_err_median']:>13.2e} {q['scale_err_max']:>13.2e} "
            f"{q['sky_err_median_adu']:>11.2f} {q['sky_err_max_adu']:>11.2f} "
            f"{q['grad_ptp_median_adu']:>14.2f} {q['grad_ptp_max_adu']:>14.2f} "
            f"{_fmt(q.get('n_stars_min'), 'd'):>9} " + truth_cells(r)
        )
    lines += [
        "",
        "measure s = pass 1, one cold plan_normalization(frames, mode): measure_frames +",
        "measure_photometry (photometric) + fits. stack s = se.stack(normalize=mode, sigma 3/3)",
        "+ se.write after pass 1, minus replan s: plan_normalization again with the measurements",
        "cached (it reads nothing but redoes the fits), which se.stack does before stacking.",
        "Frame i is s_i (sky + stars) + noise, so the right scale is s_r / s_i (expected);",
        "scale err = |k_i s_i / s_r - 1| over the non-reference frames; sky err = per frame the",
        f"largest |k_i s_i sky + b_i - G_i - s_r sky| (ADU, sky = {wl.sky:g}) over the gradient",
        "model's nodes: the normalized sky against the reference's; grad range = max - min of",
        "G_i (the frames have no gradient: truth 0; a flat G_i absorbs a scale error on the sky).",
        "n_stars = median (min stars = least) of the stars matched to the reference.",
        "residuals, CR left, noise/ideal: as below, against the truth x s_r / mean(s).",
        "others CPU s = CPU time the rest of the machine used during the child (/proc/stat);",
        "well above 0, other processes competed for the CPUs and the times are too long.",
    ]
    return lines


def format_checks(checks: list[dict[str, Any]]) -> list[str]:
    """One ``name: value unit (relation target) PASS|FAIL (note)`` line per check."""
    lines = []
    for c in checks:
        verdict = "PASS" if c["ok"] else "FAIL"
        relation = c.get("relation", "<=" if c["unit"] == "GiB" else ">=")
        note = f" ({c['note']})" if c.get("note") else ""
        issue = f"[issue {c['issue']}] " if c.get("issue") else ""
        lines.append(
            f"  {issue}{c['name']}: {c['value']:.2f} {c['unit']} ({relation} {c['target']:.4g}) "
            f"{verdict}{note}"
        )
    return lines


def format_report(report: dict[str, Any]) -> str:
    """The human-readable tables of a benchmark report (any mode; see the module)."""
    if report.get("benchmark") == "scaling":
        from .scaling import format_scaling

        return format_scaling(report)
    if report.get("benchmark") == "formats":
        from .formats import format_formats

        return format_formats(report)
    if report.get("benchmark") == "calibration":
        from .calibration import format_calibration

        return format_calibration(report)
    if report.get("benchmark") == "registration":
        from .registration import format_registration

        return format_registration(report)
    wl = Workload(**report["workload"])
    ranges = report.get("repeat", 1) > 1
    subject = report["subject"]
    results = report["results"]
    algorithms = report.get("algorithms", {})
    reference = report.get("algorithm_reference", "sigma")
    lines = [
        f"{report['benchmark']} benchmark: {wl.describe()}, memory_limit={report['memory_limit']}"
        f", {report['cpu_count']} CPUs; frames in {report['data_dir']}",
    ]
    if report.get("preset") or report.get("page_cache") or ranges:
        lines.append(
            f"preset: {report.get('preset') or '-'}; page cache: {report.get('page_cache', '-')}"
            f"; {report.get('repeat', 1)} run(s) per method, alternating; medians shown"
        )

    if results:
        lines += [""] + _table(
            "method",
            results,
            [
                (f"{subject} speed-up", _ratio(results, subject, "wall_s")),
                ("RSS ratio", _ratio(results, subject, "peak_rss_bytes")),
            ],
            report.get("median_only", ()),
            ranges,
        )
    if algorithms:
        lines += ["", "stackengine rejection algorithms (combine='mean'), each a fresh process:"]
        lines += _table(
            "algorithm",
            algorithms,
            [(f"throughput / {reference}", _ratio(algorithms, reference, "wall_s", inverse=True))],
            ranges=ranges,
        )
    norms = report.get("normalizations", {})
    if norms:
        lines += [""] + _normalization_tables(norms, wl)
    lines.append("")
    if results:
        lines.append(f"speed-up = wall(method) / wall({subject});")
    if algorithms:
        lines.append(f"throughput / {reference} = wall({reference}) / wall(algorithm);")
    lines += [
        "wall = whole child process (interpreter start, imports, reading, stacking, writing",
        "the FITS image). Mpix-frames/s = frames x megapixels / wall. With repeats: the",
        "median over the runs (wall min..max: the fastest and slowest run). others CPU s =",
        "CPU time the rest of the machine used during the run (/proc/stat); well above 0,",
        "other processes competed for the CPUs and the times are too long.",
    ]
    ref = report.get("astropy_reference")
    if ref:
        where = "the whole image"
        if ref["source"] != "astropy":
            where = "rows {}:{}".format(*ref["rows"])
        lines += [
            f"max|d| astr. = max |image - astropy| (ADU) over {where} ({ref['source']}); differ =",
            f"fraction of those pixels with |image - astropy| > {ref['rtol']:g} |astropy|.",
        ]
    truth = report.get("truth")
    if truth:
        lines += [
            f"residuals = pixels where |image - truth| > {truth['residual_sigmas']:g} x "
            f"{wl.noise:g}/sqrt({wl.n_frames}) = {truth['threshold_adu']:.3g} ADU, or not finite",
            "(cosmic rays let through, biased values, noise tails); truth = the noiseless sky +",
            "stars x the mean frame scale. CR left = the residuals among the "
            f"{_fmt(truth.get('n_cr_pixels'), 'd')} pixels",
            "a cosmic ray hit in at least one frame. noise/ideal = mad_std(image - truth) over",
            f"the background / (noise/sqrt(N) = {truth['ideal_noise_adu']:.3g} ADU): 1 for a plain"
            " mean of clean frames, about 1.25 for a median.",
        ]
    if report.get("median_only"):
        lines.append("[median only]: a plain median, no clipping (not the same computation).")
    if results:
        lines += ["", "parameters:"]
    lines += [f"  {name}: {params}" for name, params in report["params"].items()]
    if algorithms:
        lines += ["", "rejection algorithm parameters:"]
    lines += [f"  {name}: {params}" for name, params in report.get("algorithm_params", {}).items()]
    if norms:
        lines += ["", "normalization parameters:"]
    lines += [f"  {m}: {params}" for m, params in report.get("normalization_params", {}).items()]
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
        lines += ["", f"targets (set for {TARGET_WORKLOAD}):"]
        standard = report.get("preset") == "standard" and report["memory_limit"] == "512MiB"
        if not standard or wl.dtype != "float32" or wl.format != "fits":
            lines.append("  (this run is not that workload: indicative only)")
    lines += format_checks(report["checks"])
    return "\n".join(lines)
