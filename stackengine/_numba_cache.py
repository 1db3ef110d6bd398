"""Where numba caches stackengine's kernels, and dropping the caches whose sources changed.

Where the caches live
---------------------
The kernels are compiled with ``cache=True``. Left to itself, numba writes the
machine code next to each module, into the package's ``__pycache__`` folders:
inside ``site-packages`` for an installed copy. That breaks read-only installs
(a system Python, a docker image, a shared cluster environment), and it breaks
pip: uninstalling removes only the files pip installed, so the caches stay
behind as ``site-packages/stackengine/kernels/__pycache__/*.nbi``, and that
bare folder then shadows a later editable install as an empty namespace
package (``No module named 'stackengine.kernels.byteorder'``). So stackengine
never lets numba cache its kernels inside the package. The rule, applied when
this module is first imported (every module with cached kernels imports it
before it defines them):

1. If numba has a cache folder already (``NUMBA_CACHE_DIR``, a
   ``.numba_config.yaml``, or ``numba.config.CACHE_DIR`` set by the program
   before), it is the user's choice and numba's own behaviour applies.
2. Otherwise numba's cache folder (``numba.config.CACHE_DIR``) becomes the
   per-user ``platformdirs.user_cache_dir("stackengine", appauthor=False,
   version=<stackengine version>)/numba``: ``~/.cache/stackengine/0.1.0/numba``
   on Linux (``$XDG_CACHE_HOME`` if set), ``~/Library/Caches/stackengine/0.1.0/numba``
   on macOS, ``%LOCALAPPDATA%\\stackengine\\Cache\\0.1.0\\numba`` on Windows.
   Inside it, numba keeps one sub-folder per source folder (its name and a hash
   of its path), so each installed copy or checkout has caches of its own.
3. If that folder cannot be made or written to (a read-only home), a private
   folder in the temp folder: ``<tmp>/stackengine-<uid>/<version>/numba``, used
   only if it belongs to the user and no one else can write to it (numba loads
   its cache files as code). Failing that, no cache: the kernels compile afresh
   in each process.

The rule sets ``numba.config.CACHE_DIR``, not the environment, so it holds
when numba was imported before stackengine (numba reads ``NUMBA_CACHE_DIR``
into its config when it is imported). numba picks a function's cache folder
when the decorator runs, so only functions defined from then on use it; the
setting is process-wide, so other ``cache=True`` functions defined later in the
same process cache under the same folder too (in sub-folders of their own).
numba re-reads its environment when a ``NUMBA_`` variable has changed, which
would drop the setting; :func:`check_caches`, at the end of each module with
cached kernels, restores it then, and points any of the module's kernels whose
cache folder still lies inside the package at the right folder, or leaves them
without a cache. (Only if no folder at all can be written, not even in the temp
folder nor the package, does numba itself refuse to define a cached function.)

Stale caches
------------
numba reuses a cached function while *that function's own file* keeps its
modification time and size (its contents, in recent versions). The kernels call
helpers from other modules of the package (the sort, the order statistics, the
byte order loops), and LLVM compiles those into the caller's machine code.
Change only a helper's file and the callers' cached code still holds the old
helper, and runs it, without a word (numba issue 1833). A ``git pull`` or
branch switch in an editable install does exactly that: it rewrites the
changed files only.

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
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from ._version import __version__

__all__ = [
    "COMPILING",
    "announce_compiling",
    "FOLDER",
    "PACKAGES",
    "STAMP",
    "check_caches",
    "check_kernel",
    "choose_folder",
    "purge_stale",
    "source_hash",
]

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
PACKAGES = ("kernels", "normalize", "calibrate")
_ROOT = Path(__file__).resolve().parent
_CHECKED: set[Path] = set()
_DIGEST: list[str] = []


def _writable(folder: Path) -> bool:
    """Make ``folder`` if need be and try a file in it, as numba does before it caches."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _private_temp_folder(version: str) -> Path | None:
    """``<tmp>/stackengine-<uid>/<version>/numba`` if the user's own and closed to others."""
    uid = os.getuid() if hasattr(os, "getuid") else None  # Windows: the temp folder is per user
    top = Path(tempfile.gettempdir()) / f"stackengine-{'user' if uid is None else uid}"
    try:
        top.mkdir(mode=0o700, exist_ok=True)
        info = top.lstat()
    except OSError:
        return None
    if uid is not None and (
        not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o022
    ):
        return None  # made by someone else: their files would run as our code
    folder = top / version / "numba"
    return folder if _writable(folder) else None


def choose_folder(version: str = __version__) -> Path | None:
    """The folder stackengine gives numba for its kernels' caches (``NUMBA_CACHE_DIR`` aside).

    Parameters
    ----------
    version : str
        stackengine's version, a level of the folder (caches never cross versions).

    Returns
    -------
    pathlib.Path or None
        The per-user cache folder if it can be made and written to, else a private
        folder in the temp folder, else None (no cache). See the module notes.
    """
    try:
        from platformdirs import user_cache_dir

        folder = Path(user_cache_dir("stackengine", appauthor=False, version=version)) / "numba"
        if _writable(folder):
            return folder
    except Exception:  # no platformdirs, no home: the temp folder then
        pass
    try:
        return _private_temp_folder(version)
    except Exception:  # no temp folder at all (tempfile.gettempdir raises)
        return None


