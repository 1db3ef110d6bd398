"""Registration through the frames' WCS: survey co-adds and mosaics on a sky grid.

:class:`SkyRegistration` is the job's registration for ``register="wcs"``: the
output grid's WCS and shape, each frame's WCS cards (the frame's own text, so
the mapping is the frame's exactly), the node spacing at which each frame's
mapping is interpolated to stay within ``wcs_accuracy``
(:func:`~stackengine.register.wcs.choose_step`), and each frame's footprint on
the output grid, from which a tile task knows which frames it reads
(:meth:`SkyRegistration.frames_for`): the cost of a mosaic grows with its input
pixels, not with tiles x frames.

In a tile task, a frame's mapping is evaluated exactly on the nodes of its whole
footprint once per process (cached, one lock: astropy's WCS objects are not
thread safe) and interpolated at the tile's pixels; nodes are anchored to the
output grid, so every pixel gets the same positions whatever the tiling.

:func:`optimal_wcs` is the output grid covering every frame at the finest input
scale (north up, TAN), as reproject's ``find_optimal_celestial_wcs``.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..kernels.resample import MARGINS, METHODS
from ..kernels.resample_map import map_box, resample_map
from ..kernels.resample_nodes import node_extent, resample_nodes
from .skycache import LOCK, cached_nodes, node_area, node_pair, parsed
from .wcs import (
    WCSError,
    choose_step,
    exact_map,
    frame_wcs,
    interpolate_nodes,
)

__all__ = [
    "SkyRegistration",
    "optimal_wcs",
    "output_header",
    "plan_sky_registration",
    "wcs_attrs",
]

#: the cards that make a celestial WCS (copied from each frame's header, replaced in
#: the output's)
WCS_CARD = re.compile(
    r"WCSAXES|CTYPE[12]|CUNIT[12]|CRVAL[12]|CRPIX[12]|CDELT[12]|CROTA[12]|CD[12]_[12]|"
    r"PC[12]_[12]|PV[12]_\d+|PS[12]_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|EPOCH|"
    r"[AB]P?_ORDER|[AB]P?_\d+_\d+|[AB]_DMAX"
)

#: interpolation="drizzle" (see :mod:`.skydrizzle`)
DRIZZLE = "drizzle"


def wcs_cards(header: Any) -> str:
    """The WCS cards of a header (an astropy Header or its text) as header text, each
    card as written in the frame."""
    text = header if isinstance(header, str) else header.tostring()
    cards = (text[i : i + 80] for i in range(0, len(text), 80))
    kept = [c for c in cards if WCS_CARD.fullmatch(c[:8].rstrip()) and c[8:10] == "= "]
    return "".join(kept) + "END".ljust(80)


@dataclass(frozen=True, eq=False)
class SkyRegistration:
    """Per frame, the output pixel -> frame pixel mapping through the sky.

    Attributes
    ----------
    out_header : str
        The output grid's WCS cards.
    frame_headers : tuple of str
        Each frame's WCS cards (the frame's raw pixels).
    shape : (int, int)
        The output grid's rows and columns.
    frame_shapes : tuple of (int, int)
        Each frame's (calibrated) rows and columns.
    boxes : numpy.ndarray
        (frames, 4) int64: each frame's footprint on the output grid (y0, y1, x0,
        x1), widened by the kernel's margin; empty where the frame misses the grid.
    steps : tuple of int
        Each frame's node spacing in output pixels (0: every pixel exactly).
    matrices : numpy.ndarray
        (frames, 3, 3): each frame's best affine approximation of its mapping
        (for measurements that need one, e.g. photometric normalization).
    method, clamp, conserve_flux, accuracy
        The interpolation ("drizzle" or a kernel of
        :mod:`stackengine.kernels.resample`), its clamping, the pixel-area factor,
        ``wcs_accuracy``.
    origin : (int, int)
        Raw frame pixel of the calibrated grid's first pixel (a trim window).
    reference : int
        The frame whose header the outputs start from.
    pixfrac, drizzle_kernel : float, str
        Drizzle's shrink factor and kernel ("square", "point", "turbo").
    back_steps : tuple of int
        Drizzle: each frame's node spacing (frame pixels) of its pixel map, frame
        pixel -> output pixel.
    """

    out_header: str
    frame_headers: tuple[str, ...]
    shape: tuple[int, int]
    frame_shapes: tuple[tuple[int, int], ...]
    boxes: np.ndarray
    steps: tuple[int, ...]
    matrices: np.ndarray
    method: str = "lanczos3"
    clamp: bool = True
    conserve_flux: bool = False
    accuracy: float = 1e-3
    origin: tuple[int, int] = (0, 0)
    reference: int = 0
    pixfrac: float = 1.0
    drizzle_kernel: str = "square"
    back_steps: tuple[int, ...] = ()

    offset = (0.0, 0.0)  # the output grid is given by out_header, not moved from a frame

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.frame_shapes[self.reference]

    def shape_of(self, k: int) -> tuple[int, int]:
        """Frame ``k``'s rows and columns."""
        return self.frame_shapes[k]

    @property
    def code(self) -> int:
        return METHODS[self.method]

    @property
    def margin(self) -> int:
        return 1 if self.method == DRIZZLE else MARGINS[self.code]

    @property
    def out_wcs(self) -> Any:
        return parsed(self.out_header)

    def identity(self) -> dict[str, Any]:
        return {
            "kind": "wcs", "out_header": self.out_header,
            "frame_headers": list(self.frame_headers), "shape": list(self.shape),
            "frame_shapes": [list(s) for s in self.frame_shapes], "boxes": self.boxes,
            "steps": list(self.steps), "method": self.method, "clamp": self.clamp,
            "conserve_flux": self.conserve_flux, "accuracy": float(self.accuracy),
            "origin": list(self.origin), "reference": int(self.reference),
            **({"pixfrac": float(self.pixfrac), "drizzle_kernel": self.drizzle_kernel,
                "back_steps": list(self.back_steps)} if self.method == DRIZZLE else {}),
        }  # fmt: skip

    def frames_for(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The frames whose footprint touches output rows y0:y1, columns x0:x1."""
        b = self.boxes
        return np.flatnonzero((b[:, 0] < y1) & (b[:, 1] > y0) & (b[:, 2] < x1) & (b[:, 3] > x0))

    def depth(self, tile: tuple[int, int]) -> int:
        """The most frames one tile of ``tile`` (rows, cols) reads."""
        ty, tx = -(-self.shape[0] // tile[0]), -(-self.shape[1] // tile[1])
        grid = np.zeros((ty, tx), dtype=np.int64)
        for y0, y1, x0, x1 in self.boxes:
            if y1 > y0 and x1 > x0:
                grid[y0 // tile[0] : -(-y1 // tile[0]), x0 // tile[1] : -(-x1 // tile[1])] += 1
        return int(grid.max())

    def _exact(self, k: int, y0: int, y1: int, x0: int, x1: int) -> tuple:
        """``wcs_accuracy=0``: every position exactly (NaN beyond the footprint), the
        area factor (or None) and the extent."""
        box = tuple(int(v) for v in self.boxes[k])
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        with LOCK:
            out_wcs, fwcs = parsed(self.out_header), parsed(self.frame_headers[k])
            fx, fy = exact_map(out_wcs, fwcs, xx, yy)
            det = (node_area(out_wcs, fwcs, float(y0), float(x0), 1, fx.shape)
                   if self.conserve_flux else None)  # fmt: skip
        oy, ox = self.origin
        fx, fy = fx - ox, fy - oy
        outside = (yy < box[0]) | (yy >= box[1]) | (xx < box[2]) | (xx >= box[3])
        fx[outside] = np.nan
        fy[outside] = np.nan
        ok = np.isfinite(fx) & np.isfinite(fy)
        extent = (None if not ok.any() else
                  (float(fx[ok].min()), float(fx[ok].max()), float(fy[ok].min()),
                   float(fy[ok].max())))  # fmt: skip
        return fx, fy, det, extent

    def nodes(self, k: int) -> tuple:
        """Frame ``k``'s mapping on its nodes (nodes_x, nodes_y, ny0, nx0, step) and the
        area factor's nodes (or None), computed once per process."""
        step = self.steps[k]
        box = tuple(int(v) for v in self.boxes[k])
        with LOCK:
            nfx, nfy, ny0, nx0, ndet = cached_nodes(self.out_header, self.frame_headers[k], box,
                                              step, self.conserve_flux)  # fmt: skip
        return (nfx, nfy, ny0, nx0, step), ndet

    def extent(self, k: int, y0: int, y1: int, x0: int, x1: int) -> tuple | None:
        """The (min x, max x, min y, max y) of frame ``k``'s positions of the output
        region (None: the frame has none there)."""
        if self.steps[k] == 0:
            return self._exact(k, y0, y1, x0, x1)[3]
        nodes, _ = self.nodes(k)
        return node_extent(*nodes, y0, y1, x0, x1, self.boxes[k], self.origin)

    def area(self, k: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray | None:
        """``conserve_flux``: the frame-pixel area per output pixel of the region."""
        if not self.conserve_flux:
            return None
        if self.steps[k] == 0:
            return self._exact(k, y0, y1, x0, x1)[2]
        (_, _, ny0, nx0, step), ndet = self.nodes(k)
        return interpolate_nodes(ndet, ny0, nx0, step, y0, y1, x0, x1)

    def locate(self, k: int, y0: int, y1: int, x0: int, x1: int) -> tuple:
        """Frame ``k``'s region the output region reads, and what resampling needs."""
        if self.method == DRIZZLE:
            from .skydrizzle import locate

            return locate(self, k, y0, y1, x0, x1)
        if self.steps[k] == 0:
            fx, fy, det, extent = self._exact(k, y0, y1, x0, x1)
            state = ("map", fx, fy, det)
        else:
            nodes, _ = self.nodes(k)
            extent = node_extent(*nodes, y0, y1, x0, x1, self.boxes[k], self.origin)
            state = ("nodes", nodes, self.area(k, y0, y1, x0, x1))
        if extent is None:
            return (0, 0, 0, 0), None
        return map_box(None, None, self.margin, self.shape_of(k), extent), state

    def resample(self, k: int, src: np.ndarray, box: tuple, state: tuple, out: np.ndarray,
                 y0: int, x0: int, *, area: bool = True,
                 in_weight: np.ndarray | None = None) -> np.ndarray | None:  # fmt: skip
        """Resample frame ``k``'s region ``src`` (at ``box``) into ``out``; returns the
        per-pixel weights of drizzle (None otherwise). ``area=False``: no pixel-area
        factor (weight maps); ``in_weight``: drizzle's input weights of ``src``."""
        if self.method == DRIZZLE:
            from .skydrizzle import drizzle_frame

            return drizzle_frame(self, k, src, box, state, out, y0, x0, in_weight)
        if state[0] == "map":
            _, fx, fy, det = state
            resample_map(src, box[0], box[2], fx, fy, out, self.code, self.clamp,
                         frame_shape=self.shape_of(k))  # fmt: skip
        else:
            _, nodes, det = state
            resample_nodes(src, box[0], box[2], nodes, out, y0, x0, self.code, self.clamp,
                           frame_shape=self.shape_of(k), footprint=self.boxes[k],
                           origin=self.origin)  # fmt: skip
        if det is not None and area:
            out *= (det if out.ndim == 2 else det[:, :, None]).astype(np.float32)
        return None


def _boundary(h: int, w: int, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Points along a frame's pixel edges (x, y)."""
    xs = np.linspace(-0.5, w - 0.5, n)
    ys = np.linspace(-0.5, h - 0.5, n)
    x = np.concatenate([xs, xs, np.full(n, -0.5), np.full(n, w - 0.5)])
    y = np.concatenate([np.full(n, -0.5), np.full(n, h - 0.5), ys, ys])
    return x, y


def _footprint(out_wcs: Any, fwcs: Any, h: int, w: int, origin: tuple) -> tuple:
    """A frame's edge points on the output grid (x, y) (raw pixels from ``origin``)."""
    x, y = _boundary(h, w)
    ra, dec = fwcs.all_pix2world(x + origin[1], y + origin[0], 0)
    with np.errstate(invalid="ignore", over="ignore"):
        ox, oy = out_wcs.all_world2pix(ra, dec, 0, tolerance=1e-6, adaptive=True, quiet=True)
    return np.asarray(ox), np.asarray(oy)


def _box(ox: np.ndarray, oy: np.ndarray, shape: tuple, margin: int) -> list[int]:
    ok = np.isfinite(ox) & np.isfinite(oy)
    if not ok.any():
        return [0, 0, 0, 0]
    pad = margin + 2
    y0 = max(int(np.floor(oy[ok].min())) - pad, 0)
    y1 = min(int(np.ceil(oy[ok].max())) + pad + 1, shape[0])
    x0 = max(int(np.floor(ox[ok].min())) - pad, 0)
    x1 = min(int(np.ceil(ox[ok].max())) + pad + 1, shape[1])
    if y1 <= y0 or x1 <= x0:
        return [0, 0, 0, 0]
    return [y0, y1, x0, x1]


def _affine(out_wcs: Any, fwcs: Any, box: list[int], origin: tuple) -> np.ndarray:
    """The least-squares affine output pixel -> frame pixel over ``box``."""
    if box[1] <= box[0]:
        return np.eye(3)
    gy, gx = np.mgrid[box[0] : box[1] : complex(0, 9), box[2] : box[3] : complex(0, 9)]
    fx, fy = exact_map(out_wcs, fwcs, gx.ravel(), gy.ravel())
    ok = np.isfinite(fx) & np.isfinite(fy)
    a = np.column_stack([gx.ravel()[ok], gy.ravel()[ok], np.ones(ok.sum())])
    cx = np.linalg.lstsq(a, fx[ok] - origin[1], rcond=None)[0]
    cy = np.linalg.lstsq(a, fy[ok] - origin[0], rcond=None)[0]
    return np.array([cx, cy, [0.0, 0.0, 1.0]])


def optimal_wcs(
    frames: list[Any], shapes: list[tuple[int, int]], scale: float = 1.0
) -> tuple[Any, tuple]:
    """A north-up TAN grid covering every frame at the finest input pixel scale
    (times ``scale``: 0.5 for pixels half as large, e.g. to drizzle).

    Parameters
    ----------
    frames : list of astropy.wcs.WCS or astropy.io.fits.Header
        The frames' celestial WCS (or headers holding them).
    shapes : list of (int, int)
        The frames' rows and columns.
    scale : float
        The output pixel's size in units of the finest input pixel.

    Returns
    -------
    (astropy.wcs.WCS, (int, int))
        The grid's WCS and its (rows, cols).
    """
    from astropy.wcs import WCS
    from astropy.wcs.utils import proj_plane_pixel_scales

    wcss = [w if isinstance(w, WCS) else frame_wcs(w, f"frame {k}") for k, w in enumerate(frames)]
    vectors, points = [], []
    for w, (h, wd) in zip(wcss, shapes, strict=True):
        x, y = _boundary(h, wd)
        ra, dec = w.all_pix2world(x, y, 0)
        points.append((ra, dec))
        r, d = np.radians(ra), np.radians(dec)
        vectors.append(np.column_stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)]))
    v = np.concatenate(vectors).mean(axis=0)
    ra0 = float(np.degrees(np.arctan2(v[1], v[0])) % 360)
    dec0 = float(np.degrees(np.arcsin(v[2] / np.linalg.norm(v))))
    scale = scale * min(float(np.mean(proj_plane_pixel_scales(w))) for w in wcss)
    out = WCS(naxis=2)
    out.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    out.wcs.crval = [ra0, dec0]
    out.wcs.cdelt = [-scale, scale]
    out.wcs.crpix = [1.0, 1.0]
    radesys = str(wcss[0].wcs.radesys or "ICRS")
    out.wcs.radesys = radesys
    if radesys in ("FK5", "FK4") and wcss[0].wcs.equinox == wcss[0].wcs.equinox:
        out.wcs.equinox = wcss[0].wcs.equinox
    ra = np.concatenate([p[0] for p in points])
    dec = np.concatenate([p[1] for p in points])
    px, py = out.wcs_world2pix(ra, dec, 0)
    x0, y0 = np.floor(px.min() + 0.5), np.floor(py.min() + 0.5)
    x1, y1 = np.ceil(px.max() - 0.5), np.ceil(py.max() - 0.5)
    out.wcs.crpix = [1.0 - x0, 1.0 - y0]
    shape = (int(y1 - y0) + 1, int(x1 - x0) + 1)
    out.pixel_shape = (shape[1], shape[0])
    return out, shape


