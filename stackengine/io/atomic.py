"""Atomic output: checks, a lock, a temporary name beside the target, rename on success.

The rules every writer follows (the Reliability page of the docs says why):

* **Checks first.** The output's folder must exist and be writable, and an
  existing output is replaced only with ``overwrite``: a file, or a directory
  that stackengine wrote itself (a zarr store whose attributes carry
  ``stackengine_version``); any other directory is refused, never deleted.
* **One writer per output.** :class:`OutputLock` holds ``.NAME.lock`` beside
  the output (``fcntl.flock``; the file records the pid and host) from the
  checks to the rename. A second run on the same output fails at once, naming
  the first. The system drops the lock of a process that dies; on a file
  system without ``flock`` the lock file is created exclusively and one left
  by a dead process on this host is taken over.
* **Temporary names say who wrote them.** ``.NAME.tmp-PID-HOST-HEX``. Under
  the lock, temporaries of this output whose writer (on this host) is dead are
  removed, and said so (:func:`clean_stale`).
* **Rename when complete**; on any exception the temporary is removed.

Also :class:`FileTarget`, a picklable ``da.store`` target that writes blocks
into a region of an existing file (used by the FITS writer and by the TIFF
writer's staging file).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..kernels.byteorder import store_big_endian
from .buffers import thread_buffer

__all__ = [
    "FileTarget",
    "OutputLock",
    "atomic_output",
    "check_output",
    "clean_stale",
    "commit",
    "lock_holder",
    "no_space",
    "remove_path",
    "temporary_path",
    "written_by_stackengine",
]

HOST = socket.gethostname()
#: the attribute by which a zarr store is recognized as written by stackengine
OWN_ATTR = "stackengine_version"


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def written_by_stackengine(path: Path) -> bool:
    """Whether ``path`` is an output stackengine wrote: a zarr store whose attributes
    carry its version, a FITS file with its STACKENGINE cards, a TIFF it signed."""
    path = Path(path)
    if path.is_dir():
        try:
            meta = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(meta, dict) and OWN_ATTR in (meta.get("attributes") or {})
    try:
        with open(path, "rb") as f:
            head = f.read(2880 * 8)
    except OSError:
        return False
    if head.startswith(b"SIMPLE  ="):
        return b"HIERARCH STACKENGINE STACKENGINE_VERSION" in head or (
            b"STACKENGINE " in head and b"NCOMBINE" in head
        )
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return b"stackengine " in head or _tiff_software(path).startswith("stackengine ")
    return False


def _tiff_software(path: Path) -> str:
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            tag = tif.pages[0].tags.get("Software")
            return str(tag.value) if tag is not None else ""
    except Exception:  # not a TIFF after all
        return ""


def check_output(path: Path, overwrite: bool) -> None:
    """Raise :class:`OutputError` if ``path`` cannot be written (see the module notes).

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
    if not _exists(path):
        return
    if not overwrite:
        raise OutputError(f"{path}: exists (pass overwrite=True / --overwrite)")
    if path.is_dir() and not path.is_symlink() and not written_by_stackengine(path):
        raise OutputError(
            f"{path}: a directory not written by stackengine; not replaced (remove it yourself "
            "or choose another output)"
        )


def no_space(path: Path, exc: BaseException) -> OutputError | None:
    """The one-line error for a write of ``path`` that failed for want of space, else None."""
    if not isinstance(exc, OSError):
        return None
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    # numpy's tofile (through tifffile) reports a short write without an errno
    full = full or (exc.errno is None and re.search(r"requested and \d+ written", str(exc)))
    if not full:
        return None
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = 0
    what = "file size limit exceeded" if exc.errno == errno.EFBIG else "no space left on device"
    return OutputError(f"{path}: {what} ({free} bytes free)")


def remove_path(path: Path) -> None:
    """Delete a file, symlink or folder tree if it exists; ignore errors."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


def temporary_path(path: Path, kind: str = "tmp") -> Path:
    """A new hidden name beside ``path`` that records this process: ``.NAME.KIND-PID-HOST-HEX``."""
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{HOST}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(path: Path, report: Callable[[str], None]) -> None:
    """Remove the temporaries of ``path`` whose writer on this host is dead (see the
    module notes); call it while holding the output's lock. An output moved aside
    by a writer killed before it put the new one in place is put back."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(tmp|old)-(\d+)-(.+)-[0-9a-f]{8}(\..*)?$")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return
    for name in sorted(names):
        match = pattern.match(name)
        if match is None or match.group(3) != HOST or _alive(int(match.group(2))):
            continue
        stale = path.parent / name
        if match.group(1) == "old" and not _exists(path) and match.group(4) is None:
            os.replace(stale, path)
            report(f"put back {path} (moved aside by pid {match.group(2)}, no longer running)")
            continue
        remove_path(stale)
        report(
            f"removed stale temporary {stale} (left by pid {match.group(2)} on {HOST}, "
            "no longer running)"
        )


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def _holder_text(lock: Path) -> str:
    """The lock holder's "pid N on HOST"; the holder writes it just after taking the
    lock, so an empty file is read again for up to a second."""
    import time

    for _ in range(100):
        try:
            pid, _, host = lock.read_text().strip().partition(" ")
        except OSError:
            return "unknown"
        if pid:
            return f"pid {pid} on {host}"
        time.sleep(0.01)
    return "unknown"


