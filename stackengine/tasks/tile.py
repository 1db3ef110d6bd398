"""The tile tasks of a :class:`~stackengine.tasks.job.StackJob`: one dask task per output tile.

Frames read from files (``job.source``) are read *inside* the tile task
(:func:`read_reduce_tile`), strip by strip into one reused buffer of about
:data:`STRIP_BYTES` (:func:`~stackengine.io.buffers.thread_buffer`), each strip
prepared (:func:`prepare_strip`) and reduced by the kernel as soon as it is
read: the graph has one task per tile instead of a read task and a reduce
task, every file is opened once per task, the frames' bytes go from the page
cache into a buffer that is still in the CPU cache when the kernel loads it,
and no tile-sized block is ever allocated. Any other dask array (frames
modified by the user, in-memory data) goes through :func:`reduce_tile` block
by block. Every pixel is reduced on its own, so both give the same bits for
any tile or strip size.

The steps of a tile task, in order (the data flow of the design):

1. read each frame's region (:meth:`~stackengine.io.sources.FrameStack.read_tile`);
2. prepare it (:func:`prepare_strip`: the per-frame pre-processing steps of the job);
3. with a Bayer mosaic, debayer it (:class:`~stackengine.colour.Debayer`);
4. with a registration, resample each frame's region onto the output tile
   (:func:`~stackengine.kernels.resample.resample`; the frame is read only where
   the tile maps into it);
5. normalize, reject and combine (the kernel, :func:`_reduce`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np

from ..calibrate.model import apply_calibration
from ..companions import companion_region
from ..io.buffers import thread_buffer
from ..kernels.combine import COMBINE_CODES
from ..kernels.engine import N_OUT, reduce_block
from ..kernels.normalize import geometry
from .plan import STRIP_BYTES

if TYPE_CHECKING:
    from .job import StackJob

__all__ = [
    "MIN_READ_BYTES",
    "STRIP_BYTES",
    "packed_dtype",
    "prepare_strip",
    "read_reduce_into",
    "read_reduce_tile",
    "reduce_tile",
    "reduce_weighted_tile",
]

#: bytes read from each file at a time at least (the strip grows past
#: STRIP_BYTES for hundreds of frames rather than read a few rows per call)
MIN_READ_BYTES = 32 * 2**10


def packed_dtype(n_frames: int) -> np.dtype:
    """The dtype of a tile's packed outputs: float32, which holds the float32 image
    and noise as they are and any count up to 2**24 exactly (so the kernel
    writes 20 bytes per pixel, not 40), else float64."""
    return np.dtype(np.float32 if n_frames <= 2**24 else np.float64)


def prepare_strip(job: StackJob, block: np.ndarray, y0: int, x0: int) -> np.ndarray:
    """The per-frame pre-processing of ``block`` (frames, rows, cols[, c]): the frames'
    raw pixels of the job's rows and columns from (y0, x0), before normalization and
    rejection. The job's pre-processing steps go here, one after the other:

    1. calibration (:func:`~stackengine.calibrate.model.apply_calibration`), into a
       float32 buffer of this thread.
    """
    calib = job.calibration
    if calib is not None:
        ys = slice(y0, y0 + block.shape[1])
        xs = slice(x0, x0 + block.shape[2])
        out = thread_buffer("calibrated", block.shape, np.float32)
        block = apply_calibration(calib, block, ys, xs, out)
    return block


def _reduce(
    job: StackJob,
    block: np.ndarray,
    y0: int,
    x0: int,
    out: np.ndarray,
    frames: Any = None,
    pixel_weights: np.ndarray | None = None,
) -> None:
    """Reduce the in-memory ``block`` (frames, rows, cols[, channels]) at (y0, x0) into
    ``out`` (N_OUT, rows, cols[, channels]) of :func:`packed_dtype`; ``frames``: the
    job's frames the block holds (default all), in the job's order; ``pixel_weights``
    (as ``block``): a weight per value (drizzle's, weight maps)."""
    n = block.shape[0]
    flat = np.ascontiguousarray(block).reshape(n, -1)
    norm = job.normalization
    scale = offset = grad = geom = None
    pick = slice(None) if frames is None else np.asarray(frames)
    if norm is not None:
        scale, offset = norm.scale[pick], norm.offset[pick]
        grad = None if norm.grad is None else norm.grad[pick]
        geom = geometry(block.shape, y0, x0, norm.step)
    use_weights = job.weights is not None
    weights = job.weights[pick] if use_weights else np.ones(n, dtype=np.float64)
    flat_out = out.reshape(N_OUT, -1)  # a view when each plane's rows are contiguous
    reduce_block(
        flat,
        job.stages.codes,
        job.stages.params,
        COMBINE_CODES[job.combine],
        weights,
        use_weights,
        tables=job.stages.tables,
        fallback=job.fallback == "median",
        scale=scale,
        offset=offset,
        grad=grad,
        geom=geom,
        out=flat_out,
        pixel_weights=None if pixel_weights is None else pixel_weights.reshape(n, -1),
        inverse_variance=job.inverse_variance,
    )
    if not np.shares_memory(flat_out, out):  # the reshape had to copy: put them in place
        out[...] = flat_out.reshape(out.shape)


def reduce_tile(block: np.ndarray, job: StackJob, block_info: dict | None = None) -> np.ndarray:
    """``map_blocks`` function: prepare and reduce one in-memory (frames, y, x[, c]) block."""
    y0, x0 = (0, 0)
    if block_info:
        location = block_info[0]["array-location"]
        y0, x0 = location[1][0], location[2][0]
    out = np.empty((N_OUT, *block.shape[1:]), dtype=packed_dtype(block.shape[0]))
    _reduce(job, prepare_strip(job, block, y0, x0), y0, x0, out)
    return out


def reduce_weighted_tile(
    block: np.ndarray, weights: np.ndarray, job: StackJob, block_info: dict | None = None
) -> np.ndarray:
    """``map_blocks`` function: :func:`reduce_tile` with a weight per value (``weights``,
    as ``block``: inverse variances, :attr:`StackJob.pixel_weights`); a value of
    weight 0 is missing, as in a weight map."""
    y0, x0 = (0, 0)
    if block_info:
        location = block_info[0]["array-location"]
        y0, x0 = location[1][0], location[2][0]
    block = prepare_strip(job, block, y0, x0)
    bad = ~(weights > 0)
    if bad.any():
        block = np.where(bad, np.float32(np.nan), block)
    out = np.empty((N_OUT, *block.shape[1:]), dtype=packed_dtype(block.shape[0]))
    _reduce(job, block, y0, x0, out, pixel_weights=np.asarray(weights, dtype=np.float32))
    return out


def read_reduce_tile(job: StackJob, block_info: dict | None = None) -> np.ndarray:
    """``map_blocks`` function without array input: read and reduce one output tile
    (the packed output block's location, ``block_info[None]``) of ``job.source``."""
    location = block_info[None]["array-location"]
    shape = tuple(b - a for a, b in location)
    out = np.empty(shape, dtype=packed_dtype(job.n_frames))
    read_reduce_into(job, location, out)
    return out


def _frame_region(job: StackJob, k: int, box: tuple, handles: dict) -> np.ndarray:
    """Frame ``k``'s calibrated float32 region ``box`` (y0, y1, x0, x1) of the job's grid."""
    stack, calib = job.source, job.calibration
    ys, xs = slice(box[0], box[1]), slice(box[2], box[3])
    rows, cols = calib.raw_region(ys, xs) if calib is not None else (ys, xs)
    shape = (1, rows.stop - rows.start, cols.stop - cols.start, *stack.shape[3:])
    direct = thread_buffer("direct", shape, np.float32)
    if stack.read_float32(k, rows, cols, direct[0], handles):
        if calib is None:
            return direct[0]
        raw = direct  # exact float32 values of the raw frame (ints of <= 16 bits)
    else:
        raw = stack.read_tile(rows, cols, frames=slice(k, k + 1), handles=handles)
        handles.release(k)  # one open file at a time, whatever the number of frames
    region = thread_buffer("region", raw.shape, np.float32)
    if calib is not None:
        apply_calibration(calib.for_frames(k, k + 1), raw, ys, xs, region)
    else:
        np.copyto(region, raw, casting="unsafe")
    return region[0]


def _frame_values(job: StackJob, k: int, box: tuple, handles: Any, maps: Any) -> tuple:
    """Frame ``k``'s calibrated region ``box`` with its masked and zero-weight pixels
    missing, and its weight-map region (None without weight maps)."""
    src = _frame_region(job, k, box, handles)
    if job.masks is None and job.weight_maps is None:
        return src, None
    ys, xs = slice(box[0], box[1]), slice(box[2], box[3])
    rows, cols = job.calibration.raw_region(ys, xs) if job.calibration is not None else (ys, xs)
    wmap = None
    if job.masks is not None:
        src[companion_region(job.masks, k, rows, cols, maps[1]) != 0] = np.nan
    if job.weight_maps is not None:
        wmap = companion_region(job.weight_maps, k, rows, cols, maps[0])
        src[~(wmap > 0)] = np.nan  # weight 0 (or NaN) marks a bad pixel, as in SWarp
        wmap[~(wmap > 0)] = 0.0
    return src, wmap


def _per_frame_into(job: StackJob, location: list, out: np.ndarray) -> None:
    """The tile of a registered or debayered job, or one with weight maps or masks:
    for each frame that reaches the tile
    (:meth:`~stackengine.register.sky.SkyRegistration.frames_for`), read (and calibrate,
    in the mosaic) only the frame region the tile's pixels need, mask it, debayer it,
    resample it onto the tile, then reduce the whole tile (frames that do not cover a
    pixel are missing there)."""
    reg, deb = job.registration, job.debayer
    (y0, y1), (x0, x1) = location[1], location[2]
    frames = np.arange(job.n_frames) if reg is None else reg.frames_for(y0, y1, x0, x1)
    block = thread_buffer("registered", (len(frames), y1 - y0, x1 - x0, *job.shape[3:]),
                          np.float32)  # fmt: skip
    drizzle = reg is not None and reg.method == "drizzle"
    weights = None
    if drizzle or job.inverse_variance:
        weights = thread_buffer("pixel_weights", block.shape, np.float32)
        weights.fill(0.0)
    with contextlib.ExitStack() as stack:
        handles = stack.enter_context(job.source.open_handles())
        maps = [stack.enter_context(m.open_handles()) if m is not None else None
                for m in (job.weight_maps, job.masks)]  # fmt: skip
        for i, k in enumerate(frames):
            frame_shape = reg.shape_of(k) if reg is not None else job.shape[1:3]
            box, state = reg.locate(k, y0, y1, x0, x1) if reg is not None else (
                (y0, y1, x0, x1), None)  # fmt: skip
            if box[1] <= box[0] or box[3] <= box[2]:  # the frame does not reach this tile
                block[i] = np.nan
                continue
            wmap = None
            if deb is None:
                src, wmap = _frame_values(job, k, box, handles, maps)
            else:  # the mosaic around the box, debayered; keep the box
                wy0, wy1, wx0, wx1 = deb.window(box, frame_shape)
                mosaic = _frame_region(job, k, (wy0, wy1, wx0, wx1), handles)
                # drizzle drops each mosaic pixel into its own colour (Bayer drizzle)
                rgb = (deb.planes if drizzle else deb.rgb)(mosaic, wy0, wx0)
                src = rgb[box[0] - wy0 : box[1] - wy0, box[2] - wx0 : box[3] - wx0]
            if reg is None:
                block[i] = src
                if weights is not None:
                    weights[i] = wmap
                continue
            w = reg.resample(k, src, box, state, block[i], y0, x0,
                             **({"in_weight": wmap} if drizzle else {}))  # fmt: skip
            if w is not None:
                weights[i] = w
            elif weights is not None:  # the weight map, resampled as the values
                reg.resample(k, wmap, box, state, weights[i], y0, x0, area=False)
                np.nan_to_num(weights[i], copy=False, nan=0.0)
    if len(frames) == 0:
        empty_tile(out)
        return
    boxes = getattr(reg, "boxes", None)
    if job.exposures is not None:  # the exposure time of the frames with a value here
        _exposure(job, block, frames, boxes, y0, x0, out[N_OUT])
    if boxes is not None and len(frames) > 1:
        _reduce_parts(job, block, frames, boxes[frames], y0, x0, out[:N_OUT], weights)
        return
    subset = None if len(frames) == job.n_frames else frames
    _reduce(job, block, y0, x0, out[:N_OUT], subset, weights)


def _exposure(job: StackJob, block: np.ndarray, frames: np.ndarray, boxes: Any, y0: int,
              x0: int, exposure: np.ndarray) -> None:  # fmt: skip
    """Sum each frame's exposure time where it has a value, within its footprint."""
    exposure.fill(0.0)
    th, tw = block.shape[1], block.shape[2]
    for i, k in enumerate(frames):
        r0, r1, c0, c1 = 0, th, 0, tw
        if boxes is not None:
            b = boxes[k]
            r0, r1 = max(b[0] - y0, 0), min(b[1] - y0, th)
            c0, c1 = max(b[2] - x0, 0), min(b[3] - x0, tw)
            if r1 <= r0 or c1 <= c0:
                continue
        exposure[r0:r1, c0:c1] += np.isfinite(block[i, r0:r1, c0:c1]) * np.float32(job.exposures[k])


#: side of the parts a mosaic's tile is reduced in (:func:`_reduce_parts`)
PART = 128


def _reduce_parts(
    job: StackJob,
    block: np.ndarray,
    frames: np.ndarray,
    boxes: np.ndarray,
    y0: int,
    x0: int,
    out: np.ndarray,
    weights: np.ndarray | None,
) -> None:
    """Reduce a mosaic's tile in parts of :data:`PART` pixels a side, each with only
    the frames whose footprint (``boxes``, output pixels) reaches it: a tile of a
    wide mosaic is touched by several times more frames than cover any one of its
    pixels, and the kernel's work per pixel grows with the frames it is given. The
    other frames are missing there, so the values are the same bits."""
    th, tw = block.shape[1], block.shape[2]
    for r0 in range(0, th, PART):
        r1 = min(r0 + PART, th)
        rows = (boxes[:, 0] < y0 + r1) & (boxes[:, 1] > y0 + r0)
        for c0 in range(0, tw, PART):
            c1 = min(c0 + PART, tw)
            pick = np.flatnonzero(rows & (boxes[:, 2] < x0 + c1) & (boxes[:, 3] > x0 + c0))
            part = out[:, r0:r1, c0:c1]
            if len(pick) == 0:
                empty_tile(part)
                continue
            sub = np.ascontiguousarray(block[pick, r0:r1, c0:c1])
            w = None if weights is None else np.ascontiguousarray(weights[pick, r0:r1, c0:c1])
            _reduce(job, sub, y0 + r0, x0 + c0, part, frames[pick], w)


def empty_tile(out: np.ndarray) -> None:
    """The outputs of pixels no frame covers: NaN image and noise, zero counts."""
    out[...] = 0
    out[0] = np.nan
    out[N_OUT - 1] = np.nan


def read_reduce_into(job: StackJob, location: list, out: np.ndarray) -> None:
    """Read the frames' tile at ``location`` (the packed output's (start, stop) per
    axis) strip by strip, prepare and reduce each strip into ``out`` (N_OUT, y, x[, c])."""
    if job.per_frame:
        _per_frame_into(job, location, out)
        return
    stack = job.source
    (y0, y1), (x0, x1) = location[1], location[2]
    rest = tuple(stack.shape[3:])
    n = stack.shape[0]
    ny, nx = y1 - y0, x1 - x0
    row_bytes = n * nx * int(np.prod(rest, dtype=np.int64)) * np.dtype(stack.dtype).itemsize
    frame_row = max(row_bytes // max(n, 1), 1)  # one row of one frame
    rows = max(STRIP_BYTES // max(row_bytes, 1), -(-MIN_READ_BYTES // frame_row), 1)
    rows = int(min(ny, rows))
    strips = [(r0, min(ny, r0 + rows)) for r0 in range(0, ny, rows)]

    def reduce(buf: np.ndarray, r0: int, r1: int) -> None:
        strip = prepare_strip(job, buf, y0 + r0, x0)
        _reduce(job, strip, y0 + r0, x0, out[:, r0:r1])

    oy, ox = (0, 0) if job.calibration is None else job.calibration.origin
    with stack.open_handles() as handles:  # each file opened once per task
        for r0, r1 in strips:
            buf = thread_buffer("strip", (n, r1 - r0, nx, *rest), stack.dtype)
            rows = slice(oy + y0 + r0, oy + y0 + r1)  # the raw frames' (trim window)
            stack.read_tile(rows, slice(ox + x0, ox + x1), out=buf, handles=handles)
            reduce(buf, r0, r1)
