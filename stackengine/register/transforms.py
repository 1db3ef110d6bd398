"""Transform models and their fits: least squares and a robust (RANSAC) fit.

Transforms are 3 x 3 matrices acting on homogeneous ``(x, y, 1)`` (here: a
reference pixel to a frame pixel); ``x`` is the column and ``y`` the row,
0-based, integers at pixel centres. Models: ``"shift"`` (2 parameters),
``"similarity"`` (shift, rotation, uniform scale: 4; optionally with a mirror
flip, determinant < 0), ``"affine"`` (6) and ``"homography"`` (8).

:func:`fit_transform` is the least-squares fit on matched points (conditioned:
centred and scaled to unit rms radius; homographies by the normalized DLT, then
Levenberg-Marquardt on the reprojection error). :func:`robust_fit` runs a
RANSAC over minimal samples (seeded: the same points give the same result),
keeps the pairs within ``tolerance`` of the best model, refits by least squares
on all of them and clips 4-sigma outliers of the residual distance (a Rayleigh
distribution: sigma = median / 1.1774) until nothing changes.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from scipy.optimize import least_squares

__all__ = ["MIN_POINTS", "TRANSFORMS", "apply", "distances", "fit_transform", "robust_fit"]

TRANSFORMS = ("shift", "similarity", "affine", "homography")
#: stars a model's minimal sample needs
MIN_POINTS = {"shift": 1, "similarity": 2, "affine": 3, "homography": 4}
_RANSAC_SAMPLES = 300
_CLIP = 4.0  # residual distances above this many sigma are outliers
_RAYLEIGH_MEDIAN = math.sqrt(2.0 * math.log(2.0))  # median / sigma of a 2-D Gaussian distance


def apply(matrix: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Map ``(n, 2)`` points ``(x, y)`` by a 3 x 3 matrix (homogeneous, divided out)."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    h = xy @ matrix[:2, :2].T + matrix[:2, 2]
    w = xy @ matrix[2, :2] + matrix[2, 2]
    return h / w[:, None]


def _centred(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Points shifted to their mean and scaled to unit rms radius (conditioning)."""
    c = p.mean(axis=0)
    s = math.sqrt(np.mean(np.sum((p - c) ** 2, axis=1))) or 1.0
    return (p - c) / s, c, s


def _norm_matrix(c: np.ndarray, s: float) -> np.ndarray:
    return np.array([[1 / s, 0, -c[0] / s], [0, 1 / s, -c[1] / s], [0, 0, 1.0]])


def _linear(src: np.ndarray, dst: np.ndarray, model: str, mirrored: bool) -> np.ndarray:
    """Least-squares shift, similarity or affine matrix on conditioned points."""
    n = len(src)
    m = np.eye(3)
    if model == "shift":
        m[:2, 2] = (dst - src).mean(axis=0)
        return m
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones(n), np.zeros(n)
    if model == "similarity":
        f = -1.0 if mirrored else 1.0  # x' = a x - b f y + tx, y' = b x + a f y + ty
        a_mat = np.vstack([
            np.column_stack([x, -f * y, one, zero]),
            np.column_stack([y * f, x, zero, one]),
        ])  # fmt: skip
        p = np.linalg.lstsq(a_mat, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)[0]
        a, b, tx, ty = p
        return np.array([[a, -f * b, tx], [b, f * a, ty], [0, 0, 1.0]])
    a_mat = np.column_stack([x, y, one])
    p = np.linalg.lstsq(a_mat, dst, rcond=None)[0]  # (3, 2)
    m[:2, :] = p.T
    return m


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Normalized DLT, refined by Levenberg-Marquardt on the reprojection error."""
    x, y = src[:, 0], src[:, 1]
    u, v = dst[:, 0], dst[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    a_mat = np.vstack([
        np.column_stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u]),
        np.column_stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v]),
    ])  # fmt: skip
    h = np.linalg.svd(a_mat)[2][-1].reshape(3, 3)
    if abs(h[2, 2]) < 1e-12:
        raise np.linalg.LinAlgError("degenerate homography")
    h = h / h[2, 2]
    if len(src) <= 4:
        return h

    def resid(p: np.ndarray) -> np.ndarray:
        return (apply(np.append(p, 1.0).reshape(3, 3), src) - dst).ravel()

    return np.append(least_squares(resid, h.ravel()[:8], method="lm").x, 1.0).reshape(3, 3)


def fit_transform(
    src: np.ndarray, dst: np.ndarray, model: str, *, mirrored: bool = False
) -> np.ndarray:
    """The least-squares 3 x 3 matrix of ``model`` mapping ``src`` onto ``dst`` points.

    Parameters
    ----------
    src, dst : ndarray
        ``(n, 2)`` matched ``(x, y)`` positions, ``n >= MIN_POINTS[model]``.
    model : {"shift", "similarity", "affine", "homography"}
        The transform.
    mirrored : bool
        For "similarity": fit a similarity with a mirror flip (determinant < 0).

    Returns
    -------
    ndarray
        3 x 3 float64; the points are conditioned (centred, unit rms radius)
        before the fit and the matrix is expressed in pixels again.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    s_pts, cs, ss = _centred(src)
    d_pts, cd, sd = _centred(dst)
    if model == "shift":
        return _linear(src, dst, model, False)
    if model == "homography":
        core = _homography(s_pts, d_pts)
    else:
        core = _linear(s_pts, d_pts, model, mirrored)
    m = np.linalg.inv(_norm_matrix(cd, sd)) @ core @ _norm_matrix(cs, ss)
    return m / m[2, 2]


