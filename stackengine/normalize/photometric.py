"""Photometric normalization in the style of NormalizeScaleGradient.

Pass 1 measures every frame on its own, in parallel, one task per frame that
reads the frame once (:mod:`.framephot`): the pass-1 statistics, stars
(:func:`.stars.find_stars`) with their aperture fluxes in every channel
(:func:`.apertures.aperture_fluxes`), and background bins away from stars
(:func:`.bins.background_bins`).

The driver then picks the reference, matches every frame's stars to the
reference's within a small radius, fits ``ref_flux = k tgt_flux`` robustly per
channel (:func:`.photometry.fit_scale`), and fits a smooth surface ``G``
through the per-bin differences ``k B_target - B_reference``
(:func:`.gradient.fit_gradient`). The normalized frame is ``k x - G(y, x)``;
the reference keeps its own gradient (k = 1, G = 0).

With a registration (``transforms``: per frame the matrix output pixel -> frame
pixel, and the output grid's shape) the frames are measured where they are, as
above, and compared on the output grid: star positions are mapped onto it
before matching, each frame's background bins are sampled (bilinearly, NaN
outside the frame) at the reference's bin centres, and ``G`` is a surface over
the output grid, where the tile kernels apply it after resampling.
"""

from __future__ import annotations

import warnings
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import NormalizationError, ParameterError
from ..tasks.cluster import compute
from .framephot import FramePhotometry, measure_photometry
from .gradient import fit_gradient
from .model import Normalization
from .modes import choose_reference, linear_map
from .photometry import fit_scale, match_stars

__all__ = [
    "FramePhotometry",
    "GRADIENT_SAMPLES",
    "measure_photometry",
    "plan_photometric",
]

#: background samples (merged cells) the gradient spline is fitted to; the thin-plate
#: solve grows as the cube of this, and bins are already medians of many pixels
GRADIENT_SAMPLES = 256


def _label(frames: xr.DataArray, k: int) -> str:
    if "path" in frames.coords:
        return f"{frames.coords['path'].values[k]} (frame {k})"
    return f"frame {k}"


def plan_photometric(
    frames: xr.DataArray,
    table: dict[str, np.ndarray],
    *,
    reference: Any = None,
    smoothness: float = 2.0,
    star_fallback: str | None = None,
    photometry: list[FramePhotometry] | None = None,
    transforms: tuple[np.ndarray, tuple[int, int]] | None = None,
) -> Normalization:
    """Scales and gradient models of every frame (see the module notes).

    ``photometry`` is pass 1's per-frame photometry if already measured
    (:func:`.framephot.measure_pass1`), else it is measured here; ``transforms``
    is a registration's (matrices output -> frame, output shape).
    """
    phot = measure_photometry(frames) if photometry is None else photometry
    n = len(phot)
    channels = phot[0].flux.shape[1]
    n_detected = np.array([len(p.x) for p in phot])
    ref = choose_reference(reference, frames, table["location"], n_detected)
    pr = phot[ref]
    on_grid = [_on_grid(p, transforms, i) for i, p in enumerate(phot)]
    scale = np.ones((n, channels))
    offset = np.zeros((n, channels))
    k_err = np.zeros((n, channels))
    n_matched = np.zeros(n, dtype=np.int64)
    n_matched[ref] = len(pr.x)
    fallback = np.zeros(n, dtype=bool)
    pairs: dict[int, dict[str, np.ndarray]] = {}
    for i in range(n):
        if i == ref:
            continue
        radius = max(2.0, 0.5 * max(pr.fwhm, phot[i].fwhm))
        (rx, ry), (tx, ty) = on_grid[ref], on_grid[i]
        ir, it = match_stars(rx, ry, tx, ty, radius=radius)
        n_matched[i] = ir.size
        try:
            for c in range(channels):
                fit = fit_scale(pr.flux[ir, c], phot[i].flux[it, c])
                scale[i, c], k_err[i, c] = fit.k, fit.k_err
                if c == 0:
                    pairs[i] = {
                        "ref_flux": pr.flux[ir, 0],
                        "tgt_flux": phot[i].flux[it, 0],
                        "used": fit.used,
                        "x": pr.x[ir],
                        "y": pr.y[ir],
                    }
        except ValueError as exc:
            if star_fallback is None:
                raise NormalizationError(
                    f"{_label(frames, i)}: photometric normalization failed: {exc} "
                    f"against reference {_label(frames, ref)} (pass star_fallback="
                    "'additive+scale' / --star-fallback to normalize such frames globally)"
                ) from None
            fallback[i] = True
            warnings.warn(
                f"{_label(frames, i)}: {exc}; normalized with 'additive+scale' instead",
                UserWarning,
                stacklevel=3,
            )
            a, b = linear_map("additive+scale", table["location"], table["spread"], ref, frames)
            scale[i], offset[i] = a[i], b[i]
    grad, step, amplitude = _gradients(frames, phot, ref, scale, fallback, smoothness,
                                       transforms)  # fmt: skip
    table = dict(table)
    table.update(
        n_stars=n_matched,
        scale_err=k_err,
        gradient_range=amplitude,
        fallback=fallback,
    )
    details = {"pairs": pairs, "photometry": phot}
    return Normalization("photometric", ref, scale, offset, grad, step, table, details)


