"""Registration: per-frame transforms onto a reference frame, found from the stars.

:func:`register` detects stars in every frame (one small dask task per frame,
on the luminance; 2 x 2 binned for Bayer mosaics), matches them to the
reference frame's stars by triangle asterisms (astroalign), fits the transform
robustly and refines it by least squares on all matched stars, and returns a
per-frame :class:`xarray.Dataset` (3 x 3 matrices mapping output pixels to
frame pixels, star counts, residuals, seeing, roundness, background).
"""

from __future__ import annotations

from .api import CONVENTION, register
from .match import TRANSFORMS, RegistrationError

__all__ = ["CONVENTION", "TRANSFORMS", "RegistrationError", "register"]
