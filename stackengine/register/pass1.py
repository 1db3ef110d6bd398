"""Pass 1 of registration: every frame's stars, one small dask task per frame.

Each task reads its frame only (frames opened with :func:`stackengine.open_frames`
from their files, in strips of full-width rows; in-memory frames by slicing),
reduces it strip by strip to its detection luminance (2 x 2 binned for Bayer
mosaics, binned further for large frames; :func:`.stars.luminance_strip`), and
returns its star list, seeing, roundness and background (:func:`.stars.detect`,
which measures the stars of a frame binned beyond its base luminance on cutouts
of it), never an image. Local FITS frames stored raw (uncompressed, unscaled)
are read in strips of about 1 MiB into one buffer, swapped to native order and
binned there; their cutouts are gathered through a memory map. Other sources
are read through their ``read`` in strips, and their cutouts from bands of
full-width rows. Tasks run on dask's current scheduler
(:func:`stackengine.tasks.cluster.compute`).

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
from collections.abc import Callable
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import ParameterError
from ..frames import source_of
from ..io.rawbytes import open_exact, read_exact
from ..io.remote import is_url
from ..kernels.byteorder import to_native_inplace
from ..normalize.measure import frame_key
from ..tasks.cluster import compute
from .stars import FrameStars, Tiles, base_binning, bin_into, binning_for, detect, luminance_strip

__all__ = ["as_frames", "clear_cache", "detect_frames"]

_STRIP_ROWS = 256
_STRIP_BYTES = 1 << 20  # raw rows read and converted at a time (inside the L2 cache)
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


def _tiles_by_gather(gather: Callable, shape: tuple[int, ...], b0: int) -> Tiles:
    """Base-luminance cutouts gathered at once by fancy indexing (memory maps, arrays):
    ``gather(rows, cols)`` returns the frame's values at those full-resolution pixels."""
    hb, wb = shape[0] // b0 * b0, shape[1] // b0 * b0

    def tiles(cy: np.ndarray, cx: np.ndarray, half: int) -> np.ndarray:
        n, t = len(cy), 2 * half + 1
        step = np.arange(t * b0)
        yy = (np.asarray(cy, np.intp)[:, None] - half) * b0 + step
        xx = (np.asarray(cx, np.intp)[:, None] - half) * b0 + step
        rows, cols = np.clip(yy, 0, hb - 1)[:, :, None], np.clip(xx, 0, wb - 1)[:, None, :]
        values = np.asarray(gather(rows, cols)).astype(np.float32)
        if values.ndim == 4:  # channels
            values = values.sum(axis=3, dtype=np.float32)
        if b0 > 1:
            values = values.reshape(n, t, b0, t, b0).sum(axis=(2, 4), dtype=np.float32)
        inside_y = (yy[:, ::b0] >= 0) & (yy[:, ::b0] < hb)
        inside_x = (xx[:, ::b0] >= 0) & (xx[:, ::b0] < wb)
        values[~(inside_y[:, :, None] & inside_x[:, None, :])] = np.nan
        return values

    return tiles


