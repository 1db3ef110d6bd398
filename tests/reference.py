"""Plain-numpy reference implementation of rejection and combination.

Written from the "Semantics of rejection" section of ``DESIGN.md``, the exact
per-pixel rules of ``REJECTION_SPEC.md`` (issue 3) and the noise definitions of
``stackengine.kernels.combine``, independently of the numba kernels, and used only
by the tests. It favours clarity over speed: sigma works on the whole stack at once
with boolean masks and ``np.nan*`` reductions; the other stages loop over pixels.

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

import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import t as student_t

__all__ = [
    "MAD_TO_STD",
    "STAGES",
    "esd_lambda",
    "esd_statistics",
    "line_fit",
    "mad_std",
    "reference_stack",
    "sigma_stage",
    "winsorized_scale",
]

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


# ------------------------------------------------------------- per-pixel stages (issue 3)
#
# Written from REJECTION_SPEC.md. Each ``*_pixel`` function sees the kept values of ONE
# pixel (1-D, frame order, float64, all finite) and returns boolean ``low``/``high`` masks
# over them plus whether the pixel had a near tie (a decision that float rounding in
# another, equally valid, implementation could take the other way). ``_pixelwise`` lifts
# it to a stage over the whole stack.


def _pixelwise(func: Callable[..., tuple[np.ndarray, np.ndarray, bool]]) -> Callable:
    """Stage ``f(x, kept, **params)`` looping ``func`` over the pixels (columns) of ``x``."""

    @functools.wraps(func)
    def stage(x: np.ndarray, kept: np.ndarray, *, tie_rtol: float | None = None, **params):
        n = x.shape[0]
        xs, ks = x.reshape(n, -1), kept.reshape(n, -1)
        low, high = np.zeros_like(ks), np.zeros_like(ks)
        near_tie = np.zeros(xs.shape[1], dtype=bool)
        for p in range(xs.shape[1]):
            idx = np.flatnonzero(ks[:, p])
            if idx.size:
                lo, hi, near_tie[p] = func(xs[idx, p], tie_rtol=tie_rtol, **params)
                low[idx[lo], p] = True
                high[idx[hi], p] = True
        return low.reshape(kept.shape), high.reshape(kept.shape), near_tie.reshape(x.shape[1:])

    return stage


def _near(values: np.ndarray, bound: float, tol: float | None) -> bool:
    """True when some value lies within ``tol`` of ``bound`` (never when ``tol`` is None)."""
    return tol is not None and bool(np.any(np.abs(values - bound) <= tol))


def _median1(v: np.ndarray) -> float:
    """Median; of an even count the mean of the two middle values (as np.median)."""
    return float(np.median(v))


def _iterate(
    v: np.ndarray,
    one_pass: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, bool]],
    maxiters: int | None,
    min_kept: int = 1,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The outer loop of winsorized and linear_fit (sigma's own, vectorised, is above).

    ``one_pass(w)`` gets the values still kept and returns their new low/high masks;
    stop when a pass rejects nothing, after ``maxiters`` passes, or when fewer than
    ``min_kept`` values are kept.
    """
    keep = np.ones(v.size, dtype=bool)
    low, high = np.zeros_like(keep), np.zeros_like(keep)
    near_tie = False
    iteration = 0
    while keep.sum() >= min_kept and (maxiters is None or iteration < maxiters):
        iteration += 1
        idx = np.flatnonzero(keep)
        new_low, new_high, tie = one_pass(v[idx])
        near_tie |= tie
        if not (new_low.any() or new_high.any()):
            break
        low[idx[new_low]] = True
        high[idx[new_high]] = True
        keep[idx[new_low | new_high]] = False
    return low, high, near_tie


#: Winsorization constants (REJECTION_SPEC.md).
WINSOR_CLIP, WINSOR_GAIN, WINSOR_RTOL, WINSOR_ROUNDS = 1.5, 1.134, 5e-4, 50


