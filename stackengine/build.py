"""From :func:`stackengine.stack`'s arguments to a :class:`~stackengine.tasks.job.StackJob`.

:func:`validate` checks every parameter without reading a pixel;
:func:`build_job` then measures what pass 1 measures (normalization, noise
weights), plans the tiles and freezes all of it into the job.
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .calibrate.api import calibration_plan
from .calibrate.plan import calibration_options
from .ccddata import WEIGHTS_COORD, uncertainty_weights
from .colour import (
    CHANNELS,
    Debayer,
    full_resolution,
    plan_debayer,
    superpixel_frames,
    superpixel_transforms,
)
from .companions import open_companions
from .errors import ParameterError
from .frames import source_of, subset_frames
from .kernels.combine import COMBINE_CODES
from .normalize.overlap import plan_background_matching
from .normalize.plan import Normalization, check_mode, plan_normalization
from .register.model import plan_registration
from .register.select import select_frames
from .register.sky import SkyRegistration, plan_sky_registration
from .register.skydrizzle import input_size
from .rejection import StagePlan, plan_stages
from .tasks.job import StackJob, frame_identity
from .tasks.plan import parse_memory, plan_tiles, square_tiles
from .weights import frame_weights

__all__ = ["COMBINES", "STAGE_PARAMETERS", "build_job", "validate"]

COMBINES = tuple(COMBINE_CODES)
#: the keyword parameters of stack() the rejection stages read
STAGE_PARAMETERS = (
    "sigma_lower", "sigma_upper", "maxiters", "center", "spread", "percentile_low",
    "percentile_high", "n_low", "n_high", "min_value", "max_value", "esd_alpha",
    "esd_max_outliers",
)  # fmt: skip


def _nonnegative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ParameterError(f"{name}={value!r}: must be a number >= 0")
    return float(value)


def _plain(value: Any) -> Any:
    """``value`` as a JSON-able scalar for ``attrs`` (numpy scalars unwrapped)."""
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def validate(n_frames: int, options: dict[str, Any]) -> StagePlan:
    """Check every option of :func:`stackengine.stack` (reads no pixel); returns the
    encoded rejection stages."""
    check_mode(options["normalize"])
    if options["star_fallback"] not in (None, "additive+scale"):
        raise ParameterError(
            f"star_fallback={options['star_fallback']!r}: choose None or 'additive+scale'"
        )
    options["smoothness"] = _nonnegative("smoothness", options["smoothness"])
    combine = options["combine"]
    if combine not in COMBINE_CODES:
        raise ParameterError(f"combine={combine!r}: choose from {', '.join(COMBINES)}")
    if options["fallback"] not in (None, "median"):
        raise ParameterError(f"fallback={options['fallback']!r}: choose None or 'median'")
    if n_frames < 1:
        raise ParameterError("no frames to stack")
    stages = plan_stages(options["reject"], n_frames, {k: options[k] for k in STAGE_PARAMETERS})
    parse_memory(options["memory_limit"])
    if options["weights"] is not None and combine != "mean":
        raise ParameterError(f"weights apply to combine='mean' only, not combine={combine!r}")
    return stages


def _weights(weights: Any, frames: xr.DataArray, norm: Normalization | None) -> np.ndarray | None:
    if isinstance(weights, str) and weights in ("map", "uncertainty"):  # per pixel
        return None
    if isinstance(weights, str) and weights == "photometric":
        if norm is None:
            raise ParameterError("weights='photometric' needs a normalization (normalize=...)")
        # NormalizeScaleGradient's NWEIGHT: (noise of the reference / noise after scaling)^2
        noise = norm.noise_after()
        ratio = (noise[norm.reference] / noise) ** 2
        return ratio.mean(axis=1)
    scale = None if norm is None else np.abs(norm.scale).mean(axis=1)
    return frame_weights(weights, frames, scale=scale)


#: stage parameters that are real numbers (3 and 3.0 are the same job)
_REAL = {"sigma_lower", "sigma_upper", "percentile_low", "percentile_high", "min_value",
         "max_value", "esd_alpha", "esd_max_outliers"}  # fmt: skip


def _stage_value(name: str, value: Any) -> Any:
    value = _plain(value)
    if name in _REAL and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _registration_params(options: dict[str, Any]) -> dict[str, Any]:
    spec = options.get("register")
    if spec is None:
        return {}
    if isinstance(spec, str) and spec == "wcs":
        out = options.get("output_wcs")
        return {
            "register": "wcs",
            "output_wcs": out if out is None or isinstance(out, str) else "given",
            "shape_out": None if options.get("shape_out") is None else
            [int(v) for v in options["shape_out"]],
            "wcs_accuracy": float(options.get("wcs_accuracy", 1e-3)),
            "output_scale": options.get("output_scale"),
            "interpolation": options.get("interpolation"),
            **({"pixfrac": float(options["pixfrac"]), "drizzle_kernel": options["drizzle_kernel"]}
               if options.get("interpolation") == "drizzle" else {}),
            "conserve_flux": bool(options.get("conserve_flux")),
        }  # fmt: skip
    return {
        "register": spec if isinstance(spec, str) else "table",
        "select": list(options.get("select") or []),
        "transform": options.get("transform"),
        "interpolation": options.get("interpolation"),
        "framing": options.get("framing"),
        "conserve_flux": bool(options.get("conserve_flux")),
    }


def _colour_params(options: dict[str, Any], deb: Debayer | None) -> dict[str, Any]:
    if deb is None:
        return {}
    if options.get("interpolation") == "drizzle":  # each pixel into its own colour
        return {"bayer": deb.pattern, "debayer": "bayer drizzle"}
    return {"bayer": deb.pattern, "debayer": deb.method}


def _params(
    options: dict[str, Any], stages: StagePlan, calib: Any = None, decisions: Any = ()
) -> dict[str, Any]:
    """Every parameter as the user gave it, JSON-able, for attrs and the fingerprint."""
    reject = options["reject"]
    weights = options["weights"]
    return {
        "normalize": options["normalize"],
        "reject": list(stages.names) if not isinstance(reject, str | None) else reject,
        **{k: _stage_value(k, options[k]) for k in STAGE_PARAMETERS},
        "combine": options["combine"],
        "weights": weights if isinstance(weights, str | None) else "array",
        "fallback": options["fallback"],
        "reference": _plain(options["reference"]),
        "smoothness": options["smoothness"],
        "star_fallback": options["star_fallback"],
        "memory_limit": _plain(options["memory_limit"]),
        **({} if calib is None else {"calibration": calib.describe()}),
        **_registration_params(options),
        **({"selection": list(decisions)} if decisions else {}),
        **({"match_background": True} if options.get("match_background") else {}),
        **{
            name: _companion_param(options.get(name))
            for name in ("weight_maps", "masks")
            if options.get(name) is not None
        },
    }


def _exposures(frames: xr.DataArray, reg: Any) -> np.ndarray | None:
    """Each frame's exposure time (EXPTIME/EXPOSURE) for the exposure map of a sky
    co-add; None when not every frame's header has one."""
    if not isinstance(reg, SkyRegistration):
        return None
    try:
        return np.asarray(frame_weights("exptime", frames), dtype=np.float64)
    except ParameterError:
        return None


