"""A small synthetic raw night for the demo: bias, darks, flats and drifting lights.

:func:`make_night` writes FITS files as a camera would: every frame carries the
camera's bias level and read noise, darks and lights its dark current and hot
pixels, flats and lights the optics' vignetting and a few dust shadows, and the
lights a star field that drifts by a few pixels and turns by a few degrees over
the night (an alt-az mount's field rotation), on a sky with a gradient, with
cosmic rays and, in one frame, a satellite trail. The headers name their type
the way different cameras do (``Bias Frame``, ``DARK``, ``Flat Field``,
``Light Frame``), as real files disagree.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["NIGHT", "make_night"]

#: the night's parameters (see :func:`make_night`)
NIGHT = {
    "size": 384,
    "n_bias": 5,
    "n_darks": 5,
    "n_flats": 5,
    "n_lights": 12,
    "exptime": 60.0,
    "bias": 300.0,
    "read_noise": 6.0,
    "dark_current": 0.4,  # ADU per second
    "sky": 400.0,
    "drift_px": 14.0,  # over the night
    "rotation_deg": 3.0,  # over the night
}


def _stars(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(x, y, peak) of a star field a little larger than the frame (for the drift)."""
    x = rng.uniform(-0.2 * size, 1.2 * size, n)
    y = rng.uniform(-0.2 * size, 1.2 * size, n)
    peak = 10 ** rng.uniform(1.7, 4.2, n)
    return np.column_stack([x, y, peak])


def _render(stars: np.ndarray, size: int, sigma: float = 1.5) -> np.ndarray:
    """Gaussian stars at (x, y) with their peaks, on a zero background."""
    image = np.zeros((size, size))
    r = int(np.ceil(5 * sigma))
    for x, y, peak in stars:
        ix, iy = int(round(x)), int(round(y))
        y0, y1, x0, x1 = (
            max(iy - r, 0),
            min(iy + r + 1, size),
            max(ix - r, 0),
            min(ix + r + 1, size),
        )
        if y1 <= y0 or x1 <= x0:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        image[y0:y1, x0:x1] += peak * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return image


def _vignetting(size: int, rng: np.random.Generator) -> np.ndarray:
    """The optics' response: radial falloff to about 0.8 in the corners and dust shadows."""
    yy, xx = np.mgrid[0:size, 0:size]
    r2 = ((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (size / 2) ** 2
    flat = 1.0 - 0.1 * r2
    for _ in range(3):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        rad = rng.uniform(6, 14)
        d = np.hypot(xx - cx, yy - cy)
        flat *= 1 - 0.06 * ((d > 0.5 * rad) & (d < rad))
    return flat


def _write(path: Path, data: np.ndarray, imagetyp: str, exptime: float, extra: dict) -> None:
    from astropy.io import fits

    header = fits.Header()
    header["IMAGETYP"] = imagetyp
    header["EXPTIME"] = (exptime, "exposure time [s]")
    header["INSTRUME"] = "stackengine demo camera"
    for key, value in extra.items():
        header[key] = value
    fits.PrimaryHDU(np.clip(np.rint(data), 0, 65535).astype(np.uint16), header=header).writeto(path)


def make_night(folder: str | os.PathLike, seed: int = 1) -> dict[str, list[Path]]:
    """Write the raw night into ``folder`` (created); returns the files by kind.

    Parameters
    ----------
    folder : path
        Where the raw files go (``bias_*.fits``, ``dark_*.fits``, ``flat_*.fits``,
        ``light_*.fits``, all uint16).
    seed : int
        The random seed: the same night for the same seed.

    Returns
    -------
    dict
        ``{"bias": [...], "dark": [...], "flat": [...], "light": [...]}`` and
        ``"truth"``: the lights' star field without the sky (float64, first frame's
        pixels), for checks.
    """
    p = NIGHT
    size = int(p["size"])
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bias_level = p["bias"] + rng.normal(0, 2.0, size)[None, :]  # column pattern
    hot = rng.random((size, size)) < 2e-4
    dark_rate = np.where(hot, 30.0, p["dark_current"])
    flat = _vignetting(size, rng)
    files: dict[str, list] = {"bias": [], "dark": [], "flat": [], "light": []}

    def noisy(signal: np.ndarray) -> np.ndarray:
        return (
            bias_level
            + signal
            + rng.normal(0, 1, signal.shape) * np.sqrt(p["read_noise"] ** 2 + np.maximum(signal, 0))
        )

    zeros = np.zeros((size, size))
    for k in range(int(p["n_bias"])):
        path = out / f"bias_{k:02d}.fits"
        _write(path, noisy(zeros), "Bias Frame", 0.0, {})
        files["bias"].append(path)
    for k in range(int(p["n_darks"])):
        path = out / f"dark_{k:02d}.fits"
        _write(path, noisy(dark_rate * p["exptime"]), "DARK", p["exptime"], {})
        files["dark"].append(path)
    for k in range(int(p["n_flats"])):
        path = out / f"flat_{k:02d}.fits"
        _write(path, noisy(20000.0 * flat), "Flat Field", 2.0, {"FILTER": "L"})
        files["flat"].append(path)
    stars = _stars(int(0.0035 * size * size), size, rng)
    yy, xx = np.mgrid[0:size, 0:size]
    n = int(p["n_lights"])
    truth = None
    for k in range(n):
        t = k / max(n - 1, 1)
        angle = np.radians(p["rotation_deg"] * t)
        shift = p["drift_px"] * t * np.array([1.0, -0.6])
        c = size / 2
        x = c + np.cos(angle) * (stars[:, 0] - c) - np.sin(angle) * (stars[:, 1] - c) + shift[0]
        y = c + np.sin(angle) * (stars[:, 0] - c) + np.cos(angle) * (stars[:, 1] - c) + shift[1]
        field = _render(np.column_stack([x, y, stars[:, 2]]), size)
        if truth is None:
            truth = field
        sky = p["sky"] * (1 + 0.25 * (xx / size) + 0.1 * (yy / size))  # a gradient
        frame = noisy((field + sky) * flat + dark_rate * p["exptime"])
        hits = rng.random((size, size)) < 4e-4
        frame[hits] += rng.uniform(800, 8000, hits.sum())
        if k == n // 3:  # a satellite crosses the field
            cols = np.arange(size)
            rows = np.round(0.15 * size + 0.7 * cols).astype(int)
            for d in (-1, 0, 1):
                ok = (rows + d >= 0) & (rows + d < size)
                frame[rows[ok] + d, cols[ok]] += 3000.0
        path = out / f"light_{k:02d}.fits"
        _write(path, frame, "Light Frame", p["exptime"], {"FILTER": "L",
               "DATE-OBS": f"2026-11-21T21:{2 * k:02d}:00"})  # fmt: skip
        files["light"].append(path)
    files["truth"] = truth
    return files
