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
import time
import zlib
from pathlib import Path

import numpy as np

from .errors import OutputError

__all__ = ["MARKER", "make_scene", "make_frames", "write_png", "run_demo"]


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


#: the file in a demo folder that marks it as the demo's own (it lists what it wrote)
MARKER = ".stackengine-demo"


def _demo_folder(out: Path) -> bool:
    """Prepare the demo's folder: replace the demo's own earlier output (the files its
    marker lists, nothing else), refuse a folder the demo did not make. Returns
    whether an earlier output was replaced."""
    import shutil

    if not out.exists():
        return False
    marker = out / MARKER
    if not marker.is_file():
        if out.is_dir() and not any(out.iterdir()):
            return False
        raise OutputError(
            f"{out}: exists and is not a folder the demo made; give another with -o DIR"
        )
    for name in marker.read_text().split():
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    marker.unlink()
    return True


def _pixel_noise(image: np.ndarray) -> float:
    """The pixel-to-pixel noise: mad_std of neighbour differences over sqrt(2) (smooth
    gradients and vignetting do not count)."""
    from astropy.stats import mad_std

    d = (image[:, 1:] - image[:, :-1]).ravel() / np.sqrt(2.0)
    return float(mad_std(d[np.isfinite(d)]))


def _panel(image: np.ndarray) -> np.ndarray:
    """An image stretched to 0..1 for display (asinh between its 1st and 99.8th
    percentiles)."""
    img = np.asarray(image, dtype=np.float64)
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, [1.0, 99.8]) if finite.size else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(img, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    return np.arcsinh(10 * scaled) / np.arcsinh(10)


def _picture(path: Path, raw: np.ndarray, plain: np.ndarray, final: np.ndarray,
             rejected: np.ndarray) -> None:  # fmt: skip
    """The demo's picture: a raw light, the plain mean, the final stack, its rejections."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 10.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    panels = (
        (raw, "one raw light (bias, dark, vignetting, gradient)", "gray"),
        (plain, "plain mean of the raw lights: trail, smeared stars", "gray"),
        (final, "stackengine run: calibrated, registered, clipped", "gray"),
        (rejected, "values rejected per pixel (cosmic rays, the trail)", "magma"),
    )
    for ax, (img, title, cmap) in zip(axes.ravel(), panels, strict=True):
        shown = _panel(img) if cmap == "gray" else img
        ax.imshow(shown, origin="lower", cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=70, format="png")
    os.replace(tmp, path)


def run_demo(*, output: str | os.PathLike = "stackengine_demo") -> dict[str, float]:
    """A raw night from bias to finished stack, on synthetic frames, in one folder.

    Makes a small raw night (:func:`stackengine.demo_night.make_night`: bias,
    darks, flats, lights drifting and turning, a gradient, cosmic rays, a satellite
    trail) in ``output/raw``, runs :func:`stackengine.run_night` on it into
    ``output/night`` (masters, the calibrated, registered stack, report), stacks
    the raw lights plainly (a mean, nothing else) for comparison, and draws
    ``output/demo.png``: a raw light, the plain mean (trail and smeared stars),
    the final stack and its rejection map. An earlier demo output in ``output``
    is replaced (and said); a folder the demo did not make is refused.

    Returns
    -------
    dict
        The numbers printed (seconds, noise, rejections).
    """
    from astropy.io import fits

    from . import stack, write
    from .demo_night import NIGHT, make_night
    from .night import run_night

    out = Path(output)
    replaced = _demo_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("raw\nnight\nplain_mean.fits\ndemo.png\n")
    if replaced:
        print(f"stackengine demo: replacing the previous demo output in {out}/")
    t0 = time.perf_counter()
    files = make_night(out / "raw")
    t1 = time.perf_counter()
    result = run_night(out / "raw", out / "night")
    t2 = time.perf_counter()
    lights = [str(p) for p in files["light"]]
    plain = stack(lights, reject=None)
    write(plain, out / "plain_mean.fits")
    stats = result.stacks[0]
    with fits.open(stats.file) as hdul:
        final = hdul[0].data.astype(np.float64)
        rejected = (hdul["REJECTED_LOW"].data + hdul["REJECTED_HIGH"].data).astype(np.float64)
    raw = fits.getdata(lights[0]).astype(np.float64)
    plain_image = fits.getdata(out / "plain_mean.fits").astype(np.float64)
    _picture(out / "demo.png", raw, plain_image, final, rejected)
    sky_single, sky_stack = _pixel_noise(raw), _pixel_noise(final)
    n = int(NIGHT["n_lights"])
    summary = {
        "seconds_make": t1 - t0,
        "seconds_run": t2 - t1,
        "frames": float(n),
        "used": float(stats.used),
        "rejected_share": float(stats.rejected),
        "noise_single": sky_single,
        "noise_stack": sky_stack,
    }
    print(f"stackengine demo: a synthetic raw night ({NIGHT['n_bias']} bias, "
          f"{NIGHT['n_darks']} darks, {NIGHT['n_flats']} flats, {n} lights of "
          f"{NIGHT['size']}x{NIGHT['size']} drifting {NIGHT['drift_px']:g} px and turning "
          f"{NIGHT['rotation_deg']:g} deg, with a gradient, cosmic rays and a satellite "
          f"trail) in {out / 'raw'}")  # fmt: skip
    print(f"  stackengine run: masters, calibrated and registered stack of {stats.used} "
          f"lights in {t2 - t1:.1f} s -> {out / 'night'} (report.png, report.md)")  # fmt: skip
    print(f"  sky noise {sky_single:.1f} ADU in one raw light -> {sky_stack:.1f} in the "
          f"stack; {100 * stats.rejected:.2f} % of the values rejected")  # fmt: skip
    print(f"  picture: {out / 'demo.png'} (raw light, plain mean, final stack, rejections)")
    return summary