def _companion_param(spec: Any) -> Any:
    return spec if isinstance(spec, str | int) else "list"


def _calibrated(frames: xr.DataArray, options: dict[str, Any]) -> tuple[xr.DataArray, Any]:
    """The frames pass 1 measures (calibrated, one frame per task, when calibrating: a
    block of all frames would be read once per frame) and the calibration plan."""
    if options.get("calibration") is None:
        return frames, None
    return calibration_plan(frames, calibration_options(options["calibration"]), frame_chunk=1)


def _registered_frames(measured: xr.DataArray, options: dict[str, Any]) -> tuple:
    """The registration table (measured now for "stars"), the frames it keeps (a table
    without a failed frame, ``select`` rules) and the decisions, one line per frame."""
    spec = options["register"]
    if isinstance(spec, str) and spec == "wcs":
        if options.get("select"):
            raise ParameterError("select: frame selection needs a registration by stars")
        return list(range(measured.sizes["frame"])), spec, []
    if isinstance(spec, str) and spec == "stars":
        from .register.api import register

        spec = register(measured, reference=options.get("reference"),
                        transform=options.get("transform", "similarity"))  # fmt: skip
    if not hasattr(spec, "data_vars"):
        if options.get("select"):
            raise ParameterError("select: frame selection needs a registration table")
        return list(range(measured.sizes["frame"])), spec, []
    keep = [int(f) for f in spec["frame"].values] if "frame" in spec.coords else []
    keep = keep or list(range(spec.sizes["frame"]))
    lines: list[str] = []
    if options.get("select"):
        mask, lines = select_frames(spec, list(options["select"]))
        spec = spec.isel(frame=np.flatnonzero(mask))
        keep = [k for k, m in zip(keep, mask, strict=True) if m]
    return keep, spec, lines


