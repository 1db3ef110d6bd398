"""FITS frame reader.

:func:`open_fits` parses headers only and returns one :class:`FitsFrame` per
image plane: a 2-D image HDU is one frame, a 3-D HDU (a cube) is ``NAXIS3``
frames. Plain (uncompressed) images are read raw: the byte offset of each
frame is computed once at open, and :meth:`FitsFrame.read` reads one
contiguous run of full-width rows, byte-swaps it and applies BZERO/BSCALE/BLANK
exactly as :func:`astropy.io.fits.getdata` does. Tile-compressed images
(``CompImageHDU``, e.g. ``.fits.fz``) are read through astropy's
``CompImageHDU.section``, which decompresses only the tiles a read touches.

A path may also be an fsspec URL (see :mod:`stackengine.io.remote`): the file
is opened through fsspec and a raw read fetches exactly the byte range of its
rows (no read-ahead), as a local read does.
"""

from __future__ import annotations

import functools
import math
import mmap
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from ..errors import FrameError
from . import READER_SUFFIXES, remote
from .fitsheader import BLOCK, read_primary
from .rawbytes import read_exact, to_native

__all__ = ["SUFFIXES", "FitsFrame", "open_fits"]

SUFFIXES = READER_SUFFIXES["fits"]

#: Header keywords copied into :attr:`FitsFrame.header` when present.
HEADER_KEYS = (
    "EXPTIME", "EXPOSURE", "FILTER", "IMAGETYP", "DATE-OBS", "OBJECT", "MJD-OBS", "JD",
    "GAIN", "RDNOISE", "CCD-TEMP", "XBINNING", "YBINNING", "AIRMASS", "INSTRUME",
    "TELESCOP", "BUNIT",
)  # fmt: skip

_RAW = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_UNSIGNED = {16: ">u2", 32: ">u4", 64: ">u8"}  # with BZERO = 2**(BITPIX-1)


def _layout(bitpix: int, bzero: Any, bscale: Any, blank: Any) -> tuple[str, np.dtype, str]:
    """Return (raw dtype string, output dtype, conversion mode) like astropy's rules."""
    if bitpix not in _RAW:
        raise ValueError(f"unsupported BITPIX {bitpix}")
    if bitpix > 0 and blank is not None:
        return _RAW[bitpix], np.dtype("float32" if bitpix <= 16 else "float64"), "scaled"
    if bzero == 0 and bscale == 1:
        return _RAW[bitpix], np.dtype(_RAW[bitpix]).newbyteorder("="), "plain"
    if bscale == 1 and bitpix == 8 and bzero == -128:
        return "u1", np.dtype("int8"), "flip"
    if bscale == 1 and bitpix in _UNSIGNED and bzero == 1 << (bitpix - 1):
        raw = _UNSIGNED[bitpix]
        return raw, np.dtype(raw).newbyteorder("="), "flip"
    if bitpix < 0:
        return _RAW[bitpix], np.dtype(_RAW[bitpix]).newbyteorder("="), "scaled"
    return _RAW[bitpix], np.dtype("float32" if bitpix <= 16 else "float64"), "scaled"


def _scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value.strip()
    return None


def _select_header(header: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in HEADER_KEYS:
        try:
            value = _scalar(header[key]) if key in header else None
        except Exception:  # an unparsable card: leave it out, the data is still fine
            value = None
        if value is not None:
            out[key] = value
    return out


def _is_image(hdu: Any) -> bool:
    return isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) and not isinstance(hdu, fits.GroupsHDU)


def _axis_card(header: Any, key: str, shown: str) -> int:
    """The value of the NAXIS or NAXISn card, checked to be a whole number >= 0."""
    try:
        value = header.get(key, 0)
    except Exception:  # astropy: an unparsable card
        raise FrameError(f"{shown}: bad {key} card: cannot be parsed") from None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise FrameError(f"{shown}: bad {key} card ({value!r}): not a whole number >= 0")
    return int(value)


def _naxes(header: Any, shown: str = "FITS header") -> list[int]:
    """Axis lengths in numpy order (slowest first), trailing length-1 axes dropped."""
    naxis = _axis_card(header, "NAXIS", shown)
    axes = [_axis_card(header, f"NAXIS{k}", shown) for k in range(1, naxis + 1)]
    while len(axes) > 3 and axes[-1] == 1:
        axes.pop()
    return axes[::-1]


