"""Thin-plate smoothing splines in 2-D with a quadratic polynomial part.

:class:`ThinPlateSpline` solves the same linear system as
:class:`scipy.interpolate.RBFInterpolator` with ``kernel="thin_plate_spline"``,
``degree=2`` and the same ``smoothing`` (kernel ``phi(r) = r**2 log r``)::

    [K + smoothing I   P] [w]   [d]
    [P^T               0] [c] = [0]

with ``K_ij = phi(|p_i - p_j|)`` and ``P`` the monomials ``1, u, v, u**2, u v,
v**2`` of the centred, scaled points, so it is the same function up to
rounding. It is evaluated with numpy in blocks (vectorised logarithms, the GIL
released), several times faster than scipy's evaluation on a grid of nodes.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

__all__ = ["ThinPlateSpline"]

_BLOCK = 1 << 20  # kernel values evaluated per block


def _kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``phi(|p_i - q_j|) = r**2 log r`` for (m, 2) and (n, 2) points: (m, n)."""
    r2 = (p[:, None, 0] - q[None, :, 0]) ** 2
    r2 += (p[:, None, 1] - q[None, :, 1]) ** 2
    out = np.log(np.maximum(r2, 1e-300))
    out *= r2
    out *= 0.5
    return out


def _monomials(u: np.ndarray) -> np.ndarray:
    a, b = u[:, 0], u[:, 1]
    return np.column_stack([np.ones_like(a), a, b, a * a, a * b, b * b])


class ThinPlateSpline:
    """A thin-plate smoothing spline through ``values`` at 2-D ``points``.

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Distinct sample positions, not all on one conic (at least 6).
    values : ndarray, shape (n,)
        Sample values.
    smoothing : float
        Added to the kernel matrix's diagonal (0 interpolates).

    Attributes
    ----------
    degree : int
        2, the degree of the polynomial part.
    """

    degree = 2

    def __init__(self, points: np.ndarray, values: np.ndarray, smoothing: float) -> None:
        p = np.asarray(points, dtype=np.float64)
        d = np.asarray(values, dtype=np.float64)
        n = len(p)
        self.centres = p
        lo, hi = p.min(axis=0), p.max(axis=0)
        self.shift = (hi + lo) / 2.0
        self.scale = np.where(hi > lo, (hi - lo) / 2.0, 1.0)
        poly = _monomials((p - self.shift) / self.scale)
        m = poly.shape[1]
        lhs = np.zeros((n + m, n + m))
        lhs[:n, :n] = _kernel(p, p)
        lhs[np.arange(n), np.arange(n)] += smoothing
        lhs[:n, n:] = poly
        lhs[n:, :n] = poly.T
        rhs = np.concatenate([d, np.zeros(m)])
        sol = linalg.solve(lhs, rhs, assume_a="sym")
        self.weights, self.coef = sol[:n], sol[n:]

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """The spline's values at (m, 2) ``points``."""
        x = np.asarray(points, dtype=np.float64)
        # einsum, not BLAS: a BLAS thread pool costs more to wake than these products
        out = np.einsum("ij,j->i", _monomials((x - self.shift) / self.scale), self.coef)
        rows = max(1, _BLOCK // max(len(self.centres), 1))
        for s in range(0, len(x), rows):
            k = _kernel(x[s : s + rows], self.centres)
            out[s : s + rows] += np.einsum("ij,j->i", k, self.weights)
        return out
