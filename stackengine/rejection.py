"""Rejection parameters: validation (before any pixel is read) and encoding for the kernels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

from .errors import ParameterError
from .kernels.engine import N_STAGE_PARAMS, STAGE_CODES
from .kernels.esd import esd_lambdas
from .kernels.sigma import (
    CENTER_MEAN,
    CENTER_MEDIAN,
    SPREAD_MAD_STD,
    SPREAD_STD,
    SPREAD_WINSORIZED,
)

__all__ = ["REJECTIONS", "StagePlan", "plan_stages"]

#: every rejection algorithm, in ccdproc's customary order of application
REJECTIONS = ("extrema", "minmax", "percentile", "sigma", "winsorized", "linear_fit", "esd")
_CENTERS = {"median": CENTER_MEDIAN, "mean": CENTER_MEAN}
_SPREADS = {"mad_std": SPREAD_MAD_STD, "std": SPREAD_STD}


@dataclass(frozen=True)
class StagePlan:
    """The encoded stages: names, kernel codes, parameter rows and lookup tables."""

    names: tuple[str, ...]
    codes: np.ndarray
    params: np.ndarray
    tables: np.ndarray


def _number(name: str, value: Any, *, minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ParameterError(f"{name}={value!r}: must be a finite number")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name}={value!r}: must be >= {minimum:g}")
    return float(value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 0:
        raise ParameterError(f"{name}={value!r}: must be a non-negative integer")
    return int(value)


def _maxiters(value: Any) -> int:
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ParameterError(f"maxiters={value!r}: must be an integer >= 1 or None")
    return int(value)


def _names(reject: Any) -> list[str]:
    if reject is None:
        return []
    names = [reject] if isinstance(reject, str) else reject
    if not isinstance(names, list | tuple):
        raise ParameterError(f"reject={reject!r}: expected None, a name or a list of names")
    for name in names:
        if name not in REJECTIONS:
            raise ParameterError(
                f"reject={name!r}: unknown rejection; choose from None, {', '.join(REJECTIONS)}"
            )
    return list(names)


def plan_stages(reject: Any, n_frames: int, p: dict[str, Any]) -> StagePlan:
    """Validate ``reject`` and the parameters it uses; encode them for the kernel.

    ``p`` holds the keyword parameters of :func:`stackengine.stack`.
    """
    names = _names(reject)
    if names and n_frames < 2:
        raise ParameterError(f"rejection needs at least 2 frames, got {n_frames}")
    codes = np.zeros(len(names), dtype=np.int64)
    params = np.zeros((len(names), N_STAGE_PARAMS), dtype=np.float64)
    tables = np.zeros((len(names), n_frames + 1), dtype=np.float64)
    for i, name in enumerate(names):
        codes[i] = STAGE_CODES[name]
        if name in ("sigma", "winsorized", "linear_fit"):
            lower = _number("sigma_lower", p["sigma_lower"])
            upper = _number("sigma_upper", p["sigma_upper"])
            maxiters = _maxiters(p["maxiters"])
            params[i, :3] = (lower, upper, maxiters)
        if name == "sigma":
            if p["center"] not in _CENTERS:
                raise ParameterError(f"center={p['center']!r}: choose 'median' or 'mean'")
            if p["spread"] not in _SPREADS:
                raise ParameterError(f"spread={p['spread']!r}: choose 'mad_std' or 'std'")
            params[i, 3:5] = (_CENTERS[p["center"]], _SPREADS[p["spread"]])
        elif name == "winsorized":
            params[i, 3:5] = (CENTER_MEDIAN, SPREAD_WINSORIZED)
        elif name == "percentile":
            params[i, :2] = (
                _number("percentile_low", p["percentile_low"]),
                _number("percentile_high", p["percentile_high"]),
            )
        elif name == "minmax":
            lo = (
                -math.inf
                if p["min_value"] is None
                else _number("min_value", p["min_value"], minimum=None)
            )
            hi = (
                math.inf
                if p["max_value"] is None
                else _number("max_value", p["max_value"], minimum=None)
            )
            if lo > hi:
                raise ParameterError(f"min_value={lo:g} is above max_value={hi:g}")
            params[i, :2] = (lo, hi)
        elif name == "extrema":
            n_low = _count("n_low", p["n_low"])
            n_high = _count("n_high", p["n_high"])
            if n_low + n_high >= n_frames:
                raise ParameterError(
                    f"n_low + n_high = {n_low + n_high} would reject every one of the "
                    f"{n_frames} frames; it must be smaller than the number of frames"
                )
            params[i, :2] = (n_low, n_high)
        elif name == "esd":
            alpha = _number("esd_alpha", p["esd_alpha"])
            if not 0.0 < alpha < 1.0:
                raise ParameterError(f"esd_alpha={alpha!r}: must lie strictly between 0 and 1")
            share = _number("esd_max_outliers", p["esd_max_outliers"])
            if not share < 1.0:
                raise ParameterError(f"esd_max_outliers={share!r}: must lie in [0, 1)")
            params[i, 0] = share
            tables[i] = esd_lambdas(n_frames, alpha)
    return StagePlan(tuple(names), codes, params, tables)