def _configure() -> Path | None:
    """Point numba's cache folder at :func:`choose_folder`'s, unless it is set already."""
    try:
        from numba.core import config

        if config.CACHE_DIR:  # NUMBA_CACHE_DIR, .numba_config.yaml or the program: theirs
            return None
        folder = choose_folder()
        if folder is not None:
            config.CACHE_DIR = str(folder)
        return folder
    except Exception:  # the caches are numba's business: never fail an import here
        return None


#: the folder stackengine gave numba for the kernels' caches when this module was
#: imported (None: numba's cache folder was set already, or no folder could be written)
FOLDER = _configure()


def _kernels(module: ModuleType) -> Iterator[Any]:
    """The cached numba functions defined in ``module`` itself."""
    for value in vars(module).values():
        func = getattr(value, "py_func", None)
        cache = getattr(value, "_cache", None)
        if getattr(func, "__module__", None) == module.__name__ and hasattr(cache, "_cache_path"):
            yield value  # a Dispatcher whose FunctionCache has a folder


def _cache_dir(module: ModuleType) -> Path | None:
    """The folder numba caches ``module``'s kernels in (None: it has no cached kernel)."""
    for kernel in _kernels(module):
        return Path(kernel._cache._cache_path)
    return None


def _inside_package(kernel: Any) -> bool:
    """Whether ``kernel`` caches inside the package (and not in a folder the user chose)."""
    from numba.core import config

    path = Path(kernel._cache._cache_path).resolve()
    chosen = config.CACHE_DIR and path.is_relative_to(Path(config.CACHE_DIR).resolve())
    return path.is_relative_to(_ROOT) and not chosen


def _keep_out(kernel: Any) -> Any:
    """Enforce the rule (see the module notes) on one cached ``kernel`` (a numba
    dispatcher), before it compiles; returns it."""
    from numba.core import config
    from numba.core.caching import NullCache

    if FOLDER is not None and not config.CACHE_DIR:  # numba re-read a changed environment
        config.CACHE_DIR = str(FOLDER)
    if hasattr(getattr(kernel, "_cache", None), "_cache_path") and _inside_package(kernel):
        with contextlib.suppress(Exception):  # numba finds no folder at all: RuntimeError
            kernel.enable_caching()  # a new FunctionCache: picks its folder afresh
        if not hasattr(kernel._cache, "_cache_path") or _inside_package(kernel):
            kernel._cache = NullCache()  # no cache rather than one in the package
    return kernel


def _keep_out_of_package(module: ModuleType) -> None:
    """Enforce the rule (see the module notes) on ``module``'s kernels, before they compile."""
    for kernel in list(_kernels(module)):
        _keep_out(kernel)


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
    """Keep module ``module_name``'s kernel caches out of the package, and make sure
    the cached kernels in their folder were compiled from the sources as they are now
    (see the module notes). Call it at the end of each module with cached kernels."""
    try:
        module = sys.modules[module_name]
        _keep_out_of_package(module)
        _check_folder(_cache_dir(module))
    except Exception:  # the caches are numba's business: never fail an import here
        pass


def _check_folder(folder: Path | None) -> None:
    """Purge ``folder``'s caches if compiled from other sources (once per process)."""
    if folder is None or folder in _CHECKED:
        return
    if not _DIGEST:
        _DIGEST.append(source_hash(p for pkg in PACKAGES for p in (_ROOT / pkg).glob("*.py")))
    purge_stale(folder, _DIGEST[0])
    _CHECKED.add(folder)


def check_kernel(kernel: Any) -> Any:
    """:func:`check_caches` for one cached kernel made at run time (a variant of
    :mod:`stackengine.kernels.variants`), before it compiles; returns it."""
    try:
        _keep_out(kernel)
        path = getattr(kernel._cache, "_cache_path", None)
        _check_folder(Path(path) if path else None)
    except Exception:  # the caches are numba's business: never fail a run here
        pass
    return kernel


#: said once per process (see :func:`announce_compiling`)
_ANNOUNCED: list[bool] = []
_ANNOUNCE_LOCK = threading.Lock()
COMPILING = "stackengine: compiling kernels (first run only: they are cached for later runs)"


def announce_compiling(kernel: Any, stream: Any = None) -> bool:
    """Say once per process, on stderr, that the kernels are being compiled: when
    ``kernel`` (a numba dispatcher) is neither compiled in this process nor in its
    cache folder (a fresh install, or sources changed). Returns whether it said so."""
    if _ANNOUNCED or getattr(kernel, "signatures", None):
        return False
    try:
        index = kernel._cache._cache_file._index_path  # numba's cache index of the kernel
    except AttributeError:  # no cache (e.g. no writable folder): compiled every process
        index = None
    if index is not None and os.path.exists(index):
        return False
    with _ANNOUNCE_LOCK:  # tile tasks in threads reach here at the same time
        if _ANNOUNCED:
            return False
        _ANNOUNCED.append(True)
    print(COMPILING, file=stream if stream is not None else sys.stderr, flush=True)
    return True
