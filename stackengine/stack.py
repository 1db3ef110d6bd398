"""stack(): validate parameters, plan tiles, assemble the lazy graph."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ._version import __version__
from .errors import ParameterError
from .frames import _from_memory, source_of, stack_array
from .kernels.combine import COMBINE_CODES
from .kernels.engine import N_OUT, N_STAGE_PARAMS, STAGE_SIGMA, reduce_block
from .kernels.sigma import CENTER_MEAN, CENTER_MEDIAN, SPREAD_MAD_STD, SPREAD_STD
from .plan import parse_memory, plan_tiles

__all__ = ["stack", "REJECTIONS", "COMBINES"]

REJECTIONS = ("sigma",)
PLANNED_REJECTIONS = ("winsorized", "linear_fit", "percentile", "minmax", "extrema", "esd")
COMBINES = tuple(COMBINE_CODES)
NORMALIZATIONS = (
    "additive",
    "multiplicative",
    "additive+scale",
    "multiplicative+scale",
    "photometric",
)
_CENTERS = {"median": CENTER_MEDIAN, "mean": CENTER_MEAN}
_SPREADS = {"mad_std": SPREAD_MAD_STD, "std": SPREAD_STD}


def _number(name: str, value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ParameterError(f"{name}={value!r}: must be a finite number")
    if value < minimum:
        raise ParameterError(f"{name}={value!r}: must be >= {minimum:g}")
    return float(value)


def _stages(reject: Any, p: dict[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Validate the rejection stages and encode them for the kernel."""
    if reject is None:
        names: list[str] = []
    elif isinstance(reject, str):
        names = [reject]
    elif isinstance(reject, list | tuple):
        names = list(reject)
    else:
        raise ParameterError(f"reject={reject!r}: expected None, a name or a list of names")
    codes = np.zeros(len(names), dtype=np.int64)
    params = np.zeros((len(names), N_STAGE_PARAMS), dtype=np.float64)
    for i, name in enumerate(names):
        if name in PLANNED_REJECTIONS:
            raise ParameterError(f"reject={name!r}: not available in this version (use 'sigma')")
        if name not in REJECTIONS:
            raise ParameterError(
                f"reject={name!r}: unknown rejection; choose from None, {', '.join(REJECTIONS)}"
            )
        if name == "sigma":
            maxiters = p["maxiters"]
            if maxiters is not None and (
                isinstance(maxiters, bool) or not isinstance(maxiters, int) or maxiters < 1
            ):
                raise ParameterError(f"maxiters={maxiters!r}: must be an integer >= 1 or None")
            if p["center"] not in _CENTERS:
                raise ParameterError(f"center={p['center']!r}: choose 'median' or 'mean'")
            if p["spread"] not in _SPREADS:
                raise ParameterError(f"spread={p['spread']!r}: choose 'mad_std' or 'std'")
            codes[i] = STAGE_SIGMA
            params[i, :5] = (
                _number("sigma_lower", p["sigma_lower"]),
                _number("sigma_upper", p["sigma_upper"]),
                -1 if maxiters is None else maxiters,
                _CENTERS[p["center"]],
                _SPREADS[p["spread"]],
            )
    return names, codes, params


