"""open_frames(): discovery, validation and the lazy (frame, y, x[, channel]) DataArray."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from .errors import FrameError, FrameMismatchError, ParameterError
from .framecoords import _NUMERIC_COORDS, HEADER_COORDS, chunks_for
from .io import remote
from .io.sources import FrameSource, FrameStack
from .tasks.plan import plan_tiles

__all__ = [
    "open_frames",
    "frame_sources",
    "frame_index",
    "source_of",
    "subset_frames",
    "chunks_for",
    "tiled_array",
]

#: the dask names of arrays made by :func:`stack_array` start with this
_NAME = "open_frames-"


def _opener_for(path: str, storage_options: dict[str, Any] | None = None):
    """The ``open_*`` function for ``path`` by its suffix (or a zarr store's metadata)."""
    kind = remote.frame_kind(path, storage_options)
    if kind is None:
        return None
    module = importlib.import_module(f".io.{kind}", __package__)
    return getattr(module, f"open_{kind}")


def _expand(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Turn a glob, a folder, a path, a URL or a list of them into a sorted list of files."""
    return remote.expand(paths, storage_options)


def _same_file_key(path: str) -> Any:
    """What makes two inputs the same file: the URL, or the local file's device and inode."""
    if remote.is_url(path):
        return path
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def check_duplicates(paths: Sequence[str]) -> None:
    """Raise :class:`FrameError` naming the first file that is given more than once."""
    seen: dict[Any, str] = {}
    for path in paths:
        key = _same_file_key(path)
        if key in seen:
            also = "" if seen[key] == path else f" (also as {seen[key]})"
            raise FrameError(
                f"{path}: given twice{also}; pass --allow-duplicates (allow_duplicates=True) "
                "to stack it twice"
            )
        seen[key] = path


def frame_sources(
    paths: Any,
    *,
    hdu: int | str = 0,
    storage_options: dict[str, Any] | None = None,
    allow_duplicates: bool = False,
    pad: bool = False,
) -> list[FrameSource]:
    """Open every input's headers and return one FrameSource per frame (cubes expand).

    ``storage_options`` are fsspec options for URL inputs (see :func:`open_frames`).
    A file given twice is an error unless ``allow_duplicates``; frames of other
    shapes or dtypes are an error unless ``pad`` (then only their channels must agree).
    """
    storage_options = dict(storage_options) if storage_options else None
    frames: list[FrameSource] = []
    expanded = _expand(paths, storage_options)
    if not allow_duplicates:
        check_duplicates(expanded)
    for path in expanded:
        url = remote.is_url(path)
        if not url and not os.path.exists(path):
            raise remote.missing(path)
        opener = _opener_for(path, storage_options)
        if opener is None:
            raise FrameError(f"{path}: unknown format (expected FITS, TIFF or zarr)")
        kwargs: dict[str, Any] = {"storage_options": storage_options} if url else {}
        if opener.__module__.endswith("fits"):
            kwargs["hdu"] = hdu
        frames.extend(opener(path, **kwargs))
    _check_consistent(frames, pad)
    return frames


def _check_consistent(frames: Sequence[FrameSource], pad: bool = False) -> None:
    first = frames[0]
    for f in frames[1:]:
        if pad and tuple(f.shape[2:]) != tuple(first.shape[2:]):
            raise FrameMismatchError(
                f"{f.path}: channel mismatch: {f.shape} but {first.path} has {first.shape}"
            )
        if pad:
            continue
        if f.shape != first.shape:
            what = "channel" if f.shape[:2] == first.shape[:2] else "shape"
            raise FrameMismatchError(
                f"{f.path}: {what} mismatch: {f.shape} but {first.path} has {first.shape}"
            )
        if np.dtype(f.dtype) != np.dtype(first.dtype):
            raise FrameMismatchError(
                f"{f.path}: dtype mismatch: {np.dtype(f.dtype)} but {first.path} has "
                f"{np.dtype(first.dtype)}"
            )


def _identity(frame: Any) -> tuple | None:
    """The file's cache identity (path, mtime or ETag, size), None if it has no file."""
    path = getattr(frame, "path", "")
    if not path:
        return None
    try:
        return remote.file_identity(path, getattr(frame, "storage_options", None))
    except OSError:  # gone since it was opened: the read will say so
        return None


def stack_array(stack: FrameStack, tile: tuple[int, int]) -> da.Array:
    """The dask array over ``stack`` with blocks (all frames, tile_y, tile_x[, all channels])."""
    chunks = (stack.shape[0], tile[0], tile[1]) + tuple(stack.shape[3:])
    paths = [getattr(f, "path", "") for f in stack.frames]
    idents = [_identity(f) for f in stack.frames]
    name = _NAME + tokenize(paths, idents, [f.shape for f in stack.frames], chunks)
    return da.from_array(
        stack,
        chunks=chunks,
        name=name,
        lock=False,
        asarray=False,
        fancy=False,
        inline_array=False,  # the stack is one node of the graph: "original-" + name
        meta=np.empty((0,) * stack.ndim, dtype=stack.dtype),
    )


def source_of(array: Any) -> FrameStack | None:
    """The FrameStack behind a dask array made by :func:`open_frames`, if it is untouched.

    The array's graph holds the stack as one node, under the key
    ``"original-" + name`` (:func:`dask.array.from_array` with
    ``inline_array=False``); any operation on the array gives it another name.
    """
    name = getattr(array, "name", None)
    if not isinstance(name, str) or not name.startswith(_NAME):
        return None
    try:
        node = array.__dask_graph__().get("original-" + name)
    except AttributeError:
        return None
    stack = getattr(node, "value", node)
    return stack if isinstance(stack, FrameStack) else None


def _coords(frames: Sequence[FrameSource]) -> dict[str, Any]:
    coords: dict[str, Any] = {"path": ("frame", np.array([str(f.path) for f in frames]))}
    for name, keys in HEADER_COORDS.items():
        values = []
        for f in frames:
            header = getattr(f, "header", {}) or {}
            values.append(next((header[k] for k in keys if k in header), None))
        if all(v is None for v in values):
            continue
        if name in _NUMERIC_COORDS:
            try:
                arr = np.array([np.nan if v is None else float(v) for v in values])
            except (TypeError, ValueError):
                arr = np.array(["" if v is None else str(v) for v in values])
        else:
            arr = np.array(["" if v is None else str(v) for v in values])
        coords[name] = ("frame", arr)
    return coords


def frame_index(reference: Any, paths: Sequence[str]) -> int:
    """The index of the frame ``reference`` names: an index (negative counts from the
    end) or a path (the full path or just the file name of one frame)."""
    n = len(paths)
    if isinstance(reference, bool):
        raise ParameterError(f"reference={reference!r}: expected a frame index or path")
    if isinstance(reference, int | np.integer):
        if not -n <= reference < n:
            raise ParameterError(f"reference={reference}: there are only {n} frames")
        return int(reference) % n
    if isinstance(reference, str):
        for k, p in enumerate(paths):
            if p == reference or p.rsplit("/", 1)[-1] == reference:
                return k
        raise ParameterError(f"reference={reference!r}: no frame has this path")
    raise ParameterError(f"reference={reference!r}: expected a frame index or path")


def subset_frames(arr: xr.DataArray, keep: Sequence[int]) -> xr.DataArray:
    """Frames ``keep`` of ``arr``; frames read from files stay read from their files
    (a new stack of those frames, the same tiles), not a selection of the old array."""
    keep = [int(k) for k in keep]
    source = source_of(arr.data)
    coords = {k: (v.isel(frame=keep) if "frame" in v.dims else v) for k, v in arr.coords.items()}
    if source is None:
        return arr.isel(frame=keep)
    stack = FrameStack([source.frames[k] for k in keep], pad=source.padded)
    tile = (arr.data.chunks[1][0], arr.data.chunks[2][0])
    return xr.DataArray(stack_array(stack, tile), dims=arr.dims, coords=coords, name=arr.name)


def _dims(ndim: int) -> tuple[str, ...]:
    if ndim == 3:
        return ("frame", "y", "x")
    if ndim == 4:
        return ("frame", "y", "x", "channel")
    raise FrameMismatchError(
        f"frames must be (frame, y, x) or (frame, y, x, channel); got {ndim} dimensions"
    )


def _from_memory(data: Any, chunks: Any) -> xr.DataArray:
    if isinstance(data, xr.DataArray):
        arr = data
        if arr.dims[0] != "frame":
            raise FrameMismatchError(
                f"in-memory frames: first dimension must be 'frame', not {arr.dims}"
            )
    else:
        arr = xr.DataArray(data, dims=_dims(np.ndim(data)))
    if chunks is not None and not isinstance(arr.data, da.Array):
        tile = chunks_for(arr.shape, arr.dtype, chunks)
        arr = arr.copy(
            data=da.from_array(np.asarray(arr.data), chunks=(-1, *tile) + (-1,) * (arr.ndim - 3))
        )
    return arr


def open_frames(
    paths: Any,
    *,
    hdu: int | str = 0,
    chunks: Any = "auto",
    storage_options: dict[str, Any] | None = None,
    allow_duplicates: bool = False,
    pad: bool = False,
) -> xr.DataArray:
    """Open registered frames lazily as one chunked DataArray.

    Parameters
    ----------
    paths : str, path-like, sequence of them, or array
        A glob pattern (``"lights/*.fits"``), a folder, a list of files, a
        single FITS cube (frames along its first numpy axis), zarr arrays, an
        in-memory numpy/dask/xarray array of shape (frame, y, x[, channel]), or
        a list of :class:`astropy.nddata.CCDData` (masked pixels missing, their
        ``meta`` as headers, their unit in ``attrs``; see
        :mod:`stackengine.ccddata`).
        fsspec URLs work wherever a path does, globs included
        (``"s3://bucket/night1/*.fits"``, ``"file:///data/*.tif"``,
        ``"gs://bucket/stack.zarr"``); matches are sorted by name as local
        globs are. Every worker must be able to open the same paths or URLs.
    hdu : int or str, optional
        FITS HDU to read (default 0; if the primary HDU holds no image, the
        first HDU that does).
    chunks : "auto", int, (int, int), dict or size string, optional
        Tile shape (y, x) of the dask blocks; the frame axis is always one
        chunk. ``"auto"`` plans tiles for a 1 GiB budget per worker aligned
        to the file layout; a size string such as ``"256MiB"`` plans for that
        budget.
    storage_options : dict, optional
        Options for the fsspec filesystem of URL inputs (credentials, endpoint,
        ``anon=True``, ...), as for :func:`fsspec.open`. They travel with the
        frames into every read task; local paths ignore them.
    allow_duplicates : bool, optional
        Stack a file given more than once (e.g. by a glob and by name) that
        many times; by default that is an error naming the file.
    pad : bool, optional
        Frames of different shapes (a crop, another camera), to be registered:
        presented on the largest frame's grid as float, NaN (missing) beyond
        each frame's own pixels; :func:`stackengine.stack` with ``register=``
        reads each frame only within its own pixels. By default frames of
        different shapes are an error.

    Returns
    -------
    xarray.DataArray
        Dims ("frame", "y", "x"[, "channel"]), dask-backed; each block reads
        only its own tile from each file. Coordinates along "frame": "path"
        and, where the headers have them, "exptime", "filter", "imagetyp",
        "date_obs".

    Raises
    ------
    FrameError
        No file matches, a file is missing, unreadable, truncated or corrupt, a
        file is given twice (without ``allow_duplicates``), or a URL's protocol
        is unknown or its fsspec implementation not installed.
    FrameMismatchError
        Frames differ in shape, channels or dtype (the message names the file).
    """
    if isinstance(paths, np.ndarray | da.Array | xr.DataArray):
        return _from_memory(paths, chunks)
    from .ccddata import ccddata_frames, is_ccddata_list

    if is_ccddata_list(paths):
        return ccddata_frames(paths, chunks)
    frames = frame_sources(
        paths, hdu=hdu, storage_options=storage_options, allow_duplicates=allow_duplicates,
        pad=pad,
    )  # fmt: skip
    return frames_array(frames, chunks=chunks, pad=pad)


def frames_array(frames: Sequence[FrameSource], *, chunks: Any = "auto", pad: bool = False):
    """The lazy DataArray over opened frame sources (see :func:`open_frames`)."""
    stack = FrameStack(frames, pad=pad)
    tile = chunks_for(stack.shape, stack.dtype, chunks, stack.block)
    data = stack_array(stack, tile)
    return xr.DataArray(data, dims=_dims(stack.ndim), coords=_coords(frames), name="frames")


def combine_inputs(items: Sequence[Any], pad: bool) -> xr.DataArray:
    """One frame array from a list of paths, or of DataArrays from :func:`open_frames`
    (frames of different shapes with ``pad``), or of in-memory arrays of one shape."""
    items = list(items)
    if all(isinstance(i, str | os.PathLike) for i in items):
        return open_frames([os.fspath(i) for i in items], pad=pad)
    arrays = [i if isinstance(i, xr.DataArray) else _from_memory(np.asarray(i)[None], None)
              for i in items]  # fmt: skip
    arrays = [a if "frame" in a.dims else a.expand_dims("frame") for a in arrays]
    sources = [source_of(a.data) for a in arrays]
    if all(s is not None for s in sources):
        return frames_array([f for s in sources for f in s.frames], pad=pad)
    if len({a.shape[1:] for a in arrays}) > 1:
        raise FrameMismatchError(
            "frames of different shapes: open them from files (paths or se.open_frames) "
            "to register them; in-memory frames must share one shape"
        )
    return xr.concat(arrays, dim="frame", coords="minimal", compat="override")


def tiled_array(arr: xr.DataArray, memory_limit: str | int) -> da.Array:
    """The frames as a dask array with one chunk along frames and planned tiles."""
    data = arr.data
    source = source_of(data)
    itemsize = np.dtype(arr.dtype).itemsize
    block = source.block if source is not None else (1, 0)
    tile = plan_tiles(arr.shape, itemsize, memory_limit, block=block, streamed=source is not None)
    if source is not None:
        return stack_array(source, tile)
    chunks = (-1, *tile) + (-1,) * (arr.ndim - 3)
    if isinstance(data, da.Array):
        return data.rechunk(chunks)
    return da.from_array(np.asarray(data), chunks=chunks)