def _output_grid(
    spec: Any, shape_out: Any, wcss: list, shapes: list, ref: int, scale: Any
) -> tuple:
    """The output WCS (a celestial astropy WCS) and shape from ``output_wcs``."""
    from astropy.io import fits
    from astropy.wcs import WCS

    if scale is not None and (isinstance(spec, str) and spec == "optimal") is False:
        raise ParameterError("output_scale: it sizes the pixels of output_wcs='optimal' only")
    if isinstance(spec, str):
        if spec != "optimal":
            raise ParameterError(f"output_wcs={spec!r}: give a WCS, a header, None or 'optimal'")
        if shape_out is not None:
            raise ParameterError("shape_out: output_wcs='optimal' chooses its own shape")
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int | float)
                                  or not 0 < scale <= 100):  # fmt: skip
            raise ParameterError(f"output_scale={scale!r}: must be a number in (0, 100]")
        return optimal_wcs(wcss, shapes, 1.0 if scale is None else float(scale))
    if spec is None:
        w, shape = wcss[ref], tuple(shapes[ref])
    elif isinstance(spec, WCS):
        w = spec.celestial
        shape = spec.array_shape
    elif isinstance(spec, fits.Header):
        w = frame_wcs(spec, "output_wcs")
        shape = ((spec["NAXIS2"], spec["NAXIS1"]) if "NAXIS1" in spec and "NAXIS2" in spec
                 else None)  # fmt: skip
    else:
        raise ParameterError(
            f"output_wcs: a {type(spec).__name__}; give an astropy WCS, a FITS header, None "
            "or 'optimal'"
        )
    if shape_out is not None:
        shape = tuple(shape_out)
    if shape is None or len(shape) != 2 or min(int(s) for s in shape) < 1:
        raise ParameterError(
            f"output_wcs: no output shape ({shape!r}); give shape_out=(rows, cols)"
        )
    return w, tuple(int(s) for s in shape)


