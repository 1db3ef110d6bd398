"""The per-frame normalization the tile kernels apply (made by :mod:`.plan`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from dask.base import normalize_token

__all__ = ["FRAME_NAMES", "Normalization"]

#: measurements whose name is also a per-pixel output of the stack, renamed in the
#: result's per-frame variables
FRAME_NAMES = {"noise": "frame_noise"}


@dataclass(frozen=True)
class Normalization:
    """Per frame and channel: ``x' = scale x + offset - G(y, x)``.

    ``grad`` (n_frames, n_channels, gy, gx) is the gradient model on a grid of
    nodes ``step`` = (step_y, step_x) pixels apart, or None.
    """

    mode: str
    reference: int
    scale: np.ndarray
    offset: np.ndarray
    grad: np.ndarray | None = None
    step: tuple[float, float] | None = None
    table: dict[str, Any] = field(default_factory=dict)
    #: photometric mode: per frame the matched stars ("pairs": ref_flux, tgt_flux,
    #: used, x, y of channel 0) and the pass-1 photometry, for plots and reports
    details: dict[str, Any] = field(default_factory=dict)

    #: fields holding arrays: no hash (as before it was frozen)
    __hash__ = None  # type: ignore[assignment]

    def __dask_tokenize__(self) -> tuple:
        """Everything the kernels apply and the table reports (not ``details``), by value.

        dask uses the returned value as it is, so the arrays are normalized
        here (by their bytes, dtype and shape), not left to ``str()``.
        """
        table = tuple((name, np.asarray(self.table[name])) for name in sorted(self.table))
        contents = (self.mode, int(self.reference), np.asarray(self.scale))
        contents += (np.asarray(self.offset), self.grad, self.step, table)
        return ("stackengine.Normalization", normalize_token(contents))

    def variables(self, colour: bool) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """Per-frame result variables ("scale", "offset" and the measurements; the
        measured noise is "frame_noise": "noise" is the stack's per-pixel output)."""
        dims = ("frame", "channel") if colour else ("frame",)

        def shaped(a: np.ndarray) -> np.ndarray:
            return a if colour else a[:, 0]

        out = {"scale": (dims, shaped(self.scale)), "offset": (dims, shaped(self.offset))}
        for name, values in self.table.items():
            values = np.asarray(values)
            name = FRAME_NAMES.get(name, name)
            out[name] = (dims, shaped(values)) if values.ndim == 2 else (("frame",), values)
        return out

    def noise_after(self) -> np.ndarray:
        """Each frame's noise after normalization, per channel (scale x noise)."""
        return np.abs(self.scale) * np.asarray(self.table["noise"], dtype=np.float64)
