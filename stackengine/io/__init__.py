"""Reading frames from and writing results to FITS, TIFF and zarr. No statistics here."""

from __future__ import annotations

#: reader module name -> the file suffixes it opens (lower case). The modules are
#: imported only when a file of their kind is opened.
READER_SUFFIXES: dict[str, tuple[str, ...]] = {
    "fits": (".fits", ".fit", ".fts", ".fits.fz", ".fit.fz"),
    "tiff": (".tif", ".tiff"),
    "zarr": (".zarr",),
}
