"""Per-frame weight maps and masks given beside the frames (survey products).

Survey pipelines deliver each frame with a weight map (inverse variance, 0 =
bad) and often a mask or flag image (non-zero = bad). :func:`open_companions`
finds them, in one of three forms:

* a list of paths, one per frame, in the frames' order;
* a pattern with ``{stem}``, ``{name}`` or ``{dir}``, filled from each frame's
  path: ``"{dir}/{stem}.weight.fits"`` (relative patterns are taken in the
  frame's folder);
* an HDU name or number of each frame's own file (``"WEIGHT"``, ``1``).

They are opened lazily like the frames (a
:class:`~stackengine.io.sources.FrameStack`) and read inside the tile tasks by
region, exactly where each frame is read (:func:`companion_region`). Each must
have its frame's shape: a mismatch is an error naming both files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import FrameMismatchError, ParameterError

__all__ = ["companion_paths", "companion_region", "open_companions"]


def companion_paths(spec: Any, frame_paths: list[str], what: str) -> tuple[list[str], Any]:
    """The files (and HDU) of ``spec`` for each frame (see the module notes)."""
    if isinstance(spec, list | tuple):
        paths = [os.fspath(p) for p in spec]
        if len(paths) != len(frame_paths):
            raise ParameterError(f"{what}: {len(paths)} files for {len(frame_paths)} frames")
        return paths, 0
    if isinstance(spec, int) and not isinstance(spec, bool):
        return list(frame_paths), spec
    if isinstance(spec, str | os.PathLike):
        text = os.fspath(spec)
        if "{" not in text:  # an HDU of each frame's file
            return list(frame_paths), text
        out = []
        for p in frame_paths:
            path = Path(p)
            name = text.format(stem=path.stem, name=path.name, dir=str(path.parent))
            out.append(name if os.path.isabs(name) else str(path.parent / name))
        return out, 0
    raise ParameterError(
        f"{what}: give a list of files, a pattern such as '{{stem}}.weight.fits', or an HDU"
    )


def open_companions(spec: Any, source: Any, what: str) -> Any:
    """The :class:`~stackengine.io.sources.FrameStack` of ``spec`` for the frames of
    ``source`` (None without ``spec``)."""
    if spec is None:
        return None
    from .frames import open_frames, source_of

    frame_paths = [str(getattr(f, "path", "")) for f in source.frames]
    paths, hdu = companion_paths(spec, frame_paths, what)
    for p in paths:
        if "://" not in p and not os.path.exists(p):
            raise ParameterError(f"{what}: {p} does not exist")
    arr = open_frames(paths, hdu=hdu, pad=True, allow_duplicates=True)
    companions = source_of(arr.data)
    for k, (mine, theirs) in enumerate(zip(companions.frame_shapes, source.frame_shapes,
                                           strict=True)):  # fmt: skip
        if tuple(mine) != tuple(theirs):
            raise FrameMismatchError(
                f"{what}: {paths[k]} is {tuple(mine)}, its frame {frame_paths[k]} is "
                f"{tuple(theirs)}"
            )
    if len(companions.shape) != 3:
        raise FrameMismatchError(f"{what}: {paths[0]} is not a 2-D image")
    return companions


def companion_region(stack: Any, k: int, rows: slice, cols: slice, handles: Any) -> np.ndarray:
    """Frame ``k``'s companion pixels ``rows``, ``cols`` (raw frame pixels) as float32."""
    raw = stack.read_tile(rows, cols, frames=slice(k, k + 1), handles=handles)
    handles.release(k)
    return np.asarray(raw[0], dtype=np.float32)
