"""Frames by URL: small :mod:`fsspec` helpers shared by the readers.

A *URL* is a string that starts with a protocol, ``"s3://bucket/x.fits"``,
``"memory://frames/f_*.fits"``, ``"file:///data/f.tif"``, or an fsspec chain
such as ``"simplecache::s3://bucket/x.fits"``. Anything else is a local path
and takes the plain :mod:`os` / :mod:`glob` route exactly as before.

Nothing here keeps a file open: the readers store the URL and the
``storage_options`` (a plain, picklable dict) in each frame source and open the
file again inside every tile task, so the task graph pickles and runs on
distributed workers. The filesystem object itself is cached by fsspec per
process (one per protocol and options), so reopening costs no new connection.
"""

from __future__ import annotations

import datetime as _dt
import glob
import os
import re
from collections.abc import Iterable
from typing import Any, BinaryIO

from ..errors import FrameError, ParameterError
from . import READER_SUFFIXES

__all__ = ["is_url", "filesystem", "expand", "frame_kind", "open_binary", "file_size"]
__all__ += ["file_identity", "local_path"]

#: protocol (two or more characters, so a Windows drive letter is not one) + :// or ::
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)(://|::)")

#: bytes of the file start kept by header reads (FITS headers, TIFF tags); later reads
#: (strips, tiles, extension headers) fetch exactly the bytes asked for
HEADER_BLOCK = 256 * 1024

#: files whose presence makes a folder a zarr store
ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup")

#: info keys holding a modification time, then keys holding a content checksum / ETag
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "modified", "updated")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "content_md5", "checksum", "md5")


def is_url(path: Any) -> bool:
    """True if ``path`` is a string starting with a protocol (``"s3://"``, ``"memory://"``,
    ``"file://"``, or an fsspec chain such as ``"simplecache::s3://..."`` whose first
    protocol fsspec knows), False for local paths."""
    if not isinstance(path, str):
        return False
    match = _URL.match(path)
    if match is None:
        return False
    if match.group(2) == "::":  # "name::rest" is a chain only if fsspec knows the name
        import fsspec

        return match.group(1) in fsspec.available_protocols()
    return True


def missing(shown: str) -> FrameError:
    """The error for a local path ``shown`` that cannot be opened as it is: a symbolic
    link loop, a broken symbolic link, or no such file."""
    import errno

    try:
        os.stat(shown)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return FrameError(f"{shown}: symbolic link loop")
        if os.path.islink(shown):
            return FrameError(f"{shown}: broken symbolic link (to {os.readlink(shown)})")
    return FrameError(f"{shown}: no such file")


