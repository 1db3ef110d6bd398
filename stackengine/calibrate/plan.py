"""From the user's calibration options to a :class:`~.model.Calibration` (pass 1).

Resolves the masters (paths, Datasets from :func:`stackengine.master`,
DataArrays or arrays), checks that they fit the lights (shape, binning,
filter, exposure: one line naming both files otherwise), reads the overscan
and trim sections (from BIASSEC/TRIMSEC/DATASEC or given), measures each
light's per-row overscan level, and the flat's mean over its usable pixels.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..errors import CalibrationError, ParameterError
from .model import Calibration, Master
from .summary import FILTER_KEYS, _row

__all__ = ["CALIBRATION_OPTIONS", "calibration_options", "plan_calibration"]

#: the options of a calibration (``se.calibrate``'s keywords, ``stack(calibration=...)``)
CALIBRATION_OPTIONS = ("bias", "dark", "flat", "dark_scale", "overscan", "trim", "bad_pixels",
                       "min_value", "temperature_tolerance")  # fmt: skip
#: flat pixels below this share of the flat's median are missing (the default min_value)
FLAT_MIN_SHARE = 0.1
#: a dark this many times shorter than a light needs dark_scale
DARK_RATIO = 1.5


def calibration_options(spec: Any) -> dict[str, Any]:
    """``stack(calibration=...)`` as a dict: a mapping, or an object with those attributes."""
    if spec is None:
        return {}
    items = dict(spec) if isinstance(spec, Mapping) else {
        k: getattr(spec, k) for k in CALIBRATION_OPTIONS if hasattr(spec, k)
    }  # fmt: skip
    unknown = sorted(set(items) - set(CALIBRATION_OPTIONS))
    if unknown:
        raise ParameterError(
            f"calibration: unknown option(s) {', '.join(unknown)} "
            f"(choose from {', '.join(CALIBRATION_OPTIONS)})"
        )
    return items


def _header(frame: Any) -> Any:
    full = getattr(frame, "full_header", None)
    if full is not None:
        try:
            return full()
        except Exception:  # noqa: BLE001 - a header we cannot read has no cards
            return {}
    return getattr(frame, "header", {}) or {}


def _info(frame: Any) -> dict[str, Any]:
    """What the checks compare (exposure, filter, binning, temperature), read from the
    frame's header as :func:`~stackengine.calibrate.summary.summary` reads it."""
    row, _ = _row(frame, _header(frame), FILTER_KEYS)
    nan_none = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    return {
        "exptime": nan_none["exptime"],
        "filter": nan_none["filter"],
        "binning": nan_none["binning"],
        "temp": nan_none["ccd_temp"],
    }


def _master(spec: Any, kind: str) -> tuple[Master, dict[str, Any]]:
    """A :class:`Master` from a path, a Dataset, a DataArray or an array, with its info."""
    if isinstance(spec, str | os.PathLike):
        from ..frames import frame_sources

        frames = frame_sources(str(spec))
        if len(frames) != 1 or len(frames[0].shape) != 2:
            raise CalibrationError(f"{spec}: a master {kind} must be one 2-D frame")
        info = _info(frames[0])
        return Master(str(spec), source=frames[0], exptime=info["exptime"]), info
    attrs: dict[str, Any] = {}
    if isinstance(spec, xr.Dataset):
        attrs = dict(spec.attrs)
        spec = spec["image"]
    if isinstance(spec, xr.DataArray):
        attrs = {**dict(spec.attrs), **attrs}
    values = np.asarray(spec.values if isinstance(spec, xr.DataArray) else spec)
    if values.ndim != 2:
        raise CalibrationError(f"master {kind}: expected a 2-D image, got shape {values.shape}")
    array = values.astype(bool if kind == "bad_pixels" else np.float32)
    inputs = attrs.get("inputs") or []
    name = f"the master {kind} given in memory"
    if inputs:
        name = f"the master {kind} of {inputs[0]}" + (
            f" and {len(inputs) - 1} more" if len(inputs) > 1 else ""
        )
    info = {
        "exptime": attrs.get("exptime"),
        "filter": attrs.get("filter"),
        "binning": attrs.get("binning"),
        "temp": attrs.get("ccd_temp"),
    }
    return Master(name, array=array, exptime=info["exptime"]), info


