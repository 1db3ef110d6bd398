"""Zarr frame reader (zarr format 2 or 3).

:func:`open_zarr` opens an array (or picks one out of a group) and returns one
:class:`ZarrFrame` per frame; :meth:`ZarrFrame.read` reopens the array
read-only and slices it, reading only the chunks a tile touches.

A path may also be an fsspec URL (``"s3://bucket/frames.zarr"``); zarr opens it
through its ``FsspecStore`` with the frame's ``storage_options``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from ..errors import FrameError
from . import READER_SUFFIXES, remote

__all__ = ["SUFFIXES", "ZarrFrame", "open_zarr"]

SUFFIXES = READER_SUFFIXES["zarr"]

#: Array names picked out of a group holding several arrays, in this order.
PREFERRED = ("image", "data")


def _header(attrs: Any) -> dict[str, Any]:
    """Array attributes with upper-cased keys, non-null JSON scalars only."""
    out: dict[str, Any] = {}
    for key, value in dict(attrs).items():
        if isinstance(value, bool | int | float | str):
            out[str(key).upper()] = value
    return out


@dataclass
class ZarrFrame:
    """One frame of a zarr array (see :class:`stackengine.io.sources.FrameSource`).

    Attributes
    ----------
    path, shape, dtype, block, header
        As in the FrameSource protocol; ``block`` is the chunk shape along
        ``(y, x)``.
    array : str
        Path of the array inside the store (``""`` when the store is the array).
    index : int or None
        Position along axis 0 for a 3-D or 4-D array, None for a 2-D array.
    storage_options : dict or None
        fsspec options when ``path`` is a URL.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    block: tuple[int, int]
    header: dict[str, Any]
    array: str = ""
    index: int | None = None
    storage_options: dict[str, Any] | None = None

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """Read rows ``ys`` and columns ``xs``; see ``FrameSource.read``."""
        h, w = self.shape[:2]
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        key: tuple[Any, ...] = (slice(y0, max(y0, y1)), slice(x0, max(x0, x1)))
        if self.index is not None:
            key = (self.index, *key)
        try:
            arr = zarr.open_array(self.path, path=self.array, mode="r", **_options(self))
            data = arr[key]
        except FileNotFoundError as exc:
            raise FrameError(f"{self.path}: no such zarr array ({exc})") from exc
        except Exception as exc:
            raise FrameError(f"{self.path}: cannot read zarr data ({exc})") from exc
        return np.asarray(data).astype(self.dtype, copy=False)


def _options(frame: Any) -> dict[str, Any]:
    """``storage_options=`` for zarr: only for a URL (zarr refuses it for local paths)."""
    if remote.is_url(frame.path) and frame.storage_options:
        return {"storage_options": frame.storage_options}
    return {}


def _pick(node: Any, shown: str) -> tuple[Any, str]:
    """The array to read: ``node`` itself, or the one array chosen from a group."""
    if isinstance(node, zarr.Array):
        return node, ""
    names = sorted(node.array_keys())
    if len(names) == 1:
        name = names[0]
    else:
        name = next((n for n in PREFERRED if n in names), None)
        if name is None:
            found = ", ".join(names) if names else "none"
            raise FrameError(
                f"{shown}: zarr group holds {len(names)} arrays ({found}); expected one, "
                f"or one named {' or '.join(repr(n) for n in PREFERRED)}"
            )
    return node[name], name


def open_zarr(
    path: str | os.PathLike, *, storage_options: dict[str, Any] | None = None
) -> list[ZarrFrame]:
    """Open a zarr array (format 2 or 3) as frames, reading metadata only.

    Parameters
    ----------
    path : str or os.PathLike
        A zarr array, or a group holding a single array or an array named
        ``"image"`` or ``"data"`` (looked for in that order); or an fsspec URL
        of one.
    storage_options : dict, optional
        fsspec options for a URL (kept in each frame for its reads).

    Returns
    -------
    list of ZarrFrame
        A 2-D array ``(H, W)`` is one frame; a 3-D array ``(N, H, W)`` is N
        frames; a 4-D array ``(N, H, W, C)`` is N frames with the channel last.

    Raises
    ------
    FrameError
        The path is missing or not zarr, the group holds no usable array, or the
        array is not 2-, 3- or 4-D.
    """
    shown = os.fspath(path)
    opts: dict[str, Any] = {}
    if remote.is_url(shown):
        abspath = shown
        fs, fspath = remote.filesystem(shown, storage_options)
        try:
            found = fs.exists(fspath)
        except Exception:  # let zarr report what is wrong
            found = True
        if not found:
            raise FrameError(f"{shown}: no such file")
        if storage_options:
            opts["storage_options"] = storage_options
    else:
        abspath = remote.local_path(shown)
        storage_options = None
    try:
        node = zarr.open(abspath, mode="r", **opts)
    except PermissionError as exc:
        raise FrameError(f"{shown}: cannot open ({exc.strerror or exc})") from exc
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"{shown}: not a valid zarr store ({msg})") from exc
    arr, name = _pick(node, shown)
    ndim = arr.ndim
    if ndim not in (2, 3, 4):
        raise FrameError(f"{shown}: zarr array has {ndim} dimensions; expected 2, 3 or 4")
    shape = tuple(int(n) for n in arr.shape)
    chunks = tuple(int(n) for n in arr.chunks)
    frame_shape = shape if ndim == 2 else shape[1:]
    block = chunks[:2] if ndim == 2 else chunks[1:3]
    dtype = np.dtype(arr.dtype)
    if dtype.kind not in "biuf":
        raise FrameError(f"{shown}: zarr array has unsupported dtype {dtype}")
    header = _header(arr.attrs)
    indices: list[int | None] = [None] if ndim == 2 else list(range(shape[0]))
    return [
        ZarrFrame(
            path=abspath,
            shape=frame_shape,
            dtype=dtype.newbyteorder("="),
            block=(block[0], block[1]),
            header=dict(header),
            array=name,
            index=k,
            storage_options=storage_options,
        )
        for k in indices
    ]
