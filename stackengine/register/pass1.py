"""Pass 1 of registration: every frame's stars, one small dask task per frame.

Each task reads its frame only (frames opened with :func:`stackengine.open_frames`
from their files, in strips of full-width rows; in-memory frames by slicing),
reduces it strip by strip to its luminance (2 x 2 binned for Bayer mosaics;
:func:`.stars.luminance_strip`) and returns its star list, seeing, roundness and
background (:func:`.stars.detect`), never an image. Tasks run on dask's current
scheduler (:func:`stackengine.tasks.cluster.compute`).

Bayer mosaics: a 2-D frame is a mosaic when ``bayer`` names a pattern (or is
True), or, with ``bayer=None``, when its FITS header has a BAYERPAT (or
COLORTYP) card naming a 2 x 2 pattern; in-memory frames, when the DataArray's
attrs have one.

Results for frames read from files are cached in this process by the file's
identity (path, modification time or ETag, size, place in the file) and the
detection options: registering the same files again reads nothing.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import ParameterError
from ..frames import source_of
from ..normalize.measure import frame_key
from ..tasks.cluster import compute
from .stars import FrameStars, binning_for, detect, luminance_strip

__all__ = ["as_frames", "clear_cache", "detect_frames"]

_STRIP_ROWS = 256
_BAYER = re.compile(r"[RGBCMYW]{4}")

_CACHE: dict[tuple, FrameStars] = {}
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every cached star list."""
    with _LOCK:
        _CACHE.clear()


def _bayer_setting(bayer: Any) -> str | bool | None:
    """Validate ``bayer``: None (from headers), False (never) or a 2 x 2 pattern."""
    if bayer is None or bayer is False:
        return bayer
    if bayer is True:
        return True
    if isinstance(bayer, str) and _BAYER.fullmatch(bayer.strip().upper()):
        return bayer.strip().upper()
    raise ParameterError(
        f"bayer={bayer!r}: expected None (from the BAYERPAT header), False, True or a "
        "2 x 2 pattern such as 'RGGB'"
    )


def _header_bayer(view: Any) -> bool:
    """Whether a frame's FITS header names a Bayer pattern (BAYERPAT or COLORTYP)."""
    full = getattr(getattr(view, "source", view), "full_header", None)
    if full is None:
        return False
    try:
        header = full()
    except Exception:  # an unreadable header: the pixel read will say so
        return False
    pattern = str(header.get("BAYERPAT", header.get("COLORTYP", "")) or "").strip().upper()
    return bool(_BAYER.fullmatch(pattern))


def _is_bayer(setting: Any, ndim: int, from_header: Any) -> bool:
    if ndim != 2 or setting is False:
        return False
    return True if setting is not None else bool(from_header())


def _detect_rows(read, shape, bayer, threshold, max_stars) -> FrameStars:
    """Read a frame in strips, reduce to binned luminance, detect (task body)."""
    h, w = shape[0], shape[1]
    b = binning_for((h, w), bayer)
    step = max(b, _STRIP_ROWS // b * b)
    strips = [luminance_strip(read(slice(y, min(y + step, h)), slice(0, w)), b)
              for y in range(0, h // b * b, step)]  # fmt: skip
    lum = np.concatenate(strips) if strips else np.zeros((0, w // b), np.float32)
    channels = shape[2] if len(shape) == 3 else 1
    return detect(lum, binning=b, shape=(h, w), per_pixel=b * b * channels,
                  threshold=threshold, max_stars=max_stars)  # fmt: skip


def _detect_view(view: Any, bayer: Any, threshold: float, max_stars: int) -> FrameStars:
    is_bayer = _is_bayer(bayer, len(view.shape), lambda: _header_bayer(view))
    return _detect_rows(view.read, tuple(view.shape), is_bayer, threshold, max_stars)


def _detect_array(frame: np.ndarray, is_bayer: bool, threshold: float, max_stars: int):
    frame = np.asarray(frame)
    return _detect_rows(lambda ys, xs: frame[ys, xs], frame.shape, is_bayer, threshold, max_stars)


def _key(view: Any, options: tuple) -> tuple | None:
    key = frame_key(view)  # the frame's file identity, as pass 1 of normalization caches it
    return None if key is None else (*key, options)


def as_frames(frames: Any) -> xr.DataArray:
    if not isinstance(frames, xr.DataArray):
        ndim = np.ndim(frames)
        if ndim not in (3, 4):
            raise ParameterError(f"frames: expected (frame, y, x[, channel]), got {ndim} dims")
        frames = xr.DataArray(frames, dims=("frame", "y", "x", "channel")[:ndim])
    if frames.ndim not in (3, 4) or frames.dims[0] != "frame":
        raise ParameterError(f"frames: expected dims (frame, y, x[, channel]), got {frames.dims}")
    return frames


def detect_frames(
    frames: xr.DataArray, *, bayer: Any = None, threshold: float = 5.0, max_stars: int = 200
) -> list[FrameStars]:
    """Pass 1: every frame's stars, one dask task per frame (cached for files)."""
    frames = as_frames(frames)
    setting = _bayer_setting(bayer)
    n = frames.sizes["frame"]
    out: list[Any] = [None] * n
    keys: list[tuple | None] = [None] * n
    tasks: dict[int, Any] = {}
    source = source_of(frames.data)
    attrs_bayer = str(frames.attrs.get("BAYERPAT", frames.attrs.get("bayerpat", "")) or "")
    for k in range(n):
        if source is not None:
            view = source.view(k)
            keys[k] = _key(view, (setting, float(threshold), int(max_stars)))
            if keys[k] is not None:
                with _LOCK:
                    out[k] = _CACHE.get(keys[k])
            if out[k] is None:
                tasks[k] = dask.delayed(_detect_view, pure=False)(
                    view, setting, threshold, max_stars
                )
        else:
            is_bayer = _is_bayer(setting, frames.ndim - 1,
                                 lambda: _BAYER.fullmatch(attrs_bayer.strip().upper()))  # fmt: skip
            tasks[k] = dask.delayed(_detect_array, pure=False)(
                frames.data[k], is_bayer, threshold, max_stars
            )
    for k, value in zip(tasks, compute(*tasks.values()), strict=True):
        out[k] = value
        if keys[k] is not None:
            with _LOCK:
                _CACHE[keys[k]] = value
    return out