def _tiles_by_band(read: Callable, shape: tuple[int, ...], b0: int) -> Tiles:
    """Base-luminance cutouts from bands of full-width rows, each band read once
    (sources that read whole rows anyway)."""
    hb, wb = shape[0] // b0, shape[1] // b0

    def tiles(cy: np.ndarray, cx: np.ndarray, half: int) -> np.ndarray:
        t = 2 * half + 1
        out = np.full((len(cy), t, t), np.nan, np.float32)
        order = np.argsort(cy, kind="stable")
        rows = max(_STRIP_ROWS // b0, 2 * t)
        i = 0
        while i < order.size:
            r0 = int(cy[order[i]]) - half
            j = i + 1
            while j < order.size and int(cy[order[j]]) + half + 1 - r0 <= rows:
                j += 1
            r1 = int(cy[order[j - 1]]) + half + 1
            ya, yb = max(r0, 0), min(r1, hb)
            band = np.full((r1 - r0, wb + 2 * t), np.nan, np.float32)
            if ya < yb:
                lum = luminance_strip(read(slice(ya * b0, yb * b0), slice(0, wb * b0)), b0)
                band[ya - r0 : yb - r0, t : t + wb] = lum
            for k in order[i:j]:
                y, x = int(cy[k]) - half - r0, int(cx[k]) - half + t
                out[k] = band[y : y + t, x : x + t]
            i = j
        return out

    return tiles


def _raw_layout(view: Any) -> tuple[int, np.dtype, bool] | None:
    """``(offset, stored dtype, flip)`` of a local grey frame whose rows are stored raw."""
    src = getattr(view, "source", None)
    raw_rows = getattr(src, "raw_rows", None)
    if raw_rows is None or view.alpha is not None or len(view.shape) != 2:
        return None
    if getattr(src, "storage_options", None) or is_url(src.path):
        return None
    if tuple(src.shape) != tuple(view.shape) or np.dtype(src.dtype) != np.dtype(view.dtype):
        return None
    return raw_rows()


def _raw_luminance(view: Any, layout: tuple, b: int) -> np.ndarray:
    """The ``b x b`` binned luminance of a raw local frame: its rows read in strips of
    about :data:`_STRIP_BYTES` into one buffer, swapped in place and binned there."""
    offset, stored, flip = layout
    h, w = view.shape
    dtype = np.dtype(view.dtype)
    rows = max(b, _STRIP_BYTES // (w * stored.itemsize) // b * b)
    lum = np.zeros((h // b, w // b), np.float32)
    buf = np.empty((min(rows, h), w), dtype)
    path = view.source.path
    with open_exact(path, None) as fh:
        for y in range(0, h // b * b, rows):
            n = min(rows, h // b * b - y)
            raw = buf[:n].view(stored)
            read_exact(path, None, offset + y * w * stored.itemsize, raw, f"rows {y}:{y + n}", fh)
            to_native_inplace(raw, not stored.isnative, flip)
            bin_into(buf[:n], b, lum, y // b)
    return lum


def _raw_gather(view: Any, layout: tuple) -> Callable:
    """Pixels of a raw local frame gathered through a memory map (no full rows read)."""
    offset, stored, flip = layout
    dtype = np.dtype(view.dtype)
    mm = np.memmap(view.source.path, dtype=stored, mode="r", offset=offset, shape=view.shape)

    def gather(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        values = mm[rows, cols].astype(stored.newbyteorder("="))
        if flip:  # FITS signed bytes, BZERO-shifted unsigned values: the sign bit
            values ^= values.dtype.type(1 << (8 * values.dtype.itemsize - 1))
        return values.view(dtype)

    return gather


def _detect_rows(read, shape, bayer, threshold, max_stars, *, lum=None, tiles=None) -> FrameStars:
    """Read a frame in strips, reduce to binned luminance, detect (task body)."""
    h, w = shape[0], shape[1]
    b, b0 = binning_for((h, w), bayer), base_binning(bayer)
    if lum is None:
        step = max(b, _STRIP_ROWS // b * b)
        lum = np.zeros((h // b, w // b), np.float32)
        for y in range(0, h // b * b, step):
            lum[y // b : (y + step) // b] = luminance_strip(
                read(slice(y, min(y + step, h // b * b)), slice(0, w)), b
            )
    channels = shape[2] if len(shape) == 3 else 1
    return detect(lum, binning=b, shape=(h, w), per_pixel=b * b * channels, threshold=threshold,
                  max_stars=max_stars, base=b0, tiles=tiles)  # fmt: skip


def _detect_view(view: Any, bayer: Any, threshold: float, max_stars: int) -> FrameStars:
    is_bayer = _is_bayer(bayer, len(view.shape), lambda: _header_bayer(view))
    shape = tuple(view.shape)
    layout = _raw_layout(view)
    if layout is None:
        tiles = _tiles_by_band(view.read, shape, base_binning(is_bayer))
        return _detect_rows(view.read, shape, is_bayer, threshold, max_stars, tiles=tiles)
    lum = _raw_luminance(view, layout, binning_for(shape[:2], is_bayer))
    tiles = _tiles_by_gather(_raw_gather(view, layout), shape, base_binning(is_bayer))
    return _detect_rows(None, shape, is_bayer, threshold, max_stars, lum=lum, tiles=tiles)


def _detect_array(frame: np.ndarray, is_bayer: bool, threshold: float, max_stars: int):
    frame = np.asarray(frame)

    def read(ys: slice, xs: slice) -> np.ndarray:
        return frame[ys, xs]

    def gather(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return frame[rows, cols]

    tiles = _tiles_by_gather(gather, frame.shape, base_binning(is_bayer))
    return _detect_rows(read, frame.shape, is_bayer, threshold, max_stars, tiles=tiles)


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
