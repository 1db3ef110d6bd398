"""FITS output, a sink: headers written by astropy, data areas filled by positional writes.

The file is laid out up front (astropy's "creating a very large FITS file from
scratch" recipe, :func:`create_fits`): each HDU's header, then its data area
allocated by seeking and padded to 2880 bytes; each area is a
:class:`~.atomic.FileTarget` (big-endian, BZERO applied) that the tile tasks
store into (:mod:`stackengine.tasks.write` computes them in one pass). The
per-frame values are then appended as the FRAMES binary table
(:func:`append_frame_table`).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..errors import ParameterError
from .atomic import FileTarget

__all__ = ["append_frame_table", "create_fits", "fits_layout", "image_header", "primary_cards"]

BLOCK = 2880
#: keywords of the first frame's header that describe its layout, not its content
_STRUCTURAL = re.compile(
    r"(SIMPLE|BITPIX|NAXIS\d*|EXTEND|XTENSION|PCOUNT|GCOUNT|BZERO|BSCALE|BLANK|CHECKSUM"
    r"|DATASUM|EXTNAME|EXTVER|EXTLEVEL|DATAMIN|DATAMAX|NCOMBINE|END|THEAP|TFIELDS"
    r"|T(TYPE|FORM|UNIT|DIM|NULL|SCAL|ZERO|DISP)\d+|ZIMAGE|ZSIMPLE|ZBITPIX|ZNAXIS\d*"
    r"|ZTILE\d+|ZCMPTYPE|ZNAME\d+|ZVAL\d+|ZMASKCMP|ZQUANTIZ|ZDITHER0|ZEXTEND|ZBLOCKED"
    r"|ZTENSION|ZPCOUNT|ZGCOUNT|ZHECKSUM|ZDATASUM|ZBLANK|ZSCALE|ZZERO|STACKENGINE .*)"
)
_KEYNAME = re.compile(r"[A-Za-z0-9_\-]+")


def fits_layout(dtype: np.dtype) -> tuple[int, int, np.dtype]:
    """Return (BITPIX, BZERO, big-endian stored dtype) for values of ``dtype``.

    Unsigned 16/32-bit and signed 8-bit values use the FITS BZERO convention.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        dtype = np.dtype(np.uint8)
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return -8 * dtype.itemsize, 0, dtype.newbyteorder(">")
    if dtype == np.uint8:
        return 8, 0, np.dtype(">u1")
    if dtype == np.int8:
        return 8, -128, np.dtype(">u1")
    if dtype.kind == "i" and dtype.itemsize in (2, 4, 8):
        return 8 * dtype.itemsize, 0, dtype.newbyteorder(">")
    if dtype.kind == "u" and dtype.itemsize in (2, 4):
        bits = 8 * dtype.itemsize
        return bits, 2 ** (bits - 1), np.dtype(f">i{dtype.itemsize}")
    raise ParameterError(f"dtype {dtype}: cannot be stored in a FITS image")


def image_header(
    shape: tuple[int, ...], dtype: np.dtype, extname: str | None
) -> tuple[fits.Header, np.dtype, int]:
    """The structural header of an image HDU of ``shape`` (FITS order: slowest axis
    first) and values of ``dtype``; returns it with the stored dtype and BZERO."""
    bitpix, bzero, stored = fits_layout(dtype)
    cards: list[tuple[str, Any, str]] = (
        [("SIMPLE", True, "conforms to FITS standard")]
        if extname is None
        else [("XTENSION", "IMAGE", "image extension")]
    )
    cards.append(("BITPIX", bitpix, "array data type"))
    cards.append(("NAXIS", len(shape), "number of array dimensions"))
    cards += [(f"NAXIS{i + 1}", n, "") for i, n in enumerate(reversed(shape))]
    cards += [("EXTEND", True, "")] if extname is None else [("PCOUNT", 0, ""), ("GCOUNT", 1, "")]
    if bzero:
        cards += [("BSCALE", 1, ""), ("BZERO", bzero, "stored = value - BZERO")]
    if extname is not None:
        cards.append(("EXTNAME", extname, "extension name"))
    return fits.Header(cards), stored, bzero


