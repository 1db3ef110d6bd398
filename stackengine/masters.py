"""se.master(): master bias, dark and flat frames, made as stacks.

A master is a stack (:func:`stackengine.stack`) of calibration frames, made
as the ccdproc guide recommends: each pixel sigma-clipped about the median
with mad_std, then the mean (every :func:`~stackengine.stack` option is
available). Darks are bias-subtracted; flats are bias- and dark-corrected and
each divided by its own median before they are combined (flats differ in
level), and the master flat is normalized to mean 1. The calibration of the
frames happens inside the tile tasks, as for lights.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import numpy as np
import xarray as xr

from .build import build_job
from .calibrate.api import calibration_plan
from .calibrate.summary import summarize
from .errors import CalibrationError, ParameterError
from .frames import open_frames, source_of
from .normalize.model import Normalization
from .stack import _input_array, _result

__all__ = ["KINDS", "master"]

KINDS = ("bias", "dark", "flat")
#: stack() options of a master, as the ccdproc guide recommends (any may be given)
DEFAULTS = dict(reject="sigma", sigma_lower=3.0, sigma_upper=3.0, maxiters=5, center="median",
                spread="mad_std", combine="mean")  # fmt: skip


def _stack_options(options: dict[str, Any]) -> dict[str, Any]:
    import inspect

    from .stack import stack

    known = inspect.signature(stack).parameters
    unknown = sorted(set(options) - set(known) - {"frames"})
    if unknown:
        raise ParameterError(f"master: unknown option(s) {', '.join(unknown)}")
    if "calibration" in options or "normalize" in options:
        raise ParameterError(
            "master: give bias=, dark=, overscan=, trim= instead of calibration=; "
            "a master's normalization is fixed by its kind"
        )
    merged = {k: p.default for k, p in known.items() if k != "frames"}
    merged.update(DEFAULTS)
    merged.update(options)
    if merged.get("bayer") not in (None, False):
        raise ParameterError("master: masters stay Bayer mosaics (calibration comes before "
                             "debayering); bayer= does not apply")  # fmt: skip
    merged["bayer"] = False  # a colour camera's master is a mosaic
    return merged


def _common(values: list, what: str, paths: list[str]) -> Any:
    present = {v for v in values if v is not None and v == v}  # not NaN
    numbers = all(isinstance(v, int | float) for v in present)
    distinct = sorted(present, key=None if numbers else str)
    if len(distinct) > 1:
        raise CalibrationError(
            f"{paths[values.index(distinct[1])]}: {what} mismatch: the frames of one master "
            f"have {', '.join(map(str, distinct))}; make one master per {what}"
        )
    return distinct[0] if distinct else None


def _frame_table(arr: xr.DataArray) -> Any:
    source = source_of(arr.data)
    if source is None:
        return None
    return summarize(source.frames)  # one row per frame, as stacked


def master(
    frames: Any,
    kind: str,
    *,
    bias: Any = None,
    dark: Any = None,
    dark_scale: bool = False,
    overscan: Any = None,
    trim: Any = None,
    **stack_options: Any,
) -> xr.Dataset:
    """A master bias, dark or flat, lazily, as a stack Dataset.

    Parameters
    ----------
    frames : paths, glob or DataArray
        The calibration frames (as for :func:`stackengine.open_frames`).
    kind : {"bias", "dark", "flat"}
        What to make.
    bias : master, optional
        Subtracted from each dark or flat first (a path, Dataset or array).
    dark : master, optional
        Flats: subtracted from each flat, scaled by exposure with ``dark_scale``.
    dark_scale : bool
        Darks: make a per-second master (each dark divided by its exposure;
        EXPTIME 1), to be scaled to any light's exposure. Without it the darks
        must share one exposure time. Flats: scale ``dark`` to each flat's
        exposure.
    overscan, trim : optional
        As for :func:`stackengine.calibrate`: each frame's overscan subtracted and
        the frame trimmed before combination.
    **stack_options
        Any option of :func:`stackengine.stack` (rejection, combine, memory_limit
        ...); the defaults are sigma clipping about the median with mad_std
        (3/3, 5 iterations) and the mean.

    Returns
    -------
    xarray.Dataset
        As :func:`stackengine.stack`'s, with attrs ``imagetyp``, ``exptime``,
        ``filter``, ``ncombine`` and ``inputs``; :func:`stackengine.write` puts
        them into the FITS header as IMAGETYP, EXPTIME, FILTER and NCOMBINE.
    """
    if kind not in KINDS:
        raise ParameterError(f"kind={kind!r}: choose from {', '.join(KINDS)}")
    arr = frames if isinstance(frames, xr.DataArray) else open_frames(frames)
    arr = _input_array(arr)
    options = _stack_options(stack_options)
    n = arr.sizes["frame"]
    if n == 1 and options["reject"] is not None:
        warnings.warn(f"master {kind} from a single frame: no rejection possible",
                      UserWarning, stacklevel=2)  # fmt: skip
        options["reject"] = None
    table = _frame_table(arr)
    paths = [str(p) for p in arr.coords["path"].values] if "path" in arr.coords else []
    exptimes = [None if table is None or math.isnan(t) else float(t)
                for t in (table["exptime"] if table is not None else [])]  # fmt: skip
    calibration = {"overscan": overscan, "trim": trim}
    if kind in ("dark", "flat"):
        calibration["bias"] = bias
    if kind == "flat":
        calibration.update(dark=dark, dark_scale=dark_scale)
    elif dark is not None:
        raise ParameterError(f"master {kind}: dark= applies to flats only")
    if any(v is not None for k, v in calibration.items() if k != "dark_scale"):
        options["calibration"] = calibration
    scale, exptime, norm_name = None, (0.0 if kind == "bias" else None), None
    if kind == "dark":
        if dark_scale:
            if not exptimes or any(t is None or t <= 0 for t in exptimes):
                raise CalibrationError(f"{paths[0] if paths else 'darks'}: dark_scale needs "
                                       "every dark's EXPTIME")  # fmt: skip
            scale, exptime, norm_name = 1.0 / np.array(exptimes), 1.0, "1/exptime"
        else:
            exptime = _common(exptimes, "exposure time", paths) if exptimes else None
    if kind == "flat":
        scale, norm_name = 1.0 / _flat_medians(arr, options.get("calibration")), "1/median"
        exptime = _common(exptimes, "exposure time", paths) if len(set(exptimes)) == 1 else None
    job, data, arr = build_job(arr, options)
    if scale is not None:
        norm = Normalization(norm_name, 0, scale[:, None].astype(np.float64),
                             np.zeros((n, 1)))  # fmt: skip
        job = dataclasses.replace(job, normalization=norm,
                                  params={**job.params, "normalize": norm_name})  # fmt: skip
    ds = _result(job, arr, data)
    if kind == "flat":  # normalized to mean 1
        level = ds["image"].mean()
        ds["image"] = (ds["image"] / level).astype(np.float32)
        ds["noise"] = (ds["noise"] / level).astype(np.float32)
    filt = None
    if table is not None:
        filt = _common(list(table["filter"]), "filter", paths) if kind == "flat" else None
        if kind != "flat":
            known = {f for f in table["filter"] if f is not None}
            filt = known.pop() if len(known) == 1 else None
    cards = {**ds.attrs.get("fits_cards", {}), "IMAGETYP": kind, "EXPTIME": exptime,
             "FILTER": filt, "NCOMBINE": int(n)}  # fmt: skip
    binning = ccd_temp = None
    if table is not None:
        binning = _common(list(table["binning"]), "binning", paths)
        temps = [t for t in table["ccd_temp"] if t is not None and not math.isnan(t)]
        ccd_temp = float(np.mean(temps)) if temps else None
    ds.attrs.update(imagetyp=kind, exptime=exptime, filter=filt, ncombine=int(n), inputs=paths,
                    binning=binning, ccd_temp=ccd_temp, fits_cards=cards)  # fmt: skip
    return ds


def _flat_medians(arr: xr.DataArray, calibration: dict | None) -> np.ndarray:
    """Each flat's median after its calibration (exact, one frame at a time)."""
    frames = arr
    if calibration is not None:
        from .calibrate.plan import calibration_options

        frames = calibration_plan(arr, calibration_options(calibration))[0]
    medians = np.array(
        [float(np.nanmedian(frames[k].values)) for k in range(frames.sizes["frame"])]
    )
    bad = [k for k, m in enumerate(medians) if not m > 0]
    if bad:
        where = str(arr.coords["path"].values[bad[0]]) if "path" in arr.coords else f"flat {bad[0]}"
        raise CalibrationError(f"{where}: the flat's median is {medians[bad[0]]:g}: not a flat")
    return medians
