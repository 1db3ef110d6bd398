"""Photometric normalization in the style of NormalizeScaleGradient.

Pass 1 measures every frame on its own, in parallel (one small task each):

1. the frame is read in full-width strips and, when larger than
   :data:`MAX_MEASURE_PIXELS`, binned b x b (summed) on the fly, so a task
   holds at most a few Mpixel;
2. stars are detected (:func:`.photometry.find_stars`) on the frame's
   luminance (the sum of its channels), measured with circular apertures and
   a local background annulus in every channel (:func:`.photometry.aperture_fluxes`);
3. the background is sampled in square bins, away from stars (the exclusion
   radius grows with brightness, :func:`.gradient.star_mask`), one median per
   bin and channel (:func:`.gradient.background_bins`).

The driver then picks the reference, matches every frame's stars to the
reference's within a small radius, fits ``ref_flux = k tgt_flux`` robustly per
channel (:func:`.photometry.fit_scale`), and fits a smooth surface ``G``
through the per-bin differences ``k B_target - B_reference``
(:func:`.gradient.fit_gradient`). The normalized frame is ``k x - G(y, x)``;
the reference keeps its own gradient (k = 1, G = 0).
"""

from __future__ import annotations

import math
import os
import threading
import warnings
from dataclasses import dataclass, replace
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import NormalizationError, ParameterError
from ..frames import source_of
from .gradient import BinSamples, background_bins, fit_gradient, star_mask
from .modes import choose_reference, linear_map
from .photometry import aperture_fluxes, find_stars, fit_scale, match_stars

__all__ = ["FramePhotometry", "measure_photometry", "plan_photometric", "MAX_MEASURE_PIXELS"]

#: frames with more pixels than this are binned before detection and photometry
MAX_MEASURE_PIXELS = 6_000_000
#: background bins along the longer side of the (binned) frame
BINS_PER_SIDE = 32
_STRIP_ROWS = 256
#: background samples (merged cells) the gradient spline is fitted to; the thin-plate
#: solve grows as the cube of this, and bins are already medians of many pixels
GRADIENT_SAMPLES = 256
#: sep background mesh (pixels of the measured image) removed before aperture photometry
BACKGROUND_MESH = 64

_CACHE: dict[tuple, FramePhotometry] = {}
_LOCK = threading.Lock()


@dataclass
class FramePhotometry:
    """What pass 1 keeps of one frame: stars, their fluxes, background bins."""

    x: np.ndarray  # full-resolution pixel coordinates
    y: np.ndarray
    flux: np.ndarray  # (n_stars, n_channels), background-subtracted
    fwhm: float  # full-resolution pixels
    bins: BinSamples  # value (gy, gx, n_channels)
    binning: int


def binning_for(shape: tuple[int, ...]) -> int:
    """The b x b binning that brings a frame under :data:`MAX_MEASURE_PIXELS`."""
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / MAX_MEASURE_PIXELS)))


