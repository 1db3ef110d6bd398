"""Plain-numpy reference implementation of rejection and combination.

Written from the "Semantics of rejection" section of ``DESIGN.md`` and the
noise definitions of ``stackengine.kernels.combine``, independently of the numba
kernels, and used only by the tests. It favours clarity over speed: every stage
works on the whole stack at once with boolean masks and ``np.nan*`` reductions.

Conventions (DESIGN.md):

* NaN and +-inf are missing: never kept, never counted as rejected.
* Rejection is cumulative: a value rejected once never returns, and each stage
  of a ``reject`` list sees only what the previous stages kept.
* Bounds are inclusive: x is kept when ``lo <= x <= hi``; a rejected value is
  counted low when ``x < lo`` and high when ``x > hi``.

New algorithms are added by writing a stage function with the signature of
:func:`sigma_stage` and registering it in :data:`STAGES`.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["MAD_TO_STD", "STAGES", "mad_std", "reference_stack", "sigma_stage"]

#: Factor turning a median absolute deviation into a Gaussian std estimate.
MAD_TO_STD = 1.482602218505602

_SQRT_HALF_PI = np.sqrt(np.pi / 2.0)


def _reduce(func: Callable[..., np.ndarray], xk: np.ndarray) -> np.ndarray:
    """Apply a ``np.nan*`` reduction along axis 0; NaN where a column is all NaN."""
    out = np.full(xk.shape[1:], np.nan)
    has = ~np.all(np.isnan(xk), axis=0)
    if np.any(has):
        out[has] = func(xk[:, has], axis=0)
    return out


def _median(xk: np.ndarray) -> np.ndarray:
    return _reduce(np.nanmedian, xk)


def _mean(xk: np.ndarray) -> np.ndarray:
    return _reduce(np.nanmean, xk)


def mad_std(xk: np.ndarray) -> np.ndarray:
    """``1.482602218505602 * median(|x - median(x)|)`` along axis 0, NaN = not kept."""
    return MAD_TO_STD * _median(np.abs(xk - _median(xk)))


def _std(xk: np.ndarray) -> np.ndarray:
    """Population std (ddof 0) along axis 0, NaN = not kept."""
    return np.sqrt(_mean((xk - _mean(xk)) ** 2))


_CENTERS = {"median": _median, "mean": _mean}
_SPREADS = {"mad_std": mad_std, "std": _std}


def sigma_stage(
    x: np.ndarray,
    kept: np.ndarray,
    *,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 5,
    center: str = "median",
    spread: str = "mad_std",
    tie_rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterative sigma clipping of every pixel (column) of ``x``.

    Parameters
    ----------
    x : ndarray, shape (n_frames, n_pixels), float64
        The values; only those flagged in ``kept`` take part.
    kept : ndarray of bool, same shape
        The values still kept when the stage starts (finite ones only).
    sigma_lower, sigma_upper : float
        ``lo = c - sigma_lower * s``, ``hi = c + sigma_upper * s``.
    maxiters : int or None
        Number of iterations at most; None iterates until no new rejection.
    center : {"median", "mean"}
    spread : {"mad_std", "std"}
    tie_rtol : float or None
        When given, also flag pixels where, in some iteration, a kept value
        lay within ``tie_rtol * max(|c|, s)`` of a bound (where float rounding
        in another implementation may legitimately decide differently). Bounds
        equal to an exactly computed median (``s == 0``, center median) are
        exact and not flagged.

    Returns
    -------
    low, high : ndarray of bool, shape of ``x``
        The values this stage rejected below ``lo`` / above ``hi``.
    near_tie : ndarray of bool, shape (n_pixels,)
        Pixels with a near tie (all False when ``tie_rtol`` is None).
    """
    center_fn, spread_fn = _CENTERS[center], _SPREADS[spread]
    kept = kept.copy()
    low = np.zeros_like(kept)
    high = np.zeros_like(kept)
    near_tie = np.zeros(x.shape[1:], dtype=bool)
    iteration = 0
    while maxiters is None or iteration < maxiters:
        iteration += 1
        xk = np.where(kept, x, np.nan)
        c = center_fn(xk)
        s = spread_fn(xk)
        lo = c - sigma_lower * s
        hi = c + sigma_upper * s
        if tie_rtol is not None:
            tol = tie_rtol * np.maximum(np.abs(c), s)
            close = (np.abs(x - lo) <= tol) | (np.abs(x - hi) <= tol)
            exact = (s == 0) & (center == "median")
            near_tie |= np.any(kept & close, axis=0) & ~exact
        # NaN bounds (nothing kept) compare False: nothing new is rejected.
        new_low = kept & (x < lo)
        new_high = kept & (x > hi)
        if not np.any(new_low | new_high):
            break
        low |= new_low
        high |= new_high
        kept &= ~(new_low | new_high)
    return low, high, near_tie


#: Stage name -> stage function ``f(x, kept, **params) -> (low, high, near_tie)``.
STAGES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
    "sigma": sigma_stage,
}


