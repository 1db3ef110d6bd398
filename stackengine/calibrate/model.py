"""The per-frame calibration a job's tile tasks apply, and the arithmetic itself.

A :class:`Calibration` is part of the job (:class:`~stackengine.tasks.job.StackJob`):
the masters (:class:`Master`: a file read region by region like a frame, or
an array in memory), each light's dark scale factor and per-row overscan
levels (measured in pass 1), the trim window, the bad-pixel mask and the
flat's normalization. :func:`apply_calibration` is the one step the tile task
runs on every strip of raw frames before normalization and rejection::

    (light - overscan_row - bias - dark * t_light / t_dark) / (flat / mean(flat))

ccdproc's ``ccd_process`` (subtract_overscan with a per-row median, trim,
subtract_bias, subtract_dark with exposure scaling, flat_correct dividing by
the flat's mean) is the reference; the tests compare with it on real frames.
The arithmetic is done in float64 (as ccdproc's) and stored as float32.
Pixels where the flat is below ``flat_min`` or that the bad-pixel mask marks
are missing (NaN): rejection and combination skip them and ``count`` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..kernels.calibrate import calibrate_strip
from ..tasks.job import digest, frame_identity

__all__ = ["Calibration", "Master", "apply_calibration"]


@dataclass(frozen=True, eq=False)
class Master:
    """A master frame (bias, dark, flat or a bad-pixel mask) as the tile tasks read it.

    Attributes
    ----------
    name : str
        The file, or a description of an in-memory master (for messages).
    source : FrameSource or None
        The frame on disk, read region by region.
    array : numpy.ndarray or None
        The master in memory (float32; bool for a mask).
    exptime : float or None
        The master's exposure time (darks), seconds.
    origin : (int, int)
        The master's (row, column) of the calibrated frame's first pixel: the trim
        window's origin for a master of the raw frames' shape, (0, 0) for one made
        from trimmed frames.
    """

    name: str
    source: Any = None
    array: np.ndarray | None = None
    exptime: float | None = None
    origin: tuple[int, int] = (0, 0)
    identity: str = field(init=False)

    def __post_init__(self) -> None:
        what = frame_identity(self.source) if self.source is not None else self.array
        ident = {"master": what, "exptime": self.exptime, "origin": list(self.origin)}
        object.__setattr__(self, "identity", digest(ident))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape if self.array is not None else self.source.shape)

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        """The calibrated frame's rows ``ys`` and columns ``xs`` (float32, or bool for a mask)."""
        oy, ox = self.origin
        ys, xs = slice(ys.start + oy, ys.stop + oy), slice(xs.start + ox, xs.stop + ox)
        if self.array is not None:
            return self.array[ys, xs]
        region = self.source.read(ys, xs)
        return region if region.dtype == bool else region.astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class Calibration:
    """Everything the tile tasks need to calibrate the lights (see the module notes).

    Attributes
    ----------
    bias, dark, flat, bad_pixels : Master or None
        The masters (the flat as given; ``flat_mean`` normalizes it).
    dark_scale : numpy.ndarray or None
        Per light frame, the factor of the dark (t_light / t_dark; 1 without scaling).
    overscan : numpy.ndarray or None
        Per light frame and raw row, the overscan level subtracted (n_frames, raw rows).
    origin : (int, int)
        Raw (row, column) of the calibrated frame's first pixel (the trim window's).
    shape : (int, int)
        The calibrated (trimmed) frame's rows and columns.
    flat_mean : float
        The flat's mean over its usable pixels: the flat is divided by it.
    flat_min : float
        Flat values below this (in the flat's own units) make the pixel missing.
    """

    bias: Master | None = None
    dark: Master | None = None
    flat: Master | None = None
    bad_pixels: Master | None = None
    dark_scale: np.ndarray | None = None
    overscan: np.ndarray | None = None
    origin: tuple[int, int] = (0, 0)
    shape: tuple[int, int] = (0, 0)
    flat_mean: float = 1.0
    flat_min: float = -np.inf
    settings: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What determines the calibrated values (for the job's token)."""
        return {
            name: None if m is None else m.identity
            for name, m in (("bias", self.bias), ("dark", self.dark), ("flat", self.flat),
                            ("bad_pixels", self.bad_pixels))
        } | {
            "dark_scale": self.dark_scale, "overscan": self.overscan,
            "origin": list(self.origin), "shape": list(self.shape),
            "flat_mean": float(self.flat_mean), "flat_min": float(self.flat_min),
            "settings": self.settings,
        }  # fmt: skip

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for attrs and output headers."""
        out: dict[str, Any] = {
            name: m.name
            for name, m in (("bias", self.bias), ("dark", self.dark), ("flat", self.flat),
                            ("bad_pixels", self.bad_pixels))
            if m is not None
        }  # fmt: skip
        out.update({k: v for k, v in self.settings.items() if v is not None})
        if self.flat is not None:
            out["flat_mean"] = float(self.flat_mean)
            out["flat_min"] = float(self.flat_min)
        return out

    def for_frames(self, f0: int, f1: int) -> Calibration:
        """This calibration for frames ``f0:f1`` only (their overscan levels and dark scales)."""
        import dataclasses

        scale = None if self.dark_scale is None else self.dark_scale[f0:f1]
        overscan = None if self.overscan is None else self.overscan[f0:f1]
        return dataclasses.replace(self, overscan=overscan, dark_scale=scale)

    def raw_region(self, ys: slice, xs: slice) -> tuple[slice, slice]:
        """The raw frame's rows and columns of calibrated rows ``ys``, columns ``xs``."""
        oy, ox = self.origin
        return slice(ys.start + oy, ys.stop + oy), slice(xs.start + ox, xs.stop + ox)


def apply_calibration(
    calib: Calibration, raw: np.ndarray, ys: slice, xs: slice, out: np.ndarray
) -> np.ndarray:
    """Calibrate ``raw`` (frames, rows, cols): the lights' raw pixels of calibrated rows
    ``ys`` and columns ``xs``, into ``out`` (float32, same shape); returns ``out``.

    The masters' regions are read once per call and shared by every frame; the
    arithmetic is one compiled pass (:func:`~stackengine.kernels.calibrate.calibrate_strip`).
    """
    n, rows, cols = raw.shape
    region = (rows, cols)
    zeros = np.zeros(region)
    overscan = np.zeros((n, rows))
    if calib.overscan is not None:
        overscan = np.ascontiguousarray(calib.overscan[:, calib.raw_region(ys, xs)[0]])
    bias = zeros if calib.bias is None else calib.bias.read(ys, xs).astype(np.float64)
    dark = zeros if calib.dark is None else calib.dark.read(ys, xs).astype(np.float64)
    scale = np.ones(n) if calib.dark_scale is None else np.asarray(calib.dark_scale, np.float64)
    inverse = np.ones(region)
    if calib.flat is not None:
        flat = calib.flat.read(ys, xs).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            inverse = calib.flat_mean / flat
        inverse[~(flat >= calib.flat_min)] = np.nan  # dead, low or not finite: missing
    if calib.bad_pixels is not None:
        inverse[calib.bad_pixels.read(ys, xs).astype(bool)] = np.nan
    calibrate_strip(np.ascontiguousarray(raw), overscan, bias, dark, scale, inverse, out)
    return out
