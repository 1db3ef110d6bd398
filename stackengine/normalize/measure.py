"""Pass 1: robust per-frame statistics, one small dask task per frame.

Each task reads its frame in full-width row strips and returns a few numbers
per channel, never an image:

``location``
    The median of the sampled pixels (exact :func:`numpy.median`).
``scale``
    ``mad_std = 1.482602218505602 x median(|x - location|)`` of the same pixels
    (equal to :func:`astropy.stats.mad_std` on them).
``noise``
    The pixel-to-pixel noise sigma, from second differences along rows at a
    step of two pixels, ``D = x[i-2] - 2 x[i] + x[i+2]`` (the DER_SNR
    construction of Stoehr et al. 2008): ``D`` is zero for any locally linear
    signal, so gradients and smooth background drop out, and for white noise
    ``Var(D) = 6 sigma**2``. The step of two skips the correlation between
    neighbours that interpolation during registration introduces, so resampled
    frames are not reported as less noisy than they are. Structure is then
    masked: ``D`` values farther than 4 mad_std from the median of ``D`` (star
    cores, cosmic rays, hot pixels) are flagged, the flags grown by 4 pixels
    along the row (star wings), and ``noise = std(D unflagged) / (sqrt(6) c)``
    with ``c = 0.99946`` the standard deviation of a unit normal truncated at
    +-4. The standard deviation (not the MAD) of the kept values is used
    because the MAD of integer data is quantized (biased by up to 10 % for a
    noise of a few ADU); it includes the quantization noise, as it should.
    Frames narrower than 5 pixels have no estimate (NaN).
``n_pixels``
    The number of finite sampled pixels (NaN and inf are missing and skipped).

Sampling: a frame of at most :data:`MAX_SAMPLE_PIXELS` pixels (4 Mpixel) per
channel is measured in full. From a larger frame, evenly spaced full-width
strips holding about that many rows are read (:func:`sampled_strips` gives the
rows; strips are aligned to the source's storage layout), so a task holds at
most a few Mpixel whatever the frame size.

Results for frames read from files are cached in this process by (path,
modification time, file size, position in the file, sampled rows): measuring
the same files again reads nothing. The photometric mode computes the same
statistics from the same rows inside its own per-frame task
(:func:`.framephot.measure_pass1`), which reads each frame once for both, and
caches them here.

The medians are exact (:func:`.fast.median_of`): a strided sample brackets each
median and only the values inside the bracket are partitioned, in numba
kernels that release the GIL.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..frames import source_of
from ..io.remote import file_identity
from ..tasks.cluster import compute
from .fast import as_float, masked_moments, median_of

__all__ = [
    "MAD_STD",
    "MAX_SAMPLE_PIXELS",
    "cached",
    "measure_frames",
    "measure_view",
    "robust_stats",
    "sampled_strips",
    "stats_dataset",
    "stats_key",
    "store",
]

#: mad_std = MAD_STD x median absolute deviation (1 / Phi^-1(3/4), as astropy)
MAD_STD = 1.482602218505602
_SQRT6 = math.sqrt(6.0)
_MASK_K, _MASK_GROW = 4.0, 4  # structure threshold (mad_std of D), flag growth (pixels)
_TRUNCATED_STD = 0.9994648  # std of a unit normal truncated at +-4
#: frames up to this many pixels (per channel) are measured in full
MAX_SAMPLE_PIXELS = 1 << 22
_STRIP_PIXELS = 1 << 20  # pixels per strip read when a frame is read in full
_MIN_STRIPS = 64  # at least this many strips when a frame is subsampled
_STATS = ("location", "scale", "noise", "n_pixels")

_CACHE: dict[tuple, np.ndarray] = {}
_CACHE_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every cached measurement."""
    with _CACHE_LOCK:
        _CACHE.clear()


