"""Accuracy of every run's image: against the noiseless truth and against astropy.

Against astropy (``vs_astropy`` of each summary): the astropy child's own
image when astropy ran (the whole image), otherwise an *in-harness* astropy
result computed here on a band of rows in the middle of the frames (about
:data:`BAND_PIXELS` pixels, whole rows; the same ``sigma_clip(axis=0, sigma=3,
maxiters=5, cenfunc='median', stdfunc='mad_std').mean(axis=0)`` as the astropy
method, so on those rows it is the astropy image exactly: pixels are
independent). Imports only the standard library at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .accuracy import DIFFER_RTOL, deviation, load_image, truth_accuracy
from .frameio import load_cube
from .normalization import truth_factor
from .workload import Workload, cosmic_ray_mask, manifest_files, truth_image

__all__ = ["BAND_PIXELS", "astropy_band", "band_rows", "compare_truth", "compare_astropy"]

#: Pixels of the in-harness astropy reference band (whole rows, at least one).
BAND_PIXELS = 1 << 20


def band_rows(wl: Workload, pixels: int | None = None) -> slice:
    """The rows of the reference band: about ``pixels`` (:data:`BAND_PIXELS`) pixels
    around the middle row, whole rows."""
    pixels = BAND_PIXELS if pixels is None else pixels
    n = max(1, min(wl.height, -(-pixels // wl.width)))
    start = (wl.height - n) // 2
    return slice(start, start + n)


def astropy_band(files: list[Path], rows: slice) -> Any:
    """astropy's sigma-clipped mean (as the ``astropy`` method) of ``rows`` of the frames."""
    import numpy as np
    from astropy.stats import sigma_clip

    cube = load_cube(files, rows)
    clipped = sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
    return clipped.mean(axis=0).filled(np.nan).astype(np.float32)


def compare_truth(rows: Iterable[dict[str, Any]], wl: Workload) -> int | None:
    """Set ``row["truth"]`` (:func:`benchmarks.truth_accuracy`) of each successful row.

    A normalized row is compared with the truth times its
    :func:`benchmarks.normalization.truth_factor`. Returns the number of
    cosmic-ray pixels (None if no row succeeded).
    """
    done = [r for r in rows if r.get("ok")]
    if not done:
        return None
    truth, hits = truth_image(wl), cosmic_ray_mask(wl)
    for r in done:
        factor = truth_factor(r, wl)
        expect = truth if factor == 1.0 else truth * factor  # float32 (NEP 50)
        r["truth"] = truth_accuracy(Path(r["out"]), expect, wl.ideal_noise, hits)
    return int(hits.sum())


def compare_astropy(
    rows: dict[str, dict[str, Any]],
    wl: Workload,
    manifest: Path,
    astropy_row: dict[str, Any] | None,
    log: Callable[[str], None] | None = None,
    rtol: float = DIFFER_RTOL,
) -> dict[str, Any]:
    """Set ``row["vs_astropy"]`` (:func:`benchmarks.accuracy.deviation`) of each successful row.

    Parameters
    ----------
    rows : dict
        Summaries by name, each with ``ok`` and ``out`` (its image).
    wl, manifest : Workload, Path
        The workload and its frames (for the in-harness band).
    astropy_row : dict or None
        The astropy method's summary, if it ran; its image is the reference.
    rtol : float
        Relative difference beyond which a pixel counts as differing.

    Returns
    -------
    dict
        The reference: ``source`` (``"astropy"`` or ``"in-harness astropy"``),
        ``rows`` ``[start, stop]`` of the compared rows, ``rtol``.
    """
    done = {name: r for name, r in rows.items() if r.get("ok")}
    if astropy_row is not None and astropy_row.get("ok"):
        ref, band, source = load_image(Path(astropy_row["out"])), slice(0, wl.height), "astropy"
    elif done:
        band = band_rows(wl)
        if log:
            log(f"in-harness astropy reference on rows {band.start}:{band.stop}")
        ref, source = astropy_band(manifest_files(manifest), band), "in-harness astropy"
    else:
        return {}
    for r in done.values():
        image = load_image(Path(r["out"]))[band]
        r["vs_astropy"] = deviation(image, ref, wl.adu_noise, rtol)
    return {"source": source, "rows": [band.start, band.stop], "rtol": rtol}
