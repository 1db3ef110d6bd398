"""Dropping numba's cached kernels when any of their sources changed.

The kernels are compiled with ``cache=True``: numba saves the machine code of
each function next to its module (``__pycache__``) or in a user-wide folder,
and reuses it while *that function's own file* keeps its modification time and
size. The kernels call helpers from other modules of the package (the sort,
the order statistics, the byte order loops), and LLVM compiles those into the
caller's machine code. Change only a helper's file and the callers' cached code
still holds the old helper, and runs it, without a word (numba issue 1833). A
``git pull`` or branch switch in an editable install does exactly that: it
rewrites the changed files only.

:func:`check_caches` closes the hole. Every module with cached kernels calls it
once its kernels are defined. The first call for a cache folder in a process
hashes the sources of the packages with cached kernels (``kernels`` and
``normalize``; numba's version too) and compares the hash with a stamp in the
folder; where it differs, the folder's cache files are deleted and the stamp
rewritten, so that numba compiles afresh (once) and saves anew. It costs about
a millisecond, and never raises: a folder it cannot read or write is left to
numba.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

__all__ = ["PACKAGES", "STAMP", "check_caches", "purge_stale", "source_hash"]

#: the stamp file in a cache folder: the hash of the sources its caches came from
STAMP = "stackengine-kernels.stamp"
_CACHE_SUFFIXES = (".nbi", ".nbc")


def source_hash(files: Iterable[Path]) -> str:
    """SHA-256 of numba's version and the contents of ``files`` (in sorted order)."""
    import numba

    h = hashlib.sha256(numba.__version__.encode())
    for path in sorted(Path(f) for f in files):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


#: the packages whose modules have cached kernels (their sources make the hash)
PACKAGES = ("kernels", "normalize")
_ROOT = Path(__file__).resolve().parent
_CHECKED: set[Path] = set()
_DIGEST: list[str] = []


def _cache_dir(module: ModuleType) -> Path | None:
    """The folder numba caches ``module``'s kernels in (None: it has no cached kernel)."""
    for value in vars(module).values():
        path = getattr(getattr(value, "_cache", None), "_cache_path", None)  # FunctionCache
        func = getattr(value, "py_func", None)
        if path is not None and getattr(func, "__module__", None) == module.__name__:
            return Path(path)
    return None


def purge_stale(folder: Path, digest: str) -> bool:
    """Delete ``folder``'s numba cache files unless its stamp says ``digest``; then
    write the stamp. Returns whether anything was deleted."""
    stamp = folder / STAMP
    with contextlib.suppress(OSError):
        if stamp.read_text() == digest:
            return False
    try:  # a folder numba has not made yet: empty, and stamped now for what comes
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    deleted = False
    for entry in folder.iterdir():
        if entry.suffix in _CACHE_SUFFIXES:
            with contextlib.suppress(OSError):
                entry.unlink()
                deleted = True
    with contextlib.suppress(OSError):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=STAMP, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(digest)
        os.replace(tmp, stamp)
    return deleted


def check_caches(module_name: str) -> None:
    """Make sure the cached kernels in the folder of module ``module_name``'s caches were
    compiled from the sources as they are now (see the module notes). Call it at the
    end of each module with cached kernels."""
    import sys

    try:
        folder = _cache_dir(sys.modules[module_name])
        if folder is None or folder in _CHECKED:
            return
        if not _DIGEST:
            _DIGEST.append(source_hash(p for pkg in PACKAGES for p in (_ROOT / pkg).glob("*.py")))
        purge_stale(folder, _DIGEST[0])
        _CHECKED.add(folder)
    except Exception:  # the caches are numba's business: never fail an import here
        pass
