"""stack(): validate parameters, plan tiles, assemble the lazy graph."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ._version import __version__
from .errors import ParameterError
from .frames import _from_memory, source_of, tiled_array
from .io.fused import packed_plane, remember_tiles
from .kernels.combine import COMBINE_CODES
from .kernels.engine import N_OUT
from .normalize.plan import Normalization, check_mode, plan_normalization
from .plan import parse_memory
from .rejection import REJECTIONS, plan_stages
from .tiles import packed_dtype, read_reduce_tile, reduce_tile
from .weights import frame_weights

__all__ = ["stack", "count_dtype", "REJECTIONS", "COMBINES"]

COMBINES = tuple(COMBINE_CODES)


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


def _weights(
    weights: Any, frames: xr.DataArray, combine: str, norm: Normalization | None
) -> np.ndarray | None:
    if isinstance(weights, str) and weights == "photometric":
        if norm is None:
            raise ParameterError("weights='photometric' needs a normalization (normalize=...)")
        # NormalizeScaleGradient's NWEIGHT: (noise of the reference / noise after scaling)^2
        noise = norm.noise_after()
        ratio = (noise[norm.reference] / noise) ** 2
        return ratio.mean(axis=1)
    scale = None if norm is None else np.abs(norm.scale).mean(axis=1)
    return frame_weights(weights, frames, scale=scale)


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ParameterError(f"{name}={value!r}: must be a number >= 0")
    return float(value)


def _plain(value: Any) -> Any:
    """``value`` as a JSON-able scalar for ``attrs`` (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _fits_header(arr: xr.DataArray) -> str | None:
    source = source_of(arr.data)
    if source is None:
        return None
    full_header = getattr(source.frames[0], "full_header", None)
    return full_header().tostring() if full_header is not None else None


def count_dtype(n_frames: int) -> np.dtype:
    """The dtype of the count and rejection maps: int16, which holds any count of up
    to 32767 frames (half the bytes of int32 to write, as Siril's and PixInsight's
    16-bit rejection maps), else int32."""
    return np.dtype(np.int16 if n_frames <= np.iinfo(np.int16).max else np.int32)


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
    fallback: str | None = None,
    smoothness: float = 2.0,
    star_fallback: str | None = None,
) -> xr.Dataset:
    """Reject outliers pixel by pixel along the frame axis and combine the frames.

    Parameters
    ----------
    frames : xarray.DataArray or array
        From :func:`open_frames`, or any (frame, y, x[, channel]) array.
    normalize : None or str
        Per-frame normalization against a reference frame, applied inside the
        tile tasks before rejection and combination: "additive",
        "multiplicative", "additive+scale", "multiplicative+scale" (global,
        from each frame's median and mad_std) or "photometric" (a scale from
        star photometry plus a smooth gradient model, in the style of
        NormalizeScaleGradient). Measuring the frames (pass 1) reads them once.
    reject : None, str or list of str
        Rejection stages applied in order: "sigma", "winsorized",
        "linear_fit", "percentile", "minmax", "extrema", "esd" (see the
        rejection docs for each algorithm's exact definition).
    sigma_lower, sigma_upper : float
        Clipping thresholds of sigma, winsorized and linear_fit, in units of
        their spread (>= 0).
    maxiters : int or None
        Iterations of sigma, winsorized and linear_fit; None iterates until
        nothing new is rejected.
    center : {"median", "mean"}
        Center estimator of sigma clipping.
    spread : {"mad_std", "std"}
        Spread estimator (mad_std = 1.482602218505602 x MAD; std has ddof 0).
    percentile_low, percentile_high : float
        percentile: reject ``(median - x)/median > percentile_low`` and
        ``(x - median)/median > percentile_high``.
    n_low, n_high : int
        extrema: how many of the lowest and highest values to reject
        (``n_low + n_high`` below the number of frames).
    min_value, max_value : float or None
        minmax: reject values below / above them (None: no bound).
    esd_alpha, esd_max_outliers : float
        esd: significance level in (0, 1) and the largest share of the values
        that may be rejected, in [0, 1).
    reference : int, str or None
        The normalization reference: a frame index or path; None picks the
        frame with the darkest background (photometric: among those within
        10 % of the darkest, the one with the most stars).
    combine : {"mean", "median", "sum", "min", "max"}
        How the kept values are combined.
    weights : None, "exptime", "noise", "photometric", "keyword:NAME" or 1-D array
        Frame weights for the weighted mean (combine="mean" only): the
        EXPTIME/EXPOSURE header, the inverse variance of each frame's noise
        measured in a per-frame pass, any numeric header keyword (e.g.
        NormalizeScaleGradient's NWEIGHT), or one value per frame.
        "photometric" (with a normalization) is
        ``(noise_reference / noise_i after normalization)**2``, as NSG's NWEIGHT.
    memory_limit : str or int
        Memory budget per worker, used to plan the tile size.
    smoothness : float
        Photometric mode: smoothness of the gradient surface (0 follows the
        background samples exactly; larger is smoother; default 2).
    star_fallback : None or "additive+scale"
        Photometric mode: what to do with a frame that has too few stars
        matched to the reference: raise an error naming it (None), or
        normalize that frame with "additive+scale" and warn.
    fallback : None or "median"
        Where every value of a pixel was rejected: NaN (None), or the median
        of its non-missing values (PixInsight's behaviour); count stays 0.

    Returns
    -------
    xarray.Dataset
        Lazy variables "image" (float32), "count", "rejected_low",
        "rejected_high" (int16; int32 beyond 32767 frames, see
        :func:`count_dtype`) and "noise" (float32, the standard error of the
        combined value) over (y, x[, channel]); ``attrs`` record every
        parameter, ``n_frames`` and the stackengine version.

    Raises
    ------
    ParameterError
        An invalid parameter, detected before any pixel is read.
    """
    arr = _input_array(frames)
    n = arr.sizes["frame"]
    check_mode(normalize)
    if star_fallback not in (None, "additive+scale"):
        raise ParameterError(f"star_fallback={star_fallback!r}: choose None or 'additive+scale'")
    smoothness = _nonnegative("smoothness", smoothness)
    if combine not in COMBINE_CODES:
        raise ParameterError(f"combine={combine!r}: choose from {', '.join(COMBINES)}")
    if fallback not in (None, "median"):
        raise ParameterError(f"fallback={fallback!r}: choose None or 'median'")
    params = dict(
        sigma_lower=sigma_lower,
        sigma_upper=sigma_upper,
        maxiters=maxiters,
        center=center,
        spread=spread,
        percentile_low=percentile_low,
        percentile_high=percentile_high,
        n_low=n_low,
        n_high=n_high,
        min_value=min_value,
        max_value=max_value,
        esd_alpha=esd_alpha,
        esd_max_outliers=esd_max_outliers,
    )
    if n < 1:
        raise ParameterError("no frames to stack")
    plan = plan_stages(reject, n, params)
    parse_memory(memory_limit)
    if weights is not None and combine != "mean":
        raise ParameterError(f"weights apply to combine='mean' only, not combine={combine!r}")
    # the checks above read nothing; normalization and weights="noise" read pixels (pass 1)
    norm = None
    if normalize is not None:
        norm = plan_normalization(
            arr,
            normalize,
            reference=reference,
            smoothness=smoothness,
            star_fallback=star_fallback,
        )
    w = _weights(weights, arr, combine, norm)

    data = tiled_array(arr, memory_limit)
    use_w = w is not None
    wts = w if use_w else np.ones(n, dtype=np.float64)
    args = (
        plan.codes,
        plan.params,
        plan.tables,
        COMBINE_CODES[combine],
        wts,
        use_w,
        fallback == "median",
        norm,
    )
    out = dict(
        chunks=((N_OUT,),) + data.chunks[1:],
        dtype=packed_dtype(n),
        meta=np.empty((0,) * data.ndim, dtype=packed_dtype(n)),
        name="stack-" + data.name,
    )
    source = source_of(data)
    if source is not None:  # frames from files: read inside the tile tasks
        packed = da.map_blocks(read_reduce_tile, source, *args, **out)
        remember_tiles(packed, source, args)
    else:
        packed = da.map_blocks(reduce_tile, data, *args, **out)
    dims = arr.dims[1:]
    coords = {k: v for k, v in arr.coords.items() if "frame" not in v.dims}
    counts = count_dtype(n)
    variables = {
        "image": (dims, packed_plane(packed, 0, np.float32)),
        "count": (dims, packed_plane(packed, 1, counts)),
        "rejected_low": (dims, packed_plane(packed, 2, counts)),
        "rejected_high": (dims, packed_plane(packed, 3, counts)),
        "noise": (dims, packed_plane(packed, 4, np.float32)),
    }
    if norm is not None:
        variables.update(norm.variables(arr.ndim == 4))
    if use_w:
        variables["weight"] = (("frame",), w)
    if (norm is not None or use_w) and "path" in arr.coords:
        coords["path"] = arr.coords["path"]
    attrs: dict[str, Any] = {
        "normalize": normalize,
        "reject": list(plan.names) if not isinstance(reject, str | None) else reject,
        **{k: _plain(v) for k, v in params.items()},
        "combine": combine,
        "weights": weights if isinstance(weights, str | None) else "array",
        "fallback": fallback,
        "reference": _plain(reference),
        "reference_frame": None if norm is None else int(norm.reference),
        "smoothness": smoothness,
        "star_fallback": star_fallback,
        "memory_limit": _plain(memory_limit),
        "n_frames": int(n),
        "input_dtype": str(arr.dtype),
        "stackengine_version": __version__,
    }
    header = _fits_header(arr)
    if header is not None:
        attrs["fits_header"] = header
    return xr.Dataset(variables, coords=coords, attrs=attrs)
