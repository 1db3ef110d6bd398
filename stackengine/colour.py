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
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ParameterError
from .io.buffers import thread_buffer
from .kernels.debayer import METHODS, debayer, pattern_for

__all__ = ["CHANNELS", "DEBAYER_METHODS", "Debayer", "bayer_setting", "header_pattern",
           "plan_debayer"]  # fmt: skip

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
