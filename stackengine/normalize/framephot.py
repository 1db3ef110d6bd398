"""Pass 1 of the photometric mode: one task per frame, reading the frame once.

Each task reads its frame in strips of 256 full-width rows and

1. keeps the rows that :func:`.measure.measure_frames` samples (the same rows,
   :func:`.measure.sampled_strips`) and reduces them to the pass-1 statistics
   (location, scale, noise; :func:`.measure.robust_stats`), so the photometric
   mode reads each frame once, not twice;
2. sums each strip over ``b x b`` blocks (frames of more than
   :data:`MAX_MEASURE_PIXELS`), so the task holds at most a few Mpixel;
3. detects stars on the luminance (the sum of the channels;
   :func:`.stars.detect_stars`), measures them with circular apertures and a
   local background annulus in every channel (:func:`.apertures.aperture_fluxes`)
   after subtracting sep's smooth background map (the one detection computed,
   for grey frames);
4. samples the background in square bins, away from stars
   (:func:`.bins.star_mask`, :func:`.bins.background_bins`).

Results for frames read from files are cached in this process by path,
modification time, size and position in the file (the statistics in
:mod:`.measure`'s cache, so :func:`.measure.measure_frames` finds them): a
frame measured once is never read again. Tasks run on dask's current
scheduler; the results do not depend on it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..frames import source_of
from ..tasks.cluster import compute
from . import measure
from .apertures import aperture_fluxes
from .background import background_map
from .bins import BinSamples, background_bins, star_mask
from .fast import block_sum
from .stars import BACKGROUND_MESH, detect_stars

__all__ = [
    "BACKGROUND_MESH",
    "BINS_PER_SIDE",
    "FramePhotometry",
    "MAX_MEASURE_PIXELS",
    "binning_for",
    "measure_pass1",
    "measure_photometry",
]

#: frames with more pixels than this are binned before detection and photometry
MAX_MEASURE_PIXELS = 6_000_000
#: background bins along the longer side of the (binned) frame
BINS_PER_SIDE = 32
_STRIP_ROWS = 256

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


def _flattened(plane: np.ndarray) -> np.ndarray:
    """``plane`` minus its smooth background map (:func:`.background.background_map`).

    The annulus of each aperture then removes only what is left locally: a
    curved gradient would otherwise differ between annulus and aperture and
    bias faint stars' fluxes (by about 0.3 % in the scale on the tests' frames).
    Grey frames reuse the map that detection subtracted.
    """
    back, _ = background_map(plane, mesh=BACKGROUND_MESH)
    return np.where(np.isfinite(plane), plane - back, np.nan)


def _photometry(img: np.ndarray, b: int) -> FramePhotometry:
    """Stars, fluxes and background bins of a (binned) float32 (y, x, channel) image."""
    channels = img.shape[2]
    lum = img.sum(axis=2) if channels > 1 else img[..., 0]
    stars, flat_lum = detect_stars(lum)  # the background map (BACKGROUND_MESH) subtracted
    fwhm = stars.fwhm_median if len(stars) else 2.0
    flux = np.empty((len(stars), channels))
    for c in range(channels):
        flat = flat_lum if channels == 1 else _flattened(img[..., c].astype(np.float64))
        flux[:, c] = aperture_fluxes(flat, stars.x, stars.y, fwhm=fwhm)[0]
    mask = star_mask(lum.shape, stars.x, stars.y, stars.flux, fwhm) if len(stars) else None
    bin_size = max(8, round(max(lum.shape) / BINS_PER_SIDE))
    # the binned image holds b x b sums (fluxes stay whole); the background is a level per
    # pixel: the medians of the sums / b**2 (the medians of the block averages)
    bins = background_bins(img if channels > 1 else lum, bin_size=bin_size, mask=mask, step=b)
    value = bins.value / (b * b)
    if value.ndim == 2:
        bins = replace(bins, count=bins.count[..., None])
        value = value[..., None]
    bins = replace(bins, value=value)
    return FramePhotometry(
        x=(stars.x + 0.5) * b - 0.5,
        y=(stars.y + 0.5) * b - 0.5,
        flux=flux,
        fwhm=fwhm * b,
        bins=bins,
        binning=b,
    )


def _measure(
    read: Any, shape: tuple[int, ...], strips: list[tuple[int, int]] | None
) -> tuple[np.ndarray | None, FramePhotometry]:
    """Task body: read one frame once; its statistics (if ``strips``) and photometry.

    ``read(ys, xs)`` reads rows and columns of the frame (a view's ``read``).
    """
    h, w = shape[0], shape[1]
    b = binning_for(shape)
    hb, wb = h // b, w // b
    img = np.empty((hb, wb, shape[2] if len(shape) > 2 else 1), dtype=np.float32)
    step = max(b, (_STRIP_ROWS // b) * b)
    end = h if strips else hb * b
    pieces = []
    for y0 in range(0, end, step):
        y1 = min(y0 + step, end)
        strip = np.asarray(read(slice(y0, y1), slice(0, w)))
        for a, c in strips or ():
            lo, hi = max(a, y0), min(c, y1)
            if lo < hi:
                pieces.append(strip[lo - y0 : hi - y0].copy())
        yb = min(y1, hb * b)
        if yb > y0:
            img[y0 // b : yb // b] = block_sum(strip[: yb - y0, : wb * b], b)
    stats = measure.robust_stats(pieces) if strips else None
    return stats, _photometry(img, b)


def _key(view: Any) -> tuple | None:
    """The photometry cache key: the frame's identity (:func:`.measure.frame_key`)."""
    return measure.frame_key(view)


def _read_array(data: Any) -> Any:
    def read(ys: slice, xs: slice) -> np.ndarray:
        return np.asarray(data[ys, xs])

    return read


def measure_pass1(
    frames: xr.DataArray, *, stats: bool = True
) -> tuple[xr.Dataset | None, list[FramePhotometry]]:
    """Statistics and photometry of every frame, reading each frame at most once.

    Parameters
    ----------
    frames : xarray.DataArray
        Dims ("frame", "y", "x"[, "channel"]).
    stats : bool
        Also return :func:`.measure.measure_frames`'s dataset (computed in the
        same tasks as the photometry, on the same sampled rows).

    Returns
    -------
    stats : xarray.Dataset or None
        As :func:`.measure.measure_frames` (None when ``stats`` is False).
    photometry : list of FramePhotometry
        One per frame.
    """
    source = source_of(frames.data)
    shape = tuple(frames.shape[1:])
    block = source.block[0] if source is not None else 1
    strips = measure.sampled_strips(shape[0], shape[1], block_rows=block)
    n = frames.sizes["frame"]
    s_keys: list[tuple | None] = [None] * n
    p_keys: list[tuple | None] = [None] * n
    table: list[Any] = [None] * n
    phot: list[Any] = [None] * n
    tasks: dict[int, Any] = {}
    for k in range(n):
        if source is not None:
            view = source.view(k)
            s_keys[k], p_keys[k] = measure.stats_key(view, strips), _key(view)
            table[k] = measure.cached(s_keys[k])
            with _LOCK:
                phot[k] = _CACHE.get(p_keys[k]) if p_keys[k] is not None else None
            read = view.read
        else:
            read = _read_array(frames.data[k])
        need_stats = stats and table[k] is None
        if phot[k] is None:
            tasks[k] = dask.delayed(_measure)(read, shape, strips if need_stats else None)
        elif need_stats:
            tasks[k] = dask.delayed(measure.measure_view)(view, strips)
    for k, value in zip(tasks, compute(*tasks.values()), strict=True):
        if isinstance(value, tuple):
            value, phot[k] = value
            if p_keys[k] is not None:
                with _LOCK:
                    _CACHE[p_keys[k]] = phot[k]
        if value is not None:
            table[k] = value
            measure.store(s_keys[k], value)
    return (measure.stats_dataset(frames, table) if stats else None), phot


def measure_photometry(frames: xr.DataArray) -> list[FramePhotometry]:
    """The photometry of every frame (:func:`measure_pass1` without the statistics)."""
    return measure_pass1(frames, stats=False)[1]
