"""Reading benchmark frames (FITS or TIFF) the way a plain astropy / numpy user does.

The peer methods load frames with these (stackengine reads its own way), and
the parent reads row bands for its in-harness astropy reference. Imports only
the standard library at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["import_readers", "is_tiff", "load_cube", "read_frame", "write_image"]


def import_readers(files: Sequence[str | Path]) -> None:
    """Import the readers of ``files`` and the FITS writer (before a method's ``import`` mark)."""
    import astropy.io.fits  # noqa: F401

    if any(is_tiff(f) for f in files):
        import tifffile  # noqa: F401


def is_tiff(path: str | Path) -> bool:
    """True for a ``.tif``/``.tiff`` file name (anything else is read as FITS)."""
    return str(path).lower().endswith((".tif", ".tiff"))


def read_frame(path: str | Path, rows: slice | None = None) -> Any:
    """One frame as stored (uint16 FITS with BZERO 32768 comes back as uint16).

    FITS through ``astropy.io.fits`` (``memmap=False``; with ``rows``, a
    ``section`` of those rows only, read by offset: a memory-mapped section
    refuses scaled data such as uint16's BZERO), TIFF through ``tifffile``.
    """
    if is_tiff(path):
        import tifffile

        data = tifffile.imread(path)
        return data if rows is None else data[rows].copy()
    from astropy.io import fits

    if rows is None:
        with fits.open(path, memmap=False) as hdul:
            return hdul[0].data
    with fits.open(path, memmap=False) as hdul:
        return hdul[0].section[rows, :]


def load_cube(files: Sequence[str | Path], rows: slice | None = None) -> Any:
    """All frames (or the rows ``rows`` of each) in one ``(n, H, W)`` float32 array.

    Allocated once and filled frame by frame, as a careful numpy user would.
    """
    import numpy as np

    first = read_frame(files[0], rows)
    cube = np.empty((len(files), *first.shape), dtype=np.float32)
    cube[0] = first
    del first
    for i, path in enumerate(files[1:], start=1):
        cube[i] = read_frame(path, rows)
    return cube


def write_image(image: Any, out_path: str | Path) -> None:
    """Write a result image as a float32 FITS primary HDU."""
    import numpy as np
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(image, dtype=np.float32)).writeto(out_path, overwrite=True)