def _busy(path: Path, lock: Path) -> OutputError:
    return OutputError(f"{path} is being written by another run ({_holder_text(lock)})")


def lock_holder(path: Path) -> str | None:
    """ "pid N on HOST" of a run that holds ``path``'s lock now, else None (looks only)."""
    lock = _lock_path(path)
    if not lock.exists():
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder_text(lock)
    except (OSError, ImportError):
        return None
    finally:
        os.close(fd)
    return None


class OutputLock:
    """The exclusive lock of one output (see the module notes); a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = _lock_path(path)
        self.fd: int | None = None

    def __enter__(self) -> OutputLock:
        import fcntl

        for _ in range(100):
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise _busy(self.path, self.lock) from None
            except OSError:  # no flock here: an exclusively created file instead
                os.close(fd)
                self._exclusive()
                return self
            try:  # the file may have been removed by its last holder meanwhile
                same = os.fstat(fd).st_ino == os.stat(self.lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()} {HOST}\n".encode())
                self.fd = fd
                return self
            os.close(fd)
        raise _busy(self.path, self.lock)

    def _exclusive(self) -> None:
        with contextlib.suppress(OSError):
            pid, _, host = self.lock.read_text().strip().partition(" ")
            if host == HOST and pid.isdigit() and not _alive(int(pid)):
                self.lock.unlink()
        try:
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise _busy(self.path, self.lock) from None
        os.write(fd, f"{os.getpid()} {HOST}\n".encode())
        self.fd = fd

    def __exit__(self, *exc: Any) -> None:
        with contextlib.suppress(OSError):
            self.lock.unlink()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def commit(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename ``tmp`` to ``path``; an existing ``path`` is moved aside first."""
    if not _exists(path):
        os.replace(tmp, path)
        return
    if not overwrite:
        raise OutputError(f"{path}: exists (pass overwrite=True / --overwrite)")
    if tmp.is_file() and not path.is_dir():
        os.replace(tmp, path)  # atomic for a file over a file
        return
    aside = temporary_path(path, "old")
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
    tmp = temporary_path(path)
    try:
        yield tmp
        commit(tmp, path, overwrite)
    except BaseException:
        remove_path(tmp)
        raise


class FileTarget:
    """A ``da.store`` target: a C-ordered array at ``offset`` bytes of ``path``.

    Each assignment converts the block to ``dtype`` (e.g. big-endian for
    FITS; ``bzero`` is subtracted first, FITS's convention for unsigned
    values) and writes it with positional writes (``os.pwrite``), one per run of
    the block that is contiguous in the file: one for a full-width strip, one
    per row otherwise. Nothing stays open or mapped between assignments, so
    memory stays bounded, the object pickles as a few plain values and it
    works on dask.distributed workers that share the file system. (Writing
    through ``np.memmap`` instead costs a page fault per 4 KiB page of the
    file: 2.5x slower here.) Reading (``target[key]``) maps the file.
    """

    def __init__(
        self, path: Path, offset: int, shape: tuple[int, ...], dtype: Any, bzero: int = 0
    ) -> None:
        self.path = str(path)
        self.offset = int(offset)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)
        self.bzero = int(bzero)

    def __dask_tokenize__(self) -> tuple:
        return ("FileTarget", self.path, self.offset, self.shape, self.dtype.str, self.bzero)

    def _open(self, mode: str) -> np.memmap:
        return np.memmap(self.path, self.dtype, mode, self.offset, self.shape, order="C")

    def _bounds(self, key: Any) -> list[tuple[int, int]]:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        bounds = []
        for k, n in zip(key, self.shape, strict=True):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step != 1:
                    raise ValueError(f"FileTarget: strided assignment {k}")
                bounds.append((start, max(start, stop)))
            else:
                i = int(k) + (n if int(k) < 0 else 0)
                bounds.append((i, i + 1))
        return bounds

    def __setitem__(self, key: Any, value: Any) -> None:
        bounds = self._bounds(key)
        region = tuple(b - a for a, b in bounds)
        value = np.asarray(value)
        if self.bzero:  # FITS unsigned (or signed 8-bit) values: stored = value - BZERO
            value = (value.astype(np.int64) - self.bzero).astype(self.dtype)
        if value.dtype == self.dtype and value.flags.c_contiguous:
            data = value.reshape(region)
        else:  # converted in this thread's buffer: no fresh memory per block
            data = thread_buffer("convert", region, self.dtype)
            source = value.reshape(region)
            if not store_big_endian(source, data):  # the maps' types: a compiled loop
                np.copyto(data, source, casting="unsafe")
        # axes after `axis` are whole: each data[outer] is one run in the file
        axis = self.ndim - 1
        while axis > 0 and region[axis] == self.shape[axis]:
            axis -= 1
        strides = np.cumprod((1, *self.shape[:0:-1]))[::-1] * self.dtype.itemsize
        with open(self.path, "r+b", buffering=0) as f:
            for outer in np.ndindex(*region[:axis]):
                first = [a + o for (a, _), o in zip(bounds[:axis], outer, strict=True)]
                first.append(bounds[axis][0])
                pos = self.offset + int(np.dot(first, strides[: axis + 1]))
                view = memoryview(data[outer]).cast("B")
                done = 0
                while done < len(view):
                    done += os.pwrite(f.fileno(), view[done:], pos + done)

    def __getitem__(self, key: Any) -> np.ndarray:
        mm = self._open("r")
        try:
            return np.array(mm[key])
        finally:
            del mm
