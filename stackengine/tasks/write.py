"""write(): store the result of :func:`stackengine.stack` as zarr, FITS or TIFF.

Every output is computed in one pass over the input (one dask graph) and
written atomically: to a temporary name beside the target (zarr: a resumable
partial store), renamed into place only when complete, under the output's
lock (:mod:`stackengine.io.atomic` has the rules). A lazy result of
:func:`stackengine.stack` is written by its job's tile tasks
(:mod:`stackengine.tasks.store`); anything else (a computed result, variables
the user changed) is stored as it is.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import OutputError, ParameterError
from ..io.atomic import (
    OutputLock,
    atomic_output,
    check_output,
    clean_stale,
    lock_holder,
    no_space,
    remove_path,
)
from ..io.write_zarr import create_partial, finish_partial, partial_job, partial_path
from .formats import fits_output, tiff_output, zarr_output
from .graph import job_of
from .job import StackJob, differences, digest

__all__ = ["write", "check_write", "OUTPUT_DTYPES", "cast_image"]

log = logging.getLogger("stackengine")
#: chunks (y, x) of a computed result stored by write()
IN_MEMORY_CHUNK = 1024

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
    format: str | None = None,
) -> tuple[Path, str]:
    """Check everything :func:`write` can check before any pixel is computed.

    Returns the output path and its format ("zarr", "fits", "tiff" or "ccddata");
    raises :class:`~stackengine.errors.ParameterError` or
    :class:`~stackengine.errors.OutputError` like :func:`write`.
    """
    path = Path(os.fspath(path))
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ParameterError(
            f"{path}: unknown output format (use .zarr, .fits/.fit/.fts or .tif/.tiff)"
        )
    if format is not None and format != "ccddata":
        raise ParameterError(f"format={format!r}: choose None (by the suffix) or 'ccddata'")
    if format == "ccddata" and fmt != "fits":
        raise ParameterError(f"{path}: format='ccddata' writes FITS (.fits, .fit or .fts)")
    if not (isinstance(dtype, str) and dtype == "input"):
        _output_dtype(dtype, {})
    comp = _compression(fmt, compression)
    if fmt == "tiff":
        from ..io.write_tiff import check_tiff_compression

        check_tiff_compression(comp)
    holder = lock_holder(path)
    if holder is not None:
        raise OutputError(f"{path} is being written by another run ({holder})")
    check_output(path, overwrite)
    if resume and fmt != "zarr":
        raise ParameterError(f"{path}: resume works for zarr output only")
    partial = partial_path(path)
    if fmt == "zarr" and partial.exists() and not resume:
        raise OutputError(
            f"{partial}: an interrupted run left this partial output; pass --resume "
            "(resume=True) to continue it, or delete it"
        )
    return path, format or fmt


def write(
    result: xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    dtype: Any = None,
    compression: str | None = None,
    resume: bool = False,
    format: str | None = None,
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
    format : None or "ccddata", optional
        None: the format of the suffix. "ccddata" (a ``.fits``/``.fit``/``.fts``
        path): the layout :meth:`astropy.nddata.CCDData.read` (and so ccdproc)
        loads with its mask and uncertainty: the image in the primary HDU with
        BUNIT (the frames' unit, when known) and the WCS, an IMAGE extension MASK
        (uint8, 1 where no value was kept: ``count == 0``), UNCERT (the ``noise``
        map, ``UTYPE = 'StdDevUncertainty'``), then COUNT, REJECTED_LOW,
        REJECTED_HIGH and the FRAMES table as in the FITS output.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ParameterError
        Unknown suffix, dtype or compression, a result without ``image``, or an
        output that is one of the stack's own input files.
    OutputError
        The output exists (and ``overwrite`` is false, or it is a directory
        stackengine did not write), its folder is missing or not writable,
        another run is writing it, or a partial store to resume was made by
        another job: checked before anything is computed. Also a write that
        ran out of space ("no space left on device (N bytes free)"); nothing
        is left behind then, and an older output stays as it was.
    """
    path, fmt = check_write(
        path, overwrite=overwrite, dtype=dtype, compression=compression, resume=resume,
        format=format,
    )  # fmt: skip
    if not isinstance(result, xr.Dataset) or "image" not in result.data_vars:
        raise ParameterError(f"{path}: result must be an xarray.Dataset with an 'image' variable")
    if fmt == "ccddata" and not {"count", "noise"} <= set(result.data_vars):
        raise ParameterError(f"{path}: format='ccddata' needs the result's count and noise")
    job = job_of(result["image"].data)
    if job is not None:
        _check_not_input(path, job)
    out_dtype = _output_dtype(dtype, dict(result.attrs))
    comp = _compression("fits" if fmt == "ccddata" else fmt, compression)
    ds = _prepared(result, out_dtype)
    with OutputLock(path):
        clean_stale(path, log.warning)
        try:
            if fmt == "zarr":
                _write_zarr(ds, path, job, overwrite, comp, resume)
            else:
                with atomic_output(path, overwrite) as tmp:
                    if fmt in ("fits", "ccddata"):
                        fits_output(ds, tmp, "ccddata" if fmt == "ccddata" else "stackengine")
                    else:
                        tiff_output(ds, tmp, comp)
        except OSError as exc:
            full = no_space(path, exc)
            if full is not None:
                raise full from None
            raise
    return path


