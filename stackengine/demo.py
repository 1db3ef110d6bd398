"""Synthetic frame sets for the demo, the docs and the tests.

A scene of Gaussian stars on a sky background is observed ``n_frames``
times: each frame adds Gaussian noise, cosmic-ray hits (single bright pixels
and short streaks) and, in one frame, a satellite trail. Stacking with sigma
clipping should remove every artefact and lower the noise by about
``sqrt(n_frames)``.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from .errors import OutputError

__all__ = ["make_scene", "make_frames", "write_png", "run_demo"]


def make_scene(
    shape: tuple[int, int], *, n_stars: int = 150, sky: float = 1000.0, seed: int = 0
) -> np.ndarray:
    """The noiseless truth: Gaussian stars (sigma 1.6 px) on a flat sky, float64."""
    rng = np.random.default_rng(seed)
    h, w = shape
    truth = np.full(shape, sky, dtype=np.float64)
    ys = rng.uniform(5, h - 5, n_stars)
    xs = rng.uniform(5, w - 5, n_stars)
    peaks = 10 ** rng.uniform(1.5, 4.0, n_stars)
    sigma = 1.6
    r = int(np.ceil(5 * sigma))
    for y0, x0, peak in zip(ys, xs, peaks, strict=True):
        iy, ix = int(y0), int(x0)
        y_lo, y_hi = max(0, iy - r), min(h, iy + r + 1)
        x_lo, x_hi = max(0, ix - r), min(w, ix + r + 1)
        yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
        truth[y_lo:y_hi, x_lo:x_hi] += peak * np.exp(
            -((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * sigma**2)
        )
    return truth


def _artefacts(frame: np.ndarray, rng: np.random.Generator, *, rate: float, trail: bool) -> int:
    """Add cosmic rays (and a satellite trail) in place; return the number of hits."""
    h, w = frame.shape
    n_hits = max(1, int(rate * h * w))
    ys = rng.integers(0, h, n_hits)
    xs = rng.integers(0, w, n_hits)
    frame[ys, xs] += rng.uniform(500, 5000, n_hits)
    # a few short streaks (grazing cosmic rays)
    for y0, x0 in zip(ys[: n_hits // 10], xs[: n_hits // 10], strict=True):
        frame[y0, x0 : min(w, x0 + 4)] += 800.0
    if trail:
        x = np.arange(w)
        y = np.round(0.1 * h + 0.6 * h * x / w).astype(int)
        for dy in (-1, 0, 1):
            yy = np.clip(y + dy, 0, h - 1)
            frame[yy, x] += 1200.0
    return n_hits


def make_frames(
    folder: str | os.PathLike,
    *,
    n_frames: int = 16,
    size: int = 512,
    seed: int = 0,
    noise: float = 30.0,
    cosmic_rate: float = 5e-4,
    dtype: str = "float32",
) -> tuple[list[Path], np.ndarray]:
    """Write a synthetic set of registered FITS frames into ``folder``.

    Returns the list of paths and the noiseless truth image.
    """
    from astropy.io import fits

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = make_scene((size, size), seed=seed)
    paths = []
    for i in range(n_frames):
        frame = truth + rng.normal(0.0, noise, truth.shape)
        _artefacts(frame, rng, rate=cosmic_rate, trail=(i == n_frames // 3))
        header = fits.Header()
        header["EXPTIME"] = (60.0, "exposure time [s]")
        header["FILTER"] = "L"
        header["IMAGETYP"] = "LIGHT"
        header["DATE-OBS"] = f"2026-11-21T{20 + i // 60:02d}:{i % 60:02d}:00"
        if np.dtype(dtype) == np.uint16:
            data = np.clip(np.rint(frame), 0, 65535).astype(np.uint16)
        else:
            data = frame.astype(dtype)
        path = folder / f"frame_{i:03d}.fits"
        fits.PrimaryHDU(data, header=header).writeto(path, overwrite=True)
        paths.append(path)
    return paths, truth


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a 2-D float image as an 8-bit greyscale PNG with an asinh stretch."""
    img = np.asarray(image, dtype=np.float64)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [1.0, 99.9]) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(img, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    stretched = np.arcsinh(10 * scaled) / np.arcsinh(10)
    pixels = (stretched * 255 + 0.5).astype(np.uint8)
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    Path(path).write_bytes(png)


def run_demo(
    *,
    n_frames: int = 16,
    size: int = 512,
    output: str = "stackengine_demo.fits",
    overwrite: bool = False,
) -> dict[str, float]:
    """Make a synthetic set in a temporary folder, stack it, write result + PNG preview.

    The result and ``<output stem>.png`` go to the current directory (or where
    ``output`` points). Prints a short summary and returns its numbers.
    """
    from . import open_frames, stack, write

    out = Path(output)
    preview = out.with_suffix(".png")
    for target in (out, preview):
        if target.exists() and not overwrite:
            raise OutputError(f"{target}: exists (pass --overwrite to replace it)")
    with tempfile.TemporaryDirectory(prefix="stackengine-demo-") as tmp:
        t0 = time.perf_counter()
        paths, truth = make_frames(tmp, n_frames=n_frames, size=size)
        t1 = time.perf_counter()
        frames = open_frames(paths)
        result = stack(frames, reject="sigma", sigma_lower=3.0, sigma_upper=3.0, maxiters=5)
        write(result, out, overwrite=overwrite)
        t2 = time.perf_counter()
        from astropy.io import fits

        with fits.open(out) as hdul:
            image = hdul[0].data.astype(np.float64)
            low = int(hdul["REJECTED_LOW"].data.sum())
            high = int(hdul["REJECTED_HIGH"].data.sum())
        single = fits.getdata(paths[0]).astype(np.float64)
    tmp_png = preview.with_name(f".{preview.name}.tmp")
    write_png(tmp_png, image)
    os.replace(tmp_png, preview)
    sky = truth < truth.min() + 1.0  # star-free background pixels
    from astropy.stats import mad_std

    noise_single = float(mad_std(single[sky] - truth[sky]))  # robust: ignores the artefacts
    noise_stack = float(mad_std(image[sky] - truth[sky]))
    worst = float(np.max(np.abs(image - truth)) / max(noise_stack, 1e-12))
    total = n_frames * size * size
    summary = {
        "frames": n_frames,
        "seconds_make": t1 - t0,
        "seconds_stack": t2 - t1,
        "rejected_low": low,
        "rejected_high": high,
        "noise_single": noise_single,
        "noise_stack": noise_stack,
        "worst_residual_sigma": worst,
    }
    print(
        f"stackengine demo: {n_frames} synthetic {size}x{size} frames with noise, "
        f"cosmic rays and a satellite trail"
    )
    print(
        f"  stacked (sigma 3/3, median/mad_std, 5 iterations, mean) in {t2 - t1:.2f} s "
        f"-> {out}  (preview {preview})"
    )
    print(
        f"  rejected {high} high and {low} low values of {total} "
        f"({100 * (high + low) / total:.2f} %)"
    )
    print(
        f"  background noise {noise_single:.1f} in one frame -> {noise_stack:.2f} stacked "
        f"(ideal {noise_single / np.sqrt(n_frames):.2f}); worst residual "
        f"{worst:.1f} sigma"
    )
    return summary
