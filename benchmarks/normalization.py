"""Normalization benchmark: the measure pass (pass 1) timed next to the stack pass.

A mode runs as the method ``norm:MODE`` (``python -m benchmarks --normalize
photometric,additive+scale``), each in a fresh child process that times, in
order (each a phase of the child's clock):

``measure_frames``
    :func:`stackengine.normalize.measure_frames` (location, scale, noise);
``measure_photometry``
    photometric mode only: :func:`stackengine.normalize.photometric.measure_photometry`
    (stars, aperture photometry, background bins);
``fits``
    :func:`stackengine.normalize.plan.plan_normalization` with both measurements
    cached: the reference, the star matching and the scale and gradient fits.
    The three phases together are exactly one cold ``plan_normalization(frames,
    mode)`` call, pass 1 (the *measure* time of the report);
``replan``
    ``plan_normalization`` again, with pass 1 cached: what ``se.stack`` below
    does again before stacking. It reads nothing (the measurements are cached
    in the process) but redoes the fits;
``stack+write``
    ``se.stack(frames, normalize=MODE, <sigma 3/3 as the stackengine method>)``
    + ``se.write(.fits)``. The *stack* time of the report is this minus
    ``replan`` (the stack pass alone, without the fits done twice).

The child also returns what the normalization found (per frame, channel 0:
scale, offset, matched stars, gradient-model range); the parent compares it
with the workload's known per-frame scale factors (:func:`normalization_quality`).
Frame ``i`` is ``s_i (sky + stars) + noise``, so the right scale is
``s_r / s_i`` (``r`` the reference) and the normalized sky ``s_r sky``; the
benchmark frames have no gradient, so the right gradient model is zero.

Imports only the standard library at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .methods import ALGORITHMS
from .workload import Workload, frame_scales

__all__ = [
    "MEASURE_TARGET",
    "MODES",
    "NORMALIZE_PREFIX",
    "measure_seconds",
    "normalization_checks",
    "normalization_method",
    "normalization_quality",
    "parse_modes",
    "truth_factor",
]

NORMALIZE_PREFIX = "norm:"
#: stackengine's normalization modes (tests check this against stackengine.normalize.MODES)
MODES = ("additive", "multiplicative", "additive+scale", "multiplicative+scale", "photometric")
#: Issue 4: the photometric measure pass takes no longer than this x the stack pass.
MEASURE_TARGET = 1.0
#: The phases that make up pass 1 (one cold plan_normalization call).
MEASURE_PHASES = ("measure_frames", "measure_photometry", "fits")
#: The stack pass's rejection and combination: the sigma benchmark's stackengine call.
STACK_KWARGS: dict[str, Any] = {**ALGORITHMS["sigma"], "reject": "sigma", "combine": "mean"}

Mark = Callable[[str], None]


def parse_modes(text: str) -> list[str]:
    """A comma list of normalization modes (or ``all``) -> the modes, duplicates dropped.

    Raises
    ------
    ValueError
        An unknown mode, or an empty list.
    """
    modes: list[str] = []
    for item in (s.strip() for s in text.split(",")):
        modes += list(MODES) if item == "all" else [item] if item else []
    if not modes:
        raise ValueError("no normalization modes given")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)} or 'all'")
    return list(dict.fromkeys(modes))


def _peak_rss() -> int:
    from .runner import peak_rss_self  # VmHWM: not the parent's peak inherited at exec

    return peak_rss_self()


def _found(norm: Any) -> dict[str, Any]:
    """What the normalization found, per frame, channel 0, as JSON-able lists."""
    import numpy as np

    table = norm.table
    out: dict[str, Any] = {
        "reference": int(norm.reference),
        "scale": norm.scale[:, 0].tolist(),
        "offset": norm.offset[:, 0].tolist(),
    }
    if "n_stars" in table:
        out["n_stars"] = np.asarray(table["n_stars"]).astype(int).tolist()
        out["n_fallback"] = int(np.count_nonzero(table.get("fallback", 0)))
    if norm.grad is not None:
        grid = norm.grad[:, 0].reshape(norm.grad.shape[0], -1)
        out["grad_min"] = grid.min(axis=1).tolist()
        out["grad_max"] = grid.max(axis=1).tolist()
        out["grad_nodes"] = list(norm.grad.shape[2:])
    return out


def _run(mode: str) -> Callable[[list[str], str, dict[str, Any], Mark], dict[str, Any]]:
    def run(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> dict[str, Any]:
        import stackengine as se
        from stackengine.normalize import measure_frames
        from stackengine.normalize.plan import plan_normalization

        mark("import")
        frames = se.open_frames(files)
        mark("open")
        measure_frames(frames)
        mark("measure_frames")
        if mode == "photometric":
            from stackengine.normalize.photometric import measure_photometry

            measure_photometry(frames)
            mark("measure_photometry")
        norm = plan_normalization(frames, mode)
        mark("fits")
        measure_rss = _peak_rss()
        plan_normalization(frames, mode)
        mark("replan")
        res = se.stack(frames, normalize=mode, **STACK_KWARGS, memory_limit=opts["memory_limit"])
        se.write(res, out, overwrite=True)
        mark("stack+write")
        return {"normalization": {**_found(norm), "measure_peak_rss_bytes": measure_rss}}

    return run


def normalization_method(mode: str) -> tuple[str, Callable]:
    """The report's parameter line (``{memory_limit}`` unfilled) and the child's ``run``."""
    if mode not in MODES:
        raise KeyError(f"unknown normalization {mode!r}; choose from {', '.join(MODES)}")
    stack = ", ".join(f"{k}={v!r}" for k, v in STACK_KWARGS.items())
    params = (
        f"pass 1: plan_normalization(frames, {mode!r}) (measure_frames"
        + (" + measure_photometry" if mode == "photometric" else "")
        + f" + fits); stack pass: se.stack(normalize={mode!r}, {stack}, "
        "memory_limit={memory_limit}) + se.write(.fits)"
    )
    return params, _run(mode)


def measure_seconds(phases: dict[str, float]) -> float:
    """Pass 1's time: the sum of its phases (one cold ``plan_normalization`` call)."""
    return sum(phases.get(p, 0.0) for p in MEASURE_PHASES)


