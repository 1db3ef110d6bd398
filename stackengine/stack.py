"""stack(): validate the parameters, build the job, return its lazy result."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from .build import COMBINES, build_job
from .ccddata import WEIGHTS_COORD, is_ccddata_list
from .colour import CHANNELS
from .errors import ParameterError
from .frames import _from_memory, combine_inputs, open_frames, source_of
from .register.sky import SkyRegistration, output_header, wcs_attrs
from .rejection import REJECTIONS
from .tasks.graph import job_dataset
from .tasks.job import StackJob, count_dtype

__all__ = ["stack", "count_dtype", "REJECTIONS", "COMBINES"]


def _number(value: Any) -> bool:
    return np.isscalar(value) and not isinstance(value, str)


def _input_array(frames: Any, pad: bool = False) -> xr.DataArray:
    if isinstance(frames, str | os.PathLike) or is_ccddata_list(frames):
        arr = open_frames(frames, pad=pad)
    elif isinstance(frames, list | tuple) and frames and not _number(frames[0]):
        arr = combine_inputs(frames, pad)
    elif isinstance(frames, xr.DataArray):
        arr = frames
    else:
        arr = _from_memory(frames, None)
    if arr.dims[:3] != ("frame", "y", "x") or arr.ndim not in (3, 4):
        raise ParameterError(
            f"frames must have dims ('frame', 'y', 'x'[, 'channel']), got {arr.dims}"
        )
    return arr


def _fits_header(arr: xr.DataArray, job: StackJob) -> str | None:
    """The header the outputs start from: the reference frame's (the first frame's
    without registration), its WCS moved to the output grid (trim window, framing)."""
    source = source_of(arr.data)
    if source is None:  # in-memory frames: a header they came with (CCDData's)
        return arr.attrs.get("fits_header")
    reg, calib = job.registration, job.calibration
    k = reg.reference if reg is not None else 0
    full_header = getattr(source.frames[k], "full_header", None)
    if full_header is None:
        return None
    header = full_header()
    if isinstance(reg, SkyRegistration):  # the output grid's WCS, the rest the frame's
        return output_header(header, reg.out_header).tostring()
    shift_x = (reg.offset[0] if reg is not None else 0.0) + (calib.origin[1] if calib else 0)
    shift_y = (reg.offset[1] if reg is not None else 0.0) + (calib.origin[0] if calib else 0)
    if (shift_x or shift_y) and "CRPIX1" in header and "CRPIX2" in header:
        header["CRPIX1"] = float(header["CRPIX1"]) - shift_x
        header["CRPIX2"] = float(header["CRPIX2"]) - shift_y
    return header.tostring()


def _result(job: StackJob, arr: xr.DataArray, data: Any) -> xr.Dataset:
    """The job's lazy Dataset with the frames' coordinates and per-frame variables."""
    coords = {k: v for k, v in arr.coords.items() if "frame" not in v.dims}
    frame_variables: dict[str, Any] = {}
    if job.normalization is not None:
        colour = arr.ndim == 4 or job.debayer is not None
        frame_variables.update(job.normalization.variables(colour))
    if job.weights is not None:
        frame_variables["weight"] = (("frame",), job.weights)
    if frame_variables and "path" in arr.coords:
        coords["path"] = arr.coords["path"]
    dims = arr.dims[1:]
    if job.debayer is not None:
        dims = (*dims, "channel")
        coords["channel"] = list(CHANNELS)
    weights = arr.coords[WEIGHTS_COORD].data if job.pixel_weights is not None else None
    ds = job_dataset(job, data=data, weights=weights, dims=dims, coords=coords,
                     frame_variables=frame_variables)  # fmt: skip
    header = _fits_header(arr, job)
    if header is not None:
        ds.attrs["fits_header"] = header
        wcs = wcs_attrs(header)
        if wcs:  # the output grid's WCS for zarr readers: astropy.wcs.WCS(attrs["wcs"])
            ds.attrs["wcs"] = wcs
    cards: dict[str, Any] = {}
    if job.calibration is not None and job.calibration.settings.get("trim"):
        # the frames' section cards describe the raw frames, not the trimmed result
        cards.update({"BIASSEC": None, "TRIMSEC": None, "DATASEC": None})
    if job.debayer is not None:  # an RGB result is no mosaic: no viewer may debayer it
        cards.update({"BAYERPAT": None, "COLORTYP": None, "XBAYROFF": None, "YBAYROFF": None})
    if arr.attrs.get("unit"):  # the frames' unit (CCDData's)
        ds.attrs["unit"] = cards["BUNIT"] = arr.attrs["unit"]
    if cards:
        ds.attrs["fits_cards"] = cards
    return ds


def stack(
    frames: Any,
    *,
    normalize: str | None = None,
    reject: str | list[str] | None = "sigma",
    sigma_lower: float = 3.0,
    sigma_upper: float = 3.0,
    maxiters: int | None = 5,
    center: str = "median",
    spread: str = "mad_std",
    percentile_low: float = 0.2,
    percentile_high: float = 0.1,
    n_low: int = 1,
    n_high: int = 1,
    min_value: float | None = None,
    max_value: float | None = None,
    esd_alpha: float = 0.05,
    esd_max_outliers: float = 0.3,
    reference: int | str | None = None,
    combine: str = "mean",
    weights: Any = None,
    memory_limit: str | int = "1GiB",
    fallback: str | None = None,
    smoothness: float = 2.0,
    star_fallback: str | None = None,
    calibration: Any = None,
    register: Any = None,
    transform: str = "similarity",
    interpolation: str = "lanczos3",
    framing: str = "reference",
    conserve_flux: bool = False,
    select: list[str] | None = None,
    bayer: str | bool | None = None,
    debayer: str = "bilinear",
    output_wcs: Any = None,
    shape_out: tuple[int, int] | None = None,
    wcs_accuracy: float = 1e-3,
    output_scale: float | None = None,
    pixfrac: float = 1.0,
    drizzle_kernel: str = "square",
    weight_maps: Any = None,
    masks: Any = None,
    match_background: bool = False,
) -> xr.Dataset:
    """Reject outliers pixel by pixel along the frame axis and combine the frames.

    Parameters
    ----------
    frames : xarray.DataArray, array, path or list
        From :func:`open_frames`, any (frame, y, x[, channel]) array, a path or
        glob, or a list of paths or of DataArrays (from :func:`open_frames`;
        with ``register``, frames of different shapes: a crop, another camera),
        or a list of :class:`astropy.nddata.CCDData` (masked pixels missing; see
        :mod:`stackengine.ccddata`).
    normalize : None or str
        Per-frame normalization against a reference frame, applied inside the
        tile tasks before rejection and combination: "additive",
        "multiplicative", "additive+scale", "multiplicative+scale" (global,
        from each frame's median and mad_std) or "photometric" (a scale from
        star photometry plus a smooth gradient model, in the style of
        NormalizeScaleGradient). Measuring the frames (pass 1) reads them once.
    reject : None, str or list of str
        Rejection stages applied in order: "sigma", "winsorized",
        "linear_fit", "percentile", "minmax", "extrema", "esd" (see the
        rejection docs for each algorithm's exact definition).
    sigma_lower, sigma_upper : float
        Clipping thresholds of sigma, winsorized and linear_fit, in units of
        their spread (>= 0).
    maxiters : int or None
        Iterations of sigma, winsorized and linear_fit; None iterates until
        nothing new is rejected.
    center : {"median", "mean"}
        Center estimator of sigma clipping.
    spread : {"mad_std", "std"}
        Spread estimator (mad_std = 1.482602218505602 x MAD; std has ddof 0).
    percentile_low, percentile_high : float
        percentile: reject ``(median - x)/median > percentile_low`` and
        ``(x - median)/median > percentile_high``.
    n_low, n_high : int
        extrema: how many of the lowest and highest values to reject
        (``n_low + n_high`` below the number of frames).
    min_value, max_value : float or None
        minmax: reject values below / above them (None: no bound).
    esd_alpha, esd_max_outliers : float
        esd: significance level in (0, 1) and the largest share of the values
        that may be rejected, in [0, 1).
    reference : int, str or None
        The normalization reference: a frame index or path; None picks the
        frame with the darkest background (photometric: among those within
        10 % of the darkest, the one with the most stars).
    combine : {"mean", "median", "sum", "min", "max"}
        How the kept values are combined.
    weights : None, "exptime", "noise", "photometric", "map", "keyword:NAME" or 1-D array
        Frame weights for the weighted mean (combine="mean" only): the
        EXPTIME/EXPOSURE header, the inverse variance of each frame's noise
        measured in a per-frame pass, any numeric header keyword (e.g.
        NormalizeScaleGradient's NWEIGHT), or one value per frame.
        "photometric" (with a normalization) is
        ``(noise_reference / noise_i after normalization)**2``, as NSG's NWEIGHT.
        "map": per pixel, the ``weight_maps`` (inverse variances).
        "uncertainty": per pixel, the inverse variances of CCDData frames'
        uncertainties (StdDevUncertainty ``1/sigma**2``, VarianceUncertainty
        ``1/var``, InverseVariance as it is; the noise output is then
        ``1 / sqrt(sum of the kept weights)``).
    memory_limit : str or int
        Memory budget per worker, used to plan the tile size.
    smoothness : float
        Photometric mode: smoothness of the gradient surface (0 follows the
        background samples exactly; larger is smoother; default 2).
    star_fallback : None or "additive+scale"
        Photometric mode: what to do with a frame that has too few stars
        matched to the reference: raise an error naming it (None), or
        normalize that frame with "additive+scale" and warn.
    fallback : None or "median"
        Where every value of a pixel was rejected: NaN (None), or the median
        of its non-missing values (PixInsight's behaviour); count stays 0.
    calibration : dict or object, optional
        Calibrate the lights inside the tile tasks, before normalization and
        rejection: a mapping (or an object with those attributes) of the
        keywords of :func:`stackengine.calibrate` (``bias``, ``dark``, ``flat``,
        ``dark_scale``, ``overscan``, ``trim``, ``bad_pixels``, ``min_value``).
        No calibrated copy is written; the output grid is the trimmed frames'.
    register : None, "stars", "wcs", Dataset or array
        Align the frames before normalization and rejection: "stars" registers
        them now (:func:`stackengine.register` with ``reference`` and
        ``transform``), "wcs" maps them through each frame's celestial WCS
        (TAN, TPV, SIP) onto the grid of ``output_wcs`` (a survey co-add or a
        mosaic; each tile reads only the frames whose footprint reaches it), a
        table from :func:`stackengine.register`, or one 3x3 matrix per frame
        (output pixel -> frame pixel). Each tile task reads each
        frame only where the tile maps into it and resamples it; output pixels a
        frame does not cover are missing for it (``count`` is the coverage).
    transform : {"similarity", "shift", "affine", "homography"}
        The model of ``register="stars"``.
    interpolation : {"lanczos3", "bicubic", "bilinear", "nearest", "drizzle"}
        The resampling kernel (lanczos3 and bicubic clamped against ringing);
        "drizzle" (``register="wcs"``): each input pixel, shrunk by ``pixfrac``,
        is dropped onto the output grid (Fruchter & Hook, as the ``drizzle``
        package); each frame's value of an output pixel then carries its
        overlap weight, and the frames are combined by those weights.
    framing : {"reference", "union", "intersection"}
        The output grid: the reference frame's, the union of all frames, or
        the pixels every frame covers.
    conserve_flux : bool
        Multiply by the frame-pixel area per output pixel (SWarp's flux
        scaling); by default values are surface brightness, as in reproject.
    select : list of str, optional
        With a registration, keep only the frames that pass every rule, e.g.
        ``["fwhm<4.5", "best:90%"]`` (see :mod:`stackengine.register.select`);
        the decision per frame is in ``attrs["selection"]``. A registration
        table without some frames (``drop_failed``) stacks only the others.
    bayer : None, False or str
        Colour (one-shot-colour) frames: None debayers the frames whose FITS
        header names a Bayer pattern (BAYERPAT), a pattern such as "RGGB"
        overrides the headers, False stacks the raw mosaics. Debayered frames
        give an RGB stack with dims (y, x, channel); calibration is applied to
        the mosaic first (see :mod:`stackengine.colour`).
    debayer : {"bilinear", "mhc"}
        The demosaicing method: bilinear, or Malvar-He-Cutler (edge-aware).
    output_wcs : None, astropy.wcs.WCS, astropy.io.fits.Header or "optimal"
        ``register="wcs"``: the output grid: the reference frame's (None; the
        first frame unless ``reference`` is an index), a given WCS or header
        (its NAXIS1/NAXIS2 or ``array_shape`` give the shape unless
        ``shape_out``), or "optimal": north-up TAN covering every frame at the
        finest input pixel scale (as reproject's ``find_optimal_celestial_wcs``).
    shape_out : (int, int), optional
        ``register="wcs"``: the output grid's rows and columns.
    wcs_accuracy : float
        ``register="wcs"``: the largest error, in frame pixels, of the mapping
        interpolated between exactly evaluated nodes (default 1e-3 px, as
        SWarp); 0 evaluates every output pixel exactly.
    output_scale : float, optional
        ``output_wcs="optimal"``: the output pixel's size in units of the finest
        input pixel (e.g. 0.5 to drizzle onto pixels half as large).
    pixfrac : float
        ``interpolation="drizzle"``: the input pixel's linear shrink factor (0, 2].
    drizzle_kernel : {"square", "point", "turbo"}
        ``interpolation="drizzle"``: the shape of a dropped pixel.
    weight_maps : list, str or int, optional
        A weight map per frame (inverse variance; 0 marks a bad pixel, as in
        SWarp): a list of files, a pattern such as ``"{stem}.weight.fits"``
        (``{stem}``, ``{name}``, ``{dir}`` of each frame's path), or an HDU name
        or number of each frame's file. Read by region beside the frame and
        resampled as it is; ``weights="map"`` combines by them (the noise
        output is then ``1 / sqrt(sum of the kept weights)``).
    masks : list, str or int, optional
        A mask or flag image per frame, in the same forms: non-zero pixels are
        missing.
    match_background : bool
        ``register="wcs"``: bring overlapping frames to a common background level
        before rejection, by additive offsets fitted to all overlaps at once
        (least squares, as reproject's ``match_background`` and Siril's overlap
        normalization; see :mod:`stackengine.normalize.overlap`); the offsets
        are in the result's per-frame variables.

    Returns
    -------
    xarray.Dataset
        Lazy variables "image" (float32), "count", "rejected_low",
        "rejected_high" (int16; int32 beyond 32767 frames, see
        :func:`count_dtype`) and "noise" (float32, the standard error of the
        combined value) over (y, x[, channel]); ``attrs`` record every
        parameter, ``n_frames`` and the stackengine version.

    Raises
    ------
    ParameterError
        An invalid parameter, detected before any pixel is read.
    """
    options = dict(locals())  # every keyword parameter, by name
    arr = _input_array(options.pop("frames"), pad=options["register"] is not None)
    job, data, arr = build_job(arr, options)
    return _result(job, arr, data)
