"""Background matching of overlapping frames for WCS mosaics: one offset per frame.

Frames of a mosaic taken at different times see different sky levels (moon,
twilight, airglow, a different exposure's bias); stacked as they are, the
seams between them show. As reproject's ``reproject_and_coadd(...,
match_background=True)`` and Siril's overlap normalization do, every frame gets
an additive offset found from the background differences in its overlaps with
other frames, fitted globally by least squares so that all overlaps agree at once.

Why here: reproject measures the differences on whole reprojected arrays held
in memory (every frame resampled onto the output grid, pixel by pixel) and
solves by stochastic gradient descent. Here each frame is read once, in pass 1,
one dask task per frame, and reduced to background medians on a coarse grid of
bins away from stars; the comparison happens on a coarse grid of the output,
from those few numbers per frame, so it costs nothing like a reprojection and
works out of core for thousands of frames (cost O(frames + overlapping pairs)).

Definition
----------
1. Background of frame ``k``: the median of its pixels in square bins, stars
   masked (:func:`.framephot.measure_pass1`, the pass-1 measurement the
   photometric mode uses, cached per file: :func:`.bins.star_mask`,
   :func:`.bins.background_bins`, about 32 bins along the longer side), per channel.
2. Samples: the output grid is cut into cells of ``cell`` x ``cell`` output
   pixels; cell ``(i, j)`` has its centre at output pixel
   ``(y, x) = (cell i + (cell - 1) / 2, cell j + (cell - 1) / 2)``. For every
   cell centre inside frame ``k``'s footprint box (``reg.boxes``), its position
   in the frame is computed through the WCS exactly
   (:func:`~stackengine.register.wcs.exact_map`, minus ``reg.origin``), and
   ``s_k(i, j)`` is the bilinear interpolation of the frame's bin medians there
   (bin centres at the centres of the bins' pixels; between the frame's edge and
   its outermost bin centres the edge bins' values are extended). NaN when the
   position is outside the frame's pixels (``[-0.5, size - 0.5]``) or a bin
   with positive weight is NaN (too few unmasked pixels).
3. Pairs: frames whose footprint boxes intersect (found by a sweep over the
   boxes sorted by their first column: O(n log n + candidate pairs), never a
   loop over all n^2 pairs or over pixels). For a pair ``(a, b)``, the cells
   where both have finite samples in every channel: their number ``n_ab`` and,
   per channel, ``d_ab = median(s_a - s_b)``. Pairs with fewer than
   ``min_cells`` such cells are not used. With more than ``max_pairs`` candidate
   pairs at one frame (deep stacks of one field, where every frame overlaps
   every other), each frame keeps its ``max_pairs`` pairs of largest box
   intersection, plus the pairs of a maximum spanning forest of the candidate
   graph weighted by box intersection, so the groups stay connected as they
   were (as far as box intersections predict real overlaps).
4. Offsets: per channel, ``o`` minimizing
   ``sum over used pairs of n_ab (o_a - o_b - d_ab)**2``, with one frame per
   connected group of the pair graph held at ``o = 0`` (scipy's sparse
   ``lsqr``, columns scaled to unit norm; the held frames are not unknowns).
   ``reference`` (index or path) is held at 0 in its group; ``reference=None``
   takes the frame with the most used pairs (ties: the most common cells, then
   the lowest index). Every other group is held at 0 at its own most connected
   frame (same rule): groups that share no overlap have no common level, the
   table says which group each frame is in and which frame is its zero. A
   frame that overlaps nothing is a group of its own and keeps offset 0.
5. The result is a :class:`~.model.Normalization` with ``scale = 1`` and
   ``offset = -o``: the tile kernels' ``x + offset`` brings each frame to its
   group's reference level (as reproject subtracts its "corrections").

``o_k`` estimates "frame k minus reference" in the background; reproject's
corrections are the same quantity up to a common constant (they sum to zero).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import ParameterError
from ..frames import frame_index
from ..register.sky import SkyRegistration
from ..register.skycache import LOCK, parsed
from ..register.wcs import exact_map
from .bins import BinSamples
from .framephot import measure_pass1
from .model import Normalization

__all__ = ["plan_background_matching"]

#: fewest common cells for a pair to be used (default of ``min_cells``)
MIN_CELLS = 4
#: most pairs kept per frame before thinning (default of ``max_pairs``)
MAX_PAIRS = 32


@dataclass(frozen=True)
class _Samples:
    """A frame's background samples on the output cells ``i0:i0+ni, j0:j0+nj``."""

    i0: int
    j0: int
    value: np.ndarray  # (ni, nj, channels), NaN where the frame has no background


