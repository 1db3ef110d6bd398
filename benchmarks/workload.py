"""Synthetic workloads: the :class:`Workload` spec, its frames and its noiseless truth.

Frames are float32 or uint16, FITS or TIFF (:data:`DTYPES`, :data:`FORMATS`).
An integer frame is the float frame mapped by ``round(int_gain * x +
int_offset)`` (clipped to the dtype's range); the truth follows the same
mapping. Named sizes are :data:`PRESETS`.

Imports only the standard library at module level (numpy, astropy and
tifffile inside the functions): benchmark children import this module before
their clock's phases start.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DTYPES",
    "FORMATS",
    "GENERATOR_VERSION",
    "PRESETS",
    "TIFF_STRIP_BYTES",
    "Workload",
    "cosmic_ray_mask",
    "frame_scales",
    "manifest_files",
    "prepare_workload",
    "subset_manifest",
    "tiff_rows_per_strip",
    "truth_image",
]

#: Bump when the generated pixels change, so stale frame sets are regenerated.
GENERATOR_VERSION = 1
#: Pixel types of the frames: float32, or uint16 (the float frame mapped, see the module).
DTYPES = ("float32", "uint16")
#: File formats of the frames (FITS: BITPIX -32, or 16 with BZERO 32768 for uint16).
FORMATS = ("fits", "tiff")
#: Named workloads (frames, size): quick 20 x 1024^2, standard 50 x 4096^2 (the issue-2/6
#: targets), large 200 x 4096^2.
PRESETS: dict[str, tuple[int, int]] = {
    "quick": (20, 1024),
    "standard": (50, 4096),
    "large": (200, 4096),
}
#: TIFF frames are written uncompressed in strips of about this many bytes (whole rows),
#: like most capture software, rather than as one strip (tifffile's default).
TIFF_STRIP_BYTES = 256 * 1024
_SUFFIX = {"fits": ".fits", "tiff": ".tif"}


@dataclass(frozen=True)
class Workload:
    """A synthetic frame set: what to generate, and the key of its manifest.

    Pixel model of frame ``i`` (all values in ADU): ``scale_i * (sky + stars)
    + N(0, noise) + cosmic rays``, with ``scale_i`` uniform in ``1 ± scale_spread``,
    :attr:`n_stars` Gaussian stars (``stars_per_mpix``, at least 3; 336 in a
    4096x4096 frame) at the same positions in every frame, and
    ``cosmic_fraction`` of the pixels hit by cosmic rays of
    ``cosmic_min..cosmic_max`` ADU. Seeded per frame: same parameters, same
    bits, and frame ``i`` does not depend on ``n_frames`` (a set's first ``k``
    frames are the ``k``-frame set: :func:`subset_manifest`).

    An integer ``dtype`` stores ``round(int_gain * x + int_offset)`` of the
    float frame ``x``, clipped to the dtype's range (the defaults keep the
    ADU: the float data lie in about 800..27000, inside uint16). The truth,
    :attr:`adu_noise` and :attr:`ideal_noise` follow the mapping; rounding
    adds ``1/12`` ADU^2 of variance, negligible against the noise.
    """

    n_frames: int = 50
    height: int = 4096
    width: int = 4096
    dtype: str = "float32"
    format: str = "fits"
    seed: int = 20240601
    sky: float = 1000.0
    noise: float = 30.0
    stars_per_mpix: float = 20.0
    scale_spread: float = 0.03
    cosmic_fraction: float = 5e-4
    cosmic_min: float = 300.0
    cosmic_max: float = 5000.0
    int_gain: float = 1.0
    int_offset: float = 0.0

    @property
    def is_integer(self) -> bool:
        """True for an integer dtype (uint16): the frames are mapped and rounded."""
        return self.dtype != "float32"

    @property
    def gain(self) -> float:
        """ADU of the stored frames per ADU of the float model (``int_gain``, 1 for float)."""
        return self.int_gain if self.is_integer else 1.0

    @property
    def offset(self) -> float:
        """Offset of the stored frames (``int_offset``, 0 for float)."""
        return self.int_offset if self.is_integer else 0.0

    @property
    def adu_noise(self) -> float:
        """Per-frame noise in the stored frames' units: ``gain * noise``."""
        return self.gain * self.noise

    @property
    def suffix(self) -> str:
        """File name suffix of the frames: ``.fits`` or ``.tif``."""
        return _SUFFIX[self.format]

    @property
    def mpix_frames(self) -> float:
        """Megapixel-frames: ``n_frames * height * width / 1e6``."""
        return self.n_frames * self.height * self.width / 1e6

    @property
    def n_stars(self) -> int:
        """Number of stars: ``stars_per_mpix`` per megapixel, at least 3."""
        return max(3, round(self.stars_per_mpix * self.height * self.width / 1e6))

    @property
    def nbytes(self) -> int:
        """Bytes of pixel data in the whole frame set."""
        import numpy as np

        return self.n_frames * self.height * self.width * np.dtype(self.dtype).itemsize

    @property
    def ideal_noise(self) -> float:
        """Noise of the plain mean of ``n_frames`` frames: ``adu_noise / sqrt(n_frames)``."""
        return self.adu_noise / math.sqrt(self.n_frames)

    def key(self) -> str:
        """Folder name of this frame set."""
        return f"{self.format}_{self.n_frames}x{self.height}x{self.width}_{self.dtype}"

    def describe(self) -> str:
        """One line: frames, size, dtype, format, gigabytes."""
        return (
            f"{self.n_frames} frames of {self.height}x{self.width} {self.dtype} "
            f"({self.format.upper()}, {self.nbytes / 1e9:.3g} GB)"
        )


