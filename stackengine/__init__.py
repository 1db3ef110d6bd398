"""stackengine: out-of-core, parallel calibration, registration and stacking of
astronomical frames.

The public names are :func:`open_frames`, :func:`normalize`, :func:`stack` and
:func:`write`
(:func:`to_ccddata` for astropy CCDData).
"""

from __future__ import annotations

from ._version import __version__
from .calibrate.api import calibrate
from .calibrate.summary import summary
from .ccddata import to_ccddata
from .errors import (
    CalibrationError,
    FrameError,
    FrameMismatchError,
    NormalizationError,
    OutputError,
    ParameterError,
    StackEngineError,
)
from .frames import open_frames
from .masters import master
from .night import plan_night, run_night
from .normalize import normalize
from .register import RegistrationError, register
from .stack import stack
from .tasks.write import write

__all__ = [
    "__version__",
    "open_frames",
    "calibrate",
    "master",
    "register",
    "normalize",
    "stack",
    "write",
    "to_ccddata",
    "summary",
    "run_night",
    "plan_night",
    "StackEngineError",
    "ParameterError",
    "FrameError",
    "FrameMismatchError",
    "OutputError",
    "NormalizationError",
    "CalibrationError",
    "RegistrationError",
]