def wcs_attrs(header_text: str | None) -> dict[str, Any]:
    """The WCS cards of a header as a plain mapping (``astropy.wcs.WCS(mapping)`` reads
    it back): for the attrs of zarr outputs; empty without a celestial WCS."""
    if not header_text:
        return {}
    from astropy.io import fits

    header = fits.Header.fromstring(header_text)
    if "CTYPE1" not in header or "CTYPE2" not in header:
        return {}
    out: dict[str, Any] = {}
    for card in header.cards:
        if WCS_CARD.fullmatch(card.keyword):
            value = card.value
            out[card.keyword] = value.item() if isinstance(value, np.generic) else value
    return out


def output_header(base: Any, out_header: str) -> Any:
    """``base`` (a frame's full header) with its WCS replaced by the output grid's."""
    from astropy.io import fits

    header = base.copy()
    for key in {c.keyword for c in header.cards if WCS_CARD.fullmatch(c.keyword)}:
        header.remove(key, ignore_missing=True, remove_all=True)
    for card in fits.Header.fromstring(out_header).cards:
        header.append(card)
    return header


def plan_sky_registration(
    source: Any, options: dict[str, Any], origin: tuple[int, int] = (0, 0),
    calibrated_shape: tuple[int, int] | None = None,
) -> SkyRegistration:  # fmt: skip
    """The job's :class:`SkyRegistration` from stack()'s options (``output_wcs``,
    ``shape_out``, ``wcs_accuracy``, ``interpolation``, ``conserve_flux``,
    ``reference``), reading every frame's header (no pixel)."""
    method = options.get("interpolation", "lanczos3")
    if method not in METHODS and method != DRIZZLE:
        raise ParameterError(
            f"interpolation={method!r}: choose from {', '.join(METHODS)} or 'drizzle'"
        )
    pixfrac, kernel = _drizzle_options(options, method)
    accuracy = options.get("wcs_accuracy", 1e-3)
    if isinstance(accuracy, bool) or not isinstance(accuracy, int | float) or not accuracy >= 0:
        raise ParameterError(f"wcs_accuracy={accuracy!r}: must be a number of pixels >= 0")
    if source is None:
        raise ParameterError("register='wcs': the frames must be read from files with a WCS")
    n = len(source.frames)
    ref = options.get("reference")
    ref = ref if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < n else 0
    texts, wcss = [], []
    for frame in source.frames:
        path = str(getattr(frame, "path", "frame"))
        read = getattr(frame, "header_text", None)
        if read is None:
            raise ParameterError(f"register='wcs': {path} has no FITS header to read a WCS from")
        texts.append(wcs_cards(read()))
        try:  # strict: each WCS card as the frame writes it
            wcss.append(parsed(texts[-1]))
        except WCSError as exc:
            raise WCSError(str(exc).replace("WCS: ", f"{path}: ", 1)) from None
    raw = [tuple(int(v) for v in s) for s in source.frame_shapes]
    shapes = raw if calibrated_shape is None else [tuple(calibrated_shape)] * n
    out_wcs, shape = _output_grid(options.get("output_wcs"), options.get("shape_out"),
                                  wcss, raw, ref, options.get("output_scale"))  # fmt: skip
    out_text = (
        out_wcs.to_header_string(relax=True)
        if options.get("output_wcs") is not None
        else texts[ref]
    )
    out_parsed = parsed(out_text)
    conserve = bool(options.get("conserve_flux", False))
    boxes, steps, matrices, back = [], [], [], []
    for k, text in enumerate(texts):
        fwcs = parsed(text)
        ox, oy = _footprint(out_parsed, fwcs, shapes[k][0], shapes[k][1], origin)
        if method == DRIZZLE:  # a drop reaches pixfrac x its pixel's size beyond the edge
            size = max(float(np.ptp(ox)) / max(shapes[k][1], 1), float(np.ptp(oy))
                       / max(shapes[k][0], 1), 1.0)  # fmt: skip
            margin = int(math.ceil(pixfrac * size)) + 1
        else:
            margin = MARGINS[METHODS[method]]
        box = _box(ox, oy, shape, margin)
        boxes.append(box)
        # the nodes it tries are cached for the tile tasks of this process
        cached = functools.partial(node_pair, out_text, text, tuple(box), conserve)
        steps.append(choose_step(out_parsed, fwcs, tuple(box), accuracy, nodes=cached)
                     if box[1] > box[0] else 0)  # fmt: skip
        matrices.append(_affine(out_parsed, fwcs, box, origin))
        if method == DRIZZLE:
            (h, w), (oy0, ox0) = shapes[k], origin
            back.append(choose_step(fwcs, out_parsed, (oy0, oy0 + h, ox0, ox0 + w), accuracy))
    if not any(b[1] > b[0] for b in boxes):
        raise WCSError("register='wcs': no frame overlaps the output grid")
    return SkyRegistration(
        out_header=out_text, frame_headers=tuple(texts), shape=shape,
        frame_shapes=tuple(shapes), boxes=np.asarray(boxes, dtype=np.int64),
        steps=tuple(int(s) for s in steps), matrices=np.asarray(matrices), method=method,
        clamp=True, conserve_flux=bool(options.get("conserve_flux", False)),
        accuracy=float(accuracy), origin=tuple(origin), reference=ref, pixfrac=pixfrac,
        drizzle_kernel=kernel, back_steps=tuple(int(s) for s in back),
    )  # fmt: skip


def _drizzle_options(options: dict[str, Any], method: str) -> tuple[float, str]:
    """``pixfrac`` and ``drizzle_kernel``, checked (drizzle only)."""
    from ..kernels.drizzle import KERNELS

    pixfrac = options.get("pixfrac", 1.0)
    kernel = options.get("drizzle_kernel", "square")
    if method != DRIZZLE:
        return 1.0, "square"
    if isinstance(pixfrac, bool) or not isinstance(pixfrac, int | float) or not (
        0.001 < pixfrac <= 2
    ):  # fmt: skip
        raise ParameterError(f"pixfrac={pixfrac!r}: must be in (0.001, 2]")
    if kernel not in KERNELS:
        raise ParameterError(f"drizzle_kernel={kernel!r}: choose from {', '.join(KERNELS)}")
    return float(pixfrac), kernel
