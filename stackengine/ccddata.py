"""astropy :class:`~astropy.nddata.CCDData` in and out, so ccdproc pipelines can use stackengine.

* In: :func:`stackengine.stack` and :func:`stackengine.open_frames` take a list of
  CCDData (:func:`ccddata_frames`): the data as a lazy in-memory (frame, y, x)
  array, masked pixels (mask True) missing (NaN), each frame's ``meta`` as its
  header (EXPTIME for ``weights="exptime"``, ``weights="keyword:NAME"``), the
  first frame's header and WCS for the outputs, the unit (the same for every
  frame) carried to the result. ``weights="uncertainty"`` combines by each
  value's inverse variance from the frames' uncertainties (the coordinate
  ``"inverse_variance"``).
* Out: :func:`to_ccddata` makes a CCDData of a result; ``stackengine.write(result,
  path, format="ccddata")`` writes the FITS layout :meth:`CCDData.read` loads
  (:func:`stackengine.tasks.formats.ccddata_output`).
"""

from __future__ import annotations

import sys
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .errors import FrameMismatchError, ParameterError

__all__ = ["ccddata_frames", "is_ccddata_list", "to_ccddata", "WEIGHTS_COORD"]

#: the frames' coordinate (frame, y, x) with each value's inverse variance
WEIGHTS_COORD = "inverse_variance"
#: uncertainty class name -> how its array becomes an inverse variance
_KINDS = {"StdDevUncertainty": "std", "VarianceUncertainty": "var", "InverseVariance": "ivar"}


def _is_ccddata(item: Any) -> bool:
    nddata = sys.modules.get("astropy.nddata")  # no CCDData exists before it is imported
    return nddata is not None and isinstance(item, nddata.CCDData)


def is_ccddata_list(items: Any) -> bool:
    """Whether ``items`` is a non-empty list or tuple of CCDData."""
    return isinstance(items, list | tuple) and bool(items) and all(map(_is_ccddata, items))


