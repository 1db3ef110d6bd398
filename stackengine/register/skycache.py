"""The per-process caches of sky registrations: parsed WCSs and each frame's nodes.

A tile task of :mod:`.sky` and :mod:`.skydrizzle` needs a frame's WCS parsed and
its mapping on its nodes; both are computed once per process (worker) and kept,
keyed by the WCS cards' text. astropy's WCS objects are not thread safe: every
use goes through :data:`LOCK`.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from .wcs import exact_map, frame_wcs, map_nodes

__all__ = ["LOCK", "cached_nodes", "node_area", "node_pair", "parsed"]

LOCK = threading.Lock()


@functools.lru_cache(maxsize=4096)
def parsed(text: str) -> Any:
    """The celestial WCS of header text, read strictly (:func:`~.wcs.frame_wcs`)."""
    from astropy.io import fits

    return frame_wcs(fits.Header.fromstring(text), "WCS")


@functools.lru_cache(maxsize=1024)
def cached_nodes(out_text: str, frame_text: str, box: tuple, step: int, area: bool) -> tuple:
    """A frame's exact mapping on the nodes of its footprint ``box`` (output pixels):
    ``(fx, fy, ny0, nx0, area)``; with ``area`` also the frame-pixel area per output
    pixel at the nodes (else None)."""
    out_wcs, fwcs = parsed(out_text), parsed(frame_text)
    fx, fy, ny0, nx0 = map_nodes(out_wcs, fwcs, box, step)
    det = node_area(out_wcs, fwcs, ny0, nx0, step, fx.shape) if area else None
    return fx, fy, ny0, nx0, det


def node_pair(out_text: str, frame_text: str, box: tuple, area: bool, step: int) -> tuple:
    """``(fx, fy)`` of :func:`cached_nodes` (for :func:`~.wcs.choose_step`)."""
    return cached_nodes(out_text, frame_text, box, step, area)[:2]


def node_area(out_wcs: Any, fwcs: Any, ny0: float, nx0: float, step: int, shape: tuple) -> Any:
    """|det J| of output -> frame at the nodes, by central differences of half a pixel."""
    gy, gx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    gy, gx = ny0 + gy * max(step, 1), nx0 + gx * max(step, 1)
    xr, yr = exact_map(out_wcs, fwcs, gx + 0.5, gy)
    xl, yl = exact_map(out_wcs, fwcs, gx - 0.5, gy)
    xu, yu = exact_map(out_wcs, fwcs, gx, gy + 0.5)
    xd, yd = exact_map(out_wcs, fwcs, gx, gy - 0.5)
    return np.abs((xr - xl) * (yu - yd) - (xu - xd) * (yr - yl))
