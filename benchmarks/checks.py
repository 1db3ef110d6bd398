"""Acceptance targets as PASS/FAIL checks (issues 2, 3 and 6 of stackengine).

A check is a plain dict: ``name``, ``value``, ``target``, ``unit``,
``relation`` (``>=`` or ``<=``), ``ok``, optional ``note`` and ``issue``.
The speed and memory targets are set for the standard workload (50 frames of
4096x4096 float32 FITS, ``memory_limit=512MiB``); they are checked on any
workload, and the reports say when the run was not that workload.
"""

from __future__ import annotations

import statistics
from typing import Any

__all__ = [
    "FORMAT_PAIR",
    "ISSUE2_SPEED",
    "ISSUE6_SPEED",
    "RSS_GROWTH",
    "TIME_PER_FRAME_BAND",
    "check",
    "format_checks",
    "scaling_checks",
    "sigma_checks",
]

GIB = 1024**3
#: Issue 2: stackengine at least this many times faster than each peer; peak RSS <= 1 GiB.
ISSUE2_SPEED = {"ccdproc": 6.0, "astropy": 2.5}
ISSUE2_RSS_GIB = 1.0
#: Issue 3: these algorithms run within this factor of sigma's throughput (wall / wall(sigma)).
SLOWDOWN_TARGETS = {"winsorized": 3.0, "linear_fit": 3.0}
SLOWDOWN_RSS_GIB = 1.0
REFERENCE = "sigma"
#: Issue 6: speed-up over each peer (ccdproc: its default mem_limit), throughput, peak RSS.
ISSUE6_SPEED = {"ccdproc": 25.0, "astropy": 8.0}
ISSUE6_THROUGHPUT = 200.0  # Mpixel-frames/s, whole process
ISSUE6_RSS_GIB = 0.75
#: Scaling: time per frame within +-15 % of its median over N.
TIME_PER_FRAME_BAND = 0.15
#: Scaling: peak RSS at the largest N <= this x RSS at the smallest N + RSS_SLACK_BYTES.
RSS_GROWTH = 1.10
RSS_SLACK_BYTES = 64 * 1024**2
#: Formats: the first variant must run at least as fast as the second.
FORMAT_PAIR = ("tiff:uint16", "fits:float32")


def check(
    name: str,
    value: float,
    target: float,
    unit: str,
    relation: str,
    note: str | None = None,
    issue: int | None = None,
) -> dict[str, Any]:
    """One check: ``value relation target`` (``>=`` or ``<=``)."""
    ok = value <= target if relation == "<=" else value >= target
    out = dict(name=name, value=value, target=target, unit=unit, relation=relation, ok=ok)
    if note:
        out["note"] = note
    if issue is not None:
        out["issue"] = issue
    return out


def _speedups(results: dict[str, Any], subject: str, targets: dict[str, float], issue: int):
    sub = results[subject]
    for peer, target in targets.items():
        if results.get(peer, {}).get("ok"):
            ratio = results[peer]["wall_s"] / sub["wall_s"]
            name = f"{subject} faster than {peer}"
            yield check(name, ratio, target, "x", ">=", issue=issue)