def _fit_or_error(*args: Any, **kwargs: Any) -> Any:
    """fit_gradient, returning its ParameterError instead of raising it (for dask)."""
    try:
        return fit_gradient(*args, **kwargs)
    except ParameterError as exc:
        return exc


def _apply(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = matrix @ np.vstack([np.ravel(x), np.ravel(y), np.ones(np.size(x))])
    return (p[0] / p[2]).reshape(np.shape(x)), (p[1] / p[2]).reshape(np.shape(y))


def _on_grid(p: FramePhotometry, transforms: Any, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``i``'s star positions on the output grid (x, y)."""
    if transforms is None:
        return p.x, p.y
    return _apply(np.linalg.inv(transforms[0][i]), p.x, p.y)


def _sampled_bins(p: FramePhotometry, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Frame background bins (gy, gx, c) sampled bilinearly at frame positions (x, y);
    NaN outside the bins' centres or next to an unusable bin."""
    from scipy.interpolate import RegularGridInterpolator

    b = p.bins
    value = b.value if b.value.ndim == 3 else b.value[..., None]
    interp = RegularGridInterpolator((b.yc, b.xc), value, bounds_error=False, fill_value=np.nan)
    return interp(np.column_stack([np.ravel(y), np.ravel(x)])).reshape(*np.shape(x), -1)


def _gradients(frames, phot, ref, scale, fallback, smoothness, transforms=None):
    """Fit G_i through k_i B_i - B_r per channel; zero for the reference and fallbacks.

    The fits are independent small tasks (tens of ms each), computed together on
    dask's current scheduler.
    """
    n, channels = scale.shape
    shape = (frames.sizes["y"], frames.sizes["x"])
    yy, xx = phot[ref].bins.mesh()
    ref_bins = phot[ref].bins.value
    ref_bins = ref_bins if ref_bins.ndim == 3 else ref_bins[..., None]
    if transforms is not None:  # on the output grid; each frame sampled there
        matrices, shape = transforms
        xx, yy = _apply(np.linalg.inv(matrices[ref]), xx, yy)
    tasks: dict[tuple[int, int], Any] = {}
    for i in range(n):
        if i == ref or fallback[i]:
            continue
        if transforms is None:
            values = phot[i].bins.value
            values = values if values.ndim == 3 else values[..., None]
        else:
            values = _sampled_bins(phot[i], *_apply(matrices[i], xx, yy))
        for c in range(channels):
            diff = scale[i, c] * values[..., c] - ref_bins[..., c]
            tasks[i, c] = dask.delayed(_fit_or_error)(
                yy.ravel(),
                xx.ravel(),
                diff.ravel(),
                shape=shape,
                smoothness=smoothness,
                max_samples=GRADIENT_SAMPLES,
            )
    models = dict(zip(tasks, compute(*tasks.values()), strict=True))
    for (i, _), model in models.items():
        if isinstance(model, ParameterError):  # no background bin usable in both frames
            raise NormalizationError(f"{_label(frames, i)}: no gradient model: {model}")
    amplitude = np.zeros((n, channels))
    if not models:
        return None, None, amplitude
    first = next(iter(models.values()))
    grad = np.zeros((n, channels) + first.grid.shape)
    for (i, c), model in models.items():
        grad[i, c] = model.grid
        amplitude[i, c] = float(np.ptp(model.grid))
    return grad, (first.step_y, first.step_x), amplitude
