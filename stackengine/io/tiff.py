"""TIFF frame reader.

:func:`open_tiff` reads the tags of the first image series (pyramid level 0)
with :mod:`tifffile`; :meth:`TiffFrame.read` opens the file again, wraps the
series as a zarr array with :meth:`tifffile.TiffPageSeries.aszarr` (one zarr
chunk per TIFF strip or tile) and slices it, so a tile read decodes only the
strips or tiles it touches.

Shapes: a grey image is ``(H, W)``; samples (RGB, RGBA, any extra samples) go
last, ``(H, W, S)``, also for planar-separate files (stored ``(S, H, W)``); a
1-D series (one row) is ``(1, W)``. Any further leading axes of the series (a
multi-page stack such as ``(N, H, W)``) become separate frames, in C order.

A path may also be an fsspec URL (see :mod:`stackengine.io.remote`): tifffile
then reads tags and strips through an fsspec file object opened in each read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import tifffile
import zarr

from ..errors import FrameError
from . import READER_SUFFIXES, remote
from .rawbytes import read_exact, to_native

__all__ = ["SUFFIXES", "TiffFrame", "open_tiff"]

SUFFIXES = READER_SUFFIXES["tiff"]

_ALPHA = (1, 2)  # ExtraSamples: associated / unassociated alpha


def _iso_datetime(value: str) -> str | None:
    """TIFF ``YYYY:MM:DD HH:MM:SS`` -> ISO 8601 ``YYYY-MM-DDTHH:MM:SS``."""
    value = value.strip().rstrip("\x00")
    if len(value) != 19 or value[4] != ":" or value[7] != ":":
        return None
    return f"{value[:4]}-{value[5:7]}-{value[8:10]}T{value[11:]}"


def _header(page: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tags = page.tags
    exif = tags.valueof("ExifTag") or {}
    stamp = exif.get("DateTimeOriginal") or tags.valueof("DateTime")
    if isinstance(stamp, str) and (iso := _iso_datetime(stamp)):
        out["DATE-OBS"] = iso
    exposure = exif.get("ExposureTime")
    if isinstance(exposure, tuple) and len(exposure) == 2 and exposure[1]:
        out["EXPTIME"] = exposure[0] / exposure[1]
    iso_speed = exif.get("ISOSpeedRatings")
    if isinstance(iso_speed, int):
        out["ISO"] = iso_speed
    return out


@dataclass
class TiffFrame:
    """One image of a TIFF file (see :class:`stackengine.io.sources.FrameSource`).

    Attributes
    ----------
    path, shape, dtype, block, header
        As in the FrameSource protocol; ``block`` is the tile shape of a tiled
        file, ``(rows_per_strip, width)`` of a strip file.
    index : tuple of int
        Position of this image along the series' leading (non-image) axes;
        ``()`` for a single image.
    alpha : int or None
        Channel index the file declares as alpha (ExtraSamples tag), else None.
        The reader returns all channels unchanged; whether to use the alpha
        channel as a mask is the caller's decision.
    storage_options : dict or None
        fsspec options when ``path`` is a URL.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    block: tuple[int, int]
    header: dict[str, Any]
    index: tuple[int, ...] = ()
    alpha: int | None = None
    storage_options: dict[str, Any] | None = None
    _axes: str = "YX"
    _series: int = 0
    _offset: int = -1
    _stored: str = ""

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """Read rows ``ys`` and columns ``xs``; see ``FrameSource.read``."""
        h, w = self.shape[:2]
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        ys, xs = slice(y0, max(y0, y1)), slice(x0, max(x0, x1))
        if self._offset >= 0:  # uncompressed, contiguous: read the rows' bytes
            raw = np.empty((ys.stop - y0, *self.shape[1:]), dtype=self._stored)
            self._read_rows(raw, y0)
            return np.ascontiguousarray(to_native(raw)[:, xs])
        key: list[Any] = list(self.index)
        for ax in self._axes:
            key.append({"Y": ys, "X": xs, "S": slice(None)}[ax])
        try:
            with _tiff_file(self.path, self.storage_options) as tif:
                # maxworkers > 1: decode strips/tiles in threads, not on zarr's
                # single event-loop thread (which would serialize all dask workers);
                # read_only: tifffile guesses it from the handle, and fsspec's in-memory
                # files say they are writable
                series = tif.series[self._series]
                with series.aszarr(level=0, maxworkers=2, read_only=True) as store:
                    data = zarr.open_array(store, mode="r")[tuple(key)]
        except FrameError:
            raise
        except FileNotFoundError as exc:
            raise FrameError(f"{self.path}: no such file") from exc
        except Exception as exc:
            raise FrameError(f"{self.path}: cannot read TIFF data ({exc})") from exc
        data = np.asarray(data)
        if "Y" not in self._axes:  # 1-D series: one row
            data = data[np.newaxis][ys]
        if self._axes.startswith("S"):  # planar separate: channel last
            data = np.moveaxis(data, 0, -1)
        return data.astype(self.dtype, copy=False)

    def raw_rows(self) -> tuple[int, np.dtype, bool] | None:
        """``(offset, stored dtype, False)`` when the image is stored uncompressed and
        contiguously (see ``FitsFrame.raw_rows``), else None."""
        if self._offset < 0:
            return None
        return self._offset, np.dtype(self._stored), False

    def read_into(self, ys: slice, xs: slice, out: np.ndarray, fh: Any = None) -> bool:
        """Read rows ``ys`` (all columns) straight into ``out`` when the image is
        stored uncompressed and contiguously (strips or full-width tiles, no
        predictor); return False and read nothing otherwise."""
        h, w = self.shape[:2]
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        y1 = max(y0, y1)
        if (
            self._offset < 0
            or (x0, x1) != (0, w)
            or out.shape != (y1 - y0, *self.shape[1:])
            or out.dtype != self.dtype
            or not out.flags.c_contiguous
        ):
            return False
        raw = out.view(self._stored)
        self._read_rows(raw, y0, fh)
        to_native(raw)
        return True

    def _read_rows(self, raw: np.ndarray, y0: int, fh: Any = None) -> None:
        row_bytes = raw.nbytes // max(raw.shape[0], 1) if raw.shape[0] else 0
        what = f"rows {y0}:{y0 + raw.shape[0]}"
        offset = self._offset + y0 * row_bytes
        read_exact(self.path, self.storage_options, offset, raw, what, fh)