def _check_master(kind: str, master: Master, info: dict, light: str, linfo: dict,
                  shapes: tuple, tolerance: float) -> None:  # fmt: skip
    raw, trimmed = shapes
    if master.shape not in (raw, trimmed):
        also = "" if raw == trimmed else f" ({trimmed[0]}x{trimmed[1]} trimmed)"
        raise CalibrationError(
            f"{master.name}: shape mismatch: the master {kind} is {master.shape[0]}x"
            f"{master.shape[1]} but {light} is {raw[0]}x{raw[1]}{also}"
        )
    if info["binning"] and linfo["binning"] and info["binning"] != linfo["binning"]:
        raise CalibrationError(
            f"{master.name}: binning mismatch: the master {kind} is binned {info['binning']} "
            f"but {light} {linfo['binning']}"
        )
    if kind == "flat" and info["filter"] and linfo["filter"] and info["filter"] != linfo["filter"]:
        raise CalibrationError(
            f"{master.name}: filter mismatch: the master flat is for {info['filter']!r} "
            f"but {light} was taken through {linfo['filter']!r}"
        )
    if info["temp"] is not None and linfo["temp"] is not None:
        if abs(info["temp"] - linfo["temp"]) > tolerance:
            warnings.warn(
                f"{master.name}: the master {kind} was taken at {info['temp']:.1f} C, "
                f"{light} at {linfo['temp']:.1f} C (more than {tolerance:g} C apart)",
                UserWarning,
                stacklevel=4,
            )


def _sections(option: Any, card: str, frames: list, shape: tuple[int, int]) -> Any:
    """The section of every light: the user's, or the header card's ("auto")."""
    if option is None or option == "none" or option is False:
        return None
    from .sections import parse_section

    if isinstance(option, str) and option != "auto":
        name = "--overscan" if card == "BIASSEC" else "--trim"
        return parse_section(option, shape, path=name, card=card)
    if isinstance(option, tuple):
        return option
    found = []
    for f in frames:
        header = _header(f)
        text = header.get(card) if card in header else None
        try:
            found.append(
                None
                if text is None
                else parse_section(str(text), shape, path=str(f.path), card=card)
            )
        except CalibrationError as exc:  # a card of the file's, used by "auto": say the way out
            what = "overscan" if card == "BIASSEC" else "trim"
            raise CalibrationError(
                f"{exc} (pass {what}='none' / --{what} none to ignore it, or give the section)"
            ) from None  # fmt: skip
    if all(s is None for s in found):
        return None
    if any(s is None for s in found) or len({(s[0].start, s[0].stop, s[1].start, s[1].stop)
                                              for s in found}) > 1:  # fmt: skip
        raise CalibrationError(f"{frames[0].path}: the lights' {card} cards differ")
    return found[0]


def plan_calibration(stack: Any, options: dict[str, Any]) -> Calibration:
    """Resolve and check the calibration of the lights of ``stack`` (a FrameStack)."""
    frames = list(stack.frames)
    if len(stack.shape) != 3:
        raise CalibrationError(f"{frames[0].path}: calibration needs single-channel frames")
    raw_shape = (int(stack.shape[1]), int(stack.shape[2]))
    first = str(frames[0].path)
    infos = [_info(f) for f in frames]
    tolerance = float(options.get("temperature_tolerance", 2.0))
    overscan_section = _sections(options.get("overscan"), "BIASSEC", frames, raw_shape)
    trim = options.get("trim")
    if trim is None and overscan_section is not None:
        trim = "auto"  # the overscan columns are no data
    trim_section = _sections(trim, "TRIMSEC", frames, raw_shape)
    if trim_section is None and trim == "auto":
        trim_section = _sections("auto", "DATASEC", frames, raw_shape)
    origin, shape = (0, 0), raw_shape
    if trim_section is not None:
        ys, xs = trim_section
        origin, shape = (ys.start, xs.start), (ys.stop - ys.start, xs.stop - xs.start)
    masters: dict[str, Master] = {}
    for kind in ("bias", "dark", "flat", "bad_pixels"):
        if options.get(kind) is None or (kind == "bad_pixels" and options[kind] == "auto"):
            continue
        master, info = _master(options[kind], kind)
        _check_master(kind, master, info, first, infos[0], (raw_shape, shape), tolerance)
        if master.shape == raw_shape:  # a master of untrimmed frames: read the window
            master = dataclasses.replace(master, origin=origin)
        masters[kind] = master
    if isinstance(options.get("bad_pixels"), str) and options["bad_pixels"] == "auto":
        masters["bad_pixels"] = _derived_bad_pixels(masters, shape)
    dark_scale = _dark_scale(masters.get("dark"), frames, infos, bool(options.get("dark_scale")))
    overscan = None
    if overscan_section is not None:
        from .overscan import measure_overscan

        overscan = np.stack([measure_overscan(f, overscan_section) for f in frames])
    flat_mean, flat_min = _flat_level(masters.get("flat"), options.get("min_value"), shape)
    return Calibration(
        bias=masters.get("bias"), dark=masters.get("dark"), flat=masters.get("flat"),
        bad_pixels=masters.get("bad_pixels"), dark_scale=dark_scale, overscan=overscan,
        origin=origin, shape=shape, flat_mean=flat_mean, flat_min=flat_min,
        settings={"overscan": None if overscan_section is None else _text(overscan_section),
                  "trim": None if trim_section is None else _text(trim_section),
                  "dark_scale": bool(options.get("dark_scale"))},
    )  # fmt: skip