def _stage_list(reject: Any, defaults: dict[str, Any]) -> list[tuple[Callable, dict[str, Any]]]:
    """Normalise ``reject`` into ``(stage function, parameters)`` pairs.

    A stage takes, from ``defaults``, the parameters its signature names; the
    parameters given explicitly in a dict stage must all be known to it.
    """
    if reject is None:
        return []
    items = [reject] if isinstance(reject, str | dict) else list(reject)
    stages = []
    for item in items:
        spec = {"method": item} if isinstance(item, str) else dict(item)
        method = spec.pop("method")
        if method not in STAGES:
            raise ValueError(f"unknown rejection method {method!r}")
        func = STAGES[method]
        accepted = set(inspect.signature(func).parameters) - {"x", "kept", "tie_rtol"}
        unknown = set(spec) - accepted
        if unknown:
            raise ValueError(f"unknown parameters {sorted(unknown)} for {method!r}")
        params = {k: v for k, v in defaults.items() if k in accepted}
        params.update(spec)
        stages.append((func, params))
    return stages


def _combine(
    x: np.ndarray, kept: np.ndarray, combine: str, weights: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Combined value and its standard error per pixel from the kept values."""
    count = kept.sum(axis=0)
    xk = np.where(kept, x, np.nan)
    std = _std(xk)  # population std, ddof 0
    if weights is not None:
        if combine != "mean":
            raise ValueError("the reference defines weights for combine='mean' only")
        w = np.where(kept, weights.reshape((-1,) + (1,) * (x.ndim - 1)), 0.0)
        xz = np.where(kept, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            wsum = w.sum(axis=0)
            image = (w * xz).sum(axis=0) / wsum
            var_w = (w * (xz - image) ** 2).sum(axis=0) / wsum
            noise = np.sqrt(var_w * (w**2).sum(axis=0)) / wsum
    else:
        root_n = np.sqrt(count)
        with np.errstate(invalid="ignore", divide="ignore"):
            if combine == "mean":
                image, noise = _mean(xk), std / root_n
            elif combine == "median":
                image, noise = _median(xk), _SQRT_HALF_PI * std / root_n
            elif combine == "sum":
                image, noise = _reduce(np.nansum, xk), std * root_n
            elif combine == "min":
                image, noise = _reduce(np.nanmin, xk), std
            elif combine == "max":
                image, noise = _reduce(np.nanmax, xk), std
            else:
                raise ValueError(f"unknown combine {combine!r}")
    image = np.where(count > 0, image, np.nan)
    noise = np.where(count > 0, noise, np.nan)
    return image, noise


def reference_stack(
    stack: np.ndarray,
    *,
    reject: None | str | Sequence[str | dict[str, Any]] = None,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 5,
    center: str = "median",
    spread: str = "mad_std",
    combine: str = "mean",
    weights: np.ndarray | None = None,
    tie_rtol: float | None = None,
) -> dict[str, np.ndarray]:
    """Reject and combine ``stack`` along axis 0, by DESIGN.md's semantics.

    Parameters
    ----------
    stack : ndarray, shape (n_frames, ...)
        Any real dtype; computed in float64. NaN and +-inf are missing.
    reject : None, str or sequence of str/dict
        ``None``, a method name (``"sigma"``) or a list of stages applied in
        order. A dict stage is ``{"method": name, **params}``; parameters it
        does not give come from the keyword arguments below (each stage
        function takes the ones its signature names).
    sigma_lower, sigma_upper, maxiters, center, spread : see :func:`sigma_stage`.
    combine : {"mean", "median", "sum", "min", "max"}
    weights : ndarray, shape (n_frames,), optional
        Frame weights for a weighted mean.
    tie_rtol : float, optional
        Report pixels with near ties at a bound as ``"near_tie"``.

    Returns
    -------
    dict
        ``image``, ``noise`` (float64, NaN where nothing is kept), ``count``,
        ``rejected_low``, ``rejected_high`` (int64), each of the pixel shape;
        plus ``near_tie`` (bool) when ``tie_rtol`` is given.
    """
    x = np.asarray(stack, dtype=np.float64)
    kept = np.isfinite(x)
    x = np.where(kept, x, np.nan)
    rejected_low = np.zeros(x.shape[1:], dtype=np.int64)
    rejected_high = np.zeros(x.shape[1:], dtype=np.int64)
    near_tie = np.zeros(x.shape[1:], dtype=bool)
    defaults = {
        "sigma_lower": sigma_lower,
        "sigma_upper": sigma_upper,
        "maxiters": maxiters,
        "center": center,
        "spread": spread,
    }
    for func, params in _stage_list(reject, defaults):
        low, high, tie = func(x, kept, tie_rtol=tie_rtol, **params)
        rejected_low += low.sum(axis=0)
        rejected_high += high.sum(axis=0)
        near_tie |= tie
        kept &= ~(low | high)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reference itself must be warning-free
        image, noise = _combine(x, kept, combine, weights)
    out = {
        "image": image,
        "count": kept.sum(axis=0).astype(np.int64),
        "rejected_low": rejected_low,
        "rejected_high": rejected_high,
        "noise": noise,
    }
    if tie_rtol is not None:
        out["near_tie"] = near_tie
    return out