def sigma_checks(
    results: dict[str, dict[str, Any]], subject: str | None, algorithms: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """The targets of the methods table (issues 6 and 2) and of the algorithms table (issue 3)."""
    out: list[dict[str, Any]] = []
    sub = results.get(subject or "", {})
    if subject == "stackengine" and sub.get("ok"):
        out.append(
            check(
                "stackengine throughput (whole process)",
                sub["mpix_frames_per_s"],
                ISSUE6_THROUGHPUT,
                "Mpix-frames/s",
                ">=",
                issue=6,
            )
        )
        out += _speedups(results, subject, ISSUE6_SPEED, 6)
        rss = sub["peak_rss_bytes"] / GIB
        out.append(check("stackengine peak RSS", rss, ISSUE6_RSS_GIB, "GiB", "<=", issue=6))
        out += _speedups(results, subject, ISSUE2_SPEED, 2)
        out.append(check("stackengine peak RSS", rss, ISSUE2_RSS_GIB, "GiB", "<=", issue=2))
    ref = algorithms.get(REFERENCE, {})
    for name, target in SLOWDOWN_TARGETS.items():
        if ref.get("ok") and algorithms.get(name, {}).get("ok"):
            slowdown = algorithms[name]["wall_s"] / ref["wall_s"]
            label = f"{name} wall / {REFERENCE} wall (throughput within {target:g}x)"
            phase = [(r.get("phases_s") or {}).get("stack+write") for r in (algorithms[name], ref)]
            note = f"stack+write phase alone: {phase[0] / phase[1]:.2f} x" if all(phase) else None
            out.append(check(label, slowdown, target, "x", "<=", note=note, issue=3))
    good = [r["peak_rss_bytes"] for r in algorithms.values() if r["ok"]]
    if good:
        rss = max(good) / GIB
        out.append(check("peak RSS, every algorithm", rss, SLOWDOWN_RSS_GIB, "GiB", "<=", issue=3))
    return out


def scaling_checks(points: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """Time per frame within +-15 % over N, and peak RSS not growing with N, for one method.

    ``points`` are the method's summaries by N (ascending ``n_frames``), with
    ``work_per_frame_s`` (a fresh process's time after its imports, per
    frame), ``wall_per_frame_s``, ``peak_rss_bytes`` and, where measured,
    ``steady_per_frame_s`` (the stack after an untimed tiny stack in the same
    process: without the one-time costs of a process). The time check takes
    the largest deviation from the median over N, relative to that median, of
    the steady time when every point has it, else of the time after imports;
    the note gives the other measures. The memory check: RSS at the largest N
    <= 1.1 x RSS at the smallest N + 64 MiB.
    """
    good = [p for p in points if p.get("ok") and p.get("work_per_frame_s")]
    if len(good) < 2:
        return []
    out = []
    ns = f"N = {good[0]['n_frames']} .. {good[-1]['n_frames']}"

    def spread(key: str) -> tuple[float, float, float]:
        values = [p[key] for p in good]
        med = statistics.median(values)
        return max(abs(v / med - 1) for v in values), min(values) / med, max(values) / med

    steady = all(p.get("steady_per_frame_s") for p in good)
    key = "steady_per_frame_s" if steady else "work_per_frame_s"
    dev, lo, hi = spread(key)
    _, clo, chi = spread("work_per_frame_s")
    _, wlo, whi = spread("wall_per_frame_s")
    note = f"time per frame / median {lo:.2f} .. {hi:.2f}"
    if steady:
        note += f"; a fresh process after its imports: {clo:.2f} .. {chi:.2f}"
    note += f"; whole process incl. imports: {wlo:.2f} .. {whi:.2f}"
    what = "steady time per frame (after a warm-up stack)"
    if not steady:
        what = "time per frame after imports"
    name = f"{method} {what}, max deviation from median ({ns})"
    out.append(check(name, 100 * dev, 100 * TIME_PER_FRAME_BAND, "%", "<=", note=note, issue=6))
    first, last = good[0]["peak_rss_bytes"], good[-1]["peak_rss_bytes"]
    bound = RSS_GROWTH * first + RSS_SLACK_BYTES
    note = (
        f"{last / GIB:.3f} GiB at N={good[-1]['n_frames']}, {first / GIB:.3f} GiB at "
        f"N={good[0]['n_frames']}; max over N {max(p['peak_rss_bytes'] for p in good) / GIB:.3f}"
        f" GiB; bound = {RSS_GROWTH:g} x first + {RSS_SLACK_BYTES // 1024**2} MiB"
    )
    name = f"{method} peak RSS does not grow with N (largest N vs bound)"
    out.append(check(name, last / GIB, bound / GIB, "GiB", "<=", note=note, issue=6))
    return out


def format_checks(rows: dict[str, dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """``tiff:uint16`` at least as fast as ``fits:float32`` (Mpix-frames/s ratio >= 1).

    ``rows`` maps ``"FORMAT:DTYPE"`` to the method's summary on that variant.
    """
    fast, base = (rows.get(v, {}) for v in FORMAT_PAIR)
    if not (fast.get("ok") and base.get("ok")):
        return []
    ratio = fast["mpix_frames_per_s"] / base["mpix_frames_per_s"]
    note = (
        f"{fast['mpix_frames_per_s']:.3g} vs {base['mpix_frames_per_s']:.3g} Mpix-frames/s "
        "(whole process)"
    )
    name = f"{method} {FORMAT_PAIR[0]} throughput / {FORMAT_PAIR[1]} throughput"
    return [check(name, ratio, 1.0, "x", ">=", note=note, issue=6)]
