"""FITS output: headers written by astropy, data areas filled by one ``da.store``.

The file is laid out up front (astropy's "creating a very large FITS file from
scratch" recipe): each HDU's header, then its data area allocated by seeking
and padded to 2880 bytes. Every image-like variable is stored into its area
(big-endian, by positional writes: :class:`~.atomic.FileTarget`) in a single
``da.store``, computed together with the per-frame values, which are then
appended as the FRAMES binary table. Memory stays bounded by the dask chunks.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

from ..cluster import compute
from ..errors import ParameterError
from .atomic import FileTarget
from .fused import store_together

__all__ = ["write_fits", "fits_layout"]

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


def _to_stored(block: np.ndarray, bzero: int, dtype: np.dtype) -> np.ndarray:
    return (block.astype(np.int64) - bzero).astype(dtype.newbyteorder("="))


def _fits_order(var: xr.DataArray) -> da.Array:
    """The variable's data with the channel axis first (FITS NAXIS3), lazily."""
    dims = [d for d in var.dims if d == "channel"] + [d for d in var.dims if d != "channel"]
    data = var.transpose(*dims).data
    return data if isinstance(data, da.Array) else da.asarray(data)


def _structure(data: da.Array, extname: str | None) -> tuple[fits.Header, da.Array, np.dtype]:
    bitpix, bzero, stored = fits_layout(data.dtype)
    cards: list[tuple[str, Any, str]] = (
        [("SIMPLE", True, "conforms to FITS standard")]
        if extname is None
        else [("XTENSION", "IMAGE", "image extension")]
    )
    cards.append(("BITPIX", bitpix, "array data type"))
    cards.append(("NAXIS", data.ndim, "number of array dimensions"))
    cards += [(f"NAXIS{i + 1}", n, "") for i, n in enumerate(reversed(data.shape))]
    cards += [("EXTEND", True, "")] if extname is None else [("PCOUNT", 0, ""), ("GCOUNT", 1, "")]
    if bzero:
        cards += [("BSCALE", 1, ""), ("BZERO", bzero, "stored = value - BZERO")]
    if extname is not None:
        cards.append(("EXTNAME", extname, "extension name"))
    source = data
    if bzero:
        source = data.map_blocks(_to_stored, bzero, stored, dtype=stored.newbyteorder("="))
    return fits.Header(cards), source, stored


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


def _parameter_cards(header: fits.Header, attrs: dict[str, Any]) -> None:
    """NCOMBINE, then each attr as HIERARCH STACKENGINE <NAME> or a HISTORY line."""
    if attrs.get("n_frames") is not None:
        header["NCOMBINE"] = (int(attrs["n_frames"]), "number of frames combined")
    for name, value in attrs.items():
        if name == "fits_header":
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


def write_fits(ds: xr.Dataset, tmp: Path) -> None:
    """Write ``ds`` as a FITS file at ``tmp`` (see :func:`stackengine.write`)."""
    frame_names = sorted(
        (n for n, v in ds.variables.items() if "frame" in v.dims), key=lambda n: n != "path"
    )
    maps = [n for n in ds.data_vars if n != "image" and "frame" not in ds[n].dims]
    maps = [n for n in maps if ds[n].ndim > 0]
    hdus = [_structure(_fits_order(ds["image"]), None)]
    for card in _copied_cards(ds.attrs.get("fits_header")):
        hdus[0][0].append(card)
    _parameter_cards(hdus[0][0], dict(ds.attrs))
    hdus += [_structure(_fits_order(ds[n]), str(n).upper()) for n in maps]

    targets = []
    with open(tmp, "wb") as f:
        for header, source, stored in hdus:
            f.write(header.tostring().encode("ascii"))
            offset = f.tell()
            size = math.prod(source.shape) * stored.itemsize
            targets.append(FileTarget(tmp, offset, source.shape, stored))
            f.seek(offset + -(-size // BLOCK) * BLOCK)
        f.truncate(f.tell())  # allocates the last data area (sparse where possible)

    sources = [source for _, source, _ in hdus]
    # one graph: the maps and the per-frame values share their upstream tasks
    jobs = store_together(sources, targets)
    frame_data = [ds[n].transpose("frame", ...).data for n in frame_names]
    frame_values = compute(*jobs, *frame_data)[len(jobs) :]
    if frame_names:
        table = _frame_table(dict(zip(map(str, frame_names), frame_values, strict=True)))
        with fits.open(tmp, mode="append") as hdul:
            hdul.append(table)