def _normalization(
    measured: xr.DataArray, options: dict[str, Any], reg: Any, deb: Debayer | None
) -> Normalization:
    """The normalization pass 1 measures: for Bayer mosaics, per channel on their
    superpixels (:func:`~stackengine.colour.superpixel_frames`), on the output grid
    with a registration."""
    transforms = None if reg is None else (reg.matrices, reg.shape)
    if deb is not None:
        measured = superpixel_frames(measured, deb.pattern)
        transforms = superpixel_transforms(transforms)
    norm = plan_normalization(
        measured,
        options["normalize"],
        reference=options["reference"],
        smoothness=options["smoothness"],
        star_fallback=options["star_fallback"],
        transforms=transforms,
    )
    return norm if deb is None else full_resolution(norm)


def build_job(
    frames: xr.DataArray, options: dict[str, Any]
) -> tuple[StackJob, da.Array | None, xr.DataArray]:
    """Validate ``options`` (the keywords of :func:`stackengine.stack`), run pass 1 where
    needed and plan the tiles. Returns the job, for frames that are not read from
    files the frames as a dask array chunked by the job's tiles, and the frames stacked
    (fewer than given when a registration dropped or deselected some)."""
    n = frames.sizes["frame"]
    stages = validate(n, options)
    ivar = _uncertainty(frames, options)
    padded = getattr(source_of(frames.data), "padded", False)
    if padded and options.get("calibration") is not None:
        raise ParameterError("calibration: the frames differ in shape; calibrate each "
                             "shape's frames with their own masters")  # fmt: skip
    measured, calib = _calibrated(frames, options)
    deb = plan_debayer(source_of(frames.data), options, (0, 0) if calib is None else calib.origin)
    decisions: list[str] = []
    table = None
    if options.get("register") is not None:  # the transforms, and the frames they keep
        keep, table, decisions = _registered_frames(measured, options)
        if len(keep) < n:
            frames = subset_frames(frames, keep)
            stages = validate(len(keep), options)
            measured, calib = _calibrated(frames, options)
    elif options.get("select"):
        raise ParameterError("select: frame selection needs a registration (register=...)")
    source = source_of(frames.data)
    reg = None
    if options.get("register") is not None:
        if source is None:
            raise ParameterError("register: the frames must be opened from files (se.open_frames)")
        if isinstance(table, str) and table == "wcs":
            reg = plan_sky_registration(
                source, options, (0, 0) if calib is None else calib.origin,
                None if calib is None else tuple(int(v) for v in measured.shape[1:3]),
            )  # fmt: skip
        else:
            shapes = source.frame_shapes if source.padded else None
            reg = plan_registration(measured, options, table, shapes)
    elif options.get("output_wcs") is not None or options.get("shape_out") is not None:
        raise ParameterError("output_wcs, shape_out: they apply to register='wcs' only")
    # the checks above read nothing; normalization and weights="noise" read pixels (pass 1)
    norm = None
    if options.get("match_background"):
        norm = _matched_backgrounds(measured, options, reg, deb)
    elif options["normalize"] is not None:
        norm = _normalization(measured, options, reg, deb)
    # noise weights measure the calibrated frames; header weights read the frames' headers
    noise = isinstance(options["weights"], str) and options["weights"] == "noise"
    weights = _weights(options["weights"], measured if noise else frames, norm)
    wmaps, masks, inverse_variance = _companions(source, options, deb)
    shape = tuple(int(s) for s in measured.shape)
    if deb is not None:
        shape = (*shape, len(CHANNELS))
    itemsize = np.dtype(frames.dtype).itemsize
    block = source.block if source is not None else (1, 0)
    if reg is not None:
        shape = (shape[0], *reg.shape, *shape[3:])
    if reg is not None or deb is not None or wmaps is not None or masks is not None:
        tile = _registered_tiles(reg, shape, options["memory_limit"])
    else:
        tile = plan_tiles(
            shape, itemsize, options["memory_limit"], block=block, streamed=source is not None
        )
    data = pixel_weights = None
    if source is None:
        data = _chunked(frames.data, tile)
    if ivar is not None:  # chunked as the frames, taken by the tile tasks beside them
        pixel_weights = _chunked(ivar, tile)
        frames = frames.assign_coords({WEIGHTS_COORD: (frames.dims, pixel_weights)})
    job = StackJob(
        source=source,
        inputs=() if source is None else tuple(frame_identity(f) for f in source.frames),
        input_name=None if data is None else data.name,
        shape=shape,
        dtype=str(frames.dtype),
        tile=tile,
        normalization=norm,
        weights=None if weights is None else np.asarray(weights, dtype=np.float64),
        stages=stages,
        combine=options["combine"],
        fallback=options["fallback"],
        params={**_params(options, stages, calib, decisions), **_colour_params(options, deb)},
        calibration=calib,
        registration=reg,
        debayer=deb,
        weight_maps=wmaps,
        masks=masks,
        inverse_variance=inverse_variance or pixel_weights is not None,
        exposures=_exposures(frames, reg),
        pixel_weights=None if pixel_weights is None else pixel_weights.name,
    )
    return job, data, frames