def winsorized_scale(w: np.ndarray) -> tuple[float, list[float]]:
    """Median and the sequence of winsorized scales of the values ``w``.

    Returns ``(med, [s_0, s_1, ..., s_last])``: ``s_0 = mad_std(w)``, then
    ``s_{j+1} = 1.134 * std(clip(w, med - 1.5 s_j, med + 1.5 s_j))`` until
    ``|s_{j+1} - s_j| <= 5e-4 * s_j`` (that ``s_{j+1}`` is the last) or 50 rounds.
    """
    med = _median1(w)
    s = MAD_TO_STD * _median1(np.abs(w - med))
    history = [s]
    for _ in range(WINSOR_ROUNDS):
        clipped = np.clip(w, med - WINSOR_CLIP * s, med + WINSOR_CLIP * s)
        s_new = WINSOR_GAIN * float(np.std(clipped))
        done = abs(s_new - s) <= WINSOR_RTOL * s
        s = s_new
        history.append(s)
        if done:
            break
    return med, history


def winsorized_pixel(
    v: np.ndarray,
    *,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 5,
    tie_rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Winsorized sigma clipping of one pixel: bounds ``med -/+ sigma * s_last``."""

    def one_pass(w):
        med, hist = winsorized_scale(w)
        s = hist[-1]
        lo, hi = med - sigma_lower * s, med + sigma_upper * s
        tie = False
        if tie_rtol is not None:
            tol = tie_rtol * max(abs(med), s)
            # s == 0 exactly: the bounds are the exact median (see sigma_stage)
            tie = s != 0 and (_near(w, lo, tol) or _near(w, hi, tol))
            # the convergence test taken the other way gives a visibly different s
            for s0, s1 in zip(hist[:-1], hist[1:], strict=True):
                tie |= s0 > 0 and abs(abs(s1 - s0) - WINSOR_RTOL * s0) <= tie_rtol * s0
        return w < lo, w > hi, tie

    return _iterate(v, one_pass, maxiters)


def line_fit(y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``y ~ a + b * r`` over ranks ``r = 0..m-1``; returns ``(a, b)``."""
    r = np.arange(y.size, dtype=np.float64)
    rc, yc = r - r.mean(), y - y.mean()
    b = float(np.sum(rc * yc) / np.sum(rc * rc))
    return float(y.mean() - b * r.mean()), b


def linear_fit_pixel(
    v: np.ndarray,
    *,
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 5,
    tie_rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Linear-fit clipping of one pixel: line through the sorted values against rank.

    Equal values are ranked in frame order (a stable sort, the (value, frame index) order
    of extrema); which of them is rejected matters when frames are weighted.
    """

    def one_pass(w):
        order = np.argsort(w, kind="stable")
        y = w[order]
        a, b = line_fit(y)
        fit = a + b * np.arange(y.size)
        sigma_fit = float(np.mean(np.abs(y - fit)))
        below, above = fit - y, y - fit
        tol = None if tie_rtol is None else tie_rtol * float(np.max(np.abs(y)))
        tie = _near(below, sigma_lower * sigma_fit, tol) or _near(
            above, sigma_upper * sigma_fit, tol
        )
        low, high = np.zeros(w.size, dtype=bool), np.zeros(w.size, dtype=bool)
        low[order] = below > sigma_lower * sigma_fit
        high[order] = above > sigma_upper * sigma_fit
        return low, high, tie

    return _iterate(v, one_pass, maxiters, min_kept=5)


def percentile_pixel(
    v: np.ndarray,
    *,
    percentile_low: float = 0.2,
    percentile_high: float = 0.1,
    tie_rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass: reject ``(med - x)/med > percentile_low`` low, ``(x - med)/med > ...`` high."""
    med = _median1(v)
    if med == 0:
        return np.zeros(v.size, dtype=bool), np.zeros(v.size, dtype=bool), False
    rel_low = (med - v) / med
    rel_high = (v - med) / med
    tie = False
    if tie_rtol is not None:
        # rounding of med (up to ~eps * max|v|, e.g. (a + b)/2 with a ~ -b) moves the
        # ratios by |x| * max|v| / med^2 relative; near med == 0 every decision can flip.
        big = float(np.max(np.abs(v)))
        tol = tie_rtol * (1.0 + np.abs(rel_low) + np.abs(v) * big / med**2)
        near = (np.abs(rel_low - percentile_low) <= tol) | (
            np.abs(rel_high - percentile_high) <= tol
        )
        # x == med gives exactly 0 in any formulation: no tie even with a limit of 0
        tie = abs(med) <= tie_rtol * big or bool(np.any(near & (v != med)))
    return rel_low > percentile_low, rel_high > percentile_high, tie


def minmax_pixel(
    v: np.ndarray,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    tie_rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass: reject ``x < min_value`` low and ``x > max_value`` high (None: no bound)."""
    low = v < min_value if min_value is not None else np.zeros(v.size, dtype=bool)
    high = v > max_value if max_value is not None else np.zeros(v.size, dtype=bool)
    return low, high, False  # exact comparisons of the input values: no near ties


def extrema_pixel(
    v: np.ndarray, *, n_low: int = 1, n_high: int = 1, tie_rtol: float | None = None
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass: the ``n_low`` lowest and then ``n_high`` highest of the kept values."""
    m = v.size
    order = np.lexsort((np.arange(m), v))  # by value, then frame index
    n_lo = min(n_low, m)
    n_hi = min(n_high, m - n_lo)
    low, high = np.zeros(m, dtype=bool), np.zeros(m, dtype=bool)
    low[order[:n_lo]] = True
    high[order[m - n_hi :]] = True
    return low, high, False  # counts depend on the values only: exact


@functools.lru_cache(maxsize=4096)
def esd_lambda(esd_alpha: float, n_i: int) -> float:
    """Rosner's critical value lambda for ``n_i`` values left.

    ``t`` = Student-t quantile at ``1 - esd_alpha / (2 n_i)`` with ``n_i - 2`` degrees of
    freedom; ``lambda = (n_i - 1) t / sqrt(n_i (n_i - 2 + t^2))``.
    """
    t = float(student_t.ppf(1.0 - esd_alpha / (2.0 * n_i), n_i - 2))
    return (n_i - 1) * t / float(np.sqrt(n_i * (n_i - 2 + t * t)))


def esd_statistics(
    v: np.ndarray, *, esd_alpha: float, k: int, tie_rtol: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Rosner's generalized ESD candidates and statistics for the values ``v`` (frame order).

    Returns ``(candidates, R, lam, near_tie)``: indices into ``v`` of x_1..x_i, the
    statistics R_i and the critical values lambda_i, for i = 1..k while n_i >= 3.
    """
    left = np.arange(v.size)
    cands, stats, lams = [], [], []
    near_tie = False
    for i in range(1, k + 1):
        n_i = v.size - (i - 1)
        if n_i < 3:
            break
        w = v[left]
        mean, sd = float(np.mean(w)), float(np.std(w, ddof=1))
        up, down = float(w.max()) - mean, mean - float(w.min())
        if tie_rtol is not None:
            d = abs(up - down)
            near_tie |= 0 < d <= tie_rtol * float(np.max(np.abs(w)))
        # Equal values: the (value, frame index) order of extrema decides which frame is the
        # candidate (it matters with weights): the last of the maxima, the first of the minima.
        pick = int(np.flatnonzero(w == w.max())[-1]) if up >= down else int(np.argmin(w))
        cands.append(left[pick])
        stats.append(abs(float(w[pick]) - mean) / sd if sd > 0 else 0.0)
        lams.append(esd_lambda(esd_alpha, n_i))
        left = np.delete(left, pick)
    return np.array(cands, dtype=np.int64), np.array(stats), np.array(lams), near_tie


def esd_pixel(
    v: np.ndarray,
    *,
    esd_alpha: float = 0.05,
    esd_max_outliers: float = 0.3,
    tie_rtol: float | None = None,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """One pass of the generalized ESD test; candidates 1..j out, low/high by the median."""
    k = int(np.floor(esd_max_outliers * v.size))
    cands, stats, lams, tie = esd_statistics(v, esd_alpha=esd_alpha, k=k, tie_rtol=tie_rtol)
    if tie_rtol is not None:
        tie |= bool(np.any(np.abs(stats - lams) <= tie_rtol * lams))
    significant = np.flatnonzero(stats > lams)
    out = cands[: significant[-1] + 1] if significant.size else cands[:0]
    med0 = _median1(v)
    low, high = np.zeros(v.size, dtype=bool), np.zeros(v.size, dtype=bool)
    low[out[v[out] < med0]] = True
    high[out[v[out] >= med0]] = True
    return low, high, tie


#: Stage name -> stage function ``f(x, kept, **params) -> (low, high, near_tie)``.
STAGES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
    "sigma": sigma_stage,
    "winsorized": _pixelwise(winsorized_pixel),
    "linear_fit": _pixelwise(linear_fit_pixel),
    "percentile": _pixelwise(percentile_pixel),
    "minmax": _pixelwise(minmax_pixel),
    "extrema": _pixelwise(extrema_pixel),
    "esd": _pixelwise(esd_pixel),
}


def _stage_list(reject: Any, defaults: dict[str, Any]) -> list[tuple[Callable, dict[str, Any]]]:
    """Normalise ``reject`` into ``(stage function, parameters)`` pairs.

    A stage takes, from ``defaults``, the keyword-only parameters its signature names
    (``tie_rtol`` aside); those given explicitly in a dict stage must all be known to it.
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
        sig = inspect.signature(func).parameters.values()
        accepted = {p.name for p in sig if p.kind is p.KEYWORD_ONLY} - {"tie_rtol"}
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
    percentile_low: float = 0.2,
    percentile_high: float = 0.1,
    n_low: int = 1,
    n_high: int = 1,
    min_value: float | None = None,
    max_value: float | None = None,
    esd_alpha: float = 0.05,
    esd_max_outliers: float = 0.3,
    combine: str = "mean",
    weights: np.ndarray | None = None,
    fallback: str | None = None,
    tie_rtol: float | None = None,
) -> dict[str, np.ndarray]:
    """Reject and combine ``stack`` along axis 0, by DESIGN.md's semantics.

    Parameters
    ----------
    stack : ndarray, shape (n_frames, ...)
        Any real dtype; computed in float64. NaN and +-inf are missing.
    reject : None, str or sequence of str/dict
        ``None``, a method name (a key of :data:`STAGES`) or a list of stages applied
        in order. A dict stage is ``{"method": name, **params}``; parameters it
        does not give come from the keyword arguments below (each stage
        function takes the ones its signature names).
    sigma_lower, sigma_upper, maxiters, center, spread : see :func:`sigma_stage`.
        sigma_lower/sigma_upper/maxiters also drive winsorized and linear_fit.
    percentile_low, percentile_high : float
        percentile stage.
    n_low, n_high : int
        extrema stage.
    min_value, max_value : float or None
        minmax stage.
    esd_alpha, esd_max_outliers : float
        esd stage.
    combine : {"mean", "median", "sum", "min", "max"}
    weights : ndarray, shape (n_frames,), optional
        Frame weights for a weighted mean.
    fallback : {None, "median"}
        ``"median"``: where nothing is kept but something is finite, the image is the
        median of all finite values (count 0, noise NaN).
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
        "percentile_low": percentile_low,
        "percentile_high": percentile_high,
        "n_low": n_low,
        "n_high": n_high,
        "min_value": min_value,
        "max_value": max_value,
        "esd_alpha": esd_alpha,
        "esd_max_outliers": esd_max_outliers,
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
        if fallback == "median":
            everything = _median(x)  # of all finite values, before any rejection
            image = np.where(kept.any(axis=0), image, everything)
        elif fallback is not None:
            raise ValueError(f"unknown fallback {fallback!r}")
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


def star_fwhm(img: np.ndarray) -> float:
    """The median star FWHM of an image by sep (independent of stackengine): twice the
    half-flux radius of unflagged, unsaturated stars above 10 sigma."""
    import sep

    img = np.nan_to_num(np.asarray(img, dtype=np.float64)).copy(order="C")
    bkg = sep.Background(img)
    data = img - bkg
    obj = sep.extract(data, 10, err=bkg.globalrms)
    obj = obj[(obj["flag"] == 0) & (obj["peak"] < 30000)]
    r, _ = sep.flux_radius(data, obj["x"], obj["y"], 6.0 * obj["a"], 0.5, subpix=5)
    return 2 * float(np.median(r))
