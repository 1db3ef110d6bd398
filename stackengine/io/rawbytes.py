"""Exact byte-range reads into caller-owned arrays (uncompressed FITS and TIFF data).

The readers of formats whose pixels sit uncompressed at a known offset (FITS
images, uncompressed TIFF strips) read a tile's rows with one ``readinto``
into the array that will hold them, with no read-ahead and no intermediate
buffer, and swap the bytes in place when the file's byte order is not the
machine's.
"""

from __future__ import annotations

import contextlib
from typing import Any, BinaryIO

import numpy as np

from ..errors import FrameError
from . import remote

__all__ = ["open_exact", "read_exact", "to_native"]


def read_exact(
    path: str,
    storage_options: dict[str, Any] | None,
    offset: int,
    raw: np.ndarray,
    what: str,
    fh: BinaryIO | None = None,
) -> None:
    """Fill the C-contiguous ``raw`` with the bytes of ``path`` from ``offset`` on.

    ``fh`` is an open handle of ``path`` to use (see :func:`open_exact`);
    without one the file is opened and closed here. Raises
    :class:`~stackengine.errors.FrameError` naming the file if it cannot be
    read or ends early (``what`` says which part, e.g. ``"rows 4:9"``).
    """
    got = 0
    try:
        with (
            contextlib.nullcontext(fh) if fh is not None else open_exact(path, storage_options) as f
        ):
            f.seek(offset)
            view = memoryview(raw).cast("B")
            while got < raw.nbytes:
                n = f.readinto(view[got:])
                if not n:
                    break
                got += n
    except FrameError:
        raise
    except OSError as exc:
        raise FrameError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except Exception as exc:  # fsspec backends raise their own errors
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FrameError(f"{path}: cannot read ({msg})") from exc
    if got < raw.nbytes:
        raise FrameError(
            f"{path}: truncated: {what} end at byte {offset + raw.nbytes}, file has {offset + got}"
        )


def open_exact(path: str, storage_options: dict[str, Any] | None) -> BinaryIO:
    """``path`` opened for exact byte-range reads (no read-ahead); the caller closes it."""
    return remote.open_binary(path, storage_options, exact=True)


def to_native(raw: np.ndarray) -> np.ndarray:
    """``raw`` in the machine's byte order, swapped in place when it is not already."""
    if raw.dtype.isnative:
        return raw
    return raw.byteswap(inplace=True).view(raw.dtype.newbyteorder("="))