def distances(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.hypot(*(apply(matrix, src) - dst).T)
    return np.where(np.isfinite(d), d, np.inf)


def _samples(n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    if math.comb(n, k) <= _RANSAC_SAMPLES:
        return [np.array(c) for c in combinations(range(n), k)]
    out = rng.integers(0, n, (_RANSAC_SAMPLES, k))
    while True:  # draw again the samples that repeat a point
        s = np.sort(out, axis=1)
        again = np.flatnonzero(np.any(s[:, 1:] == s[:, :-1], axis=1))
        if not again.size:
            return list(out)
        out[again] = rng.integers(0, n, (again.size, k))


def robust_fit(
    src: np.ndarray,
    dst: np.ndarray,
    model: str,
    tolerance: float,
    *,
    mirrored: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC, least squares on all inliers, then 4-sigma clipping (module notes).

    Returns
    -------
    matrix : ndarray or None
        The least-squares transform on the kept pairs (None: no model found).
    inliers : ndarray of bool
        The kept pairs.
    """
    n, k = len(src), MIN_POINTS[model]
    none = np.zeros(n, bool)
    if n < k:
        return None, none
    rng = np.random.default_rng(seed)
    samples = _samples(n, k, rng)
    if model != "homography":
        best = _ransac_batch(src, dst, model, tolerance, mirrored, np.array(samples, np.intp))
    else:
        best = _ransac_loop(src, dst, model, tolerance, mirrored, samples)
    if best.sum() < k:
        return None, none
    keep, matrix = best, None
    for _ in range(20):
        matrix = fit_transform(src[keep], dst[keep], model, mirrored=mirrored)
        d = distances(matrix, src, dst)
        sigma = float(np.median(d[keep])) / _RAYLEIGH_MEDIAN
        new = (d < tolerance) & (d <= max(_CLIP * sigma, 1e-3 * tolerance))
        if new.sum() < k or np.array_equal(new, keep):
            break
        keep = new
    return matrix, keep


def _batch_models(src, dst, model: str, mirrored: bool, samples: np.ndarray) -> np.ndarray:
    """The exact models of all minimal samples at once: ``(s, 2, 3)`` affine rows
    (NaN for degenerate samples)."""
    s = samples.shape[0]
    out = np.zeros((s, 2, 3))
    p, q = src[samples], dst[samples]  # (s, k, 2)
    if model == "shift":
        out[:, 0, 0] = out[:, 1, 1] = 1.0
        out[:, :, 2] = q[:, 0] - p[:, 0]
        return out
    if model == "similarity":
        z = p[..., 0] + 1j * (-p[..., 1] if mirrored else p[..., 1])
        w = q[..., 0] + 1j * q[..., 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (w[:, 1] - w[:, 0]) / (z[:, 1] - z[:, 0])
        t = w[:, 0] - a * z[:, 0]
        f = -1.0 if mirrored else 1.0  # x' = re(a) x - im(a) f y + tx, y' = im(a) x + re(a) f y
        out[:, 0] = np.column_stack([a.real, -f * a.imag, t.real])
        out[:, 1] = np.column_stack([a.imag, f * a.real, t.imag])
        return out
    lhs = np.concatenate([p, np.ones((s, 3, 1))], axis=2)  # affine: (s, 3, 3) @ (s, 3, 2)
    det = np.linalg.det(lhs)
    ok = np.abs(det) > 1e-12 * np.max(np.abs(lhs), axis=(1, 2)) ** 2
    out[:] = np.nan
    if ok.any():
        out[ok] = np.transpose(np.linalg.solve(lhs[ok], q[ok]), (0, 2, 1))
    return out


def _ransac_batch(src, dst, model, tolerance, mirrored, samples) -> np.ndarray:
    """RANSAC's best inliers over all samples at once (shift, similarity, affine):
    the most inliers, then the least clipped squared distance, then the first sample."""
    rows = _batch_models(src, dst, model, mirrored, samples)
    with np.errstate(invalid="ignore", over="ignore"):
        pred = rows[:, :, :2] @ src.T + rows[:, :, 2:]  # (s, 2, n)
        d = np.hypot(pred[:, 0] - dst[:, 0], pred[:, 1] - dst[:, 1])
    d = np.where(np.isfinite(d), d, np.inf)
    finite = np.all(np.isfinite(rows), axis=(1, 2))
    inl = d < tolerance
    count = np.where(finite, inl.sum(axis=1), -1)
    cost = np.sum(np.minimum(d, tolerance) ** 2, axis=1)
    top = np.flatnonzero(count == count.max())
    best = top[np.argmin(cost[top])]
    return inl[best] if finite[best] else np.zeros(len(src), bool)


def _ransac_loop(src, dst, model, tolerance, mirrored, samples) -> np.ndarray:
    """RANSAC's best inliers, one sample at a time (homographies)."""
    best, best_score = np.zeros(len(src), bool), (-1, -math.inf)
    for sample in samples:
        try:
            m = fit_transform(src[sample], dst[sample], model, mirrored=mirrored)
        except (np.linalg.LinAlgError, ValueError):
            continue
        if not np.all(np.isfinite(m)):
            continue
        d = distances(m, src, dst)
        inl = d < tolerance
        score = (int(inl.sum()), -float(np.sum(np.minimum(d, tolerance) ** 2)))
        if score > best_score:
            best, best_score = inl, score
    return best
