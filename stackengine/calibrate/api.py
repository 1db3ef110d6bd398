"""``se.calibrate``: the lazily calibrated lights, and the plan the tile tasks apply.

:func:`calibration_plan` plans a calibration (:mod:`.plan`) and builds the
lazy calibrated frames: one dask task per tile reads the lights' raw region
(the trim window's) and calibrates it (:func:`~.model.apply_calibration`),
the same step :func:`stackengine.stack` runs inside its own tile tasks. So
``se.calibrate`` gives exactly the values ``se.stack(..., calibration=...)``
stacks, and nothing is written to disk unless asked
(``stackengine calibrate``).
"""

from __future__ import annotations

from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import ParameterError
from ..frames import open_frames, source_of
from ..tasks.job import digest
from ..tasks.plan import plan_tiles
from .model import Calibration, apply_calibration
from .plan import calibration_options, plan_calibration

__all__ = ["calibrate", "calibration_plan"]


def _read_calibrated(pair: tuple[Any, Calibration], block_info: dict) -> np.ndarray:
    """Task body: the calibrated frames of one block (frames, rows, cols)."""
    stack, calib = pair
    (f0, f1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    ys, xs = slice(y0, y1), slice(x0, x1)
    ry, rx = calib.raw_region(ys, xs)
    raw = stack.read_tile(ry, rx, frames=slice(f0, f1))
    out = np.empty(raw.shape, dtype=np.float32)
    if (f0, f1) != (0, stack.shape[0]):
        calib = calib.for_frames(f0, f1)
    return apply_calibration(calib, raw, ys, xs, out)


def calibration_plan(
    frames: Any, options: dict[str, Any], memory_limit: str = "1GiB", frame_chunk: int = 0
) -> tuple[xr.DataArray, Calibration]:
    """The calibration of ``frames`` (opened from files) and the lazily calibrated frames
    (blocks of all frames, or of ``frame_chunk`` frames each)."""
    arr = frames if isinstance(frames, xr.DataArray) else open_frames(frames)
    stack = source_of(arr.data)
    if stack is None:
        raise ParameterError(
            "calibration: the lights must be frames opened from files (se.open_frames), "
            "unmodified; calibrate in-memory arrays with numpy first"
        )
    calib = plan_calibration(stack, options)
    shape = (stack.shape[0], *calib.shape)
    tile = plan_tiles(shape, 4, memory_limit, block=stack.block)
    per = frame_chunk or shape[0]
    chunks = (
        tuple(min(per, shape[0] - f) for f in range(0, shape[0], per)),
        tuple(min(tile[0], shape[1] - y) for y in range(0, shape[1], tile[0])),
        tuple(min(tile[1], shape[2] - x) for x in range(0, shape[2], tile[1])),
    )
    token = digest({"frames": arr.data.name, "calibration": calib.identity(), "tile": tile,
                    "per": per})  # fmt: skip
    node = dask.delayed((stack, calib), name=f"calibration-{token}", pure=True)
    data = da.map_blocks(
        _read_calibrated, node, chunks=chunks, dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32), name=f"calibrate-{token}",
    )  # fmt: skip
    coords = {k: v for k, v in arr.coords.items() if v.dims == ("frame",)}
    attrs = {"calibration": calib.describe()}
    return xr.DataArray(data, dims=arr.dims, coords=coords, name="calibrated", attrs=attrs), calib


def calibrate(
    frames: Any,
    *,
    bias: Any = None,
    dark: Any = None,
    flat: Any = None,
    dark_scale: bool = False,
    overscan: Any = None,
    trim: Any = None,
    bad_pixels: Any = None,
    min_value: float | None = None,
    temperature_tolerance: float = 2.0,
) -> xr.DataArray:
    """Calibrated lights, lazily: ``(light - overscan - bias - dark·t/t_dark) / flat``.

    Parameters
    ----------
    frames : str, list of paths or DataArray
        The lights, as for :func:`stackengine.open_frames` (read from files).
    bias, dark, flat : path, Dataset, DataArray or array, optional
        Masters (e.g. from :func:`stackengine.master` or files it wrote), of the
        lights' raw shape or of their trimmed shape.
    dark_scale : bool
        Scale the dark by each light's exposure over the dark's (a per-second
        master has EXPTIME 1). Without it, a dark much shorter than the lights is
        an error.
    overscan : None, "auto" or str
        Subtract each row's overscan level (the median of the section's columns,
        measured per light): "auto" takes the section from BIASSEC; or an IRAF
        section such as ``"[1025:1056,1:1024]"``.
    trim : None, "auto" or str
        Keep only this section: "auto" takes TRIMSEC, else DATASEC; default
        "auto" when there is an overscan, else no trim.
    bad_pixels : path, DataArray or array, optional
        A mask (true = bad): those pixels are missing (NaN).
    min_value : float, optional
        Flat pixels below it are missing in the calibrated lights (dead rows and
        columns); default 0.1 x the flat's median. A warning says how many.
    temperature_tolerance : float
        Masters and lights whose CCD-TEMP differ more (degrees) give a warning.

    Returns
    -------
    xarray.DataArray
        (frame, y, x) float32, dask-backed: each block reads only its region of
        every light and of the masters.

    Raises
    ------
    CalibrationError
        A master that does not fit the lights (shape, binning, filter), a dark
        much shorter than the lights without ``dark_scale``, a malformed section
        card, a flat that is mostly zero or negative; the message names the files.
    """
    options = calibration_options(
        {"bias": bias, "dark": dark, "flat": flat, "dark_scale": dark_scale,
         "overscan": overscan, "trim": trim, "bad_pixels": bad_pixels,
         "min_value": min_value, "temperature_tolerance": temperature_tolerance}
    )  # fmt: skip
    return calibration_plan(frames, options)[0]
