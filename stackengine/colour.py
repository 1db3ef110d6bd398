"""Colour (one-shot-colour) frames: which frames are Bayer mosaics, and their debayering.

A frame is a Bayer mosaic when ``stack(bayer=...)`` names its 2 x 2 pattern
(``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``), or, with ``bayer=None`` (the
default), when its FITS header has a ``BAYERPAT`` (or ``COLORTYP``) card naming
one; ``XBAYROFF``/``YBAYROFF`` shift the pattern as the convention says.
``bayer=False`` keeps the mosaic as it is (a mono stack of the raw mosaic, as
masters are made). Every frame of a stack must have the same pattern.

A :class:`Debayer` is part of the job (:class:`~stackengine.tasks.job.StackJob`):
each tile task reads a frame's region widened by the method's margin (1 pixel
for bilinear, 2 for Malvar-He-Cutler), calibrates it *in the mosaic*, debayers it
(:func:`stackengine.kernels.debayer.debayer`, whose region rule makes the kept
pixels those of debayering the whole frame, bit for bit) and then resamples or
reduces the RGB values: the result is an RGB ``(y, x, channel)`` stack and no
debayered copy is ever written.

Normalizing colour frames (:func:`superpixel_frames`): the per-frame
normalization of a debayered stack is measured per channel, on each mosaic's
2 x 2 *superpixels* (R, the mean of the two G, B: a half-resolution RGB frame,
read straight from the files and cached like any frame's measurements), and
mapped back to full resolution (:func:`full_resolution`). One scale for all
three channels would tint the stack wherever frames of another sky colour
overlap.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .errors import ParameterError
from .frames import source_of, stack_array
from .io.buffers import thread_buffer
from .io.sources import FrameStack, _norm
from .kernels.debayer import METHODS, debayer, pattern_for

__all__ = [
    "CHANNELS",
    "DEBAYER_METHODS",
    "Debayer",
    "bayer_setting",
    "full_resolution",
    "header_pattern",
    "plan_debayer",
    "superpixel_frames",
    "superpixel_transforms",
]

#: the channels of a debayered stack
CHANNELS = ("R", "G", "B")
DEBAYER_METHODS = tuple(METHODS)
_PATTERN = re.compile(r"[RGB]{4}")


def bayer_setting(bayer: Any) -> str | bool | None:
    """Validate ``bayer``: None (from the headers), False (never), True (from the
    headers, which must have one) or a 2 x 2 pattern such as "RGGB"."""
    if bayer is None or isinstance(bayer, bool):
        return bayer
    if isinstance(bayer, str) and bayer.strip().upper() in ("NONE", "FALSE", "NO"):
        return False
    if isinstance(bayer, str):
        try:
            return pattern_for(bayer, 0, 0)
        except ValueError:
            pass
    raise ParameterError(
        f"bayer={bayer!r}: expected None (from the BAYERPAT header), False or a 2 x 2 "
        "pattern such as 'RGGB'"
    )


def header_pattern(header: Any) -> str | None:
    """The pattern a FITS header names (BAYERPAT or COLORTYP, shifted by XBAYROFF /
    YBAYROFF), or None."""
    if header is None:
        return None
    raw = str(header.get("BAYERPAT", header.get("COLORTYP", "")) or "").strip().upper()
    if not _PATTERN.fullmatch(raw) or raw not in ("RGGB", "BGGR", "GRBG", "GBRG"):
        return None
    try:
        dx, dy = int(header.get("XBAYROFF", 0) or 0), int(header.get("YBAYROFF", 0) or 0)
    except (TypeError, ValueError):
        dx = dy = 0
    return pattern_for(raw, dy, dx)


@dataclass(frozen=True)
class Debayer:
    """How the tile tasks debayer a job's frames.

    Attributes
    ----------
    pattern : str
        The pattern of the frames' pixel (0, 0) on the job's grid (after a
        calibration's trim).
    method : {"bilinear", "mhc"}
        Bilinear, or Malvar-He-Cutler.
    """

    pattern: str
    method: str = "bilinear"

    @property
    def margin(self) -> int:
        return METHODS[self.method]

    def identity(self) -> dict[str, Any]:
        return {"pattern": self.pattern, "method": self.method}

    def window(
        self, box: tuple[int, int, int, int], frame_shape: tuple[int, int]
    ) -> tuple[int, int, int, int]:
        """The mosaic region to read for ``box`` (y0, y1, x0, x1): widened by the margin
        and clipped to the frame."""
        y0, y1, x0, x1 = box
        m = self.margin
        return (max(y0 - m, 0), min(y1 + m, frame_shape[0]),
                max(x0 - m, 0), min(x1 + m, frame_shape[1]))  # fmt: skip

    def rgb(self, mosaic: np.ndarray, y0: int, x0: int) -> np.ndarray:
        """Debayer the calibrated float32 ``mosaic`` region whose first pixel is the
        frame's (y0, x0), into a float32 (rows, cols, 3) buffer of this thread."""
        out = thread_buffer("rgb", (*mosaic.shape, 3), np.float32)
        return debayer(mosaic, pattern_for(self.pattern, y0, x0), self.method, out)

    def planes(self, mosaic: np.ndarray, y0: int, x0: int) -> np.ndarray:
        """The mosaic region split by colour, not interpolated (Bayer drizzle): a
        float32 (rows, cols, 3) buffer whose channel c holds the pixels of colour c
        and NaN (missing) at the others."""
        out = thread_buffer("rgb", (*mosaic.shape, 3), np.float32)
        out.fill(np.nan)
        pattern = pattern_for(self.pattern, y0, x0)
        for k, colour in enumerate(pattern):  # R, G or B at (k // 2, k % 2) of each 2x2
            c = CHANNELS.index(colour)
            out[k // 2 :: 2, k % 2 :: 2, c] = mosaic[k // 2 :: 2, k % 2 :: 2]
        return out


def _frame_pattern(frame: Any) -> str | None:
    full = getattr(frame, "full_header", None)
    if full is None:
        return None
    try:
        return header_pattern(full())
    except Exception:  # an unreadable header: reading its pixels will say so
        return None


def plan_debayer(
    frames: Any, options: dict[str, Any], origin: tuple[int, int] = (0, 0)
) -> Debayer | None:
    """The job's debayering from stack()'s ``bayer`` and ``debayer`` options and the
    frames' headers (``frames``: the :class:`~stackengine.io.sources.FrameStack`, or
    None for in-memory frames); ``origin`` is a calibration trim's (row, column)."""
    setting = bayer_setting(options.get("bayer"))
    method = options.get("debayer") or "bilinear"
    if method not in METHODS:
        raise ParameterError(f"debayer={method!r}: choose from {', '.join(METHODS)}")
    if setting is False:
        # register="wcs" may resample the raw mosaics, as SWarp and reproject do (a
        # luminance co-add, or to compare with them); a frame-to-frame registration
        # would mix the colours of what is meant to be a colour stack
        spec = options.get("register")
        by_wcs = isinstance(spec, str) and spec == "wcs"
        if spec is not None and not by_wcs and frames is not None:
            mosaic = next((f for f in frames.frames if _frame_pattern(f)), None)
            if mosaic is not None:
                raise ParameterError(
                    f"bayer=False with register: {mosaic.path} is a Bayer mosaic, and "
                    "resampling a mosaic mixes its colours; let it be debayered (bayer=None)"
                )
        return None
    if isinstance(setting, str):
        if frames is None:
            raise ParameterError("bayer: colour frames must be opened from files (se.open_frames)")
        pattern = setting
    else:
        if frames is None:
            if setting is True:
                raise ParameterError("bayer=True: in-memory frames have no header; name it")
            return None
        patterns = [_frame_pattern(f) for f in frames.frames]
        first = patterns[0]
        if first is None:
            if setting is True:
                raise ParameterError(f"{frames.frames[0].path}: no BAYERPAT in the header; "
                                     "give the pattern, e.g. bayer='RGGB'")  # fmt: skip
            if any(p is not None for p in patterns):
                k = next(i for i, p in enumerate(patterns) if p is not None)
                raise ParameterError(
                    f"{frames.frames[k].path}: a Bayer mosaic ({patterns[k]}) among frames "
                    f"without a pattern ({frames.frames[0].path}); stack them apart"
                )
            return None
        for f, p in zip(frames.frames, patterns, strict=True):
            if p != first:
                raise ParameterError(
                    f"{f.path}: Bayer pattern {p} but {frames.frames[0].path} has {first}; "
                    "stack them apart or give bayer=..."
                )
        pattern = first
    if len(frames.frame_shape) != 2:
        raise ParameterError(
            f"{frames.frames[0].path}: a Bayer pattern given for frames that have channels "
            f"already {tuple(frames.frame_shape)}"
        )
    return Debayer(pattern_for(pattern, origin[0], origin[1]), method)


def _offsets(pattern: str) -> dict[str, list[tuple[int, int]]]:
    """The (row, col) offsets within a 2 x 2 cell of each colour of ``pattern``."""
    out: dict[str, list[tuple[int, int]]] = {"R": [], "G": [], "B": []}
    for i, colour in enumerate(pattern):
        out[colour].append(divmod(i, 2))
    return out


def _superpixels(mosaic: np.ndarray, pattern: str) -> np.ndarray:
    """(2h, 2w) mosaic -> (h, w, 3) float32 superpixels (R, mean of the Gs, B)."""
    h, w = mosaic.shape[0] // 2, mosaic.shape[1] // 2
    cells = np.asarray(mosaic[: 2 * h, : 2 * w], dtype=np.float32).reshape(h, 2, w, 2)
    out = np.empty((h, w, 3), dtype=np.float32)
    for c, colour in enumerate(CHANNELS):
        places = _offsets(pattern)[colour]
        out[..., c] = cells[:, places[0][0], :, places[0][1]]
        for dy, dx in places[1:]:
            out[..., c] += cells[:, dy, :, dx]
        if len(places) > 1:
            out[..., c] *= np.float32(1.0 / len(places))
    return out


@dataclass(frozen=True)
class SuperpixelView:
    """One mosaic frame as half-resolution RGB superpixels (read like a FrameView)."""

    mosaic: Any  # the mosaic's FrameView
    pattern: str
    shape: tuple[int, int, int]
    dtype: np.dtype = np.dtype(np.float32)

    @property
    def source(self) -> Any:
        return self.mosaic.source

    @property
    def alpha(self) -> tuple[str, str]:  # part of the measurements' cache key
        return ("superpixels", self.pattern)

    def read(self, ys: slice, xs: slice) -> np.ndarray:
        ys, xs = _norm(ys, self.shape[0]), _norm(xs, self.shape[1])
        rows, cols = slice(2 * ys.start, 2 * ys.stop), slice(2 * xs.start, 2 * xs.stop)
        mosaic = self.mosaic.read(rows, cols)
        return _superpixels(mosaic, self.pattern)


class SuperpixelStack(FrameStack):
    """A stack of mosaics presented as half-resolution RGB superpixel frames, for pass 1."""

    def __init__(self, mosaics: FrameStack, pattern: str) -> None:  # noqa: D107
        self.mosaics, self.pattern = mosaics, pattern
        self.frames = mosaics.frames
        self.alpha = None
        self.padded = False
        h, w = mosaics.frame_shape[0] // 2, mosaics.frame_shape[1] // 2
        self.frame_shapes = [(h, w)] * len(self.frames)
        self.frame_shape = (h, w, len(CHANNELS))
        self.shape = (len(self.frames), *self.frame_shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4

    @property
    def block(self) -> tuple[int, int]:
        rows, cols = self.mosaics.block
        return max(1, rows // 2), max(1, cols // 2)

    def view(self, k: int) -> SuperpixelView:
        return SuperpixelView(self.mosaics.view(k), self.pattern, self.frame_shape)

    def read_tile(self, ys, xs, out=None, *, frames=None, handles=None) -> np.ndarray:
        fs = frames if frames is not None else slice(0, self.shape[0])
        tiles = [self.view(k).read(ys, xs) for k in range(fs.start, fs.stop)]
        result = np.stack(tiles) if tiles else np.empty((0, 0, 0, 3), np.float32)
        if out is not None:
            out[...] = result
            return out
        return result


def superpixel_frames(frames: xr.DataArray, pattern: str) -> xr.DataArray:
    """The mosaics ``frames`` (frame, y, x) as half-resolution RGB superpixel frames
    (frame, y, x, channel): read from the files when ``frames`` come from
    :func:`~stackengine.open_frames` untouched, else computed from the array."""
    coords = {k: v for k, v in frames.coords.items() if v.dims == ("frame",)}
    dims = ("frame", "y", "x", "channel")
    source = source_of(frames.data)
    if source is not None and not source.padded:
        stack = SuperpixelStack(source, pattern)
        tile = (max(1, frames.data.chunks[1][0] // 2), max(1, frames.data.chunks[2][0] // 2))
        return xr.DataArray(stack_array(stack, tile), dims=dims, coords=coords)
    data = frames.data if isinstance(frames.data, da.Array) else da.from_array(frames.data)
    h, w = data.shape[1] // 2, data.shape[2] // 2
    data = data[:, : 2 * h, : 2 * w].astype(np.float32)
    planes = []
    for colour in CHANNELS:
        parts = [data[:, dy::2, dx::2] for dy, dx in _offsets(pattern)[colour]]
        planes.append(parts[0] if len(parts) == 1 else (parts[0] + parts[1]) * np.float32(0.5))
    return xr.DataArray(da.stack(planes, axis=-1), dims=dims, coords=coords)


#: superpixel (x, y, 1) -> mosaic pixel: the centre of the 2 x 2 cell
_TO_FULL = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])


def superpixel_transforms(
    transforms: tuple[np.ndarray, tuple[int, int]] | None,
) -> tuple[np.ndarray, tuple[int, int]] | None:
    """A registration's (matrices, output shape) on the superpixel grids."""
    if transforms is None:
        return None
    matrices, shape = transforms
    inverse = np.linalg.inv(_TO_FULL)
    half = np.einsum("ij,kjl,lm->kim", inverse, matrices, _TO_FULL)
    return half, (shape[0] // 2, shape[1] // 2)


def full_resolution(norm: Any) -> Any:
    """A normalization measured on superpixels, for the full-resolution frames: the
    gradient grid's spacing doubled (its nodes' half-pixel offset is far below the
    scale on which a gradient model varies) and star positions mapped back."""
    if norm is None:
        return None
    step = None if norm.step is None else (2.0 * norm.step[0], 2.0 * norm.step[1])
    details = dict(norm.details)
    pairs = {k: {**v, "x": 2.0 * v["x"] + 0.5, "y": 2.0 * v["y"] + 0.5}
             for k, v in details.get("pairs", {}).items()}  # fmt: skip
    if pairs:
        details["pairs"] = pairs
    return dataclasses.replace(norm, step=step, details=details)
