"""Accuracy of result images: against another method's image, and against the truth.

Imports only the standard library at module level (numpy and astropy inside
the functions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "BACKGROUND_FRACTION",
    "DIFFER_RTOL",
    "RESIDUAL_SIGMAS",
    "compare_images",
    "deviation",
    "load_image",
    "truth_accuracy",
]

#: A pixel is a residual when it is this many ideal stack noises from the truth.
RESIDUAL_SIGMAS = 5.0
#: Two results differ at a pixel beyond float32 rounding: ``|a - b| > DIFFER_RTOL |b|``.
DIFFER_RTOL = 1e-6
#: Background pixels: the truth lies within this fraction of the ideal noise of its minimum
#: (the sky; no star light).
BACKGROUND_FRACTION = 0.01
MAD_TO_STD = 1.482602218505602


def load_image(path: Path, dtype: Any = "float64") -> Any:
    """The image of a result FITS file (its ``IMAGE`` HDU, else its first image HDU)."""
    import numpy as np
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        named = [h for h in hdul if h.name == "IMAGE" and h.data is not None]
        hdus = named or [h for h in hdul if h.data is not None and h.data.ndim >= 2]
        return np.array(hdus[0].data, dtype=dtype)


def deviation(image: Any, ref: Any, noise: float, rtol: float = DIFFER_RTOL) -> dict[str, Any]:
    """How far ``image`` lies from ``ref`` (two arrays of one shape).

    Returns
    -------
    dict
        ``max_abs`` (over pixels finite in both or NaN in both; 0 if none),
        ``max_abs_over_noise`` (divided by ``noise``), ``n_differ``/``frac_differ``
        (pixels with ``|image - ref| > rtol |ref|`` or NaN in one image only),
        ``rtol``, ``n_nan_mismatch`` and ``n_pixels``; or ``error`` for
        different shapes.
    """
    import numpy as np

    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(ref, dtype=np.float64)
    if a.shape != b.shape:
        return {"error": f"shapes differ: {a.shape} vs {b.shape}"}
    with np.errstate(invalid="ignore"):
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        diff = np.abs(a - b)
        diff[nan_a & nan_b] = 0.0
        one_nan = nan_a ^ nan_b
        n_differ = int(np.count_nonzero(one_nan | (diff > rtol * np.abs(b))))
        max_abs = float(np.max(diff, where=~one_nan, initial=0.0))
    return {
        "max_abs": max_abs,
        "max_abs_over_noise": max_abs / noise,
        "n_differ": n_differ,
        "frac_differ": n_differ / a.size,
        "rtol": rtol,
        "n_nan_mismatch": int(np.count_nonzero(one_nan)),
        "n_pixels": int(a.size),
    }


def compare_images(path: Path, ref_path: Path, noise: float, rtol: float = 1e-4) -> dict[str, Any]:
    """Compare two result images (FITS; the ``IMAGE`` HDU or the first image HDU).

    :func:`deviation` of the two images, ``noise`` the per-frame sky noise.
    """
    return deviation(load_image(path), load_image(ref_path), noise, rtol)


def truth_accuracy(path: Any, truth: Any, ideal_noise: float, hits: Any = None) -> dict[str, Any]:
    """Compare a result image with the noiseless truth (:func:`benchmarks.truth_image`).

    Parameters
    ----------
    path : Path or numpy.ndarray
        The result image (FITS), or the image itself.
    truth : numpy.ndarray
        The noiseless expectation of the stack, same shape.
    ideal_noise : float
        The noise of the plain mean of the frames, ``noise / sqrt(n_frames)``.
    hits : numpy.ndarray of bool, optional
        Where a cosmic ray hit at least one frame (:func:`benchmarks.cosmic_ray_mask`).

    Returns
    -------
    dict
        ``n_residual``/``frac_residual``: pixels that are not finite or lie more
        than ``RESIDUAL_SIGMAS * ideal_noise`` from the truth (cosmic rays the
        rejection let through, or values it biased); ``threshold_adu``;
        ``noise_adu``: ``mad_std(image - truth)`` over the background (the
        finite pixels where the truth is within ``BACKGROUND_FRACTION *
        ideal_noise`` of its minimum: sky, no star light; ``n_background`` of
        them); ``noise_ratio``: ``noise_adu / ideal_noise`` (1 for a plain mean
        of clean frames, about 1.25 for a median); ``ideal_noise_adu``;
        ``median_bias_adu``: the median of ``image - truth`` over the
        background; ``n_nonfinite`` and ``n_pixels``; with ``hits``,
        ``n_cr_left`` (the residuals among the hit pixels) and ``n_cr_pixels``.
    """
    import numpy as np

    if isinstance(path, np.ndarray):
        image = path.astype(np.float32, copy=False)
    else:
        image = load_image(path, np.float32)
    if image.shape != truth.shape:
        return {"error": f"shape {image.shape} differs from the truth's {truth.shape}"}
    threshold = RESIDUAL_SIGMAS * ideal_noise
    resid = image - truth.astype(np.float32, copy=False)
    finite = np.isfinite(resid)
    n_nonfinite = int(resid.size - np.count_nonzero(finite))
    with np.errstate(invalid="ignore"):
        residual = ~(np.abs(resid) <= threshold)  # NaN counts
    n_residual = int(np.count_nonzero(residual))
    background = truth <= np.min(truth) + BACKGROUND_FRACTION * ideal_noise
    kept = resid[finite & background].astype(np.float64)
    median = float(np.median(kept)) if kept.size else float("nan")
    spread = MAD_TO_STD * float(np.median(np.abs(kept - median))) if kept.size else float("nan")
    found = {
        "n_residual": n_residual,
        "frac_residual": n_residual / resid.size,
        "threshold_adu": threshold,
        "noise_adu": spread,
        "ideal_noise_adu": ideal_noise,
        "noise_ratio": spread / ideal_noise,
        "n_background": int(kept.size),
        "median_bias_adu": median,
        "n_nonfinite": n_nonfinite,
        "n_pixels": int(resid.size),
    }
    if hits is not None:
        found["n_cr_left"] = int(np.count_nonzero(residual & hits))
        found["n_cr_pixels"] = int(np.count_nonzero(hits))
    return found
