"""Background gradient models for photometric (NSG-style) normalization.

As in NormalizeScaleGradient (J. Murphy), the gradient comes from background
samples that avoid stars and their scattered light (:mod:`.bins`:
:func:`star_mask`, :func:`background_bins`, re-exported here): with the scale
``k_i`` known the caller forms ``D_i = k_i B_i - B_r`` from the per-bin medians
and :func:`fit_gradient` fits a smooth surface ``G_i`` through it, sampled on a
coarse grid (:class:`GradientModel`). The normalized frame is
``k_i x - G_i(y, x)``; the reference keeps its gradient; RGB goes per channel.
Coordinates are frame pixel indices ``(y, x)``. Pure numpy/scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from .bins import BinSamples, background_bins, star_mask
from .spline import ThinPlateSpline

__all__ = ["BinSamples", "GradientModel", "background_bins", "fit_gradient", "star_mask"]

MAD_STD = 1.482602218505602
#: smoothness -> bending-energy weight mu (see fit_gradient): half power passes at a
#: wavelength of 0.2 * long side * smoothness**0.25
SMOOTHNESS_UNIT = (0.2 / (2.0 * math.pi)) ** 4
#: degree of the spline's polynomial part: quadratics are not penalised at all
SPLINE_DEGREE = 2
#: smoothness of the flexible spline that finds outlying samples (either method)
DETECT_SMOOTHNESS = 0.5
#: the outlier sigma is at least this fraction of the 5-95 % spread of the samples
SIGMA_FLOOR = 0.005


@dataclass(frozen=True, kw_only=True)
class GradientModel:
    """A smooth gradient sampled on a coarse grid of nodes, read bilinearly.

    Node ``(i, j)`` sits at frame pixel ``y = y0 + i*step_y``, ``x = x0 + j*step_x``
    (float steps); :func:`fit_gradient` puts the nodes edge to edge (first at 0,
    last at ``ny - 1``, ``nx - 1``), at least two per axis. The value at ``(y, x)``::

        t = (y - y0) / step_y;  i = min(max(floor(t), 0), gy - 2);  fy = min(max(t - i, 0), 1)
        u = (x - x0) / step_x;  j = min(max(floor(u), 0), gx - 2);  fx = min(max(u - j, 0), 1)
        G = (1-fy)*((1-fx)*g[i, j] + fx*g[i, j+1]) + fy*((1-fx)*g[i+1, j] + fx*g[i+1, j+1])

    so coordinates beyond the first or last node take the edge value (clamped).

    Attributes
    ----------
    grid : numpy.ndarray
        ``(gy, gx)`` float64 node values.
    step_y, step_x, y0, x0 : float
        Node spacing and origin, frame pixels.
    n_samples, n_rejected : int
        Samples used by the final fit, and samples dropped as outliers.
    rms : float
        Root-mean-square residual of the used samples about the surface.
    method, smoothness, degree, shape
        The fit's settings (``degree`` of the polynomial part) and frame shape.
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
    degree: int = SPLINE_DEGREE
    shape: tuple[int, int] = (0, 0)

    def node_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Node coordinates ``(y, x)``, 1-D, in frame pixels."""
        gy, gx = self.grid.shape
        return self.y0 + self.step_y * np.arange(gy), self.x0 + self.step_x * np.arange(gx)

    def evaluate(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Bilinear value of the grid at frame coordinates ``(y, x)`` (broadcast).

        Parameters
        ----------
        y, x : array_like
            Frame pixel coordinates, broadcastable shapes.

        Returns
        -------
        numpy.ndarray
            float64 values of the broadcast shape.
        """
        g = self.grid
        i, fy = _cell(y, self.y0, self.step_y, g.shape[0])
        j, fx = _cell(x, self.x0, self.step_x, g.shape[1])
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
            Node coordinates along ``axis``, and there the exact mean of the
            bilinear surface over the other axis, first to last node
            (trapezoid weights).
        """
        if axis not in (0, 1):
            raise ParameterError(f"GradientModel.profile: axis must be 0 or 1, got {axis!r}")
        w = np.ones(self.grid.shape[1 - axis])
        w[[0, -1]] = 0.5
        values = np.tensordot(self.grid, w / w.sum(), axes=([1 - axis], [0]))
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

    Non-finite samples are dropped; samples at the same position, or all of
    them beyond ``max_samples`` on square cells of ``ny nx / max_samples``
    pixels, are merged (median value, mean position): a fit takes tens of ms.
    Outliers disagree with their neighbours: a flexible spline
    (``DETECT_SMOOTHNESS``) is fitted through the kept samples and those
    farther than ``clip`` sigma are dropped (sigma = mad_std of the kept
    residuals, at least ``SIGMA_FLOOR`` x the 5-95 % spread of the values),
    until none is, ``max_iters`` passes, or half are gone.

    ``method="spline"``: a thin-plate smoothing spline with a quadratic
    polynomial part (:class:`.spline.ThinPlateSpline`: the system of
    :class:`scipy.interpolate.RBFInterpolator` with kernel
    ``"thin_plate_spline"``, ``degree=2``, evaluated faster). With coordinates divided by the
    long side ``L = max(ny, nx)`` it minimises ``(1/n) sum r_i**2 + mu J(f)``,
    ``J`` the bending energy, ``mu = smoothness * SMOOTHNESS_UNIT / A`` with
    ``A = ny nx / L**2``: RBF ``smoothing = 8 pi n mu``. This is scale-free: it
    does not depend on the value units, the number of samples (bin size) or
    the frame size. Structure of wavelength ``0.2 L smoothness**0.25`` keeps
    half its power (0.24 L at the default 2); ``smoothness = 0`` interpolates
    the samples, and large values tend to the least-squares quadratic, so
    planes and quadratics are never smoothed away. With too few samples for
    the spline, the polynomial below is used.

    ``method="poly"``: least-squares ``sum c_ab u**a v**b``, ``a + b <= degree``
    (``u, v`` the coordinates scaled to [-1, 1]); the degree is lowered while
    the samples do not determine it.

    Parameters
    ----------
    samples_y, samples_x, values : array_like
        Sample positions (frame pixels) and values, same size (any shape).
    shape : tuple of int
        ``(ny, nx)`` of the full-resolution frame.
    smoothness, method, degree : optional
        Spline smoothness (>= 0, NSG's default 2.0); "spline" or "poly"; the
        polynomial's degree (0..6).
    grid_step : int, optional
        Largest node spacing, frame pixels; default ``max((L - 1) / 63, 1)``: 64
        nodes on the long side. Spacings shrink so that nodes land on both edges.
    clip, max_iters, max_samples : optional
        Outlier threshold (sigma), maximum rejection passes, sample cap.

    Returns
    -------
    GradientModel
    """
    ny, nx = (int(n) for n in shape)
    if ny < 1 or nx < 1:
        raise ParameterError(f"fit_gradient: bad frame shape {shape!r}")
    if method not in ("spline", "poly"):
        raise ParameterError(f"fit_gradient: method must be 'spline' or 'poly', got {method!r}")
    if not (np.isfinite(smoothness) and smoothness >= 0):
        raise ParameterError(f"fit_gradient: smoothness must be >= 0, got {smoothness!r}")
    if method == "poly" and not (int(degree) == degree and 0 <= degree <= 6):
        raise ParameterError(f"fit_gradient: degree must be an integer in 0..6, got {degree!r}")
    sy, sx, v = (np.asarray(a, dtype=np.float64).ravel() for a in (samples_y, samples_x, values))
    if not sy.size == sx.size == v.size:
        raise ParameterError("fit_gradient: samples_y, samples_x and values differ in size")
    ok = np.isfinite(sy) & np.isfinite(sx) & np.isfinite(v)
    sy, sx, v = sy[ok], sx[ok], v[ok]
    if v.size == 0:
        raise ParameterError("fit_gradient: no finite background sample to fit")
    if v.size > max_samples:  # cells of ny nx / max_samples pixels
        cs = math.sqrt(ny * nx / max_samples)
        sy, sx, v = _merge(sy, sx, v, np.floor(sy / cs), np.floor(sx / cs))
    else:  # samples at the same place (the spline needs distinct points)
        sy, sx, v = _merge(sy, sx, v, sy, sx)
    long_side = float(max(ny, nx))
    half = (ny / long_side / 2.0, nx / long_side / 2.0)  # poly: u = p / half - 1
    pts = np.column_stack([sy, sx]) / long_side
    zero = float(np.median(v))
    v = v - zero

    def make(p: np.ndarray, d: np.ndarray, s: float, how: str):
        if how == "poly":
            return _poly_fit(p, d, int(degree), half)
        quad = _poly_fit(p, d, SPLINE_DEGREE, half)
        if quad.degree < SPLINE_DEGREE:
            return quad  # too few (or degenerate) samples for the spline
        lam = 8.0 * math.pi * len(p) * s * SMOOTHNESS_UNIT * long_side**2 / (ny * nx)
        return ThinPlateSpline(p, d, lam)

    keep = np.ones(v.size, dtype=bool)
    lo, hi = np.percentile(v, [5.0, 95.0])
    for _ in range(max(0, int(max_iters))):
        resid = v - make(pts[keep], v[keep], DETECT_SMOOTHNESS, "spline")(pts)
        sigma = max(MAD_STD * float(np.median(np.abs(resid[keep]))), SIGMA_FLOOR * (hi - lo))
        new = keep & (np.abs(resid) <= clip * sigma)
        if sigma <= 0 or new.sum() == keep.sum() or new.sum() < max(3, keep.size // 2):
            break
        keep = new
    f = make(pts[keep], v[keep], float(smoothness), method)
    resid = v[keep] - f(pts[keep])

    (gy, sty), (gx, stx) = _nodes(ny, long_side, grid_step), _nodes(nx, long_side, grid_step)
    node_y, node_x = np.meshgrid(sty * np.arange(gy), stx * np.arange(gx), indexing="ij")
    grid = f(np.column_stack([node_y.ravel(), node_x.ravel()]) / long_side)
    return GradientModel(
        grid=grid.reshape(gy, gx) + zero,
        step_y=sty,
        step_x=stx,
        n_samples=int(keep.sum()),
        rms=float(np.sqrt(np.mean(resid**2))),
        n_rejected=int((~keep).sum()),
        method=method,
        smoothness=float(smoothness),
        degree=f.degree if isinstance(f, _Poly) else SPLINE_DEGREE,
        shape=(ny, nx),
    )


def _nodes(n: int, long_side: float, grid_step: int | None) -> tuple[int, float]:
    """Node count (>= 2) and spacing along an axis of ``n`` pixels."""
    gs = max((long_side - 1) / 63, 1.0) if grid_step is None else max(int(grid_step), 1)
    if n <= 1:
        return 2, 1.0
    g = max(2, math.ceil((n - 1) / gs - 1e-9) + 1)
    return g, (n - 1) / (g - 1)


def _merge(sy: np.ndarray, sx: np.ndarray, v: np.ndarray, ky: np.ndarray, kx: np.ndarray):
    """Merge samples with equal keys ``(ky, kx)``: mean position, median value."""
    _, inv = np.unique(np.column_stack([ky, kx]), axis=0, return_inverse=True)
    inv = inv.ravel()
    if inv.max() + 1 == inv.size:
        return sy, sx, v
    counts = np.bincount(inv)
    ordered = v[np.lexsort((v, inv))]  # by group, then value
    start = np.cumsum(counts) - counts
    lo, hi = ordered[start + (counts - 1) // 2], ordered[start + counts // 2]
    return (
        np.bincount(inv, weights=sy) / counts,
        np.bincount(inv, weights=sx) / counts,
        (lo + hi) / 2,
    )


class _Poly:
    """A least-squares 2-D polynomial, callable on ``(n, 2)`` normalized points."""

    def __init__(self, degree: int, half: tuple[float, float]) -> None:
        self.degree, self.half = degree, half
        self.powers = [(a, t - a) for t in range(degree + 1) for a in range(t + 1)]
        self.coef = np.zeros(len(self.powers))

    def design(self, p: np.ndarray) -> np.ndarray:
        u, w = p[:, 0] / self.half[0] - 1.0, p[:, 1] / self.half[1] - 1.0
        return np.column_stack([u**a * w**b for a, b in self.powers])

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return self.design(p) @ self.coef


def _poly_fit(p: np.ndarray, d: np.ndarray, degree: int, half: tuple[float, float]) -> _Poly:
    """Fit the highest degree <= ``degree`` that the samples determine."""
    for deg in range(degree, -1, -1):
        model = _Poly(deg, half)
        a = model.design(p)
        if deg == 0 or (len(d) >= a.shape[1] and np.linalg.matrix_rank(a) == a.shape[1]):
            model.coef = np.linalg.lstsq(a, d, rcond=None)[0]
            return model
    raise AssertionError("unreachable")  # pragma: no cover
