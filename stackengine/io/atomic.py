"""Atomic output: checks, a temporary name beside the target, rename on success.

Also :class:`MemmapTarget`, a picklable ``da.store`` target that writes blocks
into a region of an existing file through ``np.memmap`` (used by the FITS
writer and by the TIFF writer's staging file).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError

__all__ = ["check_output", "atomic_output", "remove_path", "MemmapTarget"]


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def check_output(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputError` if ``path`` cannot be written.

    Parameters
    ----------
    path : Path
        The final output path.
    overwrite : bool
        Whether an existing ``path`` may be replaced.
    """
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"{parent}: output folder does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: output folder is not writable")
    if _exists(path) and not overwrite:
        raise OutputError(f"{path}: exists (pass overwrite=True / --overwrite)")


def remove_path(path: Path) -> None:
    """Delete a file, symlink or folder tree if it exists; ignore errors."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def _commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside first."""
    if not _exists(path):
        os.replace(tmp, path)
        return
    if not overwrite:
        raise OutputError(f"{path}: exists (pass overwrite=True / --overwrite)")
    if tmp.is_file() and not path.is_dir():
        os.replace(tmp, path)  # atomic for a file over a file
        return
    aside = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
    os.replace(path, aside)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(aside, path)
        raise
    remove_path(aside)


@contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception (including ``KeyboardInterrupt``) the temporary output is
    deleted and the exception re-raised, so nothing is left behind.
    """
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        yield tmp
        _commit(tmp, path, overwrite)
    except BaseException:
        remove_path(tmp)
        raise


class MemmapTarget:
    """A ``da.store`` target: a C-ordered array at ``offset`` bytes of ``path``.

    Each assignment maps the file with ``np.memmap``, writes and unmaps it (the
    pages stay in the OS cache, written back by the kernel), so memory stays
    bounded and the object pickles as a few plain values and works on
    dask.distributed workers that share the file system. Assignment converts
    the block to ``dtype`` (e.g. big-endian for FITS).
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = str(path)
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def _open(self, mode: str) -> np.memmap:
        return np.memmap(self.path, self.dtype, mode, self.offset, self.shape, order="C")

    def __setitem__(self, key: Any, value: Any) -> None:
        mm = self._open("r+")
        try:
            mm[key] = value
        finally:
            del mm

    def __getitem__(self, key: Any) -> np.ndarray:
        mm = self._open("r")
        try:
            return np.array(mm[key])
        finally:
            del mm