def local_path(shown: str) -> str:
    """The absolute path of the local file ``shown`` (as the user wrote it).

    Raises
    ------
    FrameError
        Nothing exists there (a symbolic link loop and a broken link are named so).
    """
    abspath = os.path.abspath(shown)
    if not os.path.exists(abspath):
        raise missing(shown)
    return abspath


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _protocol(url: str) -> str:
    return re.split(r"::|://", url, maxsplit=1)[0]


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem and the filesystem's own path for ``url``.

    Parameters
    ----------
    url : str
        An fsspec URL.
    storage_options : dict, optional
        Passed to :func:`fsspec.core.url_to_fs` (credentials, endpoint, ...).

    Returns
    -------
    (fsspec.AbstractFileSystem, str)

    Raises
    ------
    FrameError
        The protocol is unknown, or its implementation is not installed.
    ParameterError
        The filesystem rejects ``storage_options``.
    """
    import fsspec
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        raise FrameError(
            f"{url}: protocol {_protocol(url)!r} needs a package that is not installed "
            f"({_first_line(exc)})"
        ) from exc
    except TypeError as exc:
        raise ParameterError(f"{url}: storage_options rejected ({_first_line(exc)})") from exc
    except Exception as exc:
        known = set(fsspec.available_protocols())
        chain = [_protocol(bit) for bit in url.split("::") if _URL.match(bit + "::")]
        unknown = [p for p in chain if p not in known]
        if unknown:
            raise FrameError(f"{url}: unknown protocol {unknown[0]!r}") from exc
        raise FrameError(f"{url}: cannot open ({_first_line(exc)})") from exc


def _suffix_kind(path: str) -> str | None:
    name = path.lower()
    if is_url(path) and _protocol(name) in ("http", "https"):
        name = name.split("?", 1)[0].split("#", 1)[0]
    name = name.rstrip("/")
    return next((k for k, sfx in READER_SUFFIXES.items() if name.endswith(sfx)), None)


def frame_kind(path: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """The reader for ``path``: "fits", "tiff" or "zarr" by suffix, "zarr" for a folder
    holding zarr metadata, else None. Only a path without a known suffix is looked at."""
    kind = _suffix_kind(path)
    if kind is not None:
        return kind
    if not is_url(path):
        if os.path.isdir(path) and any(
            os.path.exists(os.path.join(path, m)) for m in ZARR_METADATA
        ):
            return "zarr"
        return None
    if "::" in path:
        return None
    fs, fspath = filesystem(path, storage_options)
    try:
        if fs.isdir(fspath) and any(fs.exists(f"{fspath}/{m}") for m in ZARR_METADATA):
            return "zarr"
    except Exception:
        return None
    return None


def _magic_dir(text: str) -> str:
    """``text`` up to and including the last "/" before its first glob character."""
    i = min((text.index(c) for c in "*?[" if c in text), default=len(text))
    return text[: text.rfind("/", 0, i) + 1]


def _expand_url(url: str, storage_options: dict[str, Any] | None) -> list[str]:
    fs, fspath = filesystem(url, storage_options)
    http = _protocol(url).lower() in ("http", "https")
    if glob.has_magic(fspath) and not http:
        if "::" in url:
            raise FrameError(f"{url}: glob patterns are not supported in chained URLs")
        try:
            matches = fs.glob(fspath)
        except FileNotFoundError:
            matches = []
        except Exception as exc:
            raise FrameError(f"{url}: cannot list ({_first_line(exc)})") from exc
        # give matches back in the form the pattern was written in (memory://a/x, not
        # memory:///a/x), so the "path" coordinate and `reference=` match what users type
        url_dir, fs_dir = _magic_dir(url), _magic_dir(fspath)
        found = sorted(
            url_dir + m[len(fs_dir) :] if m.startswith(fs_dir) else fs.unstrip_protocol(m)
            for m in matches
        )
        if not found:
            raise FrameError(f"{url}: no file matches this pattern")
        return found
    if "::" in url or http or _suffix_kind(url) is not None:
        return [url]
    try:
        is_folder = fs.isdir(fspath)
    except Exception:
        is_folder = False
    if not is_folder or frame_kind(url, storage_options) is not None:
        return [url]
    base = url.rstrip("/") + "/"
    root = fspath.rstrip("/") + "/"
    entries = sorted(
        base + e.rstrip("/")[len(root) :] if e.startswith(root) else fs.unstrip_protocol(e)
        for e in fs.ls(fspath, detail=False)
    )
    found = [e for e in entries if frame_kind(e, storage_options)]
    if not found:
        raise FrameError(f"{url}: folder holds no FITS, TIFF or zarr frames")
    return found


def _expand_local(text: str) -> list[str]:
    if glob.has_magic(text):
        matches = sorted(glob.glob(text))
        if not matches:
            raise FrameError(f"{text}: no file matches this pattern")
        return matches
    if os.path.isdir(text) and frame_kind(text) is None:
        found = sorted(
            os.path.join(text, f) for f in os.listdir(text) if frame_kind(os.path.join(text, f))
        )
        if not found:
            raise FrameError(f"{text}: folder holds no FITS, TIFF or zarr frames")
        return found
    return [text]


def expand(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    storage_options: dict[str, Any] | None = None,
) -> list[str]:
    """Turn globs, folders, files and URLs (or a list of them) into a list of frames.

    Parameters
    ----------
    paths : str, path-like, or an iterable of them
        Local paths and globs (``~`` expanded), or fsspec URLs, which may hold
        glob patterns (``"s3://bucket/night1/*.fits"``; matched with the
        filesystem's ``glob``) or name a folder.
    storage_options : dict, optional
        fsspec options for the URLs.

    Returns
    -------
    list of str
        Each glob's matches sorted by name, in the order of ``paths``; folders
        give their FITS, TIFF and zarr entries sorted by name.

    Raises
    ------
    FrameError
        Nothing given, a pattern matches nothing, a folder holds no frames, or a
        URL's protocol is unknown.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if not items:
        raise FrameError("no input frames given")
    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        if is_url(text):
            out.extend(_expand_url(text, storage_options))
        else:
            out.extend(_expand_local(os.path.expanduser(text)))
    return out


def open_binary(
    path: str, storage_options: dict[str, Any] | None = None, *, exact: bool = False
) -> BinaryIO:
    """Open a local file or a URL for binary reading; the caller closes it.

    Parameters
    ----------
    path : str
        Local path or fsspec URL.
    storage_options : dict, optional
        fsspec options for a URL.
    exact : bool
        True for raw byte-range reads: no read-ahead, each ``read`` after a
        ``seek`` fetches only the bytes asked for (an unbuffered local file).
        False (headers, tags): the first 256 KiB are cached, later reads are
        exact.

    Raises
    ------
    FrameError
        The file is missing, a directory, or cannot be opened.
    """
    shown = os.fspath(path)
    try:
        if not is_url(shown):
            return open(shown, "rb", buffering=0 if exact else -1)  # noqa: SIM115
        fs, fspath = filesystem(shown, storage_options)
        cache = {"cache_type": "none"} if exact else {"cache_type": "first"}
        try:
            return fs.open(fspath, "rb", block_size=HEADER_BLOCK, **cache)
        except TypeError:  # a filesystem without block caches
            return fs.open(fspath, "rb")
    except FrameError:
        raise
    except FileNotFoundError as exc:
        raise missing(shown) from exc
    except IsADirectoryError as exc:
        raise FrameError(f"{shown}: is a directory, not a file") from exc
    except OSError as exc:
        raise FrameError(f"{shown}: cannot open ({exc.strerror or _first_line(exc)})") from exc
    except Exception as exc:
        raise FrameError(f"{shown}: cannot open ({_first_line(exc)})") from exc


def _info(path: str, storage_options: dict[str, Any] | None) -> tuple[Any, str, dict]:
    fs, fspath = filesystem(path, storage_options)
    try:
        return fs, fspath, fs.info(fspath)
    except FileNotFoundError as exc:
        raise FrameError(f"{path}: no such file") from exc
    except Exception as exc:
        raise FrameError(f"{path}: cannot stat ({_first_line(exc)})") from exc


def file_size(path: str, storage_options: dict[str, Any] | None = None) -> int:
    """Size in bytes of a local file or URL (FrameError if missing or unknown)."""
    if not is_url(path):
        try:
            return os.path.getsize(path)
        except OSError as exc:
            raise FrameError(f"{path}: cannot stat ({exc.strerror or exc})") from exc
    _, _, info = _info(path, storage_options)
    size = info.get("size")
    if size is None:
        raise FrameError(f"{path}: the filesystem does not report the file size")
    return int(size)


def _ns(value: Any) -> int | str:
    """A modification time as integer nanoseconds (strings that are no ISO date kept)."""
    if isinstance(value, str):
        try:
            value = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        delta = value - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        return (delta // _dt.timedelta(microseconds=1)) * 1000
    return round(float(value) * 1e9)


def _version(fs: Any, fspath: str, info: dict) -> int | str:
    """Modification time in ns, else an ETag / checksum, else a hash of the file info."""
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        return os.stat(fspath).st_mtime_ns
    for key in _MTIME_KEYS:
        if info.get(key) is not None:
            return _ns(info[key])
    try:
        return _ns(fs.modified(fspath))
    except Exception:  # NotImplementedError on many filesystems
        pass
    for key in _ETAG_KEYS:
        if info.get(key):
            return str(info[key])
    return str(fs.ukey(fspath))


def file_identity(path: str, storage_options: dict[str, Any] | None = None) -> tuple:
    """A cache identity of a frame file: changes when the file is replaced or rewritten.

    Parameters
    ----------
    path : str
        Local path or fsspec URL (a file, or a zarr store folder).
    storage_options : dict, optional
        fsspec options for a URL.

    Returns
    -------
    tuple
        ``(absolute path or URL, version, size)``: the version is the
        modification time in integer nanoseconds (``os.stat``'s
        ``st_mtime_ns`` for local files), or, where the filesystem reports no
        time, an ETag or checksum string. For a zarr folder given by URL the
        version is that of its metadata file (``zarr.json``, ``.zarray`` or
        ``.zgroup``).

    Raises
    ------
    FrameError
        The file is missing or cannot be examined (FrameError is an OSError).
    """
    if not is_url(path):
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise FrameError(f"{path}: no such file") from exc
        except OSError as exc:
            raise FrameError(f"{path}: cannot stat ({exc.strerror or exc})") from exc
        return (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    fs, fspath, info = _info(path, storage_options)
    if info.get("type") == "directory":
        for name in ZARR_METADATA:
            meta = f"{fspath.rstrip('/')}/{name}"
            try:
                meta_info = fs.info(meta)
            except Exception:
                continue
            return (path, _version(fs, meta, meta_info), meta_info.get("size"))
    return (path, _version(fs, fspath, info), info.get("size"))