def _derived_bad_pixels(masters: dict[str, Master], shape: tuple[int, int]) -> Master:
    """bad_pixels="auto": hot pixels of the master dark, bad ones of the master flat."""
    from .badpixels import bad_pixel_mask

    whole = (slice(0, shape[0]), slice(0, shape[1]))
    dark, flat = masters.get("dark"), masters.get("flat")
    if dark is None and flat is None:
        raise CalibrationError("bad_pixels='auto' needs a master dark or a master flat")
    mask = bad_pixel_mask(
        None if dark is None else dark.read(*whole), None if flat is None else flat.read(*whole)
    )
    names = " and ".join(m.name for m in (dark, flat) if m is not None)
    return Master(f"bad pixels of {names} ({int(mask.sum())})", array=mask)


def _text(section: tuple[slice, slice]) -> str:
    ys, xs = section
    return f"[{xs.start + 1}:{xs.stop},{ys.start + 1}:{ys.stop}]"


def _dark_scale(dark: Master | None, frames: list, infos: list, scale: bool) -> np.ndarray | None:
    if dark is None:
        return None
    t_dark = dark.exptime
    if not scale:
        for f, info in zip(frames, infos, strict=True):
            t = info["exptime"]
            if t is not None and t_dark and t > DARK_RATIO * t_dark:
                raise CalibrationError(
                    f"{dark.name}: the master dark ({t_dark:g} s) is much shorter than "
                    f"{f.path} ({t:g} s); pass dark_scale=True (--dark-scale) to scale it"
                )
        return None
    if not t_dark or not t_dark > 0:
        raise CalibrationError(f"{dark.name}: dark_scale needs the master dark's exposure time")
    out = np.empty(len(frames))
    for k, (f, info) in enumerate(zip(frames, infos, strict=True)):
        if info["exptime"] is None:
            raise CalibrationError(f"{f.path}: dark_scale needs an EXPTIME or EXPOSURE card")
        out[k] = info["exptime"] / t_dark
    return out


def _flat_level(flat: Master | None, min_value: Any, shape: tuple) -> tuple[float, float]:
    """The flat's mean over its usable pixels (within the trim window) and the threshold
    below which a flat pixel is missing (default: FLAT_MIN_SHARE x the median of every
    7th pixel of every 7th row). One float32 read of the flat, summed in float64 a few
    hundred rows at a time: no whole-frame float64 copy."""
    if flat is None:
        return 1.0, -math.inf
    values = flat.read(slice(0, shape[0]), slice(0, shape[1]))
    sample = values[::7, ::7]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0 or not np.median(sample) > 0:
        raise CalibrationError(f"{flat.name}: the flat is mostly zero or negative")
    threshold = FLAT_MIN_SHARE * float(np.median(sample)) if min_value is None else float(min_value)
    total, good = 0.0, 0
    for r in range(0, values.shape[0], 256):
        rows = values[r : r + 256]
        usable = rows >= threshold  # NaN: not usable
        total += float(np.sum(rows, where=usable, dtype=np.float64))
        good += int(np.count_nonzero(usable))
    if good < 0.5 * values.size:
        raise CalibrationError(
            f"{flat.name}: most of the flat is below min_value={threshold:g}: not a flat"
        )
    low = values.size - good
    if low:
        warnings.warn(
            f"{flat.name}: {low} flat pixels below min_value={threshold:g} (dead or "
            "non-finite): those pixels are missing in the calibrated lights",
            UserWarning,
            stacklevel=4,
        )
    return total / good, threshold