def _uncertainty(frames: xr.DataArray, options: dict[str, Any]) -> da.Array | None:
    """``weights="uncertainty"``: the in-memory frames' inverse variances (CCDData
    uncertainties, :mod:`stackengine.ccddata`); None for other weights."""
    if not (isinstance(options["weights"], str) and options["weights"] == "uncertainty"):
        return None
    if source_of(frames.data) is not None or options.get("weight_maps") is not None:
        raise ParameterError("weights='uncertainty': it takes the uncertainties of CCDData "
                             "frames (for files, use weight_maps= and weights='map')")  # fmt: skip
    if frames.ndim != 3 or options.get("register") is not None:
        raise ParameterError("weights='uncertainty': (frame, y, x) frames, not registered")
    return uncertainty_weights(frames)


def _companions(source: Any, options: dict[str, Any], deb: Debayer | None) -> tuple:
    """The weight maps and masks (:mod:`stackengine.companions`), and whether the
    weight maps weight the mean (``weights="map"``)."""
    specs = {name: options.get(name) for name in ("weight_maps", "masks")}
    inverse_variance = isinstance(options["weights"], str) and options["weights"] == "map"
    if inverse_variance and specs["weight_maps"] is None:
        raise ParameterError("weights='map': give the weight maps (weight_maps=...)")
    if all(v is None for v in specs.values()):
        return None, None, False
    if source is None:
        raise ParameterError("weight_maps, masks: the frames must be read from files")
    if deb is not None:
        raise ParameterError("weight_maps, masks: not with Bayer mosaics (bayer=False stacks "
                             "them as mono frames)")  # fmt: skip
    return (open_companions(specs["weight_maps"], source, "weight_maps"),
            open_companions(specs["masks"], source, "masks"), inverse_variance)  # fmt: skip


def _matched_backgrounds(
    measured: xr.DataArray, options: dict[str, Any], reg: Any, deb: Debayer | None
) -> Normalization:
    """Additive offsets from the frames' overlaps (:mod:`.normalize.overlap`), measured
    on cells about the size of each frame's background bins (1/32 of its longer side)."""
    if not isinstance(reg, SkyRegistration):
        raise ParameterError("match_background: it matches the overlaps of register='wcs'")
    if options["normalize"] is not None:
        raise ParameterError("match_background: it is the normalization; drop normalize=")
    if deb is not None:
        raise ParameterError("match_background: not with Bayer mosaics (bayer=False co-adds "
                             "them as mono frames)")  # fmt: skip
    sizes = [max(reg.shape_of(k)) / 32 * input_size(reg, k) for k in range(len(reg.boxes))]
    cell = max(4, int(round(float(np.median(sizes)))))
    return plan_background_matching(measured, reg, reference=options["reference"], cell=cell)


def _registered_tiles(reg: Any, shape: tuple, memory_limit: Any) -> tuple[int, int]:
    """Square tiles for a registered stack; for a mosaic, sized by the most frames any
    one tile reads (:meth:`~stackengine.register.sky.SkyRegistration.depth`), not by
    all the frames."""
    depth_of = getattr(reg, "depth", None)
    if depth_of is None:
        return square_tiles(shape, memory_limit)
    depth = depth_of((64, 64))
    while True:
        tile = square_tiles((max(depth, 1), *shape[1:]), memory_limit)
        more = depth_of(tile)
        if more <= depth:
            return tile
        depth = more


def _chunked(data: Any, tile: tuple[int, int]) -> da.Array:
    """In-memory or modified frames as a dask array of (all frames, tile) blocks."""
    chunks = (-1, *tile) + (-1,) * (np.ndim(data) - 3)
    if isinstance(data, da.Array):
        return data.rechunk(chunks)
    return da.from_array(np.asarray(data), chunks=chunks)
