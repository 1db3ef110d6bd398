"""write(): store the result of :func:`stackengine.stack` as zarr, FITS or TIFF.

Every output is computed in one pass over the input (one dask graph, one
``da.store``) and written atomically: to a temporary name beside the target,
renamed into place only when complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import OutputError, ParameterError
from .atomic import atomic_output, check_output, remove_path
from .write_zarr import partial_path, write_zarr

__all__ = ["write", "check_write", "OUTPUT_DTYPES", "cast_image"]

_SUFFIXES = {
    ".zarr": "zarr",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".tif": "tiff",
    ".tiff": "tiff",
}
#: dtypes the image may be written as (``dtype=`` of :func:`write`).
OUTPUT_DTYPES = ("float32", "float64", "uint8", "int8", "uint16", "int16", "uint32", "int32")
_COMPRESSIONS = {
    "zarr": ("zstd", "zlib", "gzip", "none"),
    "tiff": ("zlib", "zstd", "lzw", "none"),
    "fits": ("none",),
}


def _output_dtype(dtype: Any, attrs: dict[str, Any]) -> np.dtype:
    """Resolve the ``dtype`` argument of :func:`write`."""
    if dtype is None:
        return np.dtype(np.float32)
    if isinstance(dtype, str) and dtype == "input":
        name = attrs.get("input_dtype")
        if name is None:
            raise ParameterError("dtype='input': the result has no 'input_dtype' attribute")
        try:
            kind = np.dtype(name).kind
        except TypeError as exc:
            raise ParameterError(f"dtype='input': unknown input dtype {name!r}") from exc
        dtype = "float32" if kind == "f" else name
    try:
        out = np.dtype(dtype)
    except TypeError as exc:
        raise ParameterError(f"dtype={dtype!r}: not a dtype (use one of {OUTPUT_DTYPES})") from exc
    if out.name not in OUTPUT_DTYPES:
        raise ParameterError(f"dtype={dtype!r}: not supported (use one of {OUTPUT_DTYPES})")
    return np.dtype(out.name)  # native byte order


def _to_dtype(block: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return block.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    x = np.array(block, dtype=np.float64)  # exact for every supported integer type
    np.rint(x, out=x)
    x[np.isnan(x)] = 0.0
    np.clip(x, info.min, info.max, out=x)
    return x.astype(dtype)


def cast_image(data: Any, dtype: np.dtype) -> Any:
    """Convert image values to ``dtype`` (lazily for dask arrays).

    Integer outputs round to the nearest integer (``np.rint``, ties to even),
    clip to the type's range (never wrap around) and write NaN as 0.
    """
    dtype = np.dtype(dtype)
    if data.dtype == dtype:
        return data
    if isinstance(data, da.Array):
        return data.map_blocks(_to_dtype, dtype, dtype=dtype)
    return _to_dtype(np.asarray(data), dtype)


def _compression(fmt: str, compression: str | None) -> str | None:
    if compression is None:
        return None
    name = compression.lower() if isinstance(compression, str) else compression
    if name not in _COMPRESSIONS[fmt]:
        raise ParameterError(
            f"compression={compression!r}: not available for {fmt} output "
            f"(use None or one of {_COMPRESSIONS[fmt]})"
        )
    return name


def _zarr_ready(ds: xr.Dataset) -> xr.Dataset:
    """Drop stale encodings, use variable-length strings, make chunks regular."""
    ds = ds.copy()
    for name, var in list(ds.variables.items()):
        var.encoding = {}
        if var.dtype.kind in "US":  # fixed-length strings have no zarr v3 spec
            ds[name] = var.astype(object)
        elif isinstance(var.data, da.Array):
            chunks = var.data.chunks
            if any(len(set(c[:-1])) > 1 or c[-1] > c[0] for c in chunks):
                ds[name] = var.copy(data=var.data.rechunk(tuple(max(c) for c in chunks)))
    return ds


def _zarr_encoding(ds: xr.Dataset, compression: str | None) -> dict[str, dict[str, Any]]:
    import zarr

    if compression is None:
        return {}
    codecs = {
        "zstd": (zarr.codecs.ZstdCodec(),),
        "zlib": (zarr.codecs.GzipCodec(),),
        "gzip": (zarr.codecs.GzipCodec(),),
        "none": None,
    }[compression]
    return {str(name): {"compressors": codecs} for name in ds.variables}


def check_write(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    compression: str | None = None,
    resume: bool = False,
) -> tuple[Path, str]:
    """Check everything :func:`write` can check before any pixel is computed.

    Returns the output path and its format ("zarr", "fits" or "tiff");
    raises :class:`~stackengine.errors.ParameterError` or
    :class:`~stackengine.errors.OutputError` like :func:`write`.
    """
    path = Path(os.fspath(path))
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ParameterError(
            f"{path}: unknown output format (use .zarr, .fits/.fit/.fts or .tif/.tiff)"
        )
    if not (isinstance(dtype, str) and dtype == "input"):
        _output_dtype(dtype, {})
    comp = _compression(fmt, compression)
    if fmt == "tiff":
        from .write_tiff import check_tiff_compression

        check_tiff_compression(comp)
    check_output(path, overwrite)
    if resume and fmt != "zarr":
        raise ParameterError(f"{path}: resume works for zarr output only")
    partial = partial_path(path)
    if fmt == "zarr" and partial.exists() and not resume:
        raise OutputError(
            f"{partial}: an interrupted run left this partial output; pass --resume "
            "(resume=True) to continue it, or delete it"
        )
    return path, fmt


def write(
    result: xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    compression: str | None = None,
    resume: bool = False,
) -> Path:
    """Write a stack result to zarr, FITS or TIFF, in one pass and atomically.

    Parameters
    ----------
    result : xarray.Dataset
        The result of :func:`stackengine.stack` (lazy or computed): ``image``
        and its maps (``count``, ``rejected_low``, ``rejected_high``,
        ``noise``), optional per-frame variables along ``frame``, and attrs.
    path : str or os.PathLike
        Output path; the format follows the suffix: ``.zarr`` (every variable
        and attr, zarr format 3, consolidated metadata), ``.fits``/``.fit``/
        ``.fts`` (image in the primary HDU with the first frame's header,
        NCOMBINE and the stack parameters; maps as IMAGE extensions COUNT,
        REJECTED_LOW, ...; per-frame values as a FRAMES binary table),
        ``.tif``/``.tiff`` (the image only, tiled 256x256; BigTIFF when it may
        exceed 4 GB; the attrs as JSON in ImageDescription).
    overwrite : bool, optional
        Replace an existing output. Without it an existing ``path`` raises
        :class:`~stackengine.OutputError`.
    dtype : str or numpy dtype, optional
        Type of the image: None or "float32" (default), "float64", "uint8",
        "int8", "uint16", "int16", "uint32", "int32", or "input" (the frames'
        dtype recorded in ``attrs["input_dtype"]``; float inputs give float32).
        Integer outputs are rounded to the nearest integer (``np.rint``), clipped
        to the type's range and NaN (pixels with no value kept) is written as 0.
        The maps keep their own dtypes.
    resume : bool, optional
        zarr only: continue an interrupted run from its partial store
        ``.NAME.partial`` (see :mod:`stackengine.io.write_zarr`), computing
        only the tiles it lacks.
    compression : str, optional
        zarr: None (zarr's default, zstd), "zstd", "zlib" (gzip) or "none".
        TIFF: None or "none" (uncompressed), "zlib", "zstd" or "lzw" (the last
        two need the ``imagecodecs`` package). FITS: None or "none" only.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ParameterError
        Unknown suffix, dtype or compression, or a result without ``image``.
    OutputError
        The output exists (and ``overwrite`` is false) or its folder is missing
        or not writable. Checked before anything is computed.
    """
    path, fmt = check_write(
        path, overwrite=overwrite, dtype=dtype, compression=compression, resume=resume
    )
    if not isinstance(result, xr.Dataset) or "image" not in result.data_vars:
        raise ParameterError(f"{path}: result must be an xarray.Dataset with an 'image' variable")
    out_dtype = _output_dtype(dtype, dict(result.attrs))
    comp = _compression(fmt, compression)

    ds = result.copy()
    ds["image"] = ds["image"].copy(data=cast_image(ds["image"].data, out_dtype))
    if fmt == "zarr":
        ds = _zarr_ready(ds)
        try:
            write_zarr(
                ds, path, overwrite=overwrite, encoding=_zarr_encoding(ds, comp), resume=resume
            )
        except Exception:
            remove_path(partial_path(path))  # a failed run starts afresh; an interrupted one
            raise  # (KeyboardInterrupt, a kill) keeps its tiles for resume=True
        return path
    with atomic_output(path, overwrite) as tmp:
        if fmt == "fits":
            from .write_fits import write_fits

            write_fits(ds, tmp)
        else:
            from .write_tiff import write_tiff

            write_tiff(ds, tmp, comp)
    return path