def _read_binned(read: Any, shape: tuple[int, ...], b: int) -> np.ndarray:
    """The frame as float32 (y, x, channel), summed over b x b blocks, read in strips."""
    h, w = shape[0], shape[1]
    hb, wb = h // b, w // b
    out = np.empty((hb, wb, shape[2] if len(shape) > 2 else 1), dtype=np.float32)
    rows = max(b, (_STRIP_ROWS // b) * b)
    for y0 in range(0, hb * b, rows):
        y1 = min(y0 + rows, hb * b)
        strip = np.asarray(read(slice(y0, y1), slice(0, wb * b)), dtype=np.float32)
        strip = strip.reshape(y1 - y0, wb * b, -1)
        if b > 1:
            strip = strip.reshape((y1 - y0) // b, b, wb, b, -1).sum(axis=(1, 3))
        out[y0 // b : y1 // b] = strip
    return out


def _flattened(plane: np.ndarray) -> np.ndarray:
    """``plane`` minus a smooth background map (sep, 64-pixel meshes).

    The annulus of each aperture then removes only what is left locally: a
    curved gradient would otherwise differ between annulus and aperture and
    bias faint stars' fluxes (by about 0.3 % in the scale on the tests' frames).
    """
    import sep

    finite = np.isfinite(plane)
    data = np.where(finite, plane, 0.0)
    background = sep.Background(data, mask=~finite, bw=BACKGROUND_MESH, bh=BACKGROUND_MESH)
    return np.where(finite, data - background.back(), np.nan)


def _measure(read: Any, shape: tuple[int, ...]) -> FramePhotometry:
    """Task body: stars, fluxes and background bins of one frame."""
    b = binning_for(shape)
    img = _read_binned(read, shape, b)
    lum = img.sum(axis=2) if img.shape[2] > 1 else img[..., 0]
    stars = find_stars(lum)
    fwhm = stars.fwhm_median if len(stars) else 2.0
    channels = img.shape[2]
    flux = np.empty((len(stars), channels))
    for c in range(channels):
        plane = np.ascontiguousarray(img[..., c], dtype=np.float64)
        flux[:, c] = aperture_fluxes(_flattened(plane), stars.x, stars.y, fwhm=fwhm)[0]
    mask = star_mask(lum.shape, stars.x, stars.y, stars.flux, fwhm) if len(stars) else None
    bin_size = max(8, round(max(lum.shape) / BINS_PER_SIDE))
    # the binned image holds b x b sums (fluxes stay whole); the background is a level per
    # pixel, so sample the block averages
    level = (img if channels > 1 else lum) / np.float32(b * b)
    bins = background_bins(level, bin_size=bin_size, mask=mask, step=b)
    if bins.value.ndim == 2:
        bins = replace(bins, value=bins.value[..., None], count=bins.count[..., None])
    return FramePhotometry(
        x=(stars.x + 0.5) * b - 0.5,
        y=(stars.y + 0.5) * b - 0.5,
        flux=flux,
        fwhm=fwhm * b,
        bins=bins,
        binning=b,
    )


def _key(view: Any) -> tuple | None:
    src = getattr(view, "source", None)
    path = getattr(src, "path", None)
    if not path:
        return None
    st = os.stat(path)
    position = tuple(getattr(src, a, None) for a in ("hdu", "plane", "index", "array"))
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size, position, view.alpha)


def _read_array(data: Any) -> Any:
    def read(ys: slice, xs: slice) -> np.ndarray:
        return np.asarray(data[ys, xs])

    return read


def measure_photometry(frames: xr.DataArray) -> list[FramePhotometry]:
    """Pass 1 of the photometric mode: one task per frame, cached per file."""
    stack = source_of(frames.data)
    shape = tuple(frames.shape[1:])
    keys: list[tuple | None] = []
    results: list[Any] = []
    for k in range(frames.sizes["frame"]):
        if stack is not None:
            view = stack.view(k)
            key = _key(view)
            with _LOCK:
                hit = _CACHE.get(key) if key is not None else None
            keys.append(key)
            results.append(hit if hit is not None else dask.delayed(_measure)(view.read, shape))
        else:
            keys.append(None)
            results.append(dask.delayed(_measure)(_read_array(frames.data[k]), shape))
    pending = [i for i, r in enumerate(results) if not isinstance(r, FramePhotometry)]
    for i, value in zip(pending, dask.compute(*[results[i] for i in pending]), strict=True):
        results[i] = value
        if keys[i] is not None:
            with _LOCK:
                _CACHE[keys[i]] = value
    return results


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
):
    """Scales and gradient models of every frame (see the module notes)."""
    from .plan import Normalization

    phot = measure_photometry(frames)
    n = len(phot)
    channels = phot[0].flux.shape[1]
    n_detected = np.array([len(p.x) for p in phot])
    ref = choose_reference(reference, frames, table["location"], n_detected)
    pr = phot[ref]
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
        ir, it = match_stars(pr.x, pr.y, phot[i].x, phot[i].y, radius=radius)
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
    grad, step, amplitude = _gradients(frames, phot, ref, scale, fallback, smoothness)
    table = dict(table)
    table.update(
        n_stars=n_matched,
        scale_err=k_err,
        gradient_range=amplitude,
        fallback=fallback,
    )
    norm = Normalization("photometric", ref, scale, offset, grad, step, table)
    norm.details = {"pairs": pairs, "photometry": phot}
    return norm


def _gradients(frames, phot, ref, scale, fallback, smoothness):
    """Fit G_i through k_i B_i - B_r per channel; zero for the reference and fallbacks."""
    n, channels = scale.shape
    shape = (frames.sizes["y"], frames.sizes["x"])
    yy, xx = phot[ref].bins.mesh()
    models: dict[tuple[int, int], Any] = {}
    for i in range(n):
        if i == ref or fallback[i]:
            continue
        for c in range(channels):
            diff = scale[i, c] * phot[i].bins.value[..., c] - phot[ref].bins.value[..., c]
            try:
                models[i, c] = fit_gradient(
                    yy.ravel(), xx.ravel(), diff.ravel(), shape=shape, smoothness=smoothness,
                    max_samples=GRADIENT_SAMPLES,
                )
            except ParameterError as exc:  # no background bin usable in both frames
                raise NormalizationError(f"{_label(frames, i)}: no gradient model: {exc}") from None
    amplitude = np.zeros((n, channels))
    if not models:
        return None, None, amplitude
    first = next(iter(models.values()))
    grad = np.zeros((n, channels) + first.grid.shape)
    for (i, c), model in models.items():
        grad[i, c] = model.grid
        amplitude[i, c] = float(np.ptp(model.grid))
    return grad, (first.step_y, first.step_x), amplitude