def _check_not_input(path: Path, job: StackJob) -> None:
    """Refuse to write over one of the job's own input files."""
    target = os.path.realpath(path)
    for frame in job.source.frames if job.source is not None else ():
        if os.path.realpath(str(frame.path)) == target:
            raise ParameterError(
                f"{path}: is one of the stack's input frames; write the result elsewhere"
            )


def _prepared(result: xr.Dataset, out_dtype: np.dtype) -> xr.Dataset:
    """The dataset to store: the image cast to ``out_dtype``; a computed result chunked."""
    ds = result.copy()
    if not isinstance(ds["image"].data, da.Array):  # a computed result: store it by chunks
        ds = ds.chunk({d: IN_MEMORY_CHUNK for d in ("y", "x") if d in ds.dims})
    ds["image"] = ds["image"].copy(data=cast_image(ds["image"].data, out_dtype))
    return ds


def _aligned(ds: xr.Dataset) -> xr.Dataset:
    """Every dask variable over (y, x) chunked like ``image``; other dask values computed."""
    image = ds["image"]
    ds = ds.copy()
    for name, var in ds.data_vars.items():
        if not isinstance(var.data, da.Array) or name == "image":
            continue
        if var.dims[:2] == ("y", "x"):
            chunks = {"y": image.chunks[0], "x": image.chunks[1]}
            ds[name] = var.chunk({**chunks, **{d: -1 for d in var.dims[2:]}})
        else:
            ds[name] = var.compute()
    return ds


def _fingerprint(
    ds: xr.Dataset, job: StackJob | None, encoding: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """What a partial zarr store must match to be resumed: the job (its token: inputs,
    every parameter, tile plan, version) and how each variable is stored."""
    variables = {
        str(name): [var.data.name, str(var.dtype), list(var.shape),
                    [list(c) for c in var.data.chunks]]
        for name, var in ds.data_vars.items()
        if isinstance(var.data, da.Array)
    }  # fmt: skip
    description = dict(job.describe()) if job is not None else {}
    description["output variables"] = {k: v[1:] for k, v in variables.items()}
    description["compression"] = str(encoding)
    return digest({"job": None if job is None else job.token, "variables": variables,
                   "encoding": str(encoding)}), description  # fmt: skip


def _write_zarr(
    ds: xr.Dataset,
    path: Path,
    job: StackJob | None,
    overwrite: bool,
    compression: str | None,
    resume: bool,
) -> None:
    """Write ``ds`` into a new or resumed partial store, then put it in place."""
    ds = _aligned(_zarr_ready(ds))
    encoding = _zarr_encoding(ds, compression)
    partial = partial_path(path)
    fingerprint, description = _fingerprint(ds, job, encoding)
    created = not partial.exists()
    if not created:
        if not resume:
            raise OutputError(
                f"{partial}: an interrupted run left this partial output; pass --resume "
                "(resume=True) to continue it, or delete it"
            )
        old, old_description = partial_job(partial)
        if old != fingerprint:
            what = "; ".join(differences(old_description, description))
            raise OutputError(
                f"{partial}: made by a different job ({what or 'other inputs or parameters'}); "
                "not resumed and left as it is (run the same job, or delete it to start again)"
            )
    else:
        try:
            create_partial(ds, partial, encoding, fingerprint, description)
        except BaseException:  # e.g. no space for the metadata: nothing to resume
            remove_path(partial)
            raise
    try:
        zarr_output(ds, partial, None if created else log.info)
    except Exception:
        if created:  # a new store that failed: nothing in it is worth resuming
            remove_path(partial)
        raise  # an interrupted run (KeyboardInterrupt, a kill) keeps its tiles for resume
    finish_partial(partial, path, overwrite)
