"""The registration a job's tile tasks apply: per-frame matrices and the output grid.

A :class:`Registration` is part of the job: for every frame the 3x3 matrix that
maps an output pixel (x, y, 1) to a pixel of that frame's calibrated grid (the
convention of :func:`stackengine.register`), the interpolation, and the output
grid. :func:`output_grid` turns the registration table of
:func:`~stackengine.register.register` into the output grid of a framing
("reference", "union", "intersection": Siril's choices).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ParameterError
from ..kernels.resample import MARGINS, METHODS, inverse_box, resample

__all__ = ["FRAMINGS", "Registration", "output_grid", "plan_registration"]

FRAMINGS = ("reference", "union", "intersection")


@dataclass(frozen=True, eq=False)
class Registration:
    """Per frame, output pixel -> frame pixel, and how to resample.

    Attributes
    ----------
    matrices : numpy.ndarray
        (frames, 3, 3) float64, homogeneous, x = column and y = row, 0-based centres.
    frame_shape : (int, int)
        The frames' (calibrated) rows and columns.
    shape : (int, int)
        The output grid's rows and columns.
    method : str
        "lanczos3", "bicubic", "bilinear" or "nearest".
    clamp : bool
        Clamp lanczos3/bicubic values to the nearest 2x2 pixels' range.
    conserve_flux : bool
        Multiply by the frame-pixel area per output pixel (SWarp's flux scaling).
    offset : (float, float)
        The output grid's (x, y) origin in the reference frame's pixels (union framing).
    reference : int
        The reference frame (its WCS, shifted by ``offset``, is the output's).
    frame_shapes : tuple of (int, int) or None
        Each frame's own rows and columns when the frames differ in shape (None:
        all are ``frame_shape``).
    """

    matrices: np.ndarray
    frame_shape: tuple[int, int]
    shape: tuple[int, int]
    method: str = "lanczos3"
    clamp: bool = True
    conserve_flux: bool = False
    offset: tuple[float, float] = (0.0, 0.0)
    reference: int = 0
    frame_shapes: tuple[tuple[int, int], ...] | None = None

    def shape_of(self, k: int) -> tuple[int, int]:
        """Frame ``k``'s rows and columns."""
        return self.frame_shape if self.frame_shapes is None else self.frame_shapes[k]

    @property
    def code(self) -> int:
        return METHODS[self.method]

    @property
    def margin(self) -> int:
        return MARGINS[self.code]

    def identity(self) -> dict[str, Any]:
        return {
            "matrices": self.matrices, "frame_shape": list(self.frame_shape),
            "shape": list(self.shape), "method": self.method, "clamp": self.clamp,
            "conserve_flux": self.conserve_flux, "offset": [float(v) for v in self.offset],
            "reference": int(self.reference),
            "frame_shapes": None if self.frame_shapes is None else [list(v) for v in
                                                                    self.frame_shapes],
        }  # fmt: skip

    def box(self, k: int, y0: int, y1: int, x0: int, x1: int) -> tuple[int, int, int, int]:
        """The frame-``k`` region that output rows y0:y1, columns x0:x1 read."""
        return inverse_box(self.matrices[k], y0, y1, x0, x1, self.margin, self.shape_of(k))

    def frames_for(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """The frames that the output region reads (every frame: each is checked by
        :meth:`locate`)."""
        return np.arange(len(self.matrices))

    def locate(self, k: int, y0: int, y1: int, x0: int, x1: int) -> tuple:
        """Frame ``k``'s region the output region reads, and what resampling needs."""
        return self.box(k, y0, y1, x0, x1), None

    def resample(self, k: int, src: np.ndarray, box: tuple, state: Any, out: np.ndarray,
                 y0: int, x0: int, *, area: bool = True) -> None:  # fmt: skip
        """Resample frame ``k``'s region ``src`` (at ``box``) into ``out`` (output
        pixels from (y0, x0)); ``area=False``: no pixel-area factor (weight maps)."""
        resample(src, box[0], box[2], self.matrices[k], out, y0, x0, self.code, self.clamp,
                 self.conserve_flux and area, frame_shape=self.shape_of(k))  # fmt: skip


def _footprints(matrices: np.ndarray, shapes: list[tuple[int, int]]) -> list[np.ndarray]:
    """Each frame's corners in reference (output) pixels."""
    out = []
    for m, (h, w) in zip(matrices, shapes, strict=True):
        corners = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1],
                            [-0.5, h - 0.5, 1]], dtype=np.float64).T  # fmt: skip
        p = np.linalg.solve(m, corners)  # frame pixel -> output pixel
        out.append((p[:2] / p[2]).T)
    return out