def _inverse_variance(block: np.ndarray, kind: str) -> np.ndarray:
    """float32 inverse variances of an uncertainty block; unusable ones (0, negative,
    not finite) are 0, which makes the value missing."""
    x = np.asarray(block, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = x if kind == "ivar" else 1.0 / (x * x if kind == "std" else x)
    w = np.where(np.isfinite(w) & (w > 0), w, 0.0)
    return w.astype(np.float32)


def _weights(ccd: Any, k: int, tile: tuple[int, int]) -> da.Array | None:
    unc = ccd.uncertainty
    if unc is None:
        return None
    kind = _KINDS.get(type(unc).__name__)
    if kind is None:
        raise ParameterError(
            f"CCDData {k}: uncertainty {type(unc).__name__} is not StdDevUncertainty, "
            "VarianceUncertainty or InverseVariance"
        )
    array = np.asarray(unc.array)
    if array.shape != ccd.data.shape:
        raise FrameMismatchError(
            f"CCDData {k}: uncertainty shape {array.shape} differs from its data's {ccd.data.shape}"
        )
    return da.from_array(array, chunks=tile).map_blocks(_inverse_variance, kind, dtype=np.float32)


def _meta_value(meta: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        for k in (key, key.lower()):
            if k in meta:
                return meta[k]
    return None


def _header_text(ccd: Any) -> str:
    """The first frame's header as CCDData.write would write it (meta, BUNIT, WCS)."""
    hdu = ccd.to_hdu(hdu_mask=None, hdu_uncertainty=None, hdu_flags=None, hdu_psf=None)[0]
    return hdu.header.tostring()


def ccddata_frames(ccds: Any, chunks: Any = "auto") -> xr.DataArray:
    """The lazy (frame, y, x) DataArray of a list of CCDData (see the module notes).

    Parameters
    ----------
    ccds : list or tuple of astropy.nddata.CCDData
        2-D frames of one shape and one unit.
    chunks : "auto", int, (int, int), dict or size string
        Tile shape (y, x) of the dask blocks, as for :func:`stackengine.open_frames`.

    Returns
    -------
    xarray.DataArray
        Float data keep their dtype; integer data are float32 when a frame has a
        mask. Coordinates along "frame" from the headers (``exptime``,
        ``filter``, ...), the coordinate ``"inverse_variance"`` (frame, y, x) when
        every frame has an uncertainty; attrs "unit", "fits_header" (the first
        frame's) and "headers" (each frame's ``meta``).

    Raises
    ------
    ParameterError
        Frames in different units (naming the frame and both units), an unknown
        uncertainty class.
    FrameMismatchError
        Frames of different shapes or not 2-D (naming the frame).
    """
    from .framecoords import _NUMERIC_COORDS, HEADER_COORDS, chunks_for

    ccds = list(ccds)
    first = ccds[0]
    for k, ccd in enumerate(ccds):
        if np.ndim(ccd.data) != 2:
            raise FrameMismatchError(f"CCDData {k}: expected a 2-D image, got shape "
                                     f"{np.shape(ccd.data)}")  # fmt: skip
        if ccd.data.shape != first.data.shape:
            raise FrameMismatchError(
                f"CCDData {k}: shape mismatch: {ccd.data.shape} but CCDData 0 has "
                f"{first.data.shape}"
            )
        if ccd.unit != first.unit:
            raise ParameterError(
                f"CCDData {k}: unit {ccd.unit} differs from CCDData 0's unit {first.unit}"
            )
    dtype = np.result_type(*(ccd.data.dtype for ccd in ccds))
    masked = any(ccd.mask is not None for ccd in ccds)
    if dtype.kind != "f" and masked:
        dtype = np.dtype(np.float32)
    shape = (len(ccds), *first.data.shape)
    tile = chunks_for(shape, dtype, chunks)
    planes, weights = [], []
    for k, ccd in enumerate(ccds):
        plane = da.from_array(np.asarray(ccd.data), chunks=tile).astype(dtype)
        if ccd.mask is not None:
            mask = np.broadcast_to(np.asarray(ccd.mask, dtype=bool), ccd.data.shape)
            plane = da.where(da.from_array(mask, chunks=tile), dtype.type(np.nan), plane)
        planes.append(plane)
        weights.append(_weights(ccd, k, tile))
    coords: dict[str, Any] = {}
    if all(w is not None for w in weights):
        coords[WEIGHTS_COORD] = (("frame", "y", "x"), da.stack(weights))
    for name, keys in HEADER_COORDS.items():
        values = [_meta_value(ccd.meta, keys) for ccd in ccds]
        if all(v is None for v in values):
            continue
        if name in _NUMERIC_COORDS:
            try:
                coords[name] = ("frame", np.array([np.nan if v is None else float(v)
                                                   for v in values]))  # fmt: skip
                continue
            except (TypeError, ValueError):
                pass
        coords[name] = ("frame", np.array(["" if v is None else str(v) for v in values]))
    attrs = {
        "unit": None if first.unit is None else first.unit.to_string(),
        "fits_header": _header_text(first),
        "headers": [ccd.meta for ccd in ccds],
        "missing_uncertainty": next((k for k, w in enumerate(weights) if w is None), None),
    }
    return xr.DataArray(da.stack(planes), dims=("frame", "y", "x"), coords=coords,
                        attrs=attrs, name="frames")  # fmt: skip


def uncertainty_weights(frames: xr.DataArray) -> da.Array:
    """The (frame, y, x) inverse variances of ``weights="uncertainty"``."""
    if WEIGHTS_COORD in frames.coords:
        return frames.coords[WEIGHTS_COORD].data
    missing = frames.attrs.get("missing_uncertainty")
    if missing is not None:
        raise ParameterError(f"CCDData {missing}: weights='uncertainty': it has no uncertainty")
    raise ParameterError(
        "weights='uncertainty': the frames have no uncertainties (give a list of CCDData "
        "with StdDevUncertainty, VarianceUncertainty or InverseVariance)"
    )


def _header(attrs: dict[str, Any]) -> Any:
    """The FITS primary header of a result (as :func:`stackengine.write` writes it)."""
    from astropy.io import fits

    from .io.write_fits import primary_cards

    header = fits.Header()
    primary_cards(header, attrs)
    return header


def _unit(unit: Any, attrs: dict[str, Any], header: Any) -> Any:
    import astropy.units as u

    spec = unit if unit is not None else attrs.get("unit") or header.get("BUNIT")
    if spec is None:
        raise ParameterError("to_ccddata: the result has no unit (no BUNIT); give unit=")
    try:
        return u.Unit(spec)
    except ValueError as exc:
        raise ParameterError(f"to_ccddata: unit {spec!r} is not a unit ({exc})") from exc


def to_ccddata(result: xr.Dataset, *, unit: Any = None) -> Any:
    """The result of :func:`stackengine.stack` as an astropy CCDData (computed).

    Parameters
    ----------
    result : xarray.Dataset
        A stack result (lazy or computed) with ``image``, ``count`` and ``noise``.
    unit : str or astropy.units.Unit, optional
        The data's unit; by default the frames' (attrs "unit", the BUNIT card).

    Returns
    -------
    astropy.nddata.CCDData
        ``data`` the image (float32), ``mask`` the pixels with no value kept
        (``count == 0``), ``uncertainty`` a StdDevUncertainty of the ``noise``
        map, ``meta`` the header :func:`stackengine.write` writes (the first
        frame's cards and the stack's parameters), ``wcs`` the output grid's
        WCS when the result has one. A colour result has its channel axis
        first (as in FITS).

    Raises
    ------
    ParameterError
        Not a stack result, or no unit known.
    """
    from astropy.nddata import CCDData, StdDevUncertainty
    from astropy.wcs import WCS

    if not isinstance(result, xr.Dataset) or not {"image", "count", "noise"} <= set(
        result.data_vars
    ):
        raise ParameterError("to_ccddata: expected a stack result with image, count and noise")
    order = [d for d in result["image"].dims if d == "channel"] + ["y", "x"]
    image, count, noise = (result[n].transpose(*order) for n in ("image", "count", "noise"))
    image, count, noise = da.compute(image.data, count.data, noise.data)
    attrs = dict(result.attrs)
    header = _header(attrs)
    wcs = WCS(attrs["wcs"]) if attrs.get("wcs") else None
    return CCDData(
        np.asarray(image),
        unit=_unit(unit, attrs, header),
        mask=np.asarray(count) == 0,
        uncertainty=StdDevUncertainty(np.asarray(noise)),
        meta=header,
        wcs=wcs,
    )
