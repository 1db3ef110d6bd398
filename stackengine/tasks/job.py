"""The explicit stacking job: one frozen, picklable description of everything a run does.

:func:`stackengine.stack` validates its parameters, measures what pass 1
measures (normalization, weights) and puts all of it into one
:class:`StackJob`: the frames with their identity, the tile plan, the
per-frame tables, the rejection stages, the combine and the outputs.
Everything downstream derives from the job and from nothing else:

* the dask graph (:mod:`stackengine.tasks.graph`): the job is one node of the
  graph (key :attr:`StackJob.key`), every tile task depends on it, and every
  task name carries :attr:`StackJob.token`, a digest of the whole job — two
  stacks that differ in anything have different task names, so one
  ``dask.compute`` of both computes both;
* the writers (:mod:`stackengine.tasks.write`) find the job in the result's
  graph by the names of its variables, which only an unmodified variable has;
* the resume fingerprint of a partial zarr store (the token, and
  :meth:`StackJob.describe` to say what differs) and the provenance in the
  outputs (:meth:`StackJob.attrs`).

A new per-frame step (calibration, resampling) is one new field here and one
new step in :func:`stackengine.tasks.tile.prepare_strip`.

The token is computed here, with :mod:`hashlib`, from a canonical encoding of
the job (arrays by their bytes, each input file by its path, size and
modification time or ETag), not with :func:`dask.base.tokenize`: a resume
fingerprint is compared across processes and must not depend on how a dask
version happens to normalize objects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__

if TYPE_CHECKING:
    from ..calibrate.model import Calibration
    from ..colour import Debayer
    from ..io.sources import FrameStack
    from ..normalize.model import Normalization
    from ..register.model import Registration
    from ..rejection import StagePlan

__all__ = ["OUTPUTS", "StackJob", "digest", "frame_identity"]

#: the stack's per-pixel outputs, in the order of the packed tile planes: (name, kind);
#: kind "float" is float32, "count" is :func:`count_dtype`
OUTPUTS: tuple[tuple[str, str], ...] = (
    ("image", "float"),
    ("count", "count"),
    ("rejected_low", "count"),
    ("rejected_high", "count"),
    ("noise", "float"),
)


def count_dtype(n_frames: int) -> np.dtype:
    """The dtype of the count and rejection maps: int16, which holds any count of up
    to 32767 frames (half the bytes of int32 to write, as Siril's and PixInsight's
    16-bit rejection maps), else int32."""
    return np.dtype(np.int16 if n_frames <= np.iinfo(np.int16).max else np.int32)


def _encode(value: Any, h: Any) -> None:
    """Feed a canonical encoding of ``value`` into the hash ``h``."""
    if value is None or isinstance(value, bool | str):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, int | np.integer):
        h.update(f"int:{int(value)};".encode())
    elif isinstance(value, float | np.floating):
        h.update(f"float:{float(value).hex() if math.isfinite(value) else value};".encode())
    elif isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        h.update(f"array:{arr.dtype.str}:{arr.shape};".encode())
        h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
    elif isinstance(value, np.dtype):
        h.update(f"dtype:{value.str};".encode())
    elif isinstance(value, Mapping):
        h.update(f"map:{len(value)};".encode())
        for k in sorted(value, key=str):
            _encode(str(k), h)
            _encode(value[k], h)
    elif isinstance(value, list | tuple):
        h.update(f"seq:{len(value)};".encode())
        for item in value:
            _encode(item, h)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        _encode(type(value).__name__, h)
        _encode({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, h)
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def digest(value: Any) -> str:
    """A hex digest of ``value`` (plain values, arrays, mappings, sequences, dataclasses)."""
    h = hashlib.sha256()
    _encode(value, h)
    return h.hexdigest()[:32]


#: fields of a frame source that describe its header, not where its pixels are
_NOT_IDENTITY = {"header", "storage_options", "block"}


def frame_identity(frame: Any) -> dict[str, Any]:
    """What determines a frame's pixels: its file's identity (path or URL, mtime or
    ETag, size) and how the reader reads it (HDU, plane, offsets, scaling)."""
    from ..io import remote

    path = str(getattr(frame, "path", ""))
    try:
        ident = remote.file_identity(path, getattr(frame, "storage_options", None))
    except OSError:  # gone since it was opened: the read will say so
        ident = (path, None, None)
    out: dict[str, Any] = {"kind": type(frame).__name__, "file": list(ident)}
    if dataclasses.is_dataclass(frame):
        for f in dataclasses.fields(frame):
            if f.name not in _NOT_IDENTITY and f.name != "path":
                value = getattr(frame, f.name)
                out[f.name] = str(value) if isinstance(value, np.dtype) else value
    return out


def _stack_identity(stack: Any) -> list[dict[str, Any]]:
    """What determines the pixels of a companion stack (weight maps, masks)."""
    return [frame_identity(f) for f in stack.frames]


def _normalization_identity(norm: Normalization | None) -> dict[str, Any] | None:
    """What of a normalization the tile tasks apply and the result reports."""
    if norm is None:
        return None
    table = {name: np.asarray(norm.table[name]) for name in norm.table}
    return {
        "mode": norm.mode, "reference": int(norm.reference), "scale": np.asarray(norm.scale),
        "offset": np.asarray(norm.offset), "grad": norm.grad,
        "step": None if norm.step is None else [float(s) for s in norm.step], "table": table,
    }  # fmt: skip


@dataclass(frozen=True, eq=False)
class StackJob:
    """Everything one stack does, frozen and picklable.

    Attributes
    ----------
    source : FrameStack or None
        The frames, read from their files inside the tile tasks; None when the
        frames are an in-memory or modified dask array (``input_name``).
    inputs : tuple of dict
        Per frame, what determines its pixels (:func:`frame_identity`); for an
        in-memory input, empty.
    input_name : str or None
        The dask name of an in-memory input (a token of its content and graph).
    shape : tuple of int
        (frames, y, x[, channel]) of the stack.
    dtype : str
        The frames' dtype.
    tile : (int, int)
        Output tile (rows, columns): one tile task each.
    normalization : Normalization or None
        Per-frame (and per-channel) scale, offset and gradient model.
    weights : numpy.ndarray or None
        Per-frame weights of the weighted mean.
    stages : StagePlan
        The rejection stages, encoded for the kernel.
    combine : str
        How the kept values are combined.
    fallback : str or None
        Where every value was rejected: NaN (None) or the median.
    params : dict
        Every parameter as the user gave it (JSON-able), for ``attrs``.
    calibration : Calibration or None
        The lights' calibration (masters, dark scale factors, overscan levels, trim
        window), applied to each strip before normalization; ``shape`` is then the
        calibrated (trimmed) frames'.
    registration : Registration or None
        Per frame, the output pixel -> frame pixel matrix and the interpolation: each
        tile task reads the frames only where the tile maps into them and resamples
        onto the output grid (``shape``) before normalization.
    debayer : Debayer or None
        The frames are Bayer mosaics: each tile task debayers each frame's
        (calibrated) region before resampling; ``shape`` ends with 3 channels.
    weight_maps, masks : FrameStack or None
        Per frame, a weight map (0 = bad) and a mask (non-zero = bad), read by
        region beside the frame (:mod:`stackengine.companions`).
    inverse_variance : bool
        Combine by the weight maps as inverse variances (``weights="map"``): each
        value's weight is its (resampled) weight, the noise 1/sqrt(sum of weights).
    exposures : numpy.ndarray or None
        Per frame, its exposure time: the job then has an "exposure" output, the
        sum of the exposure times of the frames with a value at each pixel.
    pixel_weights : str or None
        The dask name of an in-memory input's weight per value (inverse variances,
        ``weights="uncertainty"``), an array chunked like the input that the tile
        tasks take beside it (:func:`~stackengine.tasks.tile.reduce_weighted_tile`).
    version : str
        The stackengine version that planned the job.
    """

    source: FrameStack | None
    inputs: tuple[dict[str, Any], ...]
    input_name: str | None
    shape: tuple[int, ...]
    dtype: str
    tile: tuple[int, int]
    normalization: Normalization | None
    weights: np.ndarray | None
    stages: StagePlan
    combine: str
    fallback: str | None
    params: dict[str, Any]
    calibration: Calibration | None = None
    registration: Registration | None = None
    debayer: Debayer | None = None
    weight_maps: FrameStack | None = None
    masks: FrameStack | None = None
    inverse_variance: bool = False
    exposures: np.ndarray | None = None
    pixel_weights: str | None = None
    version: str = __version__
    token: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token", digest(self._identity()))

    def _identity(self) -> dict[str, Any]:
        return {
            "inputs": list(self.inputs),
            "input_name": self.input_name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "tile": list(self.tile),
            "normalization": _normalization_identity(self.normalization),
            "weights": self.weights,
            "stages": [self.stages.names, self.stages.codes, self.stages.params,
                       self.stages.tables],
            "combine": self.combine,
            "fallback": self.fallback,
            "params": self.params,
            "calibration": None if self.calibration is None else self.calibration.identity(),
            "registration": None if self.registration is None else self.registration.identity(),
            "debayer": None if self.debayer is None else self.debayer.identity(),
            **({"weight_maps": _stack_identity(self.weight_maps)}
               if self.weight_maps is not None else {}),
            **({"masks": _stack_identity(self.masks)} if self.masks is not None else {}),
            **({"inverse_variance": True} if self.inverse_variance else {}),
            **({"exposures": self.exposures} if self.exposures is not None else {}),
            **({"pixel_weights": self.pixel_weights} if self.pixel_weights is not None
               else {}),
            "version": self.version,
        }  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"StackJob(token={self.token!r}, shape={self.shape}, dtype={self.dtype!r}, "
            f"tile={self.tile}, reject={self.params.get('reject')!r}, combine={self.combine!r})"
        )

    # ---- what the graph and the writers derive from the job ----
    @property
    def per_frame(self) -> bool:
        """Whether a tile task reads frame by frame (registration, debayering, weight
        maps, masks) rather than strip by strip."""
        return any(v is not None for v in (self.registration, self.debayer,
                                           self.weight_maps, self.masks))  # fmt: skip

    @property
    def n_frames(self) -> int:
        return int(self.shape[0])

    @property
    def outputs(self) -> tuple[tuple[str, str], ...]:
        """The job's per-pixel outputs, in the order of the packed planes."""
        return OUTPUTS + ((("exposure", "float"),) if self.exposures is not None else ())

    @property
    def n_planes(self) -> int:
        return len(self.outputs)

    @property
    def key(self) -> str:
        """The graph key of the job's own node."""
        return f"stackjob-{self.token}"

    @property
    def packed_name(self) -> str:
        """The dask name of the packed tile outputs (one task per tile)."""
        return f"stack-{self.token}"

    def plane_name(self, output: str) -> str:
        """The dask name of one output variable (e.g. "image") of this job."""
        return f"stack-{output}-{self.token}"

    def plane_of(self, name: str) -> int | None:
        """The packed plane index of the variable whose dask name is ``name``, or None."""
        for k, (output, _) in enumerate(self.outputs):
            if name == self.plane_name(output):
                return k
        return None

    def output_dtype(self, output: str) -> np.dtype:
        kind = dict(self.outputs)[output]
        return np.dtype(np.float32) if kind == "float" else count_dtype(self.n_frames)

    @property
    def reference_frame(self) -> int | None:
        return None if self.normalization is None else int(self.normalization.reference)

    def attrs(self) -> dict[str, Any]:
        """The result's attrs: every parameter, n_frames, the version and the job's token."""
        return {
            **self.params,
            "reference_frame": self.reference_frame,
            "n_frames": self.n_frames,
            "input_dtype": self.dtype,
            "stackengine_version": self.version,
            "job_token": self.token,
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary of what identifies the job, to say how two jobs differ."""
        out = {k: v for k, v in self.params.items()}
        out["inputs"] = [json.dumps(i, sort_keys=True, default=str) for i in self.inputs]
        out["input_array"] = self.input_name
        if self.pixel_weights is not None:
            out["pixel_weights"] = self.pixel_weights
        out["shape"] = list(self.shape)
        out["dtype"] = self.dtype
        out["tile plan"] = list(self.tile)
        out["normalization tables"] = (
            None
            if self.normalization is None
            else digest(_normalization_identity(self.normalization))
        )
        out["weights"] = None if self.weights is None else digest(self.weights)
        out["calibration"] = (
            None if self.calibration is None else digest(self.calibration.identity())
        )
        out["registration"] = (
            None if self.registration is None else digest(self.registration.identity())
        )
        out["debayer"] = None if self.debayer is None else self.debayer.identity()
        out["version"] = self.version
        return json.loads(json.dumps(out, default=str))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two :meth:`StackJob.describe` summaries."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "inputs":
            out.append(_input_difference(a or [], b or []))
        else:
            out.append(f"{key} {a!r} -> {b!r}")
    return out


def _input_difference(old: list[str], new: list[str]) -> str:
    if len(old) != len(new):
        return f"inputs: {len(old)} -> {len(new)} frames"
    for a, b in zip(old, new, strict=True):
        if a != b:
            path = json.loads(b).get("file", ["?"])[0]
            return f"inputs: {path} changed"
    return "inputs"