@dataclass
class FitsFrame:
    """One image plane of a FITS file (see :class:`stackengine.io.sources.FrameSource`).

    Attributes
    ----------
    path, shape, dtype, block, header
        As in the FrameSource protocol; ``block`` is ``(1, width)``.
    hdu : int
        Index of the HDU in the file.
    plane : int or None
        Index along ``NAXIS3`` for a cube, None for a 2-D image.
    compressed : bool
        True for a tile-compressed HDU (read through astropy).
    storage_options : dict or None
        fsspec options when ``path`` is a URL.
    """

    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    block: tuple[int, int]
    header: dict[str, Any]
    hdu: int = 0
    plane: int | None = None
    compressed: bool = False
    storage_options: dict[str, Any] | None = None
    _offset: int = 0
    _raw: str = ">f4"
    _mode: str = "plain"
    _bscale: float = 1.0
    _bzero: float = 0.0
    _blank: int | None = None

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """Read rows ``ys`` and columns ``xs``; see ``FrameSource.read``."""
        h, w = self.shape
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        y1, x1 = max(y0, y1), max(x0, x1)
        if self.compressed:
            return self._read_compressed(slice(y0, y1), slice(x0, x1))
        raw = np.empty((y1 - y0, w), dtype=self._raw)
        self._read_rows(raw, y0)
        return self._convert(raw, x0, x1)

    def raw_rows(self) -> tuple[int, np.dtype, bool] | None:
        """``(offset, stored dtype, flip)`` when the rows are stored raw, else None.

        The image's full-width rows sit contiguously from byte ``offset`` of the
        file, as ``stored`` values that need at most a byte swap (and, with
        ``flip``, the sign bit flipped: signed bytes stored with BZERO -128) to
        become the frame's values. Lets :meth:`FrameStack.read_tile
        <stackengine.io.sources.FrameStack.read_tile>` read many frames' rows
        in one batch.
        """
        if self.compressed or self._mode not in ("plain", "flip"):
            return None
        return self._offset, np.dtype(self._raw), self._mode == "flip"

    def float32_layout(self) -> tuple[np.dtype, float] | None:
        """``(stored dtype, offset)`` when the image's stored values plus ``offset`` are
        the frame's values and both convert to float32 exactly (local, uncompressed,
        unscaled 8/16-bit integers or 32-bit floats); else None."""
        if self.compressed or remote.is_url(self.path) or self._mode not in ("plain", "flip"):
            return None
        stored = np.dtype(self._raw)
        if self._mode == "plain":
            return (stored, 0.0) if stored.str[1:] in ("f4", "i2", "u1") else None
        if stored.itemsize == 2:
            return np.dtype(">i2"), 32768.0
        if stored.itemsize == 1:
            return stored, -128.0  # int8 stored as uint8 + 128
        return None

    def read_float32(self, ys: slice, xs: slice, out: np.ndarray) -> bool:
        """Rows ``ys`` and columns ``xs`` into the float32 ``out`` straight from a memory
        map of just those rows' pages, when the values are exactly float32 (see
        :meth:`float32_layout`); False (nothing read) otherwise. A tile task reads
        only its box's pages, converted in one pass (no full-width copy, no byte
        swap), and keeps no file or map open afterwards."""
        layout = self.float32_layout()
        if layout is None:
            return False
        stored, offset = layout
        h, w = self.shape
        row_bytes = w * stored.itemsize
        start = self._offset + ys.start * row_bytes
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        length = start - aligned + (ys.stop - ys.start) * row_bytes
        if length <= 0:
            return True
        fd = os.open(self.path, os.O_RDONLY)
        try:
            mapped = mmap.mmap(fd, length, access=mmap.ACCESS_READ, offset=aligned)
        finally:
            os.close(fd)
        try:
            rows = np.frombuffer(mapped, dtype=stored, count=(ys.stop - ys.start) * w,
                                 offset=start - aligned).reshape(-1, w)  # fmt: skip
            np.copyto(out, rows[:, xs], casting="unsafe")
            del rows
        finally:
            mapped.close()
        if offset:
            out += np.float32(offset)
        return True

    def read_into(self, ys: slice, xs: slice, out: np.ndarray, fh: Any = None) -> bool:
        """Read rows ``ys`` (all columns) straight into ``out``, without a copy.

        Possible for an uncompressed, unscaled HDU when ``xs`` spans the whole
        width and ``out`` is C-contiguous of the frame's dtype and the tile's
        shape: the bytes are read into ``out`` and swapped in place. Returns
        False (and reads nothing) otherwise; use :meth:`read` then.
        """
        h, w = self.shape
        y0, y1, _ = ys.indices(h)
        x0, x1, _ = xs.indices(w)
        y1 = max(y0, y1)
        if (
            self.compressed
            or self._mode == "scaled"
            or (x0, x1) != (0, w)
            or out.shape != (y1 - y0, w)
            or out.dtype != self.dtype
            or not out.flags.c_contiguous
        ):
            return False
        raw = out.view(self._raw)
        self._read_rows(raw, y0, fh)
        to_native(raw, self._mode == "flip")
        return True

    def _read_rows(self, raw: np.ndarray, y0: int, fh: Any = None) -> None:
        """Fill ``raw`` (rows x full width, the stored dtype) from row ``y0`` on."""
        offset = self._offset + y0 * raw.shape[1] * raw.itemsize
        what = f"rows {y0}:{y0 + raw.shape[0]}"
        read_exact(self.path, self.storage_options, offset, raw, what, fh)

    def _convert(self, raw: np.ndarray, x0: int, x1: int) -> np.ndarray:
        full = x0 == 0 and x1 == raw.shape[1]
        sub = raw if full else raw[:, x0:x1]
        if self._mode == "scaled":
            out = sub.astype(self.dtype)
            if self._bscale != 1:
                np.multiply(out, self._bscale, out)
            if self._bzero != 0:
                out += self._bzero
            if self._blank is not None:
                out[sub == self._blank] = np.nan
            return out
        # the read buffer is ours: swapped in place (a column range: its copy)
        own = raw if full else np.ascontiguousarray(sub)
        return to_native(own, self._mode == "flip").view(self.dtype)

    def _read_compressed(self, ys: slice, xs: slice) -> np.ndarray:
        key = (ys, xs) if self.plane is None else (self.plane, ys, xs)
        try:
            with _open_hdul(self.path, storage_options=self.storage_options) as hdul:
                data = np.asarray(hdul[self.hdu].section[key])
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError(f"{self.path}: cannot decompress ({exc})") from exc
        return data.astype(self.dtype, copy=False)

    def full_header(self) -> fits.Header:
        """The full header of this frame's HDU (a new copy each call)."""
        if remote.is_url(self.path):
            with _open_hdul(self.path, storage_options=self.storage_options) as hdul:
                return hdul[self.hdu].header.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyUserWarning)
            return fits.Header.fromstring(self.header_text())

    def header_text(self) -> str:
        """The text of this frame's header (80-character cards), read once per process
        for an unchanged local file (planning reads the headers of thousands of frames
        several times: WCS, Bayer pattern, exposure)."""
        try:
            st = os.stat(self.path)
        except OSError:
            st = None
        if remote.is_url(self.path) or st is None:
            with _open_hdul(self.path, storage_options=self.storage_options) as hdul:
                return hdul[self.hdu].header.tostring()
        return _header_text(self.path, self.hdu, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=2048)