def output_grid(
    matrices: np.ndarray, frame_shape: Any, framing: str, reference: int = 0
) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """The matrices on the output grid of ``framing``, its shape and its origin (x, y)
    in reference pixels; ``frame_shape`` is the frames' (rows, cols), or a list of one
    per frame (frames of different shapes)."""
    if framing not in FRAMINGS:
        raise ParameterError(f"framing={framing!r}: choose from {', '.join(FRAMINGS)}")
    shapes = ([tuple(frame_shape)] * len(matrices) if np.ndim(frame_shape[0]) == 0
              else [tuple(v) for v in frame_shape])  # fmt: skip
    if framing == "reference":
        return matrices, tuple(shapes[reference]), (0.0, 0.0)
    corners = _footprints(matrices, shapes)
    if framing == "union":
        xs = np.concatenate([c[:, 0] for c in corners])
        ys = np.concatenate([c[:, 1] for c in corners])
        x0, y0 = np.floor(xs.min() + 0.5), np.floor(ys.min() + 0.5)
        x1, y1 = np.ceil(xs.max() - 0.5), np.ceil(ys.max() - 0.5)
    else:  # intersection: the pixels every frame covers, found on a grid of 8 px cells
        from matplotlib.path import Path as Polygon

        h, w = shapes[reference]
        gy, gx = np.mgrid[0:h:8, 0:w:8]
        points = np.column_stack([gx.ravel(), gy.ravel()]).astype(float)
        inside = np.ones(len(points), dtype=bool)
        for c in corners:
            inside &= Polygon(c).contains_points(points)
        if not inside.any():
            raise ParameterError("framing='intersection': the frames share no pixel")
        x0, y0 = points[inside].min(axis=0)
        x1, y1 = points[inside].max(axis=0)
    shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    shape = (int(y1 - y0) + 1, int(x1 - x0) + 1)
    return np.einsum("kij,jl->kil", matrices, shift), shape, (float(x0), float(y0))


def plan_registration(
    frames: Any, options: dict[str, Any], spec: Any = None, frame_shapes: Any = None
) -> Registration:
    """The job's registration from stack()'s options: ``spec`` (default ``register``) is
    "stars" (measured now, pass 1), a table from :func:`stackengine.register`, or
    (frames, 3, 3) matrices; ``frame_shapes``: each frame's (rows, cols) when they
    differ."""
    spec = options["register"] if spec is None else spec
    method = options.get("interpolation", "lanczos3")
    if method not in METHODS:
        raise ParameterError(f"interpolation={method!r}: choose from {', '.join(METHODS)}")
    n = frames.sizes["frame"]
    reference = 0
    if isinstance(spec, str):
        if spec != "stars":
            raise ParameterError(f"register={spec!r}: choose 'stars', a table or matrices")
        from .api import register

        spec = register(frames, reference=options.get("reference"),
                        transform=options.get("transform", "similarity"),
                        bayer=options.get("bayer"))  # fmt: skip
    if hasattr(spec, "data_vars"):  # a table from se.register
        ref = int(spec.attrs.get("reference", 0))
        order = [int(f) for f in spec["frame"].values] if "frame" in spec.coords else []
        reference = order.index(ref) if ref in order else 0
        matrices = np.asarray(spec["matrix"].values, dtype=np.float64)
    else:
        matrices = np.asarray(spec, dtype=np.float64)
    if matrices.shape != (n, 3, 3):
        raise ParameterError(
            f"register: {matrices.shape[0] if matrices.ndim == 3 else '?'} transforms for {n} "
            "frames (drop the frames the table dropped, or register them all)"
        )
    shapes = None if frame_shapes is None or len(set(frame_shapes)) == 1 else tuple(frame_shapes)
    frame_shape = shapes[reference] if shapes else (int(frames.shape[1]), int(frames.shape[2]))
    matrices, shape, offset = output_grid(
        matrices, shapes or frame_shape, options.get("framing", "reference"), reference
    )
    return Registration(matrices, frame_shape, shape, method, True,
                        bool(options.get("conserve_flux", False)), offset, reference,
                        shapes)  # fmt: skip