def _sky_model(wl: Workload) -> Any:
    """Sky plus stars, float32, the same for every frame."""
    import numpy as np

    rng = np.random.default_rng([wl.seed, 1 << 30])
    model = np.full((wl.height, wl.width), wl.sky, dtype=np.float32)
    ys = rng.uniform(0, wl.height, wl.n_stars)
    xs = rng.uniform(0, wl.width, wl.n_stars)
    sigmas = rng.uniform(1.0, 2.0, wl.n_stars)
    peaks = 10.0 ** rng.uniform(1.7, 4.3, wl.n_stars)  # 50 .. 20000 ADU
    for y, x, s, a in zip(ys, xs, sigmas, peaks, strict=True):
        r = math.ceil(5 * s)
        y0, y1 = max(0, int(y) - r), min(wl.height, int(y) + r + 1)
        x0, x1 = max(0, int(x) - r), min(wl.width, int(x) + r + 1)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        model[y0:y1, x0:x1] += (a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))).astype(
            np.float32
        )
    return model


def _frame_rng(wl: Workload, i: int) -> tuple[Any, float]:
    """Frame ``i``'s random generator, after drawing its scale factor; and the scale."""
    import numpy as np

    rng = np.random.default_rng([wl.seed, i])
    return rng, 1.0 + rng.uniform(-wl.scale_spread, wl.scale_spread)


def frame_scales(wl: Workload) -> list[float]:
    """The per-frame scale factors, drawn as the generator draws them (no pixels made)."""
    return [_frame_rng(wl, i)[1] for i in range(wl.n_frames)]


def truth_image(wl: Workload) -> Any:
    """The noiseless expectation of the plain mean of the frames, float32 (H, W).

    ``gain * mean(scale_i) * (sky + stars) + offset`` (gain 1 and offset 0 for
    float frames): what an unbiased mean stack of the frames converges to
    without noise or cosmic rays. Made from the seeds alone (one frame-sized
    array), never from the frames.
    """
    import numpy as np

    model = _sky_model(wl)
    model *= np.float32(wl.gain * np.mean(np.asarray(frame_scales(wl), dtype=np.float64)))
    if wl.offset:
        model += np.float32(wl.offset)
    return model


def cosmic_ray_mask(wl: Workload, chunk: int = 1 << 20) -> Any:
    """Where a cosmic ray hit at least one frame: bool (H, W), from the seeds alone.

    The integer mapping leaves it alone (it clips only beyond 65535 ADU).

    Replays each frame's random stream as :func:`prepare_workload` draws it
    (the noise is drawn ``chunk`` values at a time and dropped, which leaves
    the stream where the full draw does), so no frame is made or read.
    """
    import numpy as np

    size = wl.height * wl.width
    n_hits = round(wl.cosmic_fraction * size)
    mask = np.zeros(size, dtype=bool)
    for i in range(wl.n_frames):
        rng, _ = _frame_rng(wl, i)
        for start in range(0, size, chunk):
            rng.standard_normal(min(chunk, size - start), dtype=np.float32)
        mask[rng.integers(0, size, n_hits)] = True
    return mask.reshape(wl.height, wl.width)


def _stored(wl: Workload, data: Any) -> Any:
    """The float frame as stored: float32, or mapped, rounded and clipped to the integer dtype."""
    import numpy as np

    if not wl.is_integer:
        return data.astype(wl.dtype, copy=False)
    info = np.iinfo(wl.dtype)
    if wl.gain != 1.0:
        data *= np.float32(wl.gain)
    if wl.offset:
        data += np.float32(wl.offset)
    np.rint(data, out=data)
    np.clip(data, info.min, info.max, out=data)
    return data.astype(wl.dtype)


