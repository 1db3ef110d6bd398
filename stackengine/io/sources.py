"""Picklable tile readers.

A *frame source* describes one frame on disk (a FITS HDU or a plane of a FITS
cube, a TIFF page series, a zarr array or one plane of a zarr cube) with the
little metadata needed to read any rectangle of it later, in another thread or
on another machine. Opening a frame reads headers only; :meth:`read` opens the
file, reads the requested rows and columns, and closes it again.

:class:`FrameStack` puts many frame sources together as one array-like object
of shape ``(frame, y, x[, channel])`` that :func:`dask.array.from_array` can
slice block by block: each block reads only its own tile from each file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["FrameSource", "FrameStack"]


@runtime_checkable
class FrameSource(Protocol):
    """One frame that can read any rectangle of itself.

    Attributes
    ----------
    path : str
        The file (or zarr store) the frame lives in.
    shape : tuple of int
        ``(height, width)`` or ``(height, width, channels)``.
    dtype : numpy.dtype
        The dtype :meth:`read` returns (native byte order; FITS BZERO/BSCALE
        already applied, e.g. uint16 for BITPIX 16 + BZERO 32768).
    block : tuple of int
        ``(rows, cols)``: the source's own layout unit. Tiles aligned to
        multiples of it read whole storage units (FITS: ``(1, width)``, a
        tiled TIFF: its tile shape, a strip TIFF: ``(rows_per_strip, width)``,
        zarr: its chunk shape).
    header : dict
        Selected header values (upper-case keys such as ``"EXPTIME"``,
        ``"FILTER"``, ``"IMAGETYP"``, ``"DATE-OBS"``), only those present.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    block: tuple[int, int]
    header: dict[str, Any]

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """Read rows ``ys`` and columns ``xs`` (steps of 1, bounds inside the frame).

        Returns an array of shape ``(len(ys), len(xs)[, channels])`` and dtype
        :attr:`dtype`. Raises :class:`stackengine.errors.FrameError` naming the
        file if it cannot be read.
        """
        ...


def _norm(s: slice, n: int) -> slice:
    start, stop, step = s.indices(n)
    if step != 1:
        raise ValueError("FrameStack supports only contiguous slices")
    return slice(start, max(start, stop))


class FrameStack:
    """Frames stacked along a new first axis, read lazily tile by tile.

    Parameters
    ----------
    frames : sequence of FrameSource
        All of the same shape and dtype (checked by the caller).
    """

    def __init__(self, frames: Sequence[FrameSource]):
        if not frames:
            raise ValueError("FrameStack needs at least one frame")
        self.frames = list(frames)
        first = self.frames[0]
        self.shape = (len(self.frames), *first.shape)
        self.dtype = np.dtype(first.dtype)
        self.ndim = len(self.shape)

    @property
    def block(self) -> tuple[int, int]:
        """The coarsest layout unit over all frames (they normally agree)."""
        rows = max(f.block[0] for f in self.frames)
        cols = max(f.block[1] for f in self.frames)
        return rows, cols

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        fs = _norm(key[0], self.shape[0])
        ys = _norm(key[1], self.shape[1])
        xs = _norm(key[2], self.shape[2])
        rest = key[3:]
        out_shape = [fs.stop - fs.start, ys.stop - ys.start, xs.stop - xs.start]
        if self.ndim == 4:
            cs = _norm(rest[0], self.shape[3])
            out_shape.append(cs.stop - cs.start)
        out = np.empty(out_shape, dtype=self.dtype)
        for i, k in enumerate(range(fs.start, fs.stop)):
            tile = self.frames[k].read(ys, xs)
            out[i] = tile if self.ndim == 3 else tile[..., cs]
        return out
