"""Background gradient models for photometric (NSG-style) normalization.

The gradient of frame ``i`` relative to the reference ``r`` is modelled from
background samples that avoid stars and the scattered light around them
(NormalizeScaleGradient, J. Murphy):

1. :func:`star_mask` marks discs around the detected stars, wider for
   brighter stars.
2. :func:`background_bins` takes, on one frame alone, the median of the
   unmasked pixels in each ``bin_size x bin_size`` bin: ``B_i[bin]``.
3. With the photometric scale ``k_i`` known, the caller forms
   ``D_i = k_i B_i - B_r`` on the bins valid in both frames, and
   :func:`fit_gradient` fits a smooth surface ``G_i`` through ``D_i``
   (thin-plate smoothing spline, or a low-order polynomial) and samples it on
   a coarse grid of nodes covering the frame (:class:`GradientModel`).
4. The normalized frame is ``k_i x - G_i(y, x)``; the reference keeps its own
   gradient. RGB frames are handled one channel at a time.

All coordinates are full-resolution pixel indices ``(y, x)`` of the frame
(pixel centres at integers). Pure numpy/scipy: no dask, no files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import RBFInterpolator

from ..errors import ParameterError

__all__ = ["BinSamples", "GradientModel", "background_bins", "fit_gradient", "star_mask"]

MAD_STD = 1.482602218505602
#: smoothness -> penalty weight (see :func:`fit_gradient`): with this value the spline
#: passes half of the power at wavelength 0.2 * long side * smoothness**0.25.
SMOOTHNESS_UNIT = (0.2 / (2.0 * math.pi)) ** 4
#: smoothness of the flexible spline that finds outlying samples (either method)
DETECT_SMOOTHNESS = 0.5
#: outlier sigma is at least this fraction of the 5-95 % spread of the samples
SIGMA_FLOOR = 0.005
_CHUNK_PIXELS = 1 << 22  # background_bins works on bands of about this many pixels


def star_mask(
    shape: tuple[int, int],
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    fwhm: float,
    *,
    base_radius: float | None = None,
    growth: float = 0.25,
    flux_ref: float | None = None,
    max_radius: float | None = None,
    step: int = 1,
) -> np.ndarray:
    """Boolean mask, True within a brightness-dependent radius of each star.

    Star ``i`` masks the disc of radius
    ``r_i = min(base_radius * max(flux_i / flux_ref, 1) ** growth, max_radius)``
    around ``(y_i, x_i)``. The rule follows the star's wings: if the profile
    falls as ``r**-p`` far from the core, the radius where a star's wing drops
    to the level a ``flux_ref`` star reaches at ``base_radius`` grows as
    ``flux**(1/p)``. The default ``growth = 1/4`` is ``p = 4``, the wing of a
    Moffat profile with ``beta = 2``: between seeing wings (``beta ~ 2.5-4.5``)
    and scattered-light aureoles (``p ~ 2-3``, which the cap ``max_radius``
    bounds). A star 10**4 times brighter than ``flux_ref`` masks 10 times the
    base radius. Discs are drawn on the boolean image one star at a time over
    their bounding boxes (a few microseconds per star).

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)`` of the mask, i.e. of the image it will mask (possibly binned).
    x, y : array_like
        Star centres in full-resolution pixels. Non-finite entries are skipped.
    flux : array_like
        Star fluxes (any unit); non-finite or non-positive ones get ``base_radius``.
    fwhm : float
        Stellar FWHM in full-resolution pixels (> 0).
    base_radius : float, optional
        Radius of the faintest star, full-resolution pixels; default ``2.5 * fwhm``.
    growth : float, optional
        Exponent of the flux ratio (0 = every star gets ``base_radius``).
    flux_ref : float, optional
        Flux that gets ``base_radius``; default the faintest positive flux.
    max_radius : float, optional
        Cap on the radius, full-resolution pixels; default ``0.1 * max(ny, nx) * step``.
    step : int, optional
        The image is a ``step x step`` block average of the frame: mask pixel
        ``i`` covers frame pixels ``step*i .. step*i + step - 1`` (centre
        ``step*i + (step - 1)/2``). Radii and coordinates are converted.

    Returns
    -------
    numpy.ndarray
        ``bool`` array of ``shape``: True where a pixel centre lies within ``r_i``.
    """
    ny, nx = (int(n) for n in shape)
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise ParameterError(f"star_mask: fwhm must be a positive number, got {fwhm!r}")
    step = _check_step(step)
    x, y, flux = (np.atleast_1d(np.asarray(a, dtype=np.float64)).ravel() for a in (x, y, flux))
    if not x.size == y.size == flux.size:
        raise ParameterError("star_mask: x, y and flux must have the same length")
    base = 2.5 * fwhm if base_radius is None else float(base_radius)
    cap = 0.1 * max(ny, nx) * step if max_radius is None else float(max_radius)
    good = np.isfinite(flux) & (flux > 0)
    if flux_ref is None:
        flux_ref = float(flux[good].min()) if good.any() else 1.0
    ratio = np.where(good, flux / flux_ref, 1.0)
    radius = np.minimum(base * np.maximum(ratio, 1.0) ** growth, cap)
    # to mask-pixel units: frame coordinate c -> mask coordinate (c - (step - 1)/2) / step
    off = 0.5 * (step - 1)
    cy, cx, rad = (y - off) / step, (x - off) / step, radius / step
    mask = np.zeros((ny, nx), dtype=bool)
    keep = np.isfinite(cy) & np.isfinite(cx) & (rad >= 0)
    for yc, xc, r in zip(cy[keep], cx[keep], rad[keep], strict=True):
        y0, y1 = max(math.ceil(yc - r), 0), min(math.floor(yc + r), ny - 1)
        x0, x1 = max(math.ceil(xc - r), 0), min(math.floor(xc + r), nx - 1)
        if y0 > y1 or x0 > x1:
            continue
        dy2 = (np.arange(y0, y1 + 1) - yc)[:, None] ** 2
        dx2 = (np.arange(x0, x1 + 1) - xc)[None, :] ** 2
        mask[y0 : y1 + 1, x0 : x1 + 1] |= dy2 + dx2 <= r * r
    return mask


@dataclass(frozen=True)
class BinSamples:
    """Background medians on a regular grid of bins (see :func:`background_bins`).

    Attributes
    ----------
    yc, xc : numpy.ndarray
        Bin-centre coordinates in full-resolution pixels, shapes ``(gy,)`` and ``(gx,)``.
    value : numpy.ndarray
        ``(gy, gx)`` (or ``(gy, gx, c)``) float64 medians; NaN where unusable.
    count : numpy.ndarray
        Usable pixels per bin, same shape as ``value``.
    bin_size, step : int
        Bin side in pixels of the measured image, and its binning step.
    """

    yc: np.ndarray
    xc: np.ndarray
    value: np.ndarray
    count: np.ndarray
    bin_size: int
    step: int

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin-centre coordinate arrays ``(Y, X)`` of shape ``(gy, gx)``."""
        return np.meshgrid(self.yc, self.xc, indexing="ij")