def tiff_rows_per_strip(wl: Workload) -> int:
    """Rows per TIFF strip: whole rows, about :data:`TIFF_STRIP_BYTES` a strip."""
    import numpy as np

    row_bytes = wl.width * np.dtype(wl.dtype).itemsize
    return max(1, min(wl.height, TIFF_STRIP_BYTES // row_bytes))


def _write_frame(wl: Workload, model: Any, i: int, path: Path) -> float:
    """Make frame ``i`` and write it; return its scale factor."""
    import numpy as np

    rng, scale = _frame_rng(wl, i)
    data = model * np.float32(scale)
    noise = rng.standard_normal(data.shape, dtype=np.float32)
    noise *= np.float32(wl.noise)
    data += noise
    del noise
    n_hits = round(wl.cosmic_fraction * data.size)
    where = rng.integers(0, data.size, n_hits)
    data.reshape(-1)[where] += rng.uniform(wl.cosmic_min, wl.cosmic_max, n_hits).astype(np.float32)
    data = _stored(wl, data)
    if wl.format == "tiff":
        import tifffile

        note = json.dumps({"IMAGETYP": "LIGHT", "EXPTIME": 60.0, "BENCHSCL": scale})
        tifffile.imwrite(
            path, data, rowsperstrip=tiff_rows_per_strip(wl), description=note, metadata=None
        )
        return scale
    from astropy.io import fits

    header = fits.Header()
    header["IMAGETYP"] = "LIGHT"
    header["EXPTIME"] = 60.0
    header["BENCHSCL"] = (scale, "synthetic per-frame scale factor")
    # uint16 is written as BITPIX 16 with BZERO 32768 (astropy's default), as cameras do
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
    return scale


def _manifest_workload(wl: Workload) -> dict[str, Any]:
    """The workload as the manifest records it: the fields that shape the pixels.

    The integer mapping is left out for float frames, so frame sets made
    before it existed are still reused.
    """
    fields = asdict(wl)
    if not wl.is_integer:
        del fields["int_gain"], fields["int_offset"]
    return fields


def manifest_files(manifest: Path) -> list[Path]:
    """The frame files a manifest lists (relative names resolved against its folder)."""
    names = json.loads(Path(manifest).read_text())["files"]
    return [Path(manifest).parent / name for name in names]


def prepare_workload(
    wl: Workload, root: Path, log: Callable[[str], None] | None = None
) -> tuple[Path, bool]:
    """Make the frame set of ``wl`` under ``root/wl.key()``, or reuse it.

    Frames are written one at a time (the stack is never in memory). The
    manifest (``manifest.json``: generator version, workload, file names,
    scale factors) is written last, so an interrupted run is redone.

    Returns
    -------
    manifest : Path
        The manifest; the frames are its ``"files"``, relative to its folder.
    generated : bool
        False when a matching frame set was reused.

    Raises
    ------
    ValueError
        An unknown ``format`` or ``dtype``.
    """
    if wl.format not in FORMATS:
        raise ValueError(f"workload format {wl.format!r} is not supported ({', '.join(FORMATS)})")
    if wl.dtype not in DTYPES:
        raise ValueError(f"workload dtype {wl.dtype!r} is not supported ({', '.join(DTYPES)})")
    folder = Path(root) / wl.key()
    manifest = folder / "manifest.json"
    names = [f"frame_{i:04d}{wl.suffix}" for i in range(wl.n_frames)]
    want = {"generator": GENERATOR_VERSION, "workload": _manifest_workload(wl), "files": names}
    if wl.format == "tiff":
        want["tiff_rows_per_strip"] = tiff_rows_per_strip(wl)
    frame_bytes = wl.nbytes // wl.n_frames
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} == want and all(
            (folder / n).is_file() and (folder / n).stat().st_size >= frame_bytes for n in names
        ):
            return manifest, False
    manifest.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"generating {wl.describe()} in {folder}")
    model = _sky_model(wl)
    scales = [_write_frame(wl, model, i, folder / n) for i, n in enumerate(names)]
    manifest.write_text(json.dumps({**want, "scales": scales}, indent=1))
    return manifest, True


def subset_manifest(manifest: Path, n_frames: int) -> Path:
    """A manifest of the first ``n_frames`` frames of a set, next to its manifest.

    Frame ``i`` does not depend on the set's size, so these frames are the
    ``n_frames`` set of the same workload (its truth and cosmic-ray mask are
    those of ``replace(wl, n_frames=n_frames)``). Written as
    ``manifest_first_N.json``; returns its path.

    Raises
    ------
    ValueError
        ``n_frames`` is not between 1 and the set's frame count.
    """
    manifest = Path(manifest)
    full = json.loads(manifest.read_text())
    if not 1 <= n_frames <= len(full["files"]):
        raise ValueError(f"{manifest}: cannot take {n_frames} of {len(full['files'])} frames")
    sub = dict(full, files=full["files"][:n_frames], scales=full["scales"][:n_frames])
    sub["workload"] = dict(full["workload"], n_frames=n_frames)
    path = manifest.with_name(f"manifest_first_{n_frames}.json")
    path.write_text(json.dumps(sub, indent=1))
    return path
