"""Exceptions raised by stackengine.

Every error caused by bad input is a :class:`StackEngineError`; its message
names the offending file (or parameter) and the problem in one line, so the
command line can print it as is.
"""

from __future__ import annotations

__all__ = [
    "StackEngineError",
    "ParameterError",
    "FrameError",
    "FrameMismatchError",
    "OutputError",
    "NormalizationError",
    "CalibrationError",
]


class StackEngineError(Exception):
    """Base class of every error stackengine raises on bad input."""


class ParameterError(StackEngineError, ValueError):
    """A parameter of :func:`stackengine.stack` or the CLI is invalid."""


class FrameError(StackEngineError, OSError):
    """An input frame is missing, unreadable, truncated or corrupt."""


class FrameMismatchError(StackEngineError, ValueError):
    """Frames disagree in shape, dtype or channels."""


class OutputError(StackEngineError, OSError):
    """The output cannot be written (exists, folder missing or not writable)."""


class NormalizationError(StackEngineError, ValueError):
    """A frame cannot be normalized (e.g. too few stars matched to the reference)."""


class CalibrationError(StackEngineError, ValueError):
    """Calibration cannot be done as asked: a master that does not match the lights
    (shape, binning, filter, exposure), a malformed section card, an unusable flat."""