def _header_text(path: str, hdu: int, mtime_ns: int, size: int) -> str:
    """The header of HDU ``hdu`` of the local file ``path`` as text (see
    :meth:`FitsFrame.header_text`); the primary header straight from its blocks."""
    if hdu == 0:
        chunks = []
        with open(path, "rb") as f:
            while True:
                block = f.read(BLOCK)
                if len(block) < BLOCK:
                    break
                text = block.decode("ascii", errors="replace")
                chunks.append(text)
                if any(text[i : i + 8] == "END     " for i in range(0, BLOCK, 80)):
                    return "".join(chunks)
    with _open_hdul(path) as hdul:
        return hdul[hdu].header.tostring()


def _check_axis_cards(fh: Any, shown: str) -> None:
    """Raise FrameError naming a malformed NAXIS/NAXISn card of the primary header, if any
    (astropy's own error for one is about the arithmetic it failed to do)."""
    try:
        fh.seek(0)
        header = fits.Header.fromfile(fh)
    except Exception:  # not even a header: the caller's message stands
        return
    _naxes(header, shown)


@contextmanager
def _open_hdul(
    path: str, shown: str | None = None, storage_options: dict[str, Any] | None = None
) -> Iterator[fits.HDUList]:
    """Open a FITS file (or URL) lazily and quietly (astropy's header warnings
    are silenced: the checks that matter raise FrameError) and always close it."""
    shown = shown or path
    try:
        if remote.is_url(path):
            fh = remote.open_binary(path, storage_options)
        else:
            fh = open(path, "rb")  # noqa: SIM115
    except FrameError:
        raise
    except FileNotFoundError as exc:
        raise remote.missing(shown) from exc
    except IsADirectoryError as exc:
        raise FrameError(f"{shown}: is a directory, not a FITS file") from exc
    except OSError as exc:
        raise FrameError(f"{shown}: cannot open ({exc.strerror or exc})") from exc
    with fh, warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)
        try:
            hdul = fits.open(fh, memmap=False, lazy_load_hdus=True)
        except Exception as exc:
            _check_axis_cards(fh, shown)  # a garbage NAXISn card: name it
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FrameError(f"{shown}: not a valid FITS file ({msg})") from exc
        with hdul:
            yield hdul