def plan_background_matching(
    frames: xr.DataArray,
    reg: SkyRegistration,
    reference: int | str | None = None,
    cell: int = 32,
    *,
    min_cells: int = MIN_CELLS,
    max_pairs: int | None = MAX_PAIRS,
) -> Normalization:
    """Additive offsets that match the frames' backgrounds in their overlaps.

    Parameters
    ----------
    frames : xarray.DataArray
        ("frame", "y", "x"[, "channel"]): the frames pass 1 measures, in the
        pixel coordinates ``reg`` maps to (calibrated frames when calibrating;
        ``se.open_frames(paths, pad=True)`` for frames of different shapes).
    reg : SkyRegistration
        The job's WCS registration (:func:`~stackengine.register.sky.plan_sky_registration`).
    reference : int, str or None
        The frame held at offset 0 (index or path); None: the most connected frame.
    cell : int
        Side in output pixels of the cells where the backgrounds are compared.
        Finer than the frames' bins (about 1/32 of a frame's longer side)
        brings no information, only more samples.
    min_cells : int
        Fewest common cells for a pair of frames to be used.
    max_pairs : int or None
        Pairs kept per frame when frames have more candidates (module notes);
        None keeps every overlapping pair.

    Returns
    -------
    Normalization
        ``mode="background"``, ``scale`` ones and ``offset = -o`` (frames,
        channels); ``table``: ``background_offset`` o (frames, channels),
        ``overlaps`` (pairs used per frame), ``overlap_cells`` (their common
        cells, summed), ``overlap_residual`` (per frame and channel, the
        ``n_ab``-weighted rms of ``o_a - o_b - d_ab`` over its pairs; NaN
        without pairs), ``group`` (connected group; 0 is the reference's),
        ``group_reference`` (the frame held at 0 in the frame's group) and
        pass 1's ``location``, ``spread``, ``noise``. ``details["pairs"]``: the
        used pairs' frames ``a``, ``b``, ``difference`` d_ab (pairs, channels)
        and ``cells`` n_ab.

    Notes
    -----
    Reads every frame once (pass 1, one dask task per frame, computed together
    on dask's current scheduler), unless pass 1 already measured it (cached per
    file, shared with the photometric mode). The rest works on a few numbers
    per frame and cell. See the module notes for the exact definition.
    """
    if not isinstance(frames, xr.DataArray):
        dims = ("frame", "y", "x", "channel")[: np.ndim(frames)]
        frames = xr.DataArray(frames, dims=dims)
    n = frames.sizes["frame"]
    if len(reg.frame_headers) != n:
        raise ParameterError(
            f"background matching: {n} frames but the registration has {len(reg.frame_headers)}"
        )
    for name, value, low in (("cell", cell, 1), ("min_cells", min_cells, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ParameterError(f"{name}={value!r}: must be an integer >= {low}")
    if max_pairs is not None and (isinstance(max_pairs, bool) or int(max_pairs) < 1):
        raise ParameterError(f"max_pairs={max_pairs!r}: must be an integer >= 1 or None")
    ref = None
    if reference is not None:
        paths = [str(p) for p in frames.coords["path"].values] if "path" in frames.coords else []
        ref = frame_index(reference, paths or [f"frame {k}" for k in range(n)])

    stats, phot = measure_pass1(frames)
    channels = phot[0].bins.value.shape[-1] if n else 1
    samples = [_frame_samples(reg, k, p.bins, int(cell)) for k, p in enumerate(phot)]

    a, b, area = _candidate_pairs(reg.boxes)
    a, b = _thin(a, b, area, n, max_pairs)
    a, b, diff, cells = _pair_differences(samples, a, b, int(min_cells), channels)

    n_pairs = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    n_cells = np.bincount(a, cells, minlength=n) + np.bincount(b, cells, minlength=n)
    # most pairs, then most cells, then lowest index: the last in this order is the best
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((-np.arange(n), n_cells, n_pairs))] = np.arange(n)
    ref = int(np.argmax(rank)) if ref is None else ref
    group, zeros = _groups(n, a, b, rank, ref)
    o = _solve(n, a, b, diff, cells.astype(np.float64), zeros)
    table = {
        "background_offset": o,
        "overlaps": n_pairs.astype(np.int64),
        "overlap_cells": n_cells.astype(np.int64),
        "overlap_residual": _residuals(n, a, b, diff, cells, o),
        "group": group.astype(np.int64),
        "group_reference": zeros[group].astype(np.int64),
        "location": _per_channel(stats["location"]),
        "spread": _per_channel(stats["scale"]),
        "noise": _per_channel(stats["noise"]),
    }
    details = {"pairs": {"a": a, "b": b, "difference": diff, "cells": cells}}
    return Normalization(
        mode="background",
        reference=int(ref),
        scale=np.ones((n, channels)),
        offset=-o,
        table=table,
        details=details,
    )


def _per_channel(values: xr.DataArray) -> np.ndarray:
    data = np.asarray(values.values, dtype=np.float64)
    return data if data.ndim == 2 else data[:, None]


def _axis(grid: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper node index and weight of the upper one, for positions ``v`` on
    the increasing nodes ``grid`` (clamped to the first and last node)."""
    v = np.clip(v, grid[0], grid[-1])
    if grid.size == 1:
        i = np.zeros(v.shape, dtype=np.intp)
        return i, i, np.zeros(v.shape)
    i = np.clip(np.searchsorted(grid, v, side="right") - 1, 0, grid.size - 2)
    return i, i + 1, (v - grid[i]) / (grid[i + 1] - grid[i])


def _bilinear(bins: BinSamples, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """The bins' values (gy, gx, c) at frame positions; NaN where a bin of positive
    weight is NaN."""
    value = bins.value if bins.value.ndim == 3 else bins.value[..., None]
    iy0, iy1, ty = _axis(np.asarray(bins.yc, dtype=np.float64), fy)
    ix0, ix1, tx = _axis(np.asarray(bins.xc, dtype=np.float64), fx)
    out = np.zeros(fy.shape + value.shape[2:])
    for iy, wy in ((iy0, 1.0 - ty), (iy1, ty)):
        for ix, wx in ((ix0, 1.0 - tx), (ix1, tx)):
            w = (wy * wx)[..., None]
            out += np.where(w > 0, w * value[iy, ix], 0.0)
    return out


def _frame_samples(reg: SkyRegistration, k: int, bins: BinSamples, cell: int) -> _Samples | None:
    """Frame ``k``'s background at the output cells' centres within its footprint."""
    y0, y1, x0, x1 = (int(v) for v in reg.boxes[k])
    half = 0.5 * (cell - 1)
    i0, i1 = max(math.ceil((y0 - half) / cell), 0), math.floor((y1 - 1 - half) / cell) + 1
    j0, j1 = max(math.ceil((x0 - half) / cell), 0), math.floor((x1 - 1 - half) / cell) + 1
    if y1 <= y0 or x1 <= x0 or i1 <= i0 or j1 <= j0:
        return None
    yy, xx = np.meshgrid(np.arange(i0, i1) * cell + half, np.arange(j0, j1) * cell + half,
                         indexing="ij")  # fmt: skip
    with LOCK:  # astropy's WCS objects are not thread safe
        fx, fy = exact_map(parsed(reg.out_header), parsed(reg.frame_headers[k]), xx, yy)
    fy, fx = fy - reg.origin[0], fx - reg.origin[1]
    h, w = reg.frame_shapes[k]
    inside = (fx >= -0.5) & (fx <= w - 0.5) & (fy >= -0.5) & (fy <= h - 0.5)
    value = _bilinear(bins, fy, fx)
    value[~inside] = np.nan
    return _Samples(i0, j0, value)


def _candidate_pairs(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames ``(a, b)``, ``a < b``, whose boxes intersect, and the intersection areas.

    A sweep over the boxes sorted by first column: each frame meets only the
    frames that start (in x) before it ends, so the work grows with the pairs.
    """
    box = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    valid = np.flatnonzero((box[:, 1] > box[:, 0]) & (box[:, 3] > box[:, 2]))
    order = valid[np.argsort(box[valid, 2], kind="stable")]
    starts = box[order, 2]
    out_a, out_b, out_area = [], [], []
    for pos, i in enumerate(order):
        stop = int(np.searchsorted(starts, box[i, 3], side="left"))
        js = order[pos + 1 : stop]  # x0_i <= x0_j < x1_i: they overlap in x
        if not js.size:
            continue
        h = np.minimum(box[js, 1], box[i, 1]) - np.maximum(box[js, 0], box[i, 0])
        w = np.minimum(box[js, 3], box[i, 3]) - box[js, 2]
        keep = h > 0
        out_a.append(np.full(int(keep.sum()), i))
        out_b.append(js[keep])
        out_area.append((h * w)[keep].astype(np.float64))
    if not out_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    a, b = np.concatenate(out_a), np.concatenate(out_b)
    return np.minimum(a, b), np.maximum(a, b), np.concatenate(out_area)


def _thin(a: np.ndarray, b: np.ndarray, area: np.ndarray, n: int,
          max_pairs: int | None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The pairs kept: all, or each frame's ``max_pairs`` largest plus a maximum
    spanning forest (by box intersection area)."""
    degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    if max_pairs is None or not a.size or degree.max() <= max_pairs:
        return a, b
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    ends = np.concatenate([a, b])
    edge = np.concatenate([np.arange(a.size), np.arange(a.size)])
    order = np.lexsort((-area[edge], ends))
    sorted_ends = ends[order]
    rank = np.arange(order.size) - np.searchsorted(sorted_ends, sorted_ends, side="left")
    keep = np.zeros(a.size, dtype=bool)
    keep[edge[order[rank < int(max_pairs)]]] = True
    weight = area.max() + 1.0 - area  # positive, smaller for larger overlaps
    tree = minimum_spanning_tree(coo_matrix((weight, (a, b)), shape=(n, n)).tocsr()).tocoo()
    key = a * n + b
    sorter = np.argsort(key)
    tree_key = np.minimum(tree.row, tree.col).astype(np.int64) * n + np.maximum(tree.row, tree.col)
    keep[sorter[np.searchsorted(key, tree_key, sorter=sorter)]] = True
    return a[keep], b[keep]


def _pair_differences(samples: list, a: np.ndarray, b: np.ndarray, min_cells: int,
                      channels: int) -> tuple:  # fmt: skip
    """The used pairs, their median background differences (pairs, channels) and
    common cells."""
    used_a, used_b, diffs, counts = [], [], [], []
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        si, sj = samples[i], samples[j]
        if si is None or sj is None:
            continue
        r0, r1 = max(si.i0, sj.i0), min(si.i0 + si.value.shape[0], sj.i0 + sj.value.shape[0])
        c0, c1 = max(si.j0, sj.j0), min(si.j0 + si.value.shape[1], sj.j0 + sj.value.shape[1])
        if r1 - r0 <= 0 or c1 - c0 <= 0 or (r1 - r0) * (c1 - c0) < min_cells:
            continue
        vi = si.value[r0 - si.i0 : r1 - si.i0, c0 - si.j0 : c1 - si.j0]
        vj = sj.value[r0 - sj.i0 : r1 - sj.i0, c0 - sj.j0 : c1 - sj.j0]
        d = (vi - vj).reshape(-1, channels)
        d = d[np.isfinite(d).all(axis=1)]
        if d.shape[0] < min_cells:
            continue
        used_a.append(i)
        used_b.append(j)
        diffs.append(np.median(d, axis=0))
        counts.append(d.shape[0])
    return (
        np.asarray(used_a, dtype=np.int64),
        np.asarray(used_b, dtype=np.int64),
        np.asarray(diffs, dtype=np.float64).reshape(-1, channels),
        np.asarray(counts, dtype=np.int64),
    )


def _groups(n: int, a: np.ndarray, b: np.ndarray, rank: np.ndarray,
            reference: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each frame's connected group (0: the reference's, then by first frame) and each
    group's zero frame: ``reference`` in its group, else the frame of highest ``rank``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    number = {int(labels[reference]): 0}
    for g in labels.tolist():
        number.setdefault(g, len(number))
    group = np.array([number[g] for g in labels.tolist()], dtype=np.int64)
    zeros = np.empty(len(number), dtype=np.int64)
    order = np.argsort(rank)
    zeros[group[order]] = order  # a better frame overwrites a worse one of its group
    zeros[0] = reference
    return group, zeros


def _solve(n: int, a: np.ndarray, b: np.ndarray, d: np.ndarray, w: np.ndarray,
           zeros: np.ndarray) -> np.ndarray:  # fmt: skip
    """``o`` (n, channels) minimizing sum w (o_a - o_b - d)^2 with ``o[zeros] = 0``."""
    from scipy.sparse import csc_matrix, diags
    from scipy.sparse.linalg import lsqr

    channels = d.shape[1] if d.ndim == 2 else 1
    o = np.zeros((n, channels))
    free = np.ones(n, dtype=bool)
    free[zeros] = False
    column = np.cumsum(free) - 1
    if not a.size or not free.any():
        return o
    sw = np.sqrt(w)
    rows = np.concatenate([np.arange(a.size), np.arange(b.size)])
    cols = np.concatenate([a, b])
    vals = np.concatenate([sw, -sw])
    on = free[cols]
    m = csc_matrix((vals[on], (rows[on], column[cols[on]])), shape=(a.size, int(free.sum())))
    norm = np.sqrt(np.asarray(m.multiply(m).sum(axis=0)).ravel())
    norm[norm == 0] = 1.0  # a free frame without pairs cannot happen: it would be a zero
    m = m @ diags(1.0 / norm)
    for c in range(channels):
        result = lsqr(m, sw * d[:, c], atol=1e-14, btol=1e-14, iter_lim=max(1000, 50 * n))
        if result[1] == 7:
            warnings.warn(
                f"background matching: the least-squares fit of channel {c} stopped after "
                f"{result[2]} iterations before converging",
                RuntimeWarning,
                stacklevel=3,
            )
        o[free, c] = result[0] / norm
    return o


def _residuals(n: int, a: np.ndarray, b: np.ndarray, d: np.ndarray, cells: np.ndarray,
               o: np.ndarray) -> np.ndarray:  # fmt: skip
    """Per frame and channel, the cells-weighted rms misfit of its pairs (NaN without)."""
    out = np.full(o.shape, np.nan)
    if not a.size:
        return out
    r2 = (o[a] - o[b] - d) ** 2 * cells[:, None]
    weight = np.bincount(a, cells, minlength=n) + np.bincount(b, cells, minlength=n)
    has = weight > 0
    for c in range(o.shape[1]):
        total = np.bincount(a, r2[:, c], minlength=n) + np.bincount(b, r2[:, c], minlength=n)
        out[has, c] = np.sqrt(total[has] / weight[has])
    return out
