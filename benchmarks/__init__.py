"""Benchmark harness for stackengine: workloads, methods, result reports.

Run ``python -m benchmarks --help``. The sigma-clipping benchmark
(:mod:`benchmarks.bench_sigma`) stacks a synthetic FITS frame set with
stackengine and with its peers (ccdproc, astropy), each in a fresh process,
and prints wall time, CPU time, peak RSS, throughput, speed-ups and accuracy.

This module holds what every benchmark shares: the :class:`Workload` spec,
:func:`prepare_workload` (seeded synthetic frames, written one at a time and
reused while their manifest matches) and :func:`format_report` (printing,
kept apart from measuring; reports are plain dicts). It imports nothing heavy
at module level: every benchmark child imports this package first, and the
child's own imports are part of its measured time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "GENERATOR_VERSION",
    "Workload",
    "compare_images",
    "format_report",
    "prepare_workload",
]

#: Bump when the generated pixels change, so stale frame sets are regenerated.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Workload:
    """A synthetic frame set: what to generate, and the key of its manifest.

    Pixel model of frame ``i`` (all values in ADU): ``scale_i * (sky + stars)
    + N(0, noise) + cosmic rays``, with ``scale_i`` uniform in ``1 ± scale_spread``,
    :attr:`n_stars` Gaussian stars (``stars_per_mpix``, at least 3; 336 in a
    4096x4096 frame) at the same positions in every frame, and
    ``cosmic_fraction`` of the pixels hit by cosmic rays of
    ``cosmic_min..cosmic_max`` ADU. Seeded per frame: same parameters, same bits.
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


def _write_frame(wl: Workload, model: Any, i: int, path: Path) -> float:
    """Make frame ``i`` and write it; return its scale factor."""
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng([wl.seed, i])
    scale = 1.0 + rng.uniform(-wl.scale_spread, wl.scale_spread)
    data = model * np.float32(scale)
    noise = rng.standard_normal(data.shape, dtype=np.float32)
    noise *= np.float32(wl.noise)
    data += noise
    del noise
    n_hits = round(wl.cosmic_fraction * data.size)
    where = rng.integers(0, data.size, n_hits)
    data.reshape(-1)[where] += rng.uniform(wl.cosmic_min, wl.cosmic_max, n_hits).astype(np.float32)
    header = fits.Header()
    header["IMAGETYP"] = "LIGHT"
    header["EXPTIME"] = 60.0
    header["BENCHSCL"] = (scale, "synthetic per-frame scale factor")
    fits.PrimaryHDU(data.astype(wl.dtype, copy=False), header).writeto(path, overwrite=True)
    return scale


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
    """
    if wl.format != "fits":
        raise ValueError(f"workload format {wl.format!r} is not supported (only 'fits')")
    folder = Path(root) / wl.key()
    manifest = folder / "manifest.json"
    names = [f"frame_{i:04d}.fits" for i in range(wl.n_frames)]
    want = {"generator": GENERATOR_VERSION, "workload": asdict(wl), "files": names}
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


def _load_image(path: Path) -> Any:
    import numpy as np
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        named = [h for h in hdul if h.name == "IMAGE" and h.data is not None]
        hdus = named or [h for h in hdul if h.data is not None and h.data.ndim >= 2]
        return np.array(hdus[0].data, dtype=np.float64)


def compare_images(path: Path, ref_path: Path, noise: float) -> dict[str, Any]:
    """Compare two result images (FITS; the ``IMAGE`` HDU or the first image HDU).

    Returns
    -------
    dict
        ``max_abs`` (ADU, over pixels finite in both or NaN in both),
        ``max_abs_over_noise`` (divided by ``noise``, the per-frame sky noise),
        ``n_differ``/``frac_differ`` (pixels with ``|image - ref| > 1e-4 |ref|``
        or NaN in one image only), ``n_nan_mismatch`` and ``n_pixels``.
    """
    import numpy as np

    a, b = _load_image(path), _load_image(ref_path)
    if a.shape != b.shape:
        return {"error": f"shapes differ: {a.shape} vs {b.shape}"}
    with np.errstate(invalid="ignore"):
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        diff = np.abs(a - b)
        diff[nan_a & nan_b] = 0.0
        one_nan = nan_a ^ nan_b
        n_differ = int(np.count_nonzero(one_nan | (diff > 1e-4 * np.abs(b))))
        max_abs = float(np.max(diff, where=~one_nan, initial=0.0))
    return {
        "max_abs": max_abs,
        "max_abs_over_noise": max_abs / noise,
        "n_differ": n_differ,
        "frac_differ": n_differ / a.size,
        "n_nan_mismatch": int(np.count_nonzero(one_nan)),
        "n_pixels": int(a.size),
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_report(report: dict[str, Any]) -> str:
    """The human-readable table of a benchmark report (as made by ``run_benchmark``)."""
    wl = Workload(**report["workload"])
    subject = report["subject"]
    results = report["results"]
    sub = results.get(subject, {})
    lines = [
        f"{report['benchmark']} benchmark: {wl.describe()}, memory_limit={report['memory_limit']}"
        f", {report['cpu_count']} CPUs; frames in {report['data_dir']}",
        "",
        f"{'method':<12} {'wall s':>9} {'CPU s':>9} {'peak RSS GiB':>13} "
        f"{'Mpix-frames/s':>14} {subject + ' speed-up':>21} {'RSS ratio':>10}",
    ]
    for name, r in results.items():
        if not r["ok"]:
            lines.append(f"{name:<12} FAILED: {r.get('error')}")
            continue
        speed = rss = None
        if sub.get("ok"):
            speed = r["wall_s"] / sub["wall_s"]
            rss = r["peak_rss_bytes"] / sub["peak_rss_bytes"]
        lines.append(
            f"{name:<12} {r['wall_s']:>9.2f} {r['cpu_s']:>9.2f} "
            f"{r['peak_rss_bytes'] / 1024**3:>13.3f} {r['mpix_frames_per_s']:>14.1f} "
            f"{_fmt(speed, '.2f') + 'x':>21} {_fmt(rss, '.2f') + 'x':>10}"
        )
    lines += [
        "",
        "speed-up = wall(method) / wall(" + subject + "); wall = whole child process",
        "(interpreter start, imports, reading, stacking, writing the FITS image).",
        "",
        "parameters:",
    ]
    lines += [f"  {name}: {params}" for name, params in report["params"].items()]
    if report["accuracy"]:
        lines += ["", f"accuracy of {subject} (per-frame sky noise = {wl.noise:g} ADU):"]
    for ref, acc in report["accuracy"].items():
        if "error" in acc:
            lines.append(f"  vs {ref}: {acc['error']}")
            continue
        lines.append(
            f"  vs {ref}: max |diff| = {acc['max_abs']:.3g} ADU = {acc['max_abs_over_noise']:.3g}"
            f" sigma; pixels differing > 1e-4 relative: {acc['n_differ']} of {acc['n_pixels']}"
            f" ({acc['frac_differ']:.2e}); NaN in one only: {acc['n_nan_mismatch']}"
        )
    if report["checks"]:
        lines += ["", "targets (set for 50 frames of 4096x4096, memory_limit=512MiB):"]
    for c in report["checks"]:
        verdict = "PASS" if c["ok"] else "FAIL"
        relation = "<=" if c["unit"] == "GiB" else ">="
        lines.append(
            f"  {c['name']}: {c['value']:.2f} {c['unit']} ({relation} {c['target']:g}) {verdict}"
        )
    return "\n".join(lines)