def _find_hdu(hdul: fits.HDUList, hdu: int | str, shown: str) -> int:
    try:
        index = hdul.index_of(hdu)
        chosen = hdul[index]
    except (KeyError, IndexError) as exc:
        raise FrameError(f"{shown}: no HDU {hdu!r}") from exc
    except Exception as exc:
        raise FrameError(f"{shown}: not a valid FITS file ({exc})") from exc
    if hdu == 0 and _is_image(chosen) and not _naxes(chosen.header, shown):
        try:
            for i, candidate in enumerate(hdul):  # loads the later HDUs' headers
                if _is_image(candidate) and _naxes(candidate.header, shown):
                    return i
        except FrameError:
            raise
        except Exception as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FrameError(f"{shown}: not a valid FITS file ({msg})") from exc
        raise FrameError(f"{shown}: no image data in any HDU")
    if not _is_image(chosen):
        raise FrameError(f"{shown}: HDU {hdu!r} is a {type(chosen).__name__}, not an image")
    return index


def open_fits(
    path: str | os.PathLike,
    hdu: int | str = 0,
    *,
    storage_options: dict[str, Any] | None = None,
) -> list[FitsFrame]:
    """Open a FITS file as frames, reading headers only.

    Parameters
    ----------
    path : str or os.PathLike
        The FITS file (plain or tile-compressed), or an fsspec URL.
    hdu : int or str, default 0
        HDU index or EXTNAME. With the default 0, if the primary HDU holds no
        data (``NAXIS = 0``, as in ``.fits.fz`` files and many multi-extension
        files), the first HDU with image data is used instead.
    storage_options : dict, optional
        fsspec options for a URL (kept in each frame for its reads).

    Returns
    -------
    list of FitsFrame
        One frame for a 1-D or 2-D HDU (1-D data is one row, shape ``(1, n)``);
        ``NAXIS3`` frames for a cube, frame ``k`` being ``data[k]``.

    Raises
    ------
    FrameError
        The file is missing, unreadable, not FITS, truncated, has no image data
        in the chosen HDU, or the HDU does not exist.

    Notes
    -----
    Output dtypes follow astropy: BITPIX 16/32/64 with BSCALE 1 and
    BZERO 2**(BITPIX-1) give uint16/32/64, BITPIX 8 with BZERO -128 gives
    int8, other scaled integers give float32 (BITPIX 8, 16) or float64
    (BITPIX 32, 64). A BLANK keyword on integer data turns those pixels into
    NaN (float output) in every case, including pseudo-unsigned data and
    BLANK = 0, where astropy leaves the raw values.
    """
    shown = os.fspath(path)
    if remote.is_url(shown):
        abspath = shown
    else:
        abspath = remote.local_path(shown)
        storage_options = None
    quick = None
    if storage_options is None and type(hdu) is int and hdu == 0:
        quick = _describe_primary(abspath)
    if quick is not None:
        base, n_planes = quick
    else:
        with _open_hdul(abspath, shown, storage_options) as hdul:
            index = _find_hdu(hdul, hdu, shown)
            try:
                base, n_planes = _describe(hdul, index, abspath, shown, storage_options)
            except FrameError:
                raise
            except Exception as exc:
                raise FrameError(f"{shown}: not a valid FITS file ({exc})") from exc
    plane_bytes = base.pop("_plane_bytes")
    offset = base.pop("_offset")
    return [
        FitsFrame(
            plane=k if n_planes else None,
            _offset=offset + k * plane_bytes,
            **{**base, "header": dict(base["header"])},
        )
        for k in range(max(1, n_planes))
    ]