def background_bins(
    image: np.ndarray,
    *,
    bin_size: int,
    mask: np.ndarray | None,
    step: int = 1,
    min_fraction: float = 0.5,
) -> BinSamples:
    """Median background of the unmasked pixels in each ``bin_size`` square.

    Bin ``(p, q)`` covers image rows ``p*bin_size .. (p+1)*bin_size - 1`` and the
    same columns; the last bin of each axis may be partial. Its value is the
    exact median (mean of the two middle values for an even count) of the pixels
    that are finite and not masked. It is NaN when fewer than
    ``min_fraction * bin_size**2`` such pixels remain (so narrow partial edge
    bins are dropped too). A plain median is used, not a clipped one: a few
    cosmic rays or hot pixels among ``n`` pixels shift it by only about
    ``1.25 sigma / n`` each, and stars are excluded by ``mask``.

    Parameters
    ----------
    image : numpy.ndarray
        ``(ny, nx)`` or ``(ny, nx, c)`` image (a frame, or its ``step x step`` block
        average). Channels are measured separately with the same mask.
    bin_size : int
        Bin side in pixels of ``image`` (full-resolution side ``bin_size * step``).
    mask : numpy.ndarray or None
        ``(ny, nx)`` bool, True for pixels to ignore (e.g. from :func:`star_mask`).
    step : int, optional
        Binning step of ``image``: its pixel ``i`` has centre ``step*i + (step-1)/2``
        in the frame (for a decimated image the centre is off by ``(step-1)/2``).
    min_fraction : float, optional
        Minimum usable fraction of a full bin, in ``(0, 1]``.

    Returns
    -------
    BinSamples
        Centres (full-resolution pixels: the centre of the bin's in-image pixels),
        values and usable counts.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ParameterError(f"background_bins: image must be 2-D or 3-D, got {image.shape}")
    bin_size, step = int(bin_size), _check_step(step)
    if bin_size < 1:
        raise ParameterError(f"background_bins: bin_size must be >= 1, got {bin_size}")
    if not 0.0 < min_fraction <= 1.0:
        raise ParameterError(f"background_bins: min_fraction must be in (0, 1], got {min_fraction}")
    ny, nx = image.shape[:2]
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (ny, nx):
            raise ParameterError(f"background_bins: mask shape {mask.shape} != image {(ny, nx)}")
    gy, gx = -(-ny // bin_size), -(-nx // bin_size)
    planes = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    need = min_fraction * bin_size * bin_size
    values, counts = [], []
    band = max(1, _CHUNK_PIXELS // max(1, bin_size * bin_size * gx))  # bin rows per band
    for plane in planes:
        val = np.full((gy, gx), np.nan)
        cnt = np.zeros((gy, gx), dtype=np.int64)
        for p0 in range(0, gy, band):
            p1 = min(gy, p0 + band)
            sl = slice(p0 * bin_size, min(ny, p1 * bin_size))
            m = None if mask is None else mask[sl]
            val[p0:p1], cnt[p0:p1] = _band_medians(plane[sl], m, bin_size, gx)
        val[cnt < need] = np.nan
        values.append(val)
        counts.append(cnt)
    value = values[0] if image.ndim == 2 else np.stack(values, axis=-1)
    count = counts[0] if image.ndim == 2 else np.stack(counts, axis=-1)

    def centres(n: int, g: int) -> np.ndarray:
        lo = np.arange(g) * bin_size
        hi = np.minimum(lo + bin_size, n) - 1
        return step * 0.5 * (lo + hi) + 0.5 * (step - 1)

    return BinSamples(centres(ny, gy), centres(nx, gx), value, count, bin_size, step)


def _band_medians(
    data: np.ndarray, mask: np.ndarray | None, n: int, gx: int
) -> tuple[np.ndarray, np.ndarray]:
    """Medians and usable counts of the bins of one band of whole bin rows."""
    if data.dtype.kind != "f" or data.dtype.itemsize < 4:
        data = data.astype(np.float32 if data.dtype.itemsize <= 2 else np.float64)
    usable = np.isfinite(data)
    if mask is not None:
        usable &= ~mask
    h, w = data.shape
    gb = -(-h // n)
    work = np.full((gb * n, gx * n), np.inf, dtype=data.dtype)
    work[:h, :w] = np.where(usable, data, np.inf)
    work = work.reshape(gb, n, gx, n).transpose(0, 2, 1, 3).reshape(gb, gx, n * n)
    cnt = np.zeros((gb * n, gx * n), dtype=np.int64)
    cnt[:h, :w] = usable
    cnt = cnt.reshape(gb, n, gx, n).sum(axis=(1, 3))
    work.sort(axis=-1)  # unusable (inf) pixels sort last
    lo = np.take_along_axis(work, np.maximum((cnt - 1) // 2, 0)[..., None], -1)[..., 0]
    hi = np.take_along_axis(work, (cnt // 2)[..., None], -1)[..., 0]
    med = 0.5 * (lo.astype(np.float64) + hi.astype(np.float64))
    return np.where(cnt > 0, med, np.nan), cnt


@dataclass(frozen=True, kw_only=True)
class GradientModel:
    """A smooth gradient sampled on a coarse grid of nodes, read bilinearly.

    Node ``(i, j)`` sits at frame pixel ``y = y0 + i*step_y``, ``x = x0 + j*step_x``;
    the nodes span the frame edge to edge (the last node is at ``ny - 1``,
    ``nx - 1``) and there are at least two per axis. The value at ``(y, x)``::

        t = (y - y0) / step_y;  i = min(max(floor(t), 0), gy - 2);  fy = min(max(t - i, 0), 1)
        u = (x - x0) / step_x;  j = min(max(floor(u), 0), gx - 2);  fx = min(max(u - j, 0), 1)
        G = (1-fy)*((1-fx)*g[i, j] + fx*g[i, j+1]) + fy*((1-fx)*g[i+1, j] + fx*g[i+1, j+1])

    so coordinates beyond the first or last node take the edge value (clamped).

    Attributes
    ----------
    grid : numpy.ndarray
        ``(gy, gx)`` float64 node values.
    step_y, step_x, y0, x0 : float
        Node spacing and origin in frame pixels.
    n_samples : int
        Samples used by the final fit (after outlier rejection).
    rms : float
        Root-mean-square residual of those samples about the fitted surface.
    n_rejected : int
        Samples dropped as outliers.
    method : str
        ``"spline"`` or ``"poly"``; ``smoothness`` and ``degree`` as used.
    """

    grid: np.ndarray
    step_y: float
    step_x: float
    y0: float = 0.0
    x0: float = 0.0
    n_samples: int = 0
    rms: float = float("nan")
    n_rejected: int = 0
    method: str = "spline"
    smoothness: float = 0.0
    degree: int = 0
    shape: tuple[int, int] = field(default=(0, 0))

    def node_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Node coordinates ``(y, x)``, 1-D, in frame pixels."""
        gy, gx = self.grid.shape
        return self.y0 + self.step_y * np.arange(gy), self.x0 + self.step_x * np.arange(gx)

    def evaluate(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Bilinear value of the grid at frame coordinates ``(y, x)`` (broadcast).

        Parameters
        ----------
        y, x : array_like
            Frame pixel coordinates; any broadcastable shapes.

        Returns
        -------
        numpy.ndarray
            float64 values, shape of ``broadcast(y, x)``.
        """
        g = self.grid
        i, fy = _cell(y, self.y0, self.step_y, g.shape[0])
        j, fx = _cell(x, self.x0, self.step_x, g.shape[1])
        i, j, fy, fx = np.broadcast_arrays(i, j, fy, fx)
        top = (1.0 - fx) * g[i, j] + fx * g[i, j + 1]
        bottom = (1.0 - fx) * g[i + 1, j] + fx * g[i + 1, j + 1]
        return (1.0 - fy) * top + fy * bottom

    def profile(self, axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Mean profile of the model along one axis (NSG's "gradient graph").

        Parameters
        ----------
        axis : int, optional
            1: the profile along x (averaged over y); 0: along y (averaged over x).

        Returns
        -------
        coords, values : numpy.ndarray
            Node coordinates along ``axis`` and the exact mean of the bilinear
            surface over the other axis from its first to its last node
            (trapezoid weights) at those coordinates.
        """
        if axis not in (0, 1):
            raise ParameterError(f"GradientModel.profile: axis must be 0 or 1, got {axis}")
        other = 1 - axis
        w = np.ones(self.grid.shape[other])
        w[[0, -1]] = 0.5
        values = np.tensordot(self.grid, w / w.sum(), axes=([other], [0]))
        return self.node_coords()[axis], values


def _cell(c: np.ndarray, c0: float, step: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.asarray(c, dtype=np.float64) - c0) / step
    i = np.clip(np.floor(t), 0, n - 2)
    return i.astype(np.intp), np.clip(t - i, 0.0, 1.0)


def fit_gradient(
    samples_y: np.ndarray,
    samples_x: np.ndarray,
    values: np.ndarray,
    *,
    shape: tuple[int, int],
    smoothness: float = 2.0,
    method: str = "spline",
    degree: int = 2,
    grid_step: int | None = None,
    clip: float = 3.0,
    max_iters: int = 5,
    max_samples: int = 1024,
) -> GradientModel:
    """Fit a smooth surface through background samples, robustly, on a coarse grid.

    Non-finite samples are dropped. Outliers are removed iteratively: fit, then
    drop every sample whose residual exceeds ``clip`` times the mad_std of the
    kept residuals, until none is dropped or ``max_iters`` fits were made.

    ``method="spline"``: a thin-plate smoothing spline
    (:class:`scipy.interpolate.RBFInterpolator`, ``kernel="thin_plate_spline"``,
    ``degree=1``). Coordinates are divided by the long side ``L = max(ny, nx)``;
    the spline minimises ``(1/n) sum r_i**2 + mu J(f)`` with ``J`` the thin-plate
    bending energy over the frame and ``mu = smoothness * SMOOTHNESS_UNIT / A``
    (``A = ny nx / L**2``), i.e. RBF ``smoothing = 8 pi n mu``. This is
    scale-free: it does not depend on the value units, the number or density of
    the samples (the bin size) or the frame size. Structure of wavelength
    ``0.2 L smoothness**0.25`` is damped by half; ``smoothness = 0``
    interpolates the samples, large values tend to a plane. Since an
    interpolating fit has no residuals, outliers for ``smoothness = 0`` are
    found with a ``smoothness = 1`` fit. More than ``max_samples`` samples are
    first merged on a coarser square grid of cells (median value, mean
    position), so a fit costs at most a few tens of ms.

    ``method="poly"``: least-squares polynomial ``sum c_ab u**a v**b``, ``a + b <= degree``
    (``u, v`` the coordinates scaled to [-1, 1]). With too few samples for the
    requested degree the degree is lowered (to a constant at least).

    Parameters
    ----------
    samples_y, samples_x, values : array_like
        Sample positions (frame pixels) and values, same length (any shape).
    shape : tuple of int
        ``(ny, nx)`` of the full-resolution frame.
    smoothness : float, optional
        Spline smoothness (>= 0); NSG's default is 2.0.
    method : {"spline", "poly"}
        Surface type.
    degree : int, optional
        Polynomial degree for ``method="poly"`` (0..6).
    grid_step : int, optional
        Maximum node spacing in frame pixels; default gives 64 nodes along the
        long side. The spacing is then shrunk so nodes land on both edges.
    clip, max_iters, max_samples : optional
        Outlier threshold (mad_std units), maximum fits, sample cap (spline only).

    Returns
    -------
    GradientModel

    Raises
    ------
    ParameterError
        Bad parameters, or no finite sample.
    """
    ny, nx = (int(n) for n in shape)
    if ny < 1 or nx < 1:
        raise ParameterError(f"fit_gradient: bad frame shape {shape}")
    if method not in ("spline", "poly"):
        raise ParameterError(f"fit_gradient: method must be 'spline' or 'poly', got {method!r}")
    if not (np.isfinite(smoothness) and smoothness >= 0):
        raise ParameterError(f"fit_gradient: smoothness must be >= 0, got {smoothness!r}")
    if method == "poly" and not 0 <= int(degree) <= 6:
        raise ParameterError(f"fit_gradient: degree must be in 0..6, got {degree!r}")
    sy, sx, v = (np.asarray(a, dtype=np.float64).ravel() for a in (samples_y, samples_x, values))
    if not sy.size == sx.size == v.size:
        raise ParameterError("fit_gradient: samples_y, samples_x and values differ in length")
    ok = np.isfinite(sy) & np.isfinite(sx) & np.isfinite(v)
    sy, sx, v = sy[ok], sx[ok], v[ok]
    if v.size == 0:
        raise ParameterError("fit_gradient: no finite background sample to fit")
    long_side = float(max(ny, nx))
    if method == "spline" and v.size > max_samples:
        sy, sx, v = _merge(sy, sx, v, ny * nx / max_samples)
    pts = np.column_stack([sy, sx]) / long_side
    zero = float(np.median(v))
    v = v - zero
    area = ny * nx / long_side**2

    def make(p: np.ndarray, d: np.ndarray, s: float, how: str):
        if how == "poly":
            return _poly_fit(p, d, int(degree), ny / long_side, nx / long_side)
        if p.shape[0] < 3 or np.linalg.matrix_rank(np.column_stack([p, np.ones(len(p))])) < 3:
            return _poly_fit(p, d, 0, 1.0, 1.0)  # collinear or too few: a constant
        lam = 8.0 * math.pi * p.shape[0] * s * SMOOTHNESS_UNIT / area
        return RBFInterpolator(p, d, smoothing=lam, kernel="thin_plate_spline", degree=1)

    keep = np.ones(v.size, dtype=bool)
    lo, hi = np.percentile(v, [5.0, 95.0])
    floor = SIGMA_FLOOR * float(hi - lo)
    for _ in range(max(0, int(max_iters))):
        f = make(pts[keep], v[keep], DETECT_SMOOTHNESS, "spline")
        resid = v - f(pts)
        sigma = max(MAD_STD * float(np.median(np.abs(resid[keep]))), floor)
        new = keep & (np.abs(resid) <= clip * sigma)
        if sigma <= 0 or new.sum() == keep.sum() or new.sum() < max(3, keep.size // 2):
            break
        keep = new
    f = make(pts[keep], v[keep], smoothness, method)
    resid = v[keep] - f(pts[keep])

    gy, sty = _nodes(ny, long_side, grid_step)
    gx, stx = _nodes(nx, long_side, grid_step)
    ny_, nx_ = np.meshgrid(sty * np.arange(gy), stx * np.arange(gx), indexing="ij")
    nodes = np.column_stack([ny_.ravel(), nx_.ravel()]) / long_side
    grid = f(nodes).reshape(gy, gx) + zero
    return GradientModel(
        grid=grid,
        step_y=sty,
        step_x=stx,
        n_samples=int(keep.sum()),
        rms=float(np.sqrt(np.mean(resid**2))),
        n_rejected=int((~keep).sum()),
        method=method,
        smoothness=float(smoothness),
        degree=int(degree) if method == "poly" else 1,
        shape=(ny, nx),
    )


def _nodes(n: int, long_side: float, grid_step: int | None) -> tuple[int, float]:
    """Node count (>= 2) and spacing along an axis of ``n`` pixels."""
    gs = math.ceil((long_side - 1) / 63) if grid_step is None else int(grid_step)
    if gs < 1:
        gs = 1
    if n <= 1:
        return 2, 1.0
    g = max(2, math.ceil((n - 1) / gs) + 1)
    return g, (n - 1) / (g - 1)


def _merge(sy: np.ndarray, sx: np.ndarray, v: np.ndarray, cell_area: float):
    """Merge samples on square cells of ``cell_area`` pixels: mean position, median value."""
    cs = math.sqrt(cell_area)
    key = np.floor(sy / cs).astype(np.int64) * (1 << 31) + np.floor(sx / cs).astype(np.int64)
    _, inv = np.unique(key, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    groups = np.split(order, starts[1:])
    my = np.array([sy[g].mean() for g in groups])
    mx = np.array([sx[g].mean() for g in groups])
    mv = np.array([np.median(v[g]) for g in groups])
    return my, mx, mv


class _Poly:
    """A fitted 2-D polynomial, callable on (n, 2) normalized points."""

    def __init__(self, powers: list[tuple[int, int]], coef: np.ndarray, half: tuple) -> None:
        self.powers, self.coef, self.half = powers, coef, half

    def design(self, p: np.ndarray) -> np.ndarray:
        u = p[:, 0] / self.half[0] - 1.0
        w = p[:, 1] / self.half[1] - 1.0
        return np.column_stack([u**a * w**b for a, b in self.powers])

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return self.design(p) @ self.coef


def _poly_fit(p: np.ndarray, d: np.ndarray, degree: int, hy: float, hx: float) -> _Poly:
    """Least-squares polynomial; the degree drops until the samples determine it."""
    half = (max(hy, 1e-12) / 2, max(hx, 1e-12) / 2)
    for deg in range(degree, -1, -1):
        powers = [(a, t - a) for t in range(deg + 1) for a in range(t + 1)]
        model = _Poly(powers, np.zeros(len(powers)), half)
        a = model.design(p)
        if deg > 0 and (len(d) < len(powers) or np.linalg.matrix_rank(a) < len(powers)):
            continue
        model.coef = np.linalg.lstsq(a, d, rcond=None)[0]
        return model
    raise AssertionError("unreachable")  # pragma: no cover


def _check_step(step: int) -> int:
    if int(step) != step or int(step) < 1:
        raise ParameterError(f"step must be a positive integer, got {step!r}")
    return int(step)
