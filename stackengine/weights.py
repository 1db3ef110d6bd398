"""Frame weights for the weighted mean: ``stack(weights=...)``.

=====================  ==============================================================
``None``               no weights (plain mean)
1-D array              one finite, non-negative weight per frame, not all zero
``"exptime"``          the frames' EXPTIME (or EXPOSURE) header values
``"keyword:NAME"``     any numeric header keyword, e.g. ``"keyword:NWEIGHT"`` written by
                       PixInsight's NormalizeScaleGradient; FITS: the full header of
                       the frame's HDU; zarr: the array attributes; CCDData: its
                       ``meta``; TIFF: not available
``"noise"``            inverse variance ``1 / noise**2``, the noise measured in pass 1
                       (:func:`stackengine.normalize.measure_frames`); for colour
                       frames ``1 / mean over channels of noise**2``
=====================  ==============================================================

Every error is a :class:`~stackengine.errors.ParameterError` naming the frame
(file) and the problem. All but ``"noise"`` are checked from headers alone,
before any pixel is read; ``"noise"`` runs the measure pass.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
import xarray as xr

from .errors import ParameterError
from .frames import source_of
from .normalize.measure import measure_frames

__all__ = ["frame_weights", "WEIGHT_NAMES"]

WEIGHT_NAMES = ("noise", "exptime", "keyword:NAME")


def _label(frames: xr.DataArray, k: int) -> str:
    if "path" in frames.coords:
        return f"{frames.coords['path'].values[k]}"
    return f"frame {k}"


def _check(w: np.ndarray, frames: xr.DataArray, what: str) -> np.ndarray:
    """Finite, non-negative, not all zero; errors name the first bad frame."""
    for k, value in enumerate(w):
        if not math.isfinite(value):
            raise ParameterError(f"{_label(frames, k)}: {what}: weight is {value} (not finite)")
        if value < 0:
            raise ParameterError(f"{_label(frames, k)}: {what}: weight {value:g} is negative")
    if w.size and not w.sum() > 0:
        raise ParameterError(f"{what}: all weights are zero")
    return w


def _from_array(spec: Any, frames: xr.DataArray) -> np.ndarray:
    n = frames.sizes["frame"]
    try:
        w = np.asarray(spec, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"weights: expected numbers, one per frame ({exc})") from exc
    if w.shape != (n,):
        raise ParameterError(f"weights: expected {n} values (one per frame), got shape {w.shape}")
    return _check(w, frames, "weights")


def _exptime(frames: xr.DataArray) -> np.ndarray:
    what = "weights='exptime'"
    if "exptime" not in frames.coords:
        raise ParameterError(f"{_label(frames, 0)}: {what}: no EXPTIME or EXPOSURE header")
    values = frames.coords["exptime"].values
    out = np.empty(values.shape[0], dtype=np.float64)
    for k, v in enumerate(values):
        try:
            t = float(v)
        except (TypeError, ValueError):
            t = math.nan
        if math.isnan(t):
            raise ParameterError(
                f"{_label(frames, k)}: {what}: no numeric EXPTIME or EXPOSURE header"
            )
        if not t > 0 or not math.isfinite(t):
            raise ParameterError(f"{_label(frames, k)}: {what}: exposure time {t:g} is not > 0")
        out[k] = t
    return _check(out, frames, what)


def _number(value: Any) -> float | None:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    return float(value)


def _keyword(name: str, frames: xr.DataArray) -> np.ndarray:
    what = f"weights='keyword:{name}'"
    if not name:
        raise ParameterError(f"{what}: expected a header keyword after 'keyword:'")
    stack = source_of(frames.data)
    n = frames.sizes["frame"]
    out = np.empty(n, dtype=np.float64)
    if stack is None:  # in-memory frames: a coordinate of that name, or CCDData's meta
        coord = next((c for c in (name, name.lower()) if c in frames.coords), None)
        headers = frames.attrs.get("headers")
        labels = [_label(frames, k) for k in range(n)]
        if coord is not None and frames.coords[coord].dims == ("frame",):
            values = list(frames.coords[coord].values)
        elif isinstance(headers, list) and len(headers) == n:
            values = [h.get(name, h.get(name.upper(), h.get(name.lower()))) for h in headers]
        else:
            raise ParameterError(f"{what}: the frames have no headers and no '{name}' coordinate")
    else:
        values, labels, headers = [], [], {}
        for src in stack.frames:
            labels.append(str(src.path))
            full_header = getattr(src, "full_header", None)
            if type(src).__name__ == "TiffFrame":
                raise ParameterError(f"{src.path}: {what}: TIFF files have no header keywords")
            if full_header is not None:
                key = (src.path, getattr(src, "hdu", None))
                if key not in headers:
                    headers[key] = full_header()
                header = headers[key]
                values.append(header.get(name) if name in header else None)
            else:
                header = getattr(src, "header", {}) or {}
                values.append(header.get(name.upper(), header.get(name)))
    for k, v in enumerate(values):
        if v is None:
            raise ParameterError(f"{labels[k]}: {what}: no {name} keyword")
        x = _number(v)
        if x is None:
            raise ParameterError(f"{labels[k]}: {what}: {name} = {v!r} is not a number")
        out[k] = x
    return _check(out, frames, what)


def _noise(frames: xr.DataArray, scale: np.ndarray | None) -> np.ndarray:
    noise = measure_frames(frames)["noise"].values
    var = noise**2 if noise.ndim == 1 else np.mean(noise**2, axis=1)
    if scale is not None:
        var = var * scale**2
    for k, v in enumerate(var):
        if not (math.isfinite(v) and v > 0):
            raise ParameterError(
                f"{_label(frames, k)}: weights='noise': measured noise is {math.sqrt(v):g} "
                "(a constant or empty frame has no usable noise estimate)"
            )
    return _check(1.0 / var, frames, "weights='noise'")


def frame_weights(spec: Any, frames: xr.DataArray, *, scale: Any = None) -> np.ndarray | None:
    """Resolve ``stack(weights=spec)`` to one float64 weight per frame.

    Parameters
    ----------
    spec : None, str or 1-D array-like
        ``None``, ``"noise"``, ``"exptime"``, ``"keyword:NAME"`` or one weight
        per frame (see the module table).
    frames : xarray.DataArray
        The (frame, y, x[, channel]) frames, typically from
        :func:`stackengine.open_frames` (headers are read from its sources).
    scale : 1-D array-like, optional
        Multiplicative factors that normalization applies to each frame; the
        noise of frame i becomes ``scale[i] * noise[i]``, so ``"noise"``
        weights are ``1 / (scale * noise)**2``. Other kinds ignore it.

    Returns
    -------
    numpy.ndarray or None
        Shape (n_frames,), float64, finite, >= 0 and not all zero; None for
        ``spec=None``.

    Raises
    ------
    ParameterError
        Unknown kind, wrong length, a non-finite or negative weight, all zero,
        a frame without the header value (the message names its file), TIFF
        frames with ``"keyword:NAME"``.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "exptime":
            return _exptime(frames)
        if spec.startswith("keyword:"):
            return _keyword(spec[len("keyword:") :].strip(), frames)
        if spec == "noise":
            s = None if scale is None else np.asarray(scale, dtype=np.float64)
            if s is not None and s.shape != (frames.sizes["frame"],):
                raise ParameterError(f"scale: expected one value per frame, got shape {s.shape}")
            return _noise(frames, s)
        raise ParameterError(
            f"weights={spec!r}: unknown weighting; choose None, 'noise', 'exptime', "
            "'keyword:NAME' or one number per frame"
        )
    return _from_array(spec, frames)