def _describe_primary(abspath: str) -> tuple[dict[str, Any], int] | None:
    """What :func:`_describe` gives for a local file's primary HDU, from the quick
    header reader (:mod:`.fitsheader`); None where astropy must open the file
    (then it also names any problem: missing, truncated, no image data...)."""
    try:
        with open(abspath, "rb") as fh:
            found = read_primary(fh, HEADER_KEYS)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if found is None:
        return None
    header, offset = found
    axes = _naxes(header, abspath)
    bitpix = header["BITPIX"]
    if bitpix not in _RAW or not axes or not math.prod(axes) or len(axes) > 3:
        return None
    if size < offset + abs(bitpix) // 8 * math.prod(axes):
        return None
    base = _fields(abspath, axes, header, 0, None, offset, bitpix)
    base.update(_plain_fields(header, bitpix, abspath))
    return base, axes[0] if len(axes) == 3 else 0


def _fields(
    abspath: str,
    axes: list[int],
    header: Any,
    index: int,
    storage_options: dict[str, Any] | None,
    offset: int,
    bitpix: int,
) -> dict[str, Any]:
    """The FitsFrame fields of every kind of HDU (``header``: astropy's, or the cards of
    :mod:`.fitsheader`)."""
    shape = (axes[-2], axes[-1]) if len(axes) > 1 else (1, axes[0])
    return dict(
        path=abspath,
        shape=shape,
        block=(1, shape[1]),
        header=_select_header(header),
        hdu=index,
        storage_options=storage_options,
        _offset=offset,
        _plane_bytes=shape[0] * shape[1] * abs(bitpix) // 8,
    )


def _number_card(header: Any, key: str, default: float, shown: str) -> Any:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise FrameError(f"{shown}: bad {key} card ({value!r}): not a number")
    return value


def _plain_fields(header: Any, bitpix: int, shown: str = "FITS header") -> dict[str, Any]:
    """The FitsFrame fields of an uncompressed image: its dtype and scaling."""
    blank = header.get("BLANK") if bitpix > 0 else None
    blank = blank if isinstance(blank, int) and not isinstance(blank, bool) else None
    bzero = _number_card(header, "BZERO", 0, shown)
    bscale = _number_card(header, "BSCALE", 1, shown)
    raw, dtype, mode = _layout(bitpix, bzero, bscale, blank)
    return dict(dtype=dtype, _raw=raw, _mode=mode, _bscale=bscale, _bzero=bzero, _blank=blank)


def _describe(
    hdul: fits.HDUList,
    index: int,
    abspath: str,
    shown: str,
    storage_options: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], int]:
    """FitsFrame fields shared by all planes of HDU ``index``, and the plane count (0: 2-D)."""
    chosen = hdul[index]
    header = chosen.header
    axes = _naxes(header, shown)
    compressed = isinstance(chosen, fits.CompImageHDU)
    info = hdul.fileinfo(index)
    if not axes or not math.prod(axes):
        raise FrameError(f"{shown}: HDU {index} has no image data")
    if len(axes) > 3:
        raise FrameError(f"{shown}: HDU {index} has {len(axes)} axes; expected 2 or 3")
    bitpix = int(header["BITPIX"])
    if compressed:  # the binary table (and heap) holding the compressed tiles
        with remote.open_binary(abspath, storage_options) as fh:
            fh.seek(info["hdrLoc"])
            table = fits.Header.fromfile(fh)
        nbytes = int(table["NAXIS1"]) * int(table["NAXIS2"]) + int(table.get("PCOUNT", 0))
    else:
        nbytes = abs(bitpix) // 8 * math.prod(axes)
    size = remote.file_size(abspath, storage_options)
    if size < info["datLoc"] + nbytes:
        raise FrameError(
            f"{shown}: truncated: expected {nbytes} bytes of data, "
            f"file has {max(0, size - info['datLoc'])}"
        )
    base = _fields(abspath, axes, header, index, storage_options, info["datLoc"], bitpix)
    if compressed:
        probe = chosen.section[(0,) * (len(axes) - 2) + (slice(0, 1), slice(0, 1))]
        base.update(dtype=np.asarray(probe).dtype.newbyteorder("="), compressed=True)
    else:
        base.update(_plain_fields(header, bitpix, shown))
    return base, axes[0] if len(axes) == 3 else 0