@contextmanager
def _tiff_file(path: str, storage_options: dict[str, Any] | None) -> Iterator[Any]:
    """``tifffile.TiffFile`` of a local path, or of an fsspec file for a URL."""
    if not remote.is_url(path):
        with tifffile.TiffFile(path) as tif:
            yield tif
        return
    with remote.open_binary(path, storage_options) as fh, tifffile.TiffFile(fh) as tif:
        yield tif


def _check_size(
    path: str, shown: str, page: Any, storage_options: dict[str, Any] | None = None
) -> None:
    offsets, counts = page.dataoffsets, page.databytecounts
    if not offsets:
        raise FrameError(f"{shown}: TIFF page has no image data")
    end = max(o + c for o, c in zip(offsets, counts, strict=False))
    size = remote.file_size(path, storage_options)
    if size < end:
        raise FrameError(f"{shown}: truncated: image data ends at byte {end}, file has {size}")


def open_tiff(
    path: str | os.PathLike, *, storage_options: dict[str, Any] | None = None
) -> list[TiffFrame]:
    """Open a TIFF file as frames, reading tags only.

    Parameters
    ----------
    path : str or os.PathLike
        A TIFF or BigTIFF file, strips or tiles, any compression tifffile reads;
        or an fsspec URL of one.
    storage_options : dict, optional
        fsspec options for a URL (kept in each frame for its reads).

    Returns
    -------
    list of TiffFrame
        The images of the first series at level 0: usually one frame, shape
        ``(H, W)`` or ``(H, W, S)`` (channel last, also for planar-separate
        files); a multi-page stack ``(N, H, W)`` gives N frames.

    Raises
    ------
    FrameError
        The file is missing, unreadable, not a TIFF, or its first page's
        strips/tiles lie beyond the end of the file.
    """
    shown = os.fspath(path)
    if remote.is_url(shown):
        abspath = shown
    else:
        abspath = remote.local_path(shown)
        if os.path.isdir(abspath):
            raise FrameError(f"{shown}: is a directory, not a TIFF file")
        storage_options = None
    try:
        with _tiff_file(abspath, storage_options) as tif:
            series = tif.series[0].levels[0]
            page = series.keyframe
            axes, shape = series.axes, series.shape
            dtype = np.dtype(series.dtype)
            extrasamples = tuple(page.extrasamples)
            _check_size(abspath, shown, page, storage_options)
            header = _header(page)
            tiled = page.is_tiled
            tile = (page.tilelength, page.tilewidth)
            rows_per_strip = page.rowsperstrip
            # pixels stored as they are, row after row: read by offset, not via tifffile
            direct = len(series.pages) == 1 and page.is_final and page.dtype == dtype
            offset = int(page.dataoffsets[0]) if direct else -1
            stored = dtype.newbyteorder(tif.byteorder).str
    except FrameError:
        raise
    except PermissionError as exc:
        raise FrameError(f"{shown}: cannot open ({exc.strerror or exc})") from exc
    except Exception as exc:
        raise FrameError(f"{shown}: not a valid TIFF file ({exc})") from exc
    image_axes = "".join(a for a in axes if a in "YXS")
    n_lead = len(axes) - len(image_axes)
    if "X" not in image_axes or axes[n_lead:] != image_axes or image_axes not in (
        "X", "YX", "YXS", "SYX", "XS",
    ):  # fmt: skip
        raise FrameError(f"{shown}: unsupported TIFF layout (axes {axes!r})")
    dims = dict(zip(axes[n_lead:], shape[n_lead:], strict=True))
    h, w = dims.get("Y", 1), dims["X"]
    frame_shape = (h, w) if "S" not in dims else (h, w, dims["S"])
    block = tile if tiled else (max(1, min(rows_per_strip or h, h)), w)
    alpha = None
    if "S" in dims:
        for i, code in enumerate(extrasamples):
            if code in _ALPHA:
                alpha = dims["S"] - len(extrasamples) + i
                break
    native = dtype.newbyteorder("=")
    lead = shape[:n_lead]
    if lead or image_axes not in ("YX", "YXS"):
        offset = -1
    return [
        TiffFrame(
            path=abspath,
            shape=frame_shape,
            dtype=native,
            block=(int(block[0]), int(block[1])),
            header=dict(header),
            index=tuple(int(i) for i in np.unravel_index(k, lead)) if lead else (),
            alpha=alpha,
            storage_options=storage_options,
            _axes=image_axes,
            _offset=offset,
            _stored=stored,
        )
        for k in range(math.prod(lead))
    ]