def sampled_strips(
    height: int, width: int, *, block_rows: int = 1, sample_rows: int | None = None
) -> list[tuple[int, int]]:
    """The row ranges ``[(y0, y1), ...]`` that pass 1 reads from a frame.

    Parameters
    ----------
    height, width : int
        Frame size.
    block_rows : int
        Rows of the source's storage unit; strips are multiples of it.
    sample_rows : int or None
        About how many rows to read; None reads all rows of a frame of at most
        :data:`MAX_SAMPLE_PIXELS` pixels, else about ``MAX_SAMPLE_PIXELS / width``
        rows.

    Returns
    -------
    list of (int, int)
        Disjoint, sorted full-width strips. All rows when the target is at least
        the height; else strips of ``max(block_rows, target / 64)`` rows (a
        multiple of ``block_rows``) centred in equal parts of the frame.
    """
    block_rows = max(1, min(int(block_rows), height))
    if sample_rows is None:
        target = height if height * width <= MAX_SAMPLE_PIXELS else MAX_SAMPLE_PIXELS // width
    else:
        target = int(sample_rows)
    target = max(1, target)
    if target >= height:
        step = max(block_rows, _STRIP_PIXELS // max(width, 1) // block_rows * block_rows)
        return [(y, min(y + step, height)) for y in range(0, height, step)]
    rows = max(block_rows, target // _MIN_STRIPS // block_rows * block_rows)
    n_total = math.ceil(height / rows)
    n_take = min(n_total, math.ceil(target / rows))
    picks = sorted({int((j + 0.5) * n_total / n_take) for j in range(n_take)})
    return [(k * rows, min(k * rows + rows, height)) for k in picks]


def _noise(d: np.ndarray) -> float:
    """Noise sigma from row-wise second differences ``d``, masking structure (module notes)."""
    med, n = median_of(d)
    if not n:
        return math.nan
    s0 = MAD_STD * median_of(d, med)[0]
    if not s0 > 0:  # nearly noiseless quantized data: no robust threshold
        count, s1, s2 = masked_moments(d, med, math.inf, 0)
        return math.sqrt(max(s2 / count - (s1 / count) ** 2, 0.0)) / _SQRT6
    count, s1, s2 = masked_moments(d, med, _MASK_K * s0, _MASK_GROW)
    if not count:
        return s0 / _SQRT6
    std = math.sqrt(max(s2 / count - (s1 / count) ** 2, 0.0))
    return std / (_SQRT6 * _TRUNCATED_STD)


def _second_differences(plane: np.ndarray) -> np.ndarray:
    """``x[i-2] - 2 x[i] + x[i+2]`` along each row of a float32/float64 2-D array."""
    d = plane[:, :-4] + plane[:, 4:]
    d -= plane[:, 2:-2]
    d -= plane[:, 2:-2]
    return d


def robust_stats(strips: list[np.ndarray]) -> np.ndarray:
    """Location, scale, noise and pixel count of row strips, per channel.

    Parameters
    ----------
    strips : list of ndarray
        Full-width strips ``(rows, width[, channels])`` of one frame.

    Returns
    -------
    ndarray, shape (4, channels)
        Rows: median, mad_std, noise (see the module notes) and the number of
        finite pixels; one column for a grey frame. Statistics of no data are
        NaN. The medians are exact (:func:`.fast.median_of`).
    """
    rows = np.concatenate([as_float(s).reshape(s.shape[0], s.shape[1], -1) for s in strips])
    out = np.full((4, rows.shape[2]), np.nan)
    for c in range(rows.shape[2]):
        plane = np.ascontiguousarray(rows[..., c])
        out[0, c], out[3, c] = median_of(plane)
        if out[3, c]:
            out[1, c] = MAD_STD * median_of(plane, out[0, c])[0]
        if plane.shape[1] >= 5:
            out[2, c] = _noise(_second_differences(plane))
    return out


def measure_view(view: Any, strips: list[tuple[int, int]]) -> np.ndarray:
    """Task body: read the strips of one frame and reduce them (:func:`robust_stats`)."""
    return robust_stats([view.read(slice(y0, y1), slice(None)) for y0, y1 in strips])


def _measure_rows(data: np.ndarray) -> np.ndarray:
    return robust_stats([np.asarray(data)])


def frame_key(view: Any) -> tuple | None:
    """A frame's cache identity: its file's (path or URL, mtime or ETag, size), the
    reader, the frame's place in the file and its alpha channel; None for a frame
    not read from a file (or whose file cannot be reached)."""
    src = getattr(view, "source", view)
    path = getattr(src, "path", None)
    if not path:
        return None
    try:
        ident = file_identity(path, getattr(src, "storage_options", None))
    except OSError:  # gone, or a URL that cannot be reached: not cached
        return None
    position = tuple(getattr(src, a, None) for a in ("hdu", "plane", "index", "array", "_series"))
    return (*ident, type(src).__name__, position, getattr(view, "alpha", None))


def stats_key(view: Any, strips: list[tuple[int, int]]) -> tuple | None:
    """The cache key of a frame's statistics over ``strips``: None when not cached."""
    key = frame_key(view)
    return None if key is None else (*key, tuple(strips))


def cached(key: tuple | None) -> np.ndarray | None:
    """The cached statistics under ``key`` (from :func:`stats_key`), or None."""
    if key is None:
        return None
    with _CACHE_LOCK:
        return _CACHE.get(key)


def store(key: tuple | None, value: np.ndarray) -> None:
    """Cache a frame's statistics (nothing for a None key)."""
    if key is not None:
        with _CACHE_LOCK:
            _CACHE[key] = value


def _tasks_from_source(stack: Any, sample_rows: int | None) -> tuple[list, list]:
    h, w = stack.shape[1:3]
    strips = sampled_strips(h, w, block_rows=stack.block[0], sample_rows=sample_rows)
    keys, tasks = [], []
    for k in range(stack.shape[0]):
        view = stack.view(k)
        key = stats_key(view, strips)
        hit = cached(key)
        keys.append(key)
        tasks.append(hit if hit is not None else dask.delayed(measure_view)(view, strips))
    return keys, tasks


def _tasks_from_array(data: Any, sample_rows: int | None) -> list:
    if not isinstance(data, da.Array):
        arr = np.asarray(data)
        data = da.from_array(arr, chunks=(1, *arr.shape[1:]))
    h, w = data.shape[1:3]
    strips = sampled_strips(h, w, sample_rows=sample_rows)
    rows = np.concatenate([np.arange(y0, y1) for y0, y1 in strips])
    return [dask.delayed(_measure_rows)(data[k, rows]) for k in range(data.shape[0])]


def measure_frames(frames: xr.DataArray, *, sample_rows: int | None = None) -> xr.Dataset:
    """Measure every frame's robust location, scale and noise (pass 1).

    Parameters
    ----------
    frames : xarray.DataArray
        Dims ("frame", "y", "x"[, "channel"]), from :func:`stackengine.open_frames`
        (each task reads one frame straight from its file) or any numpy or
        dask backed array.
    sample_rows : int or None
        About how many rows of each frame to read (see :func:`sampled_strips`);
        None reads frames of up to 4 Mpixel in full, a subsample of larger ones.

    Returns
    -------
    xarray.Dataset
        Variables ``location`` (median), ``scale`` (mad_std), ``noise``
        (pixel-to-pixel noise sigma, see the module notes), all float64,
        and ``n_pixels`` (int64, finite pixels used), along "frame" (and
        "channel" for colour frames), with the frames' "frame" coordinates
        (e.g. "path").

    Notes
    -----
    One dask task per frame, computed at once with dask's current scheduler
    (threads by default, a dask.distributed client when one is active). Frames
    read from files are cached in this process (see the module notes).
    """
    if not isinstance(frames, xr.DataArray):
        dims = ("frame", "y", "x", "channel")[: np.ndim(frames)]
        frames = xr.DataArray(frames, dims=dims)
    stack = source_of(frames.data)
    if stack is not None:
        keys, tasks = _tasks_from_source(stack, sample_rows)
    else:
        keys, tasks = [None] * frames.sizes["frame"], _tasks_from_array(frames.data, sample_rows)
    pending = [i for i, t in enumerate(tasks) if not isinstance(t, np.ndarray)]
    results = list(tasks)
    for i, value in zip(pending, compute(*[tasks[i] for i in pending]), strict=True):
        results[i] = value
        store(keys[i], value)
    return stats_dataset(frames, results, sample_rows)


def stats_dataset(
    frames: xr.DataArray, results: list[np.ndarray], sample_rows: int | None = None
) -> xr.Dataset:
    """:func:`measure_frames`'s dataset from the per-frame :func:`robust_stats` arrays."""
    table = np.stack(results)  # (frame, stat, channel)
    colour = frames.ndim == 4
    dims = ("frame", "channel") if colour else ("frame",)
    data_vars = {}
    for j, name in enumerate(_STATS):
        values = table[:, j, :] if colour else table[:, j, 0]
        if name == "n_pixels":
            values = values.astype(np.int64)
        data_vars[name] = (dims, values)
    coords = {k: v for k, v in frames.coords.items() if set(v.dims) <= set(dims)}
    attrs = {
        "noise_estimator": "std of masked row second differences (step 2) / sqrt(6)",
        "sample_rows": "auto" if sample_rows is None else int(sample_rows),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