def _copied_cards(text: str | None) -> list[fits.Card]:
    """The first frame's header cards minus the structural ones, each verified."""
    if not text:
        return []
    cards = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VerifyWarning)
        for card in fits.Header.fromstring(text).cards:
            if _STRUCTURAL.fullmatch(card.keyword):
                continue
            try:
                card.verify("silentfix")
                card.verify("exception")
                _ = card.image
            except Exception:  # an unusable foreign card is dropped, not fatal
                continue
            cards.append(card)
    return cards


def primary_cards(header: fits.Header, attrs: dict[str, Any]) -> None:
    """Append to the primary ``header`` the first frame's cards (attrs "fits_header",
    minus the structural ones) and the stack's parameters."""
    for card in _copied_cards(attrs.get("fits_header")):
        header.append(card)
    _parameter_cards(header, attrs)
    for key, value in (attrs.get("fits_cards") or {}).items():  # e.g. a master's IMAGETYP
        if value is None:
            header.remove(key, ignore_missing=True, remove_all=True)
        else:
            header[key] = value


def _parameter_cards(header: fits.Header, attrs: dict[str, Any]) -> None:
    """NCOMBINE, then each attr as HIERARCH STACKENGINE <NAME> or a HISTORY line."""
    if attrs.get("n_frames") is not None:
        header["NCOMBINE"] = (int(attrs["n_frames"]), "number of frames combined")
    for name, value in attrs.items():
        if name in ("fits_header", "fits_cards", "wcs"):  # the header holds the WCS
            continue
        card = None
        scalar = value is None or isinstance(value, str | int | float | np.number)
        if scalar and _KEYNAME.fullmatch(name):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    card = fits.Card(f"HIERARCH STACKENGINE {name.upper()}", value)
                    if len(card.image) != 80:
                        card = None
            except Exception:  # too long, NaN, non-ASCII ...: use HISTORY
                card = None
        if card is not None:
            header.append(card)
        else:
            header.add_history(f"STACKENGINE {name} = {json.dumps(value, default=str)}")


def _frame_table(values: dict[str, np.ndarray]) -> fits.BinTableHDU:
    """The per-frame values as a binary table named FRAMES (strings as ASCII)."""
    columns = {}
    for name, value in values.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "M":
            arr = np.datetime_as_string(arr)
        if arr.dtype.kind in "OU":
            flat = [str(v).encode("ascii", "backslashreplace") for v in arr.ravel()]
            arr = np.array(flat).reshape(arr.shape)
        columns[name] = arr
    n = len(next(iter(columns.values())))
    # a structured array (one field a column, a sub-array per row for vectors)
    # is what BinTableHDU takes directly: no astropy.table import on this path
    rows = np.empty(n, dtype=[(k, v.dtype, v.shape[1:]) for k, v in columns.items()])
    for name, arr in columns.items():
        rows[name] = arr
    return fits.BinTableHDU(data=rows, name="FRAMES")


def create_fits(
    tmp: Path, hdus: list[tuple[fits.Header, tuple[int, ...], np.dtype, int]]
) -> list[FileTarget]:
    """Lay out a FITS file of the given (header, shape, stored dtype, BZERO) HDUs at ``tmp``
    with unwritten data areas; returns one store target per data area."""
    targets = []
    with open(tmp, "wb") as f:
        for header, shape, stored, bzero in hdus:
            f.write(header.tostring().encode("ascii"))
            offset = f.tell()
            size = math.prod(shape) * stored.itemsize
            targets.append(FileTarget(tmp, offset, shape, stored, bzero=bzero))
            f.seek(offset + -(-size // BLOCK) * BLOCK)
        f.truncate(f.tell())  # allocates the last data area (sparse where possible)
    return targets


def append_frame_table(tmp: Path, values: dict[str, np.ndarray]) -> None:
    """Append the per-frame values to the FITS file ``tmp`` as the FRAMES table."""
    with fits.open(tmp, mode="append") as hdul:
        hdul.append(_frame_table(values))