def truth_factor(record: dict[str, Any], wl: Workload) -> float:
    """What the truth image is multiplied by for a normalized stack: ``s_r / mean(s)``.

    A correctly normalized stack converges to the reference frame's
    ``s_r (sky + stars)``; :func:`benchmarks.truth_image` is ``mean(s) (sky + stars)``.
    1 for a record without normalization.
    """
    found = record.get("normalization")
    if not found:
        return 1.0
    scales = frame_scales(wl)
    return scales[found["reference"]] * len(scales) / sum(scales)


def normalization_quality(found: dict[str, Any], wl: Workload) -> dict[str, Any]:
    """Compare what a normalization found with the workload's known scales (no gradient).

    Returns
    -------
    dict
        Over the frames other than the reference: ``scale_err_median``,
        ``scale_err_max`` (``|k_i s_i / s_r - 1|``, the relative error of the
        scale), ``scale_min``/``scale_max`` (found, all frames) and
        ``expected_min``/``expected_max`` (``s_r / s_i``); ``sky_err_median_adu``,
        ``sky_err_max_adu``: per frame the largest ``|k_i s_i sky + b_i - G_i - s_r sky|``
        over the gradient model's nodes (how far the normalized sky is from the
        reference's), median and max over frames; ``grad_ptp_median_adu``,
        ``grad_ptp_max_adu`` (range of ``G_i``, 0 without a gradient model: the
        truth is 0); ``n_stars_median``/``n_stars_min`` (matched stars, photometric).
    """
    import numpy as np

    s = np.asarray(frame_scales(wl), dtype=np.float64)
    r = int(found["reference"])
    k = np.asarray(found["scale"], dtype=np.float64)
    b = np.asarray(found["offset"], dtype=np.float64)
    others = np.arange(s.size) != r
    if not others.any():
        others = np.ones(s.size, dtype=bool)
    expected = s[r] / s
    scale_err = np.abs(k * s / s[r] - 1.0)[others]
    level = k * s * wl.sky + b - s[r] * wl.sky  # normalized sky minus the reference's, before G
    gmin = np.asarray(found.get("grad_min", np.zeros(s.size)), dtype=np.float64)
    gmax = np.asarray(found.get("grad_max", np.zeros(s.size)), dtype=np.float64)
    sky_err = np.maximum(np.abs(level - gmin), np.abs(level - gmax))[others]
    ptp = (gmax - gmin)[others]
    out = {
        "scale_min": float(k.min()),
        "scale_max": float(k.max()),
        "expected_min": float(expected.min()),
        "expected_max": float(expected.max()),
        "scale_err_median": float(np.median(scale_err)),
        "scale_err_max": float(scale_err.max()),
        "sky_err_median_adu": float(np.median(sky_err)),
        "sky_err_max_adu": float(sky_err.max()),
        "grad_ptp_median_adu": float(np.median(ptp)),
        "grad_ptp_max_adu": float(ptp.max()),
        "has_gradient": "grad_min" in found,
    }
    if "n_stars" in found:
        n_stars = np.asarray(found["n_stars"])[others]
        out["n_stars_median"] = float(np.median(n_stars))
        out["n_stars_min"] = int(n_stars.min())
    return out


def normalization_checks(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 4's target: the photometric measure pass takes no longer than the stack pass."""
    row = rows.get("photometric", {})
    if not row.get("ok"):
        return []
    ratio = row["measure_s"] / row["stack_s"]  # stack_s: stack+write minus the replan
    return [
        {
            "name": "photometric measure pass / stack pass",
            "value": ratio,
            "target": MEASURE_TARGET,
            "unit": "x",
            "relation": "<=",
            "ok": ratio <= MEASURE_TARGET,
            "note": f"{row['measure_s']:.2f} s / {row['stack_s']:.2f} s",
        }
    ]


def summarize_normalization(summary: dict[str, Any], wl: Workload) -> dict[str, Any]:
    """Add measure/stack seconds, their ratio and the quality to a method summary."""
    if not summary.get("ok"):
        return summary
    phases = summary.get("phases_s") or {}
    summary["measure_s"] = measure_seconds(phases)
    summary["replan_s"] = phases.get("replan", 0.0)
    summary["stack_write_s"] = phases.get("stack+write", float("nan"))
    # se.stack plans again: the cached measurements are free, the fits are redone (replan)
    summary["stack_s"] = summary["stack_write_s"] - summary["replan_s"]
    summary["ratio"] = summary["measure_s"] / summary["stack_s"]
    found = summary.get("normalization")
    if found:
        summary["quality"] = normalization_quality(found, wl)
    return summary


def modes_of(runnable: Sequence[str]) -> list[str]:
    """The normalization modes among method names (``norm:MODE``)."""
    return [m[len(NORMALIZE_PREFIX) :] for m in runnable if m.startswith(NORMALIZE_PREFIX)]