def _weights(weights: Any, frames: xr.DataArray, combine: str) -> np.ndarray | None:
    if weights is None:
        return None
    n = frames.sizes["frame"]
    if isinstance(weights, str):
        if weights == "exptime":
            if "exptime" not in frames.coords:
                raise ParameterError(
                    "weights='exptime': the frames have no EXPTIME/EXPOSURE header"
                )
            w = np.asarray(frames.coords["exptime"].values, dtype=np.float64)
        else:
            raise ParameterError(
                f"weights={weights!r}: not available in this version "
                "(use None, 'exptime' or an array)"
            )
    else:
        w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ParameterError(f"weights: expected {n} values (one per frame), got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ParameterError("weights: must be finite, non-negative and not all zero")
    if combine != "mean":
        raise ParameterError(f"weights apply to combine='mean' only, not combine={combine!r}")
    return w


def _input_array(frames: Any) -> xr.DataArray:
    if isinstance(frames, xr.DataArray):
        arr = frames
    else:
        arr = _from_memory(frames, None)
    if arr.dims[:3] != ("frame", "y", "x") or arr.ndim not in (3, 4):
        raise ParameterError(
            f"frames must have dims ('frame', 'y', 'x'[, 'channel']), got {arr.dims}"
        )
    return arr


def _tiled(arr: xr.DataArray, memory_limit: str | int) -> da.Array:
    """The frames as a dask array with one chunk along frames and planned tiles."""
    data = arr.data
    source = source_of(data)
    itemsize = np.dtype(arr.dtype).itemsize
    block = source.block if source is not None else (1, 0)
    tile = plan_tiles(arr.shape, itemsize, memory_limit, block=block)
    if source is not None:
        return stack_array(source, tile)
    chunks = (-1, *tile) + (-1,) * (arr.ndim - 3)
    if isinstance(data, da.Array):
        return data.rechunk(chunks)
    return da.from_array(np.asarray(data), chunks=chunks)


def _block_kernel(block, stages, stage_params, combine, weights, use_weights):
    n = block.shape[0]
    flat = np.ascontiguousarray(block).reshape(n, -1)
    out = reduce_block(flat, stages, stage_params, combine, weights, use_weights)
    return out.reshape((N_OUT,) + block.shape[1:])


def _fits_header(arr: xr.DataArray) -> str | None:
    source = source_of(arr.data)
    if source is None:
        return None
    full_header = getattr(source.frames[0], "full_header", None)
    return full_header().tostring() if full_header is not None else None


def stack(
    frames: Any,
    *,
    normalize: str | None = None,
    reject: str | list[str] | None = "sigma",
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
    reference: int | str | None = None,
    combine: str = "mean",
    weights: Any = None,
    memory_limit: str | int = "1GiB",
) -> xr.Dataset:
    """Reject outliers pixel by pixel along the frame axis and combine the frames.

    Parameters
    ----------
    frames : xarray.DataArray or array
        From :func:`open_frames`, or any (frame, y, x[, channel]) array.
    normalize : None
        Per-frame normalization (not available in this version; must be None).
    reject : None, "sigma" or list of names
        Rejection stages applied in order.
    sigma_lower, sigma_upper : float
        Clipping thresholds in units of the spread (>= 0).
    maxiters : int or None
        Sigma-clipping iterations; None iterates until nothing new is rejected.
    center : {"median", "mean"}
        Center estimator of sigma clipping.
    spread : {"mad_std", "std"}
        Spread estimator (mad_std = 1.482602218505602 x MAD; std has ddof 0).
    percentile_low, percentile_high, n_low, n_high : float, int
        Parameters of the percentile and extrema rejections.
    min_value, max_value, esd_alpha, esd_max_outliers : float or None
        Parameters of the other rejection algorithms (recorded in ``attrs``;
        those algorithms are not available in this version).
    reference : int, str or None
        Normalization reference (unused without normalization).
    combine : {"mean", "median", "sum", "min", "max"}
        How the kept values are combined.
    weights : None, "exptime" or 1-D array
        Frame weights for the weighted mean (combine="mean" only).
    memory_limit : str or int
        Memory budget per worker, used to plan the tile size.

    Returns
    -------
    xarray.Dataset
        Lazy variables "image" (float32), "count", "rejected_low",
        "rejected_high" (int32) and "noise" (float32, the standard error of the
        combined value) over (y, x[, channel]); ``attrs`` record every
        parameter, ``n_frames`` and the stackengine version.

    Raises
    ------
    ParameterError
        An invalid parameter, detected before any pixel is read.
    """
    arr = _input_array(frames)
    n = arr.sizes["frame"]
    if normalize is not None:
        if normalize in NORMALIZATIONS:
            raise ParameterError(f"normalize={normalize!r}: not available in this version")
        raise ParameterError(f"normalize={normalize!r}: unknown normalization")
    if combine not in COMBINE_CODES:
        raise ParameterError(f"combine={combine!r}: choose from {', '.join(COMBINES)}")
    params = dict(
        sigma_lower=sigma_lower,
        sigma_upper=sigma_upper,
        maxiters=maxiters,
        center=center,
        spread=spread,
    )
    names, codes, stage_params = _stages(reject, params)
    if names and n < 2:
        raise ParameterError(f"rejection needs at least 2 frames, got {n}")
    if n < 1:
        raise ParameterError("no frames to stack")
    w = _weights(weights, arr, combine)
    parse_memory(memory_limit)

    data = _tiled(arr, memory_limit)
    use_w = w is not None
    wts = w if use_w else np.ones(n, dtype=np.float64)
    packed = da.map_blocks(
        _block_kernel,
        data,
        codes,
        stage_params,
        COMBINE_CODES[combine],
        wts,
        use_w,
        chunks=((N_OUT,),) + data.chunks[1:],
        dtype=np.float64,
        meta=np.empty((0,) * data.ndim, dtype=np.float64),
        name="stack-" + data.name,
    )
    dims = arr.dims[1:]
    coords = {k: v for k, v in arr.coords.items() if "frame" not in v.dims}
    variables = {
        "image": (dims, packed[0].astype(np.float32)),
        "count": (dims, packed[1].astype(np.int32)),
        "rejected_low": (dims, packed[2].astype(np.int32)),
        "rejected_high": (dims, packed[3].astype(np.int32)),
        "noise": (dims, packed[4].astype(np.float32)),
    }
    if use_w:
        variables["weight"] = (("frame",), w)
        if "path" in arr.coords:
            coords["path"] = arr.coords["path"]
    attrs: dict[str, Any] = {
        "normalize": normalize,
        "reject": reject if not isinstance(reject, tuple) else list(reject),
        "sigma_lower": float(sigma_lower),
        "sigma_upper": float(sigma_upper),
        "maxiters": maxiters,
        "center": center,
        "spread": spread,
        "combine": combine,
        "weights": weights if isinstance(weights, str | type(None)) else "array",
        "percentile_low": float(percentile_low),
        "percentile_high": float(percentile_high),
        "n_low": int(n_low),
        "n_high": int(n_high),
        "min_value": min_value,
        "max_value": max_value,
        "esd_alpha": float(esd_alpha),
        "esd_max_outliers": float(esd_max_outliers),
        "reference": reference,
        "memory_limit": memory_limit,
        "n_frames": int(n),
        "input_dtype": str(arr.dtype),
        "stackengine_version": __version__,
    }
    header = _fits_header(arr)
    if header is not None:
        attrs["fits_header"] = header
    return xr.Dataset(variables, coords=coords, attrs=attrs)
