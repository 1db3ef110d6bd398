"""Picklable tile readers.

A *frame source* describes one frame on disk (a FITS HDU or a plane of a FITS
cube, a TIFF page series, a zarr array or one plane of a zarr cube) with the
little metadata needed to read any rectangle of it later, in another thread or
on another machine. Opening a frame reads headers only; :meth:`read` opens the
file, reads the requested rows and columns, and closes it again.

:class:`FrameStack` puts many frame sources together as one array-like object
of shape ``(frame, y, x[, channel])`` that :func:`dask.array.from_array` can
slice block by block: each block reads only its own tile from each file.

Paths may be fsspec URLs (``s3://``, ``gs://``, ``memory://``, ...): such a
source also holds the ``storage_options`` dict and reopens the URL through
fsspec in each read (:mod:`stackengine.io.remote`), so a source stays small and
picklable whatever its storage; no open file is ever kept in a source.

Alpha as a missing-value mask: when integer frames declare an alpha channel
(a source's ``alpha`` attribute, e.g. a TIFF ExtraSamples alpha), the stack
presents only the colour channels, as floats, and a pixel whose alpha is below
the dtype's maximum (not fully opaque) is NaN in every colour channel of that
frame, the way imgstack ignores transparent pixels. Float frames keep an
alpha-flagged channel as data: float files have no common opacity scale and
the ones seen in the wild (imgstack's own ``4d_float`` fixtures) hold image
data there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import FrameMismatchError
from .rawbytes import frame_views, open_exact, raw_layout, read_rows_batch

__all__ = ["FrameSource", "FrameStack", "FrameView", "alpha_mask_channel"]


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


def alpha_mask_channel(frame: Any) -> int | None:
    """The channel of ``frame`` used as a transparency mask, or None.

    A channel is a mask when the source declares it as alpha (attribute
    ``alpha``, e.g. :attr:`stackengine.io.tiff.TiffFrame.alpha`), the frame has
    channels, and its dtype is an integer type (opaque = the dtype's maximum).
    """
    alpha = getattr(frame, "alpha", None)
    if alpha is None or len(frame.shape) != 3 or np.dtype(frame.dtype).kind not in "ui":
        return None
    return int(alpha)


def _masked_dtype(dtype: np.dtype) -> np.dtype:
    """float32 for integers of up to 16 bits, float64 for wider ones."""
    return np.dtype(np.float32) if np.dtype(dtype).itemsize <= 2 else np.dtype(np.float64)


@dataclass(frozen=True)
class FrameView:
    """One frame as the stack presents it (alpha applied); small and picklable.

    Attributes
    ----------
    source : FrameSource
        The frame on disk.
    shape : tuple of int
        ``(height, width[, channels])`` as presented.
    dtype : numpy.dtype
        Presented dtype (float when an alpha mask applies).
    alpha : int or None
        The source channel used as a mask.
    """

    source: Any
    shape: tuple[int, ...]
    dtype: np.dtype
    alpha: int | None = None

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """Read rows ``ys`` and columns ``xs`` as presented (see ``FrameSource.read``);
        in a stack of frames of different shapes, NaN beyond the frame's own pixels."""
        h, w = self.source.shape[0], self.source.shape[1]
        if (h, w) == tuple(self.shape[:2]):
            return self._read(ys, xs)
        ys, xs = _norm(ys, self.shape[0]), _norm(xs, self.shape[1])
        if ys.stop <= h and xs.stop <= w:
            return self._read(ys, xs)
        out = np.full((ys.stop - ys.start, xs.stop - xs.start, *self.shape[2:]), np.nan,
                      dtype=self.dtype)  # fmt: skip
        y1, x1 = min(ys.stop, h), min(xs.stop, w)
        if y1 > ys.start and x1 > xs.start:
            out[: y1 - ys.start, : x1 - xs.start] = self._read(slice(ys.start, y1),
                                                               slice(xs.start, x1))  # fmt: skip
        return out

    def _read(self, ys: slice, xs: slice) -> np.ndarray:
        tile = self.source.read(ys, xs)
        if self.alpha is None:
            return tile
        opaque = tile[..., self.alpha] >= np.iinfo(tile.dtype).max
        colour = np.delete(tile, self.alpha, axis=-1).astype(self.dtype)
        colour[~opaque] = np.nan
        return colour[..., 0] if len(self.shape) == 2 else colour


class FrameStack:
    """Frames stacked along a new first axis, read lazily tile by tile.

    Parameters
    ----------
    frames : sequence of FrameSource
        All of the same shape and dtype (checked by the caller), unless ``pad``.
    pad : bool
        Frames may differ in rows, columns and dtype (for registration): they are
        presented on the largest frame's grid, NaN (missing) beyond each frame's
        own pixels, as float.

    Attributes
    ----------
    frames : list of FrameSource
        The sources, in stack order.
    shape, dtype, ndim
        As presented: with an alpha mask (see the module notes) the alpha
        channel is dropped (a grey + alpha frame becomes 2-D) and the dtype is
        float32 (float64 for integers wider than 16 bits).
    alpha : int or None
        The source channel used as a transparency mask, or None.
    frame_shapes : list of (int, int)
        Each frame's own rows and columns.
    padded : bool
        Whether the frames differ in shape (see ``pad``).

    Raises
    ------
    FrameMismatchError
        Some frames declare an alpha channel and others do not.
    """

    def __init__(self, frames: Sequence[FrameSource], *, pad: bool = False):
        if not frames:
            raise ValueError("FrameStack needs at least one frame")
        self.frames = list(frames)
        #: each frame's own (rows, cols)
        self.frame_shapes = [tuple(int(v) for v in f.shape[:2]) for f in self.frames]
        self.padded = pad and len(set(self.frame_shapes)) > 1
        first = self.frames[0]
        self.alpha = alpha_mask_channel(first)
        for f in self.frames[1:]:
            if alpha_mask_channel(f) != self.alpha:
                raise FrameMismatchError(
                    f"{f.path}: alpha mismatch: alpha channel {alpha_mask_channel(f)} but "
                    f"{first.path} has {self.alpha}"
                )
        shape = tuple(first.shape)
        dtype = np.dtype(first.dtype)
        if self.alpha is not None:
            colours = shape[2] - 1
            shape = shape[:2] if colours == 1 else (*shape[:2], colours)
            dtype = _masked_dtype(dtype)
        if self.padded:  # frames of different shapes: on the largest grid, NaN beyond each
            shape = (max(h for h, _ in self.frame_shapes),
                     max(w for _, w in self.frame_shapes), *shape[2:])  # fmt: skip
            dtype = np.result_type(*(np.dtype(f.dtype) for f in self.frames))
            dtype = dtype if dtype.kind == "f" else _masked_dtype(dtype)
        self.frame_shape = shape
        self.shape = (len(self.frames), *shape)
        self.dtype = dtype
        self.ndim = len(self.shape)

    @property
    def block(self) -> tuple[int, int]:
        """The coarsest layout unit over all frames (they normally agree)."""
        rows = max(f.block[0] for f in self.frames)
        cols = max(f.block[1] for f in self.frames)
        return rows, cols

    def view(self, k: int) -> FrameView:
        """Frame ``k`` as presented (alpha mask applied), to read in another task."""
        return FrameView(self.frames[k], self.frame_shape, self.dtype, self.alpha)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        fs = _norm(key[0], self.shape[0])
        ys = _norm(key[1], self.shape[1])
        xs = _norm(key[2], self.shape[2])
        if self.ndim == 4:
            cs = _norm(key[3], self.shape[3])
            if (cs.start, cs.stop) != (0, self.shape[3]):
                return self.read_tile(ys, xs, frames=fs)[..., cs]
        return self.read_tile(ys, xs, frames=fs)

    @property
    def _layout(self) -> Any:
        """The frames' common :class:`~.rawbytes.RawLayout` (None: read frame by frame)."""
        if "_raw_layout" not in self.__dict__:
            self._raw_layout = None if self.alpha is not None else raw_layout(self.frames)
        return self._raw_layout

    def _batch_readable(self, xs: slice, out: np.ndarray, shape: tuple[int, ...]) -> bool:
        return (
            not self.padded
            and self._layout is not None
            and (xs.start, xs.stop) == (0, self.shape[2])
            and out.shape == shape
            and out.dtype == self.dtype
            and out.flags.c_contiguous
        )

    @contextlib.contextmanager
    def open_handles(self) -> Iterator[dict[int, Any]]:
        """Open files for :meth:`read_tile`, kept open for several reads (one task),
        opened on first use and closed on exit."""
        with contextlib.ExitStack() as stack:
            yield _Handles(self.frames, stack)

    def read_tile(
        self,
        ys: slice,
        xs: slice,
        out: np.ndarray | None = None,
        *,
        frames: slice | None = None,
        handles: dict[int, Any] | None = None,
    ) -> np.ndarray:
        """Rows ``ys`` and columns ``xs`` of every frame (or of ``frames``), all channels.

        ``out``, if given, is a C-contiguous array of the result's shape and
        :attr:`dtype` to fill (so that a caller can reuse one buffer); FITS
        strips and uncompressed TIFF rows are read straight into it, through
        the open files of ``handles`` (from :meth:`open_handles`) if given.
        """
        fs = frames if frames is not None else slice(0, self.shape[0])
        shape = (fs.stop - fs.start, ys.stop - ys.start, xs.stop - xs.start, *self.shape[3:])
        if out is None:
            out = np.empty(shape, dtype=self.dtype)
        if handles is not None and self._batch_readable(xs, out, shape):
            layout = self._layout
            read_rows_batch(layout, self.frames, range(fs.start, fs.stop), ys.start,
                            out.view(layout.stored), handles)  # fmt: skip
            return out
        for i, k in enumerate(range(fs.start, fs.stop)):
            source = self.frames[k]
            inside = ys.stop <= self.frame_shapes[k][0] and xs.stop <= self.frame_shapes[k][1]
            if self.alpha is None and inside and hasattr(source, "read_into"):
                fh = handles[k] if handles is not None else None
                if source.read_into(ys, xs, out[i], fh):
                    continue  # read in place: no intermediate copy
            out[i] = self.view(k).read(ys, xs)
        return out

    def read_float32(self, k: int, ys: slice, xs: slice, out: np.ndarray, handles: Any) -> bool:
        """Rows ``ys`` and columns ``xs`` of frame ``k`` into the float32 ``out`` (rows,
        cols) straight from a memory map of the file, when the frame's values are
        exactly float32 (see ``FitsFrame.read_float32``); False (nothing read) else."""
        if self.alpha is not None or self.padded or handles is None:
            return False
        if not handles.mappable(k):
            return False
        return bool(self.frames[k].read_float32(ys, xs, out))


class _Handles(dict):
    """Frame index -> open file for exact reads, opened when first asked for; and
    which frames are read through memory maps (:meth:`mappable`)."""

    def __init__(self, frames: list[Any], stack: contextlib.ExitStack) -> None:
        super().__init__()
        self.frames, self.stack = frames, stack
        self.unmappable: set[int] = set()

    def mappable(self, k: int) -> bool:
        """Whether frame ``k`` may be read through a memory map (see
        ``FitsFrame.read_float32``); a frame found not to be is not asked again."""
        if k in self.unmappable:
            return False
        frame = self.frames[k]
        if not hasattr(frame, "float32_layout") or frame.float32_layout() is None:
            self.unmappable.add(k)
            return False
        return True

    def release(self, k: int) -> None:
        """Close frame ``k``'s file if open (a task that reads each frame once keeps one
        file open at a time, not one per frame)."""
        fh = self.pop(k, None)
        if fh is not None:
            fh.close()

    def views(self, raw: np.ndarray) -> list[memoryview]:
        """Byte views of the frames of ``raw``, kept for the buffer this task reuses."""
        key = (raw.__array_interface__["data"][0], raw.shape, raw.dtype.str)
        if getattr(self, "_views_key", None) != key:
            self._views_key, self._views = key, frame_views(raw)
        return self._views

    def __missing__(self, k: int) -> Any:
        frame = self.frames[k]
        fh = self.stack.enter_context(
            open_exact(frame.path, getattr(frame, "storage_options", None))
        )
        self[k] = fh
        return fh
