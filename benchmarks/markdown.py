"""Markdown tables of a benchmark report (any mode), for issues, pull requests and notes.

Imports only the standard library.
"""

from __future__ import annotations

from typing import Any

from .workload import Workload

__all__ = ["to_markdown"]

GIB = 1024**3


def _f(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(cols: list[str], right_from: int = 1) -> list[str]:
    align = ["---" if i < right_from else "---:" for i in range(len(cols))]
    return [_row(cols), _row(align)]


def _checks(checks: list[dict[str, Any]]) -> list[str]:
    if not checks:
        return []
    lines = ["", "**Targets**", ""]
    for c in checks:
        issue = f"[issue {c['issue']}] " if c.get("issue") else ""
        note = f" — {c['note']}" if c.get("note") else ""
        lines.append(
            f"- **{'PASS' if c['ok'] else 'FAIL'}** {issue}{c['name']}: {c['value']:.2f} "
            f"{c['unit']} ({c['relation']} {c['target']:.4g}){note}"
        )
    return lines


def _params(params: dict[str, str]) -> list[str]:
    return ["", "**Parameters**", "", *(f"- `{m}`: {p}" for m, p in params.items())]


def _wall(r: dict[str, Any]) -> str:
    if r.get("wall_s_min") is None or r["wall_s_min"] == r["wall_s_max"]:
        return f"{r['wall_s']:.2f}"
    return f"{r['wall_s']:.2f} ({r['wall_s_min']:.2f}–{r['wall_s_max']:.2f})"


def _truth(r: dict[str, Any]) -> list[str]:
    t = r.get("truth") or {}
    if not t or "error" in t:
        return ["–", "–", "–"]
    return [str(t["n_residual"]), _f(t.get("n_cr_left"), "d"), f"{t['noise_ratio']:.3f}"]


def _method_table(rows: dict[str, dict[str, Any]], report: dict[str, Any], title: str) -> list:
    subject = report.get("subject")
    base = rows.get(subject or "", {})
    cols = [title, "kind", "wall s (min–max)", "CPU s", "peak RSS GiB", "Mpix-frames/s"]
    cols += [f"{subject} speed-up", "max abs dev. vs astropy", "differing px"]
    cols += ["residuals", "CR left", "noise / ideal"]
    lines = _head(cols, 2)
    median_only = report.get("median_only", ())
    for name, r in rows.items():
        kind = "median only" if name in median_only else "clip + mean"
        if not r["ok"]:
            state = r.get("skipped") or f"FAILED: {r.get('error')}"
            lines.append(_row([f"`{name}`", kind, state, *[""] * (len(cols) - 3)]))
            continue
        speed = f"{r['wall_s'] / base['wall_s']:.2f}x" if base.get("ok") else "–"
        acc = r.get("vs_astropy") or {}
        dev = [_f(acc.get("max_abs"), ".3g"), _f(acc.get("frac_differ"), ".2e")]
        lines.append(
            _row(
                [
                    f"`{name}`",
                    kind,
                    _wall(r),
                    f"{r['cpu_s']:.2f}",
                    f"{r['peak_rss_bytes'] / GIB:.3f}",
                    f"{r['mpix_frames_per_s']:.1f}",
                    speed,
                    *dev,
                    *_truth(r),
                ]
            )
        )
    return lines


def _sigma(report: dict[str, Any]) -> list[str]:
    wl = Workload(**report["workload"])
    lines = [
        f"### Sigma benchmark: {wl.describe()}, memory_limit={report['memory_limit']}",
        "",
        f"Preset: {report.get('preset') or '–'}; {report['cpu_count']} CPUs; page cache: "
        f"{report.get('page_cache', '–')}; {report.get('repeat', 1)} run(s) per method, "
        "alternating; medians (min–max). Each method is a fresh process on the same files.",
        "",
    ]
    if report["results"]:
        lines += _method_table(report["results"], report, "method")
    if report.get("algorithms"):
        lines += ["", *_method_table(report["algorithms"], report, "algorithm")]
    norms = report.get("normalizations") or {}
    if norms:
        lines += ["", *_head(["normalization", "measure s", "stack s", "measure / stack"])]
        for mode, r in norms.items():
            if r["ok"]:
                cells = [f"{r['measure_s']:.2f}", f"{r['stack_s']:.2f}", f"{r['ratio']:.2f}x"]
                lines.append(_row([f"`{mode}`", *cells]))
    ref = report.get("astropy_reference") or {}
    truth = report.get("truth") or {}
    lines += [
        "",
        f"speed-up = wall(method) / wall({report.get('subject')}); wall = the whole process "
        "(interpreter start, imports, reading, stacking, writing); Mpix-frames/s = N x "
        "Mpixel / wall.",
    ]
    if ref:
        where = "whole image" if ref["source"] == "astropy" else "rows {}:{}".format(*ref["rows"])
        lines.append(
            f"Deviation from astropy: over the {where} ({ref['source']}); differing px = fraction"
            f" with |image − astropy| > {ref['rtol']:g} |astropy|."
        )
    if truth:
        lines.append(
            f"residuals = pixels farther than {truth['residual_sigmas']:g} × σ/√N = "
            f"{truth['threshold_adu']:.3g} ADU from the noiseless truth; CR left = those among "
            f"the {truth.get('n_cr_pixels')} cosmic-ray pixels; noise / ideal = mad_std(image − "
            f"truth) over the background / (σ/√N = {truth['ideal_noise_adu']:.3g} ADU)."
        )
    params = dict(report.get("params", {}))
    params.update({f"alg:{a}": p for a, p in report.get("algorithm_params", {}).items()})
    return lines + _params(params) + _checks(report["checks"])


def _scaling(report: dict[str, Any]) -> list[str]:
    wl = Workload(**report["workload"])
    frames = report["frames"]
    lines = [
        f"### Scaling: N = {', '.join(map(str, frames))} frames of {wl.height}x{wl.width} "
        f"{wl.dtype} ({wl.format.upper()}), memory_limit={report['memory_limit']}",
        "",
        f"{report['cpu_count']} CPUs; page cache: {report['page_cache']}; {report['repeat']} "
        "run(s) per point, alternating; medians.",
    ]
    grids = [
        ("ms per frame (steady)", "steady_per_frame_s", 1e3, ".1f"),
        ("ms per frame (after imports)", "work_per_frame_s", 1e3, ".1f"),
        ("ms per frame (whole process)", "wall_per_frame_s", 1e3, ".1f"),
        ("peak RSS GiB", "peak_rss_bytes", 1 / GIB, ".3f"),
        ("Mpix-frames/s", "mpix_frames_per_s", 1.0, ".1f"),
    ]
    for title, key, scale, spec in grids:
        methods = report["methods"]
        if key == "steady_per_frame_s":  # measured for the subject only
            methods = [m for m in methods if m == report.get("subject")]
            if not any(p.get(key) for m in methods for p in report["points"][m]):
                continue
        lines += ["", *_head([title, *(f"N={n}" for n in frames)])]
        for m in methods:
            cells = []
            for p in report["points"][m]:
                if p.get("skipped"):
                    cells.append("skipped")
                elif not p["ok"]:
                    cells.append("FAILED")
                else:
                    value = p.get(key)
                    cells.append(_f(None if value is None else value * scale, spec))
            tag = " (median only)" if m in report.get("median_only", ()) else ""
            lines.append(_row([f"`{m}`{tag}", *cells]))
    return lines + _params(report["params"]) + _checks(report["checks"])


def _formats(report: dict[str, Any]) -> list[str]:
    wl = Workload(**report["workload"])
    first = report["variants"][0]
    lines = [
        f"### Formats: {wl.n_frames} frames of {wl.height}x{wl.width}, memory_limit="
        f"{report['memory_limit']}",
        "",
        f"{report['cpu_count']} CPUs; page cache: {report['page_cache']}; {report['repeat']} "
        "run(s) each, alternating; medians (min–max).",
        "",
        *_head(["variant", "method", "wall s (min–max)", "CPU s", "peak RSS GiB"] + [
            "Mpix-frames/s", f"vs {first}", "residuals", "CR left", "noise / ideal"
        ], 2),
    ]  # fmt: skip
    for v in report["variants"]:
        for m, r in report["results"][v].items():
            if not r["ok"]:
                lines.append(_row([v, f"`{m}`", r.get("skipped") or "FAILED", *[""] * 7]))
                continue
            base = report["results"][first][m]
            ratio = "–"
            if base["ok"]:
                ratio = f"{r['mpix_frames_per_s'] / base['mpix_frames_per_s']:.2f}x"
            cells = [_wall(r), f"{r['cpu_s']:.2f}", f"{r['peak_rss_bytes'] / GIB:.3f}"]
            cells += [f"{r['mpix_frames_per_s']:.1f}", ratio, *_truth(r)]
            lines.append(_row([v, f"`{m}`", *cells]))
    return lines + _params(report["params"]) + _checks(report["checks"])


def to_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: its tables, the notes that define the columns, the targets."""
    from .calibration import calibration_markdown
    from .registration import registration_markdown

    make = {
        "scaling": _scaling,
        "formats": _formats,
        "calibration": calibration_markdown,
        "registration": registration_markdown,
    }.get(report.get("benchmark"), _sigma)
    lines = make(report)
    return "\n".join(lines) + "\n"
