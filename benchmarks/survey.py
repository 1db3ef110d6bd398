"""The "synthetic survey" workload: WCS co-adds of dithered TAN-SIP frames, with SWarp
and reproject as peers.

``python -m benchmarks.survey --n 200 --size 2048 --dir /work/bench/data
--scaling 25 50 100 200 --markdown /work/bench/results/survey_200x2048.md``

1. **Generator** (:func:`prepare_survey`; seeded, reused while its manifest matches):
   a star catalogue made from a real star field: stars found by ``sep`` in real
   frames of the open cluster NGC 2420 (:data:`SOURCE_FRAMES` in
   ``shared/data/real/uam_ngc2420``, read at run time; their positions and fluxes,
   so the flux distribution and the clustering are real) tiled over the sky (tiles
   anchored at the field centre, so a frame's stars do not depend on the other
   frames), each tile a copy of one frame's pattern turned by a multiple of 90 deg,
   maybe mirrored, and shifted cyclically (``--density`` packs more stars per pixel,
   for small test surveys). The sky field is about ``--field`` (default 10) times the
   area of one frame; every star has a true RA/Dec and flux (``truth.fits``). ``--n``
   frames of ``--size`` squared pixels, float32 FITS with EXPTIME, each with its own
   TAN-SIP WCS (0.5"/px within 0.2 %, turned up to 2 deg, a radial cubic distortion
   of about :data:`DISTORTION_PX` px at the corners plus small random quadratic terms,
   different per frame), pointed along a low-discrepancy sequence over the field
   (any first N frames cover it evenly: the N-frame subsets of ``--scaling`` are the
   first N frames); sky, Gaussian noise of the Poisson variance plus read noise;
   stars as pixel-integrated Gaussians (FWHM ~3 px, a little different per frame)
   placed where the frame's full WCS (``all_world2pix``, SIP included) puts their
   true sky position; cosmic rays in every frame and a satellite trail in frames 3,
   13, 23, ... (so rejection matters); pixels clipped at 65535 (saturation). The
   output grid (``grid.head``): a north-up TAN WCS at the frames' pixel scale
   covering every frame.
2. **Runners**, each a fresh process (wall time around it, its CPU time and peak RSS,
   children included, as :mod:`benchmarks.runner` measures every benchmark child):
   ``stackengine`` (``se.stack(paths, register="wcs", output_wcs=grid WCS,
   shape_out=(ny, nx), interpolation=..., reject="sigma", memory_limit=...)`` and
   ``se.write`` of the image and its count, as SWarp writes the co-add and its weight
   map), ``stackengine-cluster`` (the same inside a
   ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)`` and ``Client``),
   ``swarp-clipped`` / ``swarp-average`` (SWarp's ``COMBINE_TYPE CLIPPED`` /
   ``AVERAGE``) and ``reproject`` (``reproject_and_coadd(..., reproject_function=
   reproject_interp, combine_function="mean")``: no clipping exists there).
3. **Checks** on each co-add (:func:`measure_image`): the catalogue's isolated,
   unsaturated stars bright enough that their photon and sky noise moves the
   centroid by at most :data:`NOISE_PX`, at least :data:`EDGE_PX` px inside every
   frame that touches them and in at least :data:`MIN_COVER` frames
   (:func:`select_stars`), measured in
   stamps: windowed centroid (``sep.winpos``) against the truth projected through
   the grid WCS (RMS offset, mean offset, max) and aperture flux (annulus median
   subtracted) against the truth flux times the mean area ratio of the frames'
   pixels to the grid's at the star (every tool here keeps surface brightness);
   the same measurement on a noiseless render of the truth on the grid (the
   measurement's own floor); the leak of the satellite trails into the co-add;
   whether the co-add's header WCS is the grid. Targets (issue 17, for
   stackengine): RMS offset <= 0.02 px, median flux ratio within 0.5 %, peak RSS
   <= memory_limit + 256 MiB, at least 10x faster than SWarp CLIPPED and than
   reproject_and_coadd (side by side, one run), and with ``--scaling`` a linear
   cost in N (:func:`benchmarks.bayer_scaling._linear`).
4. **Output**: a markdown report printed and written to ``--markdown`` (default
   ``DIR/survey_results.md``), ``--json`` for the raw numbers.

SWarp reads TPV distortions, not SIP. Every frame therefore gets a sidecar
``frame_NNNN.head`` (SWarp's external-header mechanism, ``HEADER_SUFFIX .head``)
with ``CTYPE RA---TPV`` and the PV cards of the *same* polynomial: SIP's forward
mapping is a polynomial in the intermediate coordinates too, so its TPV form is
exact (the manifest keeps the largest difference astropy finds between the two
headers, ~1e-10 px). stackengine and reproject read the SIP headers; SWarp the TPV
ones; the star positions in each co-add show whether all three read them alike.
SWarp's output grid is the same ``grid.head`` copied beside its output image.

Imports only the standard library at module level.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .bayer_scaling import LINEAR_TOLERANCE, _linear
from .checks import check
from .methods import Mark, parse_bytes
from .registration import RSS_SLACK_BYTES
from .runner import MARKER, REPO, _stderr, peak_rss_self
from .system import available_bytes, busy_cpu_s, page_cache
from .workload import manifest_files, subset_manifest

__all__ = [
    "GENERATOR_VERSION",
    "Survey",
    "TOOLS",
    "format_survey",
    "frame_wcs",
    "grid_wcs",
    "main",
    "measure_image",
    "prepare_survey",
    "read_catalogue",
    "real_patterns",
    "run_survey",
    "run_tool",
    "select_stars",
    "sip_to_tpv",
    "survey_checks",
    "swarp_executable",
]

#: Bump when the frames' pixels, headers or truth change.
GENERATOR_VERSION = 1
SEED = 20250117
#: NGC 2420, where the real pattern comes from.
FIELD_CENTER_DEG = (114.602, 21.573)
PIXEL_SCALE_ARCSEC = 0.5
#: Frame-to-frame spread of the pixel scale (fraction) and largest rotation (deg).
SCALE_SPREAD = 0.002
MAX_ROTATION_DEG = 2.0
#: Radial cubic distortion at a frame's corners (px; +-15 % per frame), and the random
#: quadratic terms' typical size at the corners (px).
DISTORTION_PX = 3.0
QUADRATIC_PX = 0.3
FWHM_PX = 3.0
FWHM_SPREAD = 0.05
SKY_ADU = 1000.0
READ_NOISE_ADU = 5.0
EXPTIME_S = 60.0
SATURATION_ADU = 65535.0
#: Cosmic-ray hits per megapixel per frame (1-4 px tracks of 300-8000 ADU).
COSMIC_PER_MPIX = 25.0
#: Frames ``k`` with ``k % TRAIL_EVERY == 3`` have a satellite trail (Gaussian profile).
TRAIL_EVERY = 10
TRAIL_SIGMA_PX = 1.0
#: The real frames whose stars make the pattern (a V and a B light of 60 s).
SOURCE_FRAMES = ("science_NGC2420_V_uamA_0031.fits", "science_NGC2420_B_uamA_0026.fits")
REAL_DIR = REPO.parent / "shared" / "data" / "real" / "uam_ngc2420"
#: Stars rendered out to this many sigmas.
WINDOW_SIGMAS = 6.0
#: Star margin around the output grid (px).
STAR_PAD = 32
#: Measurement: aperture radius, background annulus, stamp half-size (grid px).
R_APERTURE, R_ANNULUS = 9.0, (12.0, 18.0)
STAMP = 21
#: Selection: a neighbour closer than r px and brighter than this fraction of the star
#: spoils it: (r, fraction) - any light in the aperture, a bright star in the annulus.
ISOLATION = ((R_APERTURE + 7, 1e-3), (R_ANNULUS[1] + 9, 0.05))
#: Selection: at least this many frames hold the star; the predicted centroid noise
#: (photon and sky noise of the co-add, radial RMS) at most NOISE_PX; peak below
#: PEAK_FRACTION x saturation in every frame.
MIN_COVER = 3
NOISE_PX = 0.005
PEAK_FRACTION = 0.7
#: Frame pixels kept clear of a frame's edge around a selected star.
EDGE_PX = R_APERTURE + 4
#: Issue 17's targets for stackengine.
RMS_TARGET_PX = 0.02
FLUX_TARGET = 0.005
SPEED_TARGET = 10.0
TOOLS = ("stackengine", "stackengine-cluster", "swarp-clipped", "swarp-average", "reproject")
DEFAULT_TOOLS = ("stackengine", "stackengine-cluster", "swarp-clipped", "reproject")
#: interpolation -> (SWarp RESAMPLING_TYPE, reproject_interp order)
INTERPOLATION = {
    "bilinear": ("BILINEAR", "bilinear"),
    "lanczos3": ("LANCZOS3", "bicubic"),
    "bicubic": ("LANCZOS2", "bicubic"),
    "nearest": ("NEAREST", "nearest-neighbor"),
}
MIB = 1024**2
Log = Callable[[str], None]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence warnings (astropy's notes on headers) inside the block."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# -- the star catalogue --------------------------------------------------------------------


def real_patterns(real_dir: Path = REAL_DIR) -> list[dict[str, Any]]:
    """The stars ``sep`` finds in each of :data:`SOURCE_FRAMES`: positions (px), fluxes
    scaled to :data:`EXPTIME_S`, and the frame's size.

    Detections at 5 sigma (5 px at least) off the frame's edge; sharp bright ones
    (cosmic rays, hot pixels: second moment below 0.6 x the median and peak above 20
    sigma) and very elongated ones (b/a < 0.4) dropped. Saturated stars stay (their
    flux is underestimated: they are bright, saturated stars here too).
    """
    import numpy as np
    import sep
    from astropy.io import fits

    out = []
    for name in SOURCE_FRAMES:
        path = Path(real_dir) / name
        with _quiet(), fits.open(path) as hdul:
            data = np.asarray(hdul[0].data, dtype=np.float64)
            exptime = float(hdul[0].header["EXPTIME"])
        bkg = sep.Background(data)
        objs = sep.extract(data - bkg.back(), 5.0, err=bkg.globalrms, minarea=5)
        h, w = data.shape
        sharp = (objs["a"] < 0.6 * np.median(objs["a"])) & (objs["peak"] > 20 * bkg.globalrms)
        edge = (objs["x"] < 3) | (objs["x"] > w - 4) | (objs["y"] < 3) | (objs["y"] > h - 4)
        keep = ~sharp & ~edge & (objs["b"] > 0.4 * objs["a"]) & (objs["flux"] > 0)
        out.append(
            {
                "name": name,
                "x": objs["x"][keep],
                "y": objs["y"][keep],
                "flux": objs["flux"][keep] * (EXPTIME_S / exptime),
                "width": w,
                "height": h,
            }
        )
    return out


def _dihedral(x: Any, y: Any, k: int) -> tuple[Any, Any]:
    """Centred coordinates turned by ``k % 4`` x 90 deg, mirrored when ``k >= 4``."""
    for _ in range(k % 4):
        x, y = -y, x
    return (-x, y) if k >= 4 else (x, y)


def star_catalogue(
    box: tuple[int, int, int, int], patterns: list[dict[str, Any]], seed: int, density: float = 1.0
) -> dict[str, Any]:
    """Stars over the field's pixel plane within ``box`` (field pixels, 0-based, inclusive;
    :data:`STAR_PAD` px beyond it on every side): tiles of one real frame's size anchored
    at the field centre, each a real frame's pattern, seeded per tile (which frame,
    turn/mirror, cyclic shift): a frame's stars do not depend on the other frames.
    ``density`` > 1 shrinks the pattern by its square root (more stars per pixel; for
    small test surveys).

    Returns positions ``x``, ``y`` on the grid of ``box`` (0-based: field pixel minus the
    box's corner), ``flux`` (ADU in EXPTIME_S), ``tile`` (a seed-free tile number) and
    ``source`` (the pattern's index).
    """
    import numpy as np

    shrink = 1 / math.sqrt(density)
    patterns = [
        dict(
            p,
            x=p["x"] * shrink,
            y=p["y"] * shrink,
            width=p["width"] * shrink,
            height=p["height"] * shrink,
        )
        for p in patterns
    ]
    tw, th = patterns[0]["width"], patterns[0]["height"]
    x0, y0, x1, y1 = box[0] - STAR_PAD, box[1] - STAR_PAD, box[2] + STAR_PAD, box[3] + STAR_PAD
    xs, ys, fl, tiles, srcs = [], [], [], [], []
    for j in range(math.floor(y0 / th), math.floor(y1 / th) + 1):
        for i in range(math.floor(x0 / tw), math.floor(x1 / tw) + 1):
            rng = np.random.default_rng([seed, 11, j + (1 << 20), i + (1 << 20)])
            src = int(rng.integers(len(patterns)))
            p = patterns[src]
            k = int(rng.integers(8)) if tw == th else int(rng.choice([0, 2, 4, 6]))
            u, v = _dihedral(p["x"] - (p["width"] - 1) / 2, p["y"] - (p["height"] - 1) / 2, k)
            off = rng.uniform(0, 1, 2) * (tw, th)
            u = np.mod(u + (tw - 1) / 2 + off[0], tw) + i * tw
            v = np.mod(v + (th - 1) / 2 + off[1], th) + j * th
            inside = (u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)
            xs.append(u[inside] - box[0])
            ys.append(v[inside] - box[1])
            fl.append(p["flux"][inside])
            tiles.append(np.full(int(inside.sum()), (j + 1000) * 10000 + i + 1000))
            srcs.append(np.full(int(inside.sum()), src))
    return {
        "x": np.concatenate(xs),
        "y": np.concatenate(ys),
        "flux": np.concatenate(fl),
        "tile": np.concatenate(tiles),
        "source": np.concatenate(srcs),
    }


# -- the geometry --------------------------------------------------------------------------


def _tan_header(crval: Sequence[float], crpix: Sequence[float], cd: Any) -> Any:
    from astropy.io import fits

    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CUNIT1"], h["CUNIT2"] = "deg", "deg"
    h["CRVAL1"], h["CRVAL2"] = float(crval[0]), float(crval[1])
    h["CRPIX1"], h["CRPIX2"] = float(crpix[0]), float(crpix[1])
    for r in range(2):
        for c in range(2):
            h[f"CD{r + 1}_{c + 1}"] = float(cd[r][c])
    h["RADESYS"], h["EQUINOX"] = "ICRS", 2000.0
    return h


def _field_wcs() -> Any:
    """TAN at the field centre, north up, east left; 0-based pixel (0, 0) is the centre."""
    from astropy.wcs import WCS

    s = PIXEL_SCALE_ARCSEC / 3600
    return WCS(_tan_header(FIELD_CENTER_DEG, (1.0, 1.0), [[-s, 0.0], [0.0, s]]))


def _pointing_offset(k: int, size: int, field_px: int, seed: int) -> tuple[float, float]:
    """Frame ``k``'s centre in field pixels from the field centre: the R2 low-discrepancy
    sequence over the square the frame centres may take, plus a seeded jitter."""
    import numpy as np

    g = 1.32471795724474602596  # the plastic number
    u = (0.5 + (k + 1) / g) % 1.0
    v = (0.5 + (k + 1) / g**2) % 1.0
    jx, jy = np.random.default_rng([seed, 5, k]).uniform(-size / 50, size / 50, 2)
    span = field_px - size
    return (u - 0.5) * span + jx, (v - 0.5) * span + jy


def frame_params(k: int, size: int, field_px: int, seed: int) -> dict[str, Any]:
    """Frame ``k``'s seeded truth: pointing, rotation, scale, SIP coefficients, FWHM,
    cosmic rays and trail (independent of the number of frames)."""
    import numpy as np

    rng = np.random.default_rng([seed, 7, k])
    field = _field_wcs()
    ox, oy = _pointing_offset(k, size, field_px, seed)
    ra, dec = (float(v) for v in field.wcs_pix2world([[ox, oy]], 0)[0])
    rc = (size - 1) / math.sqrt(2)  # centre to corner
    k3 = DISTORTION_PX * (1 + rng.uniform(-0.15, 0.15)) / rc**3
    q = rng.normal(0, QUADRATIC_PX / rc**2, 6)
    c3 = rng.normal(0, 0.05 * DISTORTION_PX / rc**3, 4)
    sip = {
        "A_2_0": q[0],
        "A_1_1": q[1],
        "A_0_2": q[2],
        "A_3_0": k3 + c3[0],
        "A_1_2": k3 + c3[1],
        "B_2_0": q[3],
        "B_1_1": q[4],
        "B_0_2": q[5],
        "B_0_3": k3 + c3[2],
        "B_2_1": k3 + c3[3],
    }
    trail = None
    if k % TRAIL_EVERY == 3:
        trail = {
            "x": float(rng.uniform(0, size - 1)),
            "y": float(rng.uniform(0, size - 1)),
            "angle_deg": float(rng.uniform(0, 180)),
            "amplitude": float(rng.uniform(300, 1500)),
            "sigma": TRAIL_SIGMA_PX,
        }
    return {
        "crval": [ra, dec],
        "rotation_deg": float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)),
        "scale": float(1 + rng.uniform(-SCALE_SPREAD, SCALE_SPREAD)),
        "sip": {key: float(value) for key, value in sip.items()},
        "fwhm_px": float(FWHM_PX * (1 + rng.uniform(-FWHM_SPREAD, FWHM_SPREAD))),
        "n_cosmic": int(rng.poisson(COSMIC_PER_MPIX * size * size / 1e6)),
        "trail": trail,
    }


def frame_header(p: dict[str, Any], size: int) -> Any:
    """The frame's FITS header: TAN-SIP WCS (order 3, no inverse polynomials), EXPTIME,
    GAIN, RDNOISE, SATURATE."""
    s = p["scale"] * PIXEL_SCALE_ARCSEC / 3600
    a = math.radians(p["rotation_deg"])
    c, sn = math.cos(a), math.sin(a)
    cd = [[-s * c, -s * sn], [-s * sn, s * c]]  # rotation x east-left flip
    h = _tan_header(p["crval"], ((size + 1) / 2, (size + 1) / 2), cd)
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["A_ORDER"], h["B_ORDER"] = 3, 3
    for key, value in p["sip"].items():
        h[key] = value
    h["EXPTIME"] = (EXPTIME_S, "[s]")
    h["GAIN"] = (1.0, "[e-/ADU]")
    h["RDNOISE"] = (READ_NOISE_ADU, "[ADU]")
    h["SATURATE"] = SATURATION_ADU
    h["IMAGETYP"] = "LIGHT"
    h["FILTER"] = "V"
    h["OBJECT"] = "synthetic survey (NGC 2420 star pattern)"
    return h


def frame_wcs(header: Any) -> Any:
    """astropy's WCS of a frame header (no warnings)."""
    from astropy.wcs import WCS

    with _quiet():
        return WCS(header)


# TPV terms 0..10 without the radial ones: (power of the axis's own coordinate, of the other)
_TPV_TERMS = {
    0: (0, 0),
    1: (1, 0),
    2: (0, 1),
    4: (2, 0),
    5: (1, 1),
    6: (0, 2),
    7: (3, 0),
    8: (2, 1),
    9: (1, 2),
    10: (0, 3),
}


def sip_to_tpv(header: Any, size: int) -> tuple[Any, float]:
    """The TPV cards (CTYPE, PV1_*, PV2_*) of a TAN-SIP header's forward mapping, and the
    largest difference (px) astropy finds between the two over the frame.

    SIP: ``xi = CD (u + f(u, v), v + g(u, v))`` with ``(u, v) = CD^-1 (x, y)``, the
    intermediate coordinates of the linear part: a cubic in ``(x, y)``, which TPV
    writes as ``xi = sum PV1_k x^a y^b`` and ``eta = sum PV2_k y^a x^b`` (TPV swaps
    the axes for eta). Fitted by least squares on a grid (exact: the same polynomial
    space) in scaled coordinates.
    """
    import numpy as np
    from astropy.io import fits

    w = frame_wcs(header)
    cd = np.array([[header["CD1_1"], header["CD1_2"]], [header["CD2_1"], header["CD2_2"]]])
    g = np.linspace(-size / 2 - 64, size / 2 + 64, 25)
    u, v = (a.ravel() for a in np.meshgrid(g, g))
    f = w.sip.a
    gg = w.sip.b
    fu = sum(f[i, j] * u**i * v**j for i in range(4) for j in range(4))
    gv = sum(gg[i, j] * u**i * v**j for i in range(4) for j in range(4))
    x, y = cd @ np.vstack([u, v])
    xi, eta = cd @ np.vstack([u + fu, v + gv])
    scale = float(np.abs(np.concatenate([x, y])).max())
    cards = fits.Header()
    cards["CTYPE1"], cards["CTYPE2"] = "RA---TPV", "DEC--TPV"
    for axis, (own, other, target) in enumerate(((x, y, xi), (y, x, eta)), start=1):
        cols = [(own / scale) ** a * (other / scale) ** b for a, b in _TPV_TERMS.values()]
        coef, *_ = np.linalg.lstsq(np.column_stack(cols), target / scale, rcond=None)
        for (k, (a, b)), c in zip(_TPV_TERMS.items(), coef, strict=True):
            value = float(c * scale ** (1 - a - b))
            cards[f"PV{axis}_{k}"] = value if abs(value) > 1e-300 else 0.0
    tpv = header.copy()
    for key in list(tpv):
        if key[:2] in ("A_", "B_"):
            del tpv[key]
    tpv.update(cards)
    pix = np.column_stack([u + (size + 1) / 2 - 1, v + (size + 1) / 2 - 1])
    w_tpv = frame_wcs(tpv)
    sky_a, sky_b = w.all_pix2world(pix, 0), w_tpv.all_pix2world(pix, 0)
    back = w.all_world2pix(sky_b, 0, tolerance=1e-10, maxiter=200)
    if not (np.isfinite(sky_a).all() and np.isfinite(back).all()):
        return cards, math.inf
    return cards, float(np.hypot(*(back - pix).T).max())


def _grid_box(headers: list[Any], size: int) -> tuple[int, int, int, int]:
    """The field pixels (0-based, inclusive) that every frame's edge lies within, +2 px."""
    import numpy as np

    field = _field_wcs()
    t = np.linspace(-0.5, size - 0.5, 33)
    lo, hi = np.full(33, -0.5), np.full(33, size - 0.5)
    edge = np.column_stack([np.concatenate([t, t, lo, hi]), np.concatenate([lo, hi, t, t])])
    xmin = ymin = math.inf
    xmax = ymax = -math.inf
    for h in headers:
        xy = field.wcs_world2pix(frame_wcs(h).all_pix2world(edge, 0), 0)
        xmin, xmax = min(xmin, xy[:, 0].min()), max(xmax, xy[:, 0].max())
        ymin, ymax = min(ymin, xy[:, 1].min()), max(ymax, xy[:, 1].max())
    return (math.floor(xmin) - 2, math.floor(ymin) - 2, math.ceil(xmax) + 2, math.ceil(ymax) + 2)


def grid_header(box: tuple[int, int, int, int]) -> Any:
    """The output grid: the field's TAN WCS over ``box`` (NAXIS1/2 included)."""
    from astropy.io import fits

    x0, y0, x1, y1 = box
    s = PIXEL_SCALE_ARCSEC / 3600
    h = fits.Header()
    h["NAXIS"] = 2
    h["NAXIS1"], h["NAXIS2"] = x1 - x0 + 1, y1 - y0 + 1
    h.update(_tan_header(FIELD_CENTER_DEG, (1.0 - x0, 1.0 - y0), [[-s, 0.0], [0.0, s]]))
    return h


def grid_wcs(manifest: Path) -> tuple[Any, Any, tuple[int, int]]:
    """The manifest's output grid: header, WCS and shape (rows, columns)."""
    from astropy.io import fits

    data = json.loads(Path(manifest).read_text())
    h = fits.Header.fromtextfile(Path(manifest).parent / data["grid"])
    return h, frame_wcs(h), (int(h["NAXIS2"]), int(h["NAXIS1"]))


# -- the frames ----------------------------------------------------------------------------


def _gauss_1d(centres: Any, first: Any, width: int, sigma: float) -> Any:
    """Pixel integrals of unit Gaussians: ``(n, width)`` for pixels ``first + 0..width-1``."""
    import numpy as np
    from scipy.special import erf

    edges = first[:, None] + np.arange(width + 1)[None, :] - 0.5 - centres[:, None]
    return np.diff(erf(edges / (math.sqrt(2) * sigma)), axis=1) / 2


def render_stars(shape: tuple[int, int], x: Any, y: Any, flux: Any, fwhm: float) -> Any:
    """Stars as pixel-integrated round Gaussians (float64 image of ``shape``), each drawn
    in a window of +-:data:`WINDOW_SIGMAS` sigmas; positions 0-based, pixel centres at
    integers."""
    import numpy as np

    h, w = shape
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    r = math.ceil(WINDOW_SIGMAS * sigma)
    keep = (x > -r) & (x < w - 1 + r) & (y > -r) & (y < h - 1 + r)
    x, y, flux = x[keep], y[keep], flux[keep]
    out = np.zeros(h * w)
    for start in range(0, len(x), 4096):  # bounded temporaries
        sl = slice(start, start + 4096)
        fx = np.floor(x[sl]).astype(np.int64) - r
        fy = np.floor(y[sl]).astype(np.int64) - r
        gx = _gauss_1d(x[sl], fx, 2 * r + 1, sigma)
        gy = _gauss_1d(y[sl], fy, 2 * r + 1, sigma)
        vals = flux[sl, None, None] * gy[:, :, None] * gx[:, None, :]
        px = np.broadcast_to((fx[:, None] + np.arange(2 * r + 1))[:, None, :], vals.shape)
        py = np.broadcast_to((fy[:, None] + np.arange(2 * r + 1))[:, :, None], vals.shape)
        ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
        out += np.bincount((py * w + px)[ok], vals[ok], minlength=h * w)
    return out.reshape(h, w)


def project_stars(w: Any, ra: Any, dec: Any, size: int, margin: float) -> tuple[Any, Any, Any]:
    """The stars within ``margin`` px of a frame: their indices and pixel positions through
    the frame's full WCS (``all_world2pix``, SIP included; the linear WCS preselects)."""
    import numpy as np

    xl, yl = w.wcs_world2pix(ra, dec, 0)
    lim = margin + 4 * DISTORTION_PX + 20
    idx = np.flatnonzero((xl > -lim) & (xl < size - 1 + lim) & (yl > -lim) & (yl < size - 1 + lim))
    if not len(idx):
        return idx, np.empty(0), np.empty(0)
    xy = w.all_world2pix(
        np.column_stack([ra[idx], dec[idx]]), 0, tolerance=1e-9, maxiter=100, quiet=False
    )
    keep = (xy[:, 0] > -margin) & (xy[:, 0] < size - 1 + margin)
    keep &= (xy[:, 1] > -margin) & (xy[:, 1] < size - 1 + margin)
    return idx[keep], xy[keep, 0], xy[keep, 1]


def _add_cosmics(model: Any, n: int, rng: Any) -> None:
    """``n`` cosmic-ray tracks (1-4 px, 300-8000 ADU a pixel) added to ``model`` in place."""
    h, w = model.shape
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        phi = rng.uniform(0, math.pi)
        amp = rng.uniform(300, 8000)
        for t in range(int(rng.integers(1, 5))):
            px = int(x + t * math.cos(phi))
            py = int(y + t * math.sin(phi))
            if 0 <= px < w and 0 <= py < h:
                model[py, px] += amp * rng.uniform(0.5, 1.0)


def _add_trail(model: Any, trail: dict[str, Any]) -> None:
    """A straight satellite trail (Gaussian cross-section) added to ``model`` in place."""
    import numpy as np

    h, w = model.shape
    a = math.radians(trail["angle_deg"])
    for y0 in range(0, h, 512):
        yy, xx = np.mgrid[y0 : min(h, y0 + 512), 0:w]
        d = (xx - trail["x"]) * math.sin(a) - (yy - trail["y"]) * math.cos(a)
        near = np.abs(d) < 6 * trail["sigma"]
        block = model[y0 : min(h, y0 + 512)]
        block[near] += trail["amplitude"] * np.exp(-0.5 * (d[near] / trail["sigma"]) ** 2)


def render_frame(
    p: dict[str, Any], header: Any, cat: dict[str, Any], size: int, k: int, seed: int
) -> Any:
    """Frame ``k`` (float32): sky + the catalogue's stars where the frame's WCS puts them +
    cosmic rays + trail, Gaussian noise of the Poisson variance plus read noise, clipped
    at saturation."""
    import numpy as np

    w = frame_wcs(header)
    sigma = p["fwhm_px"] / (2 * math.sqrt(2 * math.log(2)))
    idx, x, y = project_stars(w, cat["ra"], cat["dec"], size, WINDOW_SIGMAS * sigma + 2)
    model = render_stars((size, size), x, y, cat["flux"][idx], p["fwhm_px"])
    model += SKY_ADU
    rng = np.random.default_rng([seed, 9, k])
    _add_cosmics(model, p["n_cosmic"], rng)
    if p["trail"]:
        _add_trail(model, p["trail"])
    noise = rng.standard_normal(model.shape)
    noise *= np.sqrt(model + READ_NOISE_ADU**2)
    model += noise
    np.minimum(model, SATURATION_ADU, out=model)
    return model.astype(np.float32)


@dataclass(frozen=True)
class Survey:
    """What to generate: ``n_frames`` frames of ``size`` squared px over a field of
    ``field`` frame areas, seeded; ``density``: star density over the real field's."""

    n_frames: int = 200
    size: int = 2048
    field: float = 10.0
    seed: int = SEED
    density: float = 1.0

    def key(self) -> str:
        """The survey's folder name."""
        tail = "" if self.density == 1 else f"_d{self.density:g}"
        return f"survey_{self.n_frames}x{self.size}_f{self.field:g}_s{self.seed}{tail}"

    def manifest_key(self) -> dict[str, Any]:
        return {
            "generator": f"survey {GENERATOR_VERSION}",
            "workload": {
                "n_frames": self.n_frames,
                "height": self.size,
                "width": self.size,
                "dtype": "float32",
                "format": "fits",
                "seed": self.seed,
                "field_area": self.field,
                "density": self.density,
            },
        }


def prepare_survey(
    spec: Survey, root: Path, real_dir: Path = REAL_DIR, log: Log | None = None
) -> tuple[Path, bool]:
    """Make (or reuse) the survey ``spec`` in ``root/spec.key()/``.

    Writes ``frame_NNNN.fits`` (float32, TAN-SIP) and ``frame_NNNN.head`` (the same
    distortion as TPV, for SWarp) for each frame, ``grid.head`` (the output grid),
    ``truth.fits`` (the catalogue: id, ra, dec, flux, tile, source) and, last,
    ``manifest.json`` (what :func:`benchmarks.workload.subset_manifest` needs, plus
    ``grid``, ``catalogue``, ``truth``: per frame its parameters; the TPV/SIP check).
    Returns the manifest and whether the frames were made now.
    """
    import numpy as np
    from astropy.io import fits

    n, size, seed = spec.n_frames, spec.size, spec.seed
    folder = Path(root) / spec.key()
    manifest = folder / "manifest.json"
    names = [f"frame_{i:04d}.fits" for i in range(n)]
    want = {**spec.manifest_key(), "files": names}
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} == want and all(
            (folder / nm).is_file() and (folder / nm).with_suffix(".head").is_file() for nm in names
        ):
            return manifest, False
    manifest.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    field_px = max(size, round(math.sqrt(spec.field) * size))
    params = [frame_params(k, size, field_px, seed) for k in range(n)]
    headers = [frame_header(p, size) for p in params]
    box = _grid_box(headers, size)
    grid = grid_header(box)
    nx, ny = grid["NAXIS1"], grid["NAXIS2"]
    if log:
        log(
            f"generating the survey: {n} frames of {size}x{size} float32 FITS (TAN-SIP) over "
            f"a {nx}x{ny} grid in {folder}"
        )
    patterns = real_patterns(real_dir)
    cat = star_catalogue(box, patterns, seed, spec.density)
    gw = frame_wcs(grid)
    cat["ra"], cat["dec"] = gw.wcs_pix2world(cat["x"], cat["y"], 0)
    grid.tofile(folder / "grid.head", sep="\n", endcard=True, padding=False, overwrite=True)
    cols = [
        fits.Column("id", "J", array=np.arange(len(cat["x"]))),
        fits.Column("ra", "D", unit="deg", array=cat["ra"]),
        fits.Column("dec", "D", unit="deg", array=cat["dec"]),
        fits.Column("flux", "D", unit="ADU", array=cat["flux"]),
        fits.Column("tile", "J", array=cat["tile"]),
        fits.Column("source", "I", array=cat["source"]),
    ]
    hdu = fits.BinTableHDU.from_columns(cols, name="TRUTH")
    hdu.header["EXPTIME"] = (EXPTIME_S, "flux: ADU in a frame of this exposure")
    for i, p in enumerate(patterns):
        hdu.header[f"SOURCE{i}"] = (p["name"], "real frame of the pattern")
    hdu.writeto(folder / "truth.fits", overwrite=True)
    start = time.perf_counter()
    worst_tpv = 0.0
    for k, (name, p, h) in enumerate(zip(names, params, headers, strict=True)):
        cards, dev = sip_to_tpv(h, size)
        worst_tpv = max(worst_tpv, dev)
        cards.tofile(
            folder / Path(name).with_suffix(".head"),
            sep="\n",
            endcard=True,
            padding=False,
            overwrite=True,
        )
        data = render_frame(p, h, cat, size, k, seed)
        tmp = folder / (name + ".tmp")
        fits.PrimaryHDU(data, h).writeto(tmp, overwrite=True)
        tmp.replace(folder / name)
        if log and (k + 1) % 50 == 0:
            log(f"  {k + 1} frames ({time.perf_counter() - start:.0f} s)")
    corner = np.array([[0.0, 0.0]])  # sip_pix2foc: relative to CRPIX
    w0 = frame_wcs(headers[0])
    dist = float(np.hypot(*(w0.sip_pix2foc(corner, 0) - (corner + 1 - w0.wcs.crpix)).T)[0])
    data = {
        **want,
        "scales": [1.0] * n,
        "grid": "grid.head",
        "catalogue": "truth.fits",
        "swarp_headers": "frame_NNNN.head beside each frame: the SIP distortion as TPV",
        "truth": {
            "frames": params,
            "grid_shape": [int(ny), int(nx)],
            "field_px": field_px,
            "n_stars": int(len(cat["x"])),
            "real_frames": [p["name"] for p in patterns],
            "tpv_vs_sip_max_px": worst_tpv,
            "corner_distortion_px_frame0": dist,
            "convention": "pixel positions 0-based, pixel centres at integers",
        },
    }
    manifest.write_text(json.dumps(data, indent=1))
    return manifest, True


def read_catalogue(manifest: Path) -> dict[str, Any]:
    """The truth catalogue (numpy arrays: id, ra, dec, flux, tile, source)."""
    import numpy as np
    from astropy.io import fits

    data = json.loads(Path(manifest).read_text())
    with fits.open(Path(manifest).parent / data["catalogue"]) as hdul:
        t = hdul[1].data
        return {name: np.array(t[name]) for name in t.columns.names}


# -- the tools (each runs in a fresh child process) -----------------------------------------


def _opts(opts: dict[str, Any]) -> dict[str, str]:
    """``key=value`` items of ``opts["stack_args"]``."""
    return dict(a.split("=", 1) for a in opts.get("stack_args") or ())


def _grid_from(o: dict[str, str]) -> tuple[Any, Any, tuple[int, int]]:
    from astropy.io import fits

    h = fits.Header.fromtextfile(o["grid"])
    return h, frame_wcs(h), (int(h["NAXIS2"]), int(h["NAXIS1"]))


def _stack_kwargs(o: dict[str, str], memory_limit: str) -> dict[str, Any]:
    """The ``se.stack`` keywords of the WCS co-add (the grid read from ``o["grid"]``)."""
    _, w, shape = _grid_from(o)
    return {
        "register": "wcs",
        "output_wcs": w,
        "shape_out": shape,
        "interpolation": o["interpolation"],
        "reject": "sigma",
        "memory_limit": memory_limit,
    }


def _run_stackengine(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> dict:
    import stackengine as se

    kwargs = _stack_kwargs(_opts(opts), opts["memory_limit"])
    mark("import")
    ds = se.stack(files, **kwargs)
    se.write(ds[list(WRITTEN)], out, overwrite=True)
    mark("stack+write")
    return {}


def _run_stackengine_cluster(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> dict:
    from distributed import Client, LocalCluster

    import stackengine as se
    from stackengine.tasks.cluster import WORKER_BASELINE, WORKER_ENV
    from stackengine.tasks.plan import parse_memory

    kwargs = _stack_kwargs(_opts(opts), opts["memory_limit"])
    mark("import")
    limit = parse_memory(opts["memory_limit"]) + WORKER_BASELINE
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit=limit,
            env=dict(WORKER_ENV),
        ) as cluster,
        Client(cluster) as client,
    ):
        mark("cluster")
        ds = se.stack(files, **kwargs)
        se.write(ds[list(WRITTEN)], out, overwrite=True)
        mark("stack+write")
        workers = client.run(peak_rss_self)
    mine = peak_rss_self()
    return {
        "worker_peak_rss_bytes": sorted(workers.values()),
        "client_peak_rss_bytes": mine,
        "sum_peak_rss_bytes": mine + sum(workers.values()),
    }


def swarp_executable() -> str | None:
    """SWarp's path (Debian installs it as ``SWarp``), or None."""
    return shutil.which("swarp") or shutil.which("SWarp")


def _run_swarp(
    files: list[str], out: str, opts: dict[str, Any], mark: Mark, combine: str
) -> dict[str, Any]:
    exe = swarp_executable()
    if not exe:
        raise RuntimeError("SWarp is not installed (Debian package swarp)")
    o = _opts(opts)
    resampling = INTERPOLATION[o["interpolation"]][0]
    mark("import")
    work = Path(out).with_suffix(".swarp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out_head = Path(out).with_suffix(".head")
    shutil.copyfile(o["grid"], out_head)  # SWarp takes the output grid from OUT.head
    (work / "frames.lis").write_text("\n".join(str(Path(f).resolve()) for f in files) + "\n")
    buf = max(16, parse_bytes(opts["memory_limit"]) // MIB)
    args = {
        "IMAGEOUT_NAME": str(out),
        "WEIGHTOUT_NAME": str(work / "coadd.weight.fits"),
        "HEADER_SUFFIX": ".head",
        "COMBINE": "Y",
        "COMBINE_TYPE": combine,
        "RESAMPLING_TYPE": resampling,
        "SUBTRACT_BACK": "N",
        "FSCALASTRO_TYPE": "NONE",
        "PROJECTION_TYPE": "TAN",
        "COMBINE_BUFSIZE": str(buf),
        "RESAMPLE_DIR": str(work),
        "VMEM_DIR": str(work),
        "DELETE_TMPFILES": "Y",
        "NTHREADS": "2",
        "WRITE_XML": "N",
        "VERBOSE_TYPE": "NORMAL",
    }
    cmd = [exe, "@" + str(work / "frames.lis")]
    for key, value in args.items():
        cmd += [f"-{key}", value]
    log = work / "swarp.log"
    try:
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                cmd, cwd=work, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            _, status, usage = os.wait4(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        text = log.read_text(errors="replace")
        if code != 0 or not Path(out).is_file():
            tail = " | ".join(text.strip().splitlines()[-3:])
            raise RuntimeError(f"SWarp failed (exit {code}): {tail}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        out_head.unlink(missing_ok=True)
    mark("swarp")
    return {
        "swarp_peak_rss_bytes": usage.ru_maxrss * 1024,
        "swarp_cpu_s": usage.ru_utime + usage.ru_stime,
        "swarp_log_tail": text.strip().splitlines()[-3:],
    }


def _run_reproject(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> dict:
    import numpy as np
    from astropy.io import fits
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    o = _opts(opts)
    h, w, shape = _grid_from(o)
    mark("import")
    with _quiet():
        image, _ = reproject_and_coadd(
            files,
            w,
            shape_out=shape,
            hdu_in=0,
            reproject_function=reproject_interp,
            combine_function="mean",
            blank_pixel_value=np.nan,
            order=INTERPOLATION[o["interpolation"]][1],
        )
    mark("coadd")
    fits.PrimaryHDU(image.astype(np.float32), h).writeto(out, overwrite=True)
    mark("write")
    return {}


#: the co-add's variables stackengine writes: the image and its coverage, as SWarp
#: writes the co-add and its weight map (the other maps are one more option away)
WRITTEN = ("image", "count")


def _tool_params(memory_limit: str, interpolation: str) -> dict[str, str]:
    """What each tool runs, as printed in the report."""
    sw, rp = INTERPOLATION[interpolation]
    stack = (
        f'se.stack(paths, register="wcs", output_wcs=WCS(grid.head), shape_out=(ny, nx), '
        f'interpolation="{interpolation}", reject="sigma" (3/3 about the median by mad_std, '
        f'5 iterations, mean), memory_limit="{memory_limit}"); '
        f"se.write(ds[{list(WRITTEN)}], OUT.fits) (the image and its coverage, as SWarp "
        f"writes the co-add and its weight map)"
    )
    swarp = (
        f"SWarp @frames -COMBINE_TYPE {{c}} -RESAMPLING_TYPE {sw} -SUBTRACT_BACK N "
        f"-FSCALASTRO_TYPE NONE (surface brightness, as the others) -COMBINE_BUFSIZE "
        f"{parse_bytes(memory_limit) // MIB} -NTHREADS 2, other settings SWarp's defaults "
        "(CLIPPED: CLIP_SIGMA 4, CLIP_AMPFRAC 0.3); output grid: OUT.head = grid.head; "
        "frames' distortion from frame_NNNN.head (TPV); RESAMPLE_DIR and VMEM_DIR in a "
        "temporary folder, removed"
    )
    return {
        "stackengine": stack,
        "stackengine-cluster": "the same inside distributed.LocalCluster(n_workers=2, "
        "threads_per_worker=1, processes=True, memory_limit=memory_limit + WORKER_BASELINE) "
        "and a Client; peak RSS = the largest process (client or worker)",
        "swarp-clipped": swarp.format(c="CLIPPED"),
        "swarp-average": swarp.format(c="AVERAGE"),
        "reproject": "reproject.mosaicking.reproject_and_coadd(paths, WCS(grid.head), "
        f"shape_out=(ny, nx), reproject_function=reproject_interp, order='{rp}', "
        "combine_function='mean', blank_pixel_value=nan) (no clipping exists there; "
        "single-threaded as called); written as float32 FITS",
    }


#: tool -> the child's run function
_RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "stackengine": _run_stackengine,
    "stackengine-cluster": _run_stackengine_cluster,
    "swarp-clipped": lambda f, o, opts, m: _run_swarp(f, o, opts, m, "CLIPPED"),
    "swarp-average": lambda f, o, opts, m: _run_swarp(f, o, opts, m, "AVERAGE"),
    "reproject": _run_reproject,
}


def _child_main(args: argparse.Namespace) -> int:
    """The child: register the tools as harness methods, then run one as every benchmark
    child does (:func:`benchmarks.bench_sigma._child`: the phases, CPU time, peak RSS
    of it and its children, one JSON line)."""
    from .bench_sigma import _child
    from .methods import register

    for name, fn in _RUNNERS.items():  # only in the child: the parent's registry stays clean
        register(f"survey:{name}", name)(fn)
    ns = argparse.Namespace(
        run_one=f"survey:{args.run_one}",
        manifest=args.manifest,
        out=args.out,
        memory_limit=args.memory_limit,
        ccdproc_mem_limit=None,
        warm_manifest=None,
        stack_args=args.stack_args,
    )
    return _child(ns)


def run_tool(
    tool: str, manifest: Path, out: Path, memory_limit: str, args: Sequence[str] = ()
) -> dict[str, Any]:
    """Run ``tool`` on the manifest's frames in a fresh process; its record with ``wall_s``
    (around the whole child) and ``other_cpu_s`` (the rest of the machine meanwhile).

    :func:`benchmarks.runner.run_child` with this module as the child's entry point
    (that one always starts ``benchmarks.bench_sigma``, whose registry lacks these tools).
    """
    out.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.survey",
        "--run-one",
        tool,
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--memory-limit",
        memory_limit,
        "--stack-args",
        json.dumps(list(args)),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    busy = busy_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    rec: dict[str, Any] = {"method": tool, "ok": False}
    if lines:
        rec.update(json.loads(lines[-1][len(MARKER) :]))
    rec.update(method=tool, wall_s=wall, returncode=proc.returncode, out=str(out))
    if proc.returncode != 0 or not out.exists():
        rec["ok"] = False
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        rec.setdefault("error", " | ".join(tail) or f"exit status {proc.returncode}")
    if busy is not None and rec.get("cpu_s") is not None:
        rec["other_cpu_s"] = max(0.0, busy_cpu_s() - busy - rec["cpu_s"])
    return rec


# -- measuring the co-adds -----------------------------------------------------------------


def _jacobian_det(w: Any, gw: Any, x: Any, y: Any) -> Any:
    """|det d(grid px)/d(frame px)| at frame pixels ``(x, y)``: grid pixels per frame pixel."""
    import numpy as np

    h = 0.5
    pts = [np.column_stack([x + dx, y + dy]) for dx, dy in ((0, 0), (h, 0), (0, h))]
    g = [gw.wcs_world2pix(w.all_pix2world(p, 0), 0) for p in pts]
    jx, jy = (g[1] - g[0]) / h, (g[2] - g[0]) / h
    return np.abs(jx[:, 0] * jy[:, 1] - jx[:, 1] * jy[:, 0])


def select_stars(manifest: Path) -> dict[str, Any]:
    """The stars the co-adds are checked on (see the module), with their truth on the grid.

    Returns arrays ``x``, ``y`` (truth through the grid WCS, 0-based), ``expected``
    (flux x mean grid-per-frame pixel area over the frames holding the star),
    ``cover``, ``noise_px`` (predicted radial centroid noise), ``id``; the catalogue's
    grid positions and fluxes (for the noiseless render) and the counts per criterion.
    """
    import numpy as np
    from astropy.io import fits
    from scipy.spatial import cKDTree

    data = json.loads(Path(manifest).read_text())
    files = manifest_files(manifest)
    params = data["truth"]["frames"][: len(files)]
    size = int(data["workload"]["width"])
    _, gw, (ny, nx) = grid_wcs(manifest)
    cat = read_catalogue(manifest)
    gx, gy = gw.wcs_world2pix(cat["ra"], cat["dec"], 0)
    flux = cat["flux"]
    counts: dict[str, int] = {"catalogue": len(flux)}
    m = STAMP + 2
    ok = (gx > m) & (gx < nx - 1 - m) & (gy > m) & (gy < ny - 1 - m)
    counts["inside the grid"] = int(ok.sum())
    tree = cKDTree(np.column_stack([gx, gy]))
    spoiled = np.zeros(len(flux), dtype=bool)
    pairs = tree.query_pairs(max(r for r, _ in ISOLATION), output_type="ndarray")
    a, b = pairs.T if len(pairs) else (np.empty(0, np.int64), np.empty(0, np.int64))
    dist = np.hypot(gx[a] - gx[b], gy[a] - gy[b])
    for r, frac in ISOLATION:
        near = dist < r
        spoiled[a[near & (flux[b] > frac * flux[a])]] = True
        spoiled[b[near & (flux[a] > frac * flux[b])]] = True
    ok &= ~spoiled
    counts["isolated"] = int(ok.sum())
    sig_min = min(p["fwhm_px"] for p in params) / (2 * math.sqrt(2 * math.log(2)))
    from scipy.special import erf

    centre = erf(0.5 / (math.sqrt(2) * sig_min)) ** 2  # a star's brightest pixel, at most
    ok &= flux * centre + SKY_ADU < PEAK_FRACTION * SATURATION_ADU
    counts["unsaturated"] = int(ok.sum())
    cand = np.flatnonzero(ok)
    cover = np.zeros(len(cand), dtype=np.int64)
    area = np.zeros(len(cand))
    partial = np.zeros(len(cand), dtype=bool)
    inv_var = np.zeros(len(cand))  # sum over frames of 1 / (per-frame centroid variance)
    sky_var = SKY_ADU + READ_NOISE_ADU**2
    for f, p in zip(files, params, strict=True):
        w = frame_wcs(fits.getheader(f))
        idx, x, y = project_stars(w, cat["ra"][cand], cat["dec"][cand], size, EDGE_PX)
        inner = (x >= EDGE_PX) & (x <= size - 1 - EDGE_PX) & (y >= EDGE_PX)
        inner &= y <= size - 1 - EDGE_PX
        partial[idx[~inner]] = True
        idx, x, y = idx[inner], x[inner], y[inner]
        cover[idx] += 1
        area[idx] += _jacobian_det(w, gw, x, y)
        s2 = (p["fwhm_px"] / (2 * math.sqrt(2 * math.log(2)))) ** 2
        fl = flux[cand][idx]
        inv_var[idx] += 1 / (s2 / fl + 8 * math.pi * s2 * s2 * sky_var / fl**2)
    good = ~partial & (cover >= MIN_COVER)
    counts[f"wholly inside >= {MIN_COVER} frames"] = int(good.sum())
    with np.errstate(divide="ignore"):
        noise = np.sqrt(2 / inv_var)  # radial: two axes
    good &= noise <= NOISE_PX
    counts[f"predicted noise <= {NOISE_PX} px"] = int(good.sum())
    sel = cand[good]
    return {
        "id": cat["id"][sel],
        "x": gx[sel],
        "y": gy[sel],
        "flux": flux[sel],
        "expected": flux[sel] * area[good] / cover[good],
        "cover": cover[good],
        "noise_px": noise[good],
        "counts": counts,
        "all_x": gx,
        "all_y": gy,
        "all_flux": flux,
        "area_ratio": area[good] / cover[good],
        "grid_shape": (ny, nx),
    }


def _stamps(image: Any, xs: Any, ys: Any) -> tuple[Any, Any, Any]:
    """``(n, 2*STAMP+1, 2*STAMP+1)`` float64 stamps centred on the nearest pixels, and their
    corners; NaN outside the image."""
    import numpy as np

    n, side = len(xs), 2 * STAMP + 1
    out = np.full((n, side, side), np.nan)
    x0 = np.rint(xs).astype(np.int64) - STAMP
    y0 = np.rint(ys).astype(np.int64) - STAMP
    h, w = image.shape
    for i in range(n):
        ya, yb = max(0, y0[i]), min(h, y0[i] + side)
        xa, xb = max(0, x0[i]), min(w, x0[i] + side)
        if ya < yb and xa < xb:
            out[i, ya - y0[i] : yb - y0[i], xa - x0[i] : xb - x0[i]] = image[ya:yb, xa:xb]
    return out, x0, y0


def _measure_stamps(stamps: Any, x0: Any, y0: Any, xs: Any, ys: Any) -> dict[str, Any]:
    """Windowed centroids and annulus-subtracted aperture fluxes of stamps, laid out in one
    sheet for ``sep`` (grid coordinates)."""
    import numpy as np
    import sep

    n, side = stamps.shape[:2]
    yy, xx = np.mgrid[0:side, 0:side] - STAMP
    ring = (np.hypot(xx, yy) >= R_ANNULUS[0]) & (np.hypot(xx, yy) <= R_ANNULUS[1])
    with np.errstate(all="ignore"):
        bkg = np.nanmedian(stamps[:, ring], axis=1)
    sub = stamps - bkg[:, None, None]
    bad = ~np.isfinite(sub)
    cols = 64
    rows = math.ceil(n / cols)
    cell = side + 2
    sheet = np.zeros((rows * cell, cols * cell))
    mask = np.zeros(sheet.shape, dtype=bool)
    ox = (np.arange(n) % cols) * cell + 1
    oy = (np.arange(n) // cols) * cell + 1
    for i in range(n):
        sheet[oy[i] : oy[i] + side, ox[i] : ox[i] + side] = np.where(bad[i], 0.0, sub[i])
        mask[oy[i] : oy[i] + side, ox[i] : ox[i] + side] = bad[i]
    # stamp pixel (0, 0) is grid pixel (x0, y0)
    sx, sy = xs - x0 + ox, ys - y0 + oy
    sig = 1.1 * FWHM_PX / (2 * math.sqrt(2 * math.log(2)))
    wx, wy, wflag = sep.winpos(sheet, sx, sy, np.full(n, sig), mask=mask)
    flux, _, fflag = sep.sum_circle(sheet, wx, wy, R_APERTURE, mask=mask, subpix=0)
    near = np.hypot(xx, yy) <= R_APERTURE + 1
    holes = bad[:, near].any(axis=1) | ~np.isfinite(bkg)
    return {
        "x": wx - ox + x0,
        "y": wy - oy + y0,
        "flux": flux,
        "ok": (wflag == 0) & (fflag == 0) & ~holes,
    }


def _header_wcs_offset(path: Path, gw: Any, shape: tuple[int, int]) -> float | None:
    """Largest offset (px) between the file's header WCS and the grid at the grid's corners
    and centre, or None when the header has no celestial WCS."""
    import numpy as np
    from astropy.io import fits

    ny, nx = shape
    pts = np.array([[0, 0], [nx - 1, 0], [0, ny - 1], [nx - 1, ny - 1], [nx / 2, ny / 2]], float)
    try:
        hw = frame_wcs(fits.getheader(path))
        if not hw.has_celestial:
            return None
        got = hw.celestial.all_world2pix(gw.all_pix2world(pts, 0), 0)
    except Exception:  # any unreadable WCS: reported as none
        return None
    return float(np.hypot(*(got - pts).T).max())


def _summary(m: dict[str, Any], sel: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    ok = m["ok"]
    dx, dy = m["x"][ok] - sel["x"][ok], m["y"][ok] - sel["y"][ok]
    r = np.hypot(dx, dy)
    ratio = m["flux"][ok] / sel["expected"][ok]
    if not ok.any():
        return {"n_stars": 0}
    med = float(np.median(ratio))
    return {
        "n_stars": int(ok.sum()),
        "rms_px": float(np.sqrt(np.mean(r**2))),
        "mean_dx_px": float(np.mean(dx)),
        "mean_dy_px": float(np.mean(dy)),
        "p95_px": float(np.percentile(r, 95)),
        "max_px": float(r.max()),
        "n_over_0p1_px": int((r > 0.1).sum()),
        "flux_ratio_median": med,
        "flux_ratio_scatter": float(1.482602218505602 * np.median(np.abs(ratio - med))),
    }


def measure_image(
    path: Path, sel: dict[str, Any], gw: Any, zero_is_blank: bool = False
) -> dict[str, Any]:
    """A co-add's stars against the truth (see :func:`select_stars`) and its header WCS.
    ``zero_is_blank``: 0 marks pixels no frame covers (SWarp's co-adds)."""
    import numpy as np
    from astropy.io import fits

    with fits.open(path, memmap=True) as hdul:
        image = hdul[0].data
        if image.ndim == 3:
            image = image[0]
        image = np.where(image == 0, np.nan, image) if zero_is_blank else image
        stamps, x0, y0 = _stamps(image, sel["x"], sel["y"])
    m = _measure_stamps(stamps, x0, y0, sel["x"], sel["y"])
    out = _summary(m, sel)
    out["header_wcs_offset_px"] = _header_wcs_offset(Path(path), gw, sel["grid_shape"])
    return out


def truth_render(sel: dict[str, Any]) -> dict[str, Any]:
    """The measurement on noiseless stamps of the truth drawn on the grid (FWHM_PX,
    each star at its expected flux, neighbours included): the measurement's own floor."""
    import numpy as np
    from scipy.spatial import cKDTree

    side = 2 * STAMP + 1
    n = len(sel["x"])
    x0 = np.rint(sel["x"]).astype(np.int64) - STAMP
    y0 = np.rint(sel["y"]).astype(np.int64) - STAMP
    tree = cKDTree(np.column_stack([sel["all_x"], sel["all_y"]]))
    stamps = np.zeros((n, side, side))
    for i in range(n):
        near = tree.query_ball_point([sel["x"][i], sel["y"][i]], STAMP * 1.5 + 10)
        near = np.asarray(near, dtype=np.int64)
        fl = sel["all_flux"][near] * sel["area_ratio"][i]
        stamps[i] = render_stars(
            (side, side), sel["all_x"][near] - x0[i], sel["all_y"][near] - y0[i], fl, FWHM_PX
        )
    out = _summary(_measure_stamps(stamps, x0, y0, sel["x"], sel["y"]), sel)
    out["header_wcs_offset_px"] = 0.0
    return out


def trail_leak(path: Path, manifest: Path, gw: Any, star_xy: Any) -> float | None:
    """How much of the satellite trails reaches the co-add: the median, over points every
    37 px along each trail (30 px inside its frame, 20 px from any star), of the trail's
    matched-filter amplitude in the co-add (the median of the pixels > 6 sigma off the line
    subtracted) over ``amplitude / frames covering the point`` (what a plain mean keeps).
    ~0: rejected; ~1 (a little less: the interpolation widens the line): averaged in."""
    import numpy as np
    from astropy.io import fits
    from scipy.spatial import cKDTree

    data = json.loads(Path(manifest).read_text())
    files = manifest_files(manifest)
    params = data["truth"]["frames"][: len(files)]
    size = int(data["workload"]["width"])
    wcs = [frame_wcs(fits.getheader(f)) for f in files]
    tree = cKDTree(star_xy)
    pts, dirs, amps, sigmas = [], [], [], []
    for w, p in zip(wcs, params, strict=True):
        t = p["trail"]
        if not t:
            continue
        a = math.radians(t["angle_deg"])
        s = np.arange(-2 * size, 2 * size, 37.0)
        fx, fy = t["x"] + s * math.cos(a), t["y"] + s * math.sin(a)
        inside = (fx > 30) & (fx < size - 31) & (fy > 30) & (fy < size - 31)
        if not inside.any():
            continue
        f = np.column_stack([fx[inside], fy[inside]])
        g = gw.wcs_world2pix(w.all_pix2world(f, 0), 0)
        g2 = gw.wcs_world2pix(w.all_pix2world(f + [math.cos(a), math.sin(a)], 0), 0)
        clear = np.isinf(tree.query(g, distance_upper_bound=20.0)[0])
        pts.append(g[clear])
        dirs.append((g2 - g)[clear])
        amps.append(np.full(int(clear.sum()), t["amplitude"]))
        sigmas.append(np.full(int(clear.sum()), t["sigma"]))
    if not pts:
        return None
    g, d, amp, sig = (np.concatenate(v) for v in (pts, dirs, amps, sigmas))
    sky = gw.wcs_pix2world(g, 0)
    cover = np.zeros(len(g), dtype=np.int64)
    for w in wcs:  # the linear WCS: good to a few px, enough to count the frames
        x, y = w.wcs_world2pix(sky, 0).T
        cover += (x >= 1) & (x <= size - 2) & (y >= 1) & (y <= size - 2)
    yy, xx = np.mgrid[-12:13, -12:13]
    ratios = []
    with fits.open(path, memmap=True) as hdul:
        image = hdul[0].data[0] if hdul[0].data.ndim == 3 else hdul[0].data
        h, w_ = image.shape
        for (gx, gy), (ux, uy), a, s, c in zip(g, d, amp, sig, cover, strict=True):
            ix, iy = int(round(gx)), int(round(gy))
            if not (12 <= ix < w_ - 12 and 12 <= iy < h - 12) or c == 0:
                continue
            box = np.asarray(image[iy - 12 : iy + 13, ix - 12 : ix + 13], dtype=np.float64)
            dist = ((xx + ix - gx) * uy - (yy + iy - gy) * ux) / math.hypot(ux, uy)
            back, core = np.abs(dist) > 6 * s, np.abs(dist) <= 3 * s
            if not np.isfinite(box).all() or back.sum() < 50 or not (box != 0).all():
                continue
            prof = np.exp(-0.5 * (dist[core] / s) ** 2)
            fit = np.sum(prof * (box[core] - np.median(box[back]))) / np.sum(prof**2)
            ratios.append(fit / (a / c))
    return float(np.median(ratios)) if ratios else None


# -- the run ---------------------------------------------------------------------------------


def survey_checks(
    rows: dict[str, dict[str, Any]], memory_limit: str, scaling: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Issue 17's targets for stackengine (threads and LocalCluster)."""
    out: list[dict[str, Any]] = []
    bound = parse_bytes(memory_limit) + RSS_SLACK_BYTES
    for tool in ("stackengine", "stackengine-cluster"):
        r = rows.get(tool) or {}
        if not r.get("ok"):
            continue
        stars = r.get("stars") or {}
        if stars.get("n_stars"):
            out.append(
                check(
                    f"{tool}: star position RMS",
                    stars["rms_px"],
                    RMS_TARGET_PX,
                    "px",
                    "<=",
                    f"{stars['rms_px']:.4f} px over {stars['n_stars']} stars",
                    17,
                )
            )
            dev = abs(stars["flux_ratio_median"] - 1)
            out.append(
                check(
                    f"{tool}: |median flux ratio - 1|",
                    dev * 100,
                    FLUX_TARGET * 100,
                    "%",
                    "<=",
                    f"median flux ratio {stars['flux_ratio_median']:.4f}",
                    17,
                )
            )
        note = f"bound = memory_limit {memory_limit} + 256 MiB"
        out.append(
            check(
                f"{tool}: peak RSS", r["peak_rss_bytes"] / MIB, bound / MIB, "MiB", "<=", note, 17
            )
        )
        for peer in ("swarp-clipped", "reproject"):
            p = rows.get(peer) or {}
            if p.get("ok"):
                out.append(
                    check(
                        f"{tool}: faster than {peer}",
                        p["wall_s"] / r["wall_s"],
                        SPEED_TARGET,
                        "x",
                        ">=",
                        f"{p['wall_s']:.1f} s / {r['wall_s']:.1f} s",
                        17,
                    )
                )
    lin = (scaling or {}).get("linearity") or {}
    if lin.get("linear") is not None:
        marg = ", ".join(f"{m:.3f}" for m in lin["marginal_s_per_frame"])
        out.append(
            check(
                "stackengine: spread of the marginal s/frame",
                lin["spread"] * 100,
                LINEAR_TOLERANCE * 100,
                "%",
                "<=",
                f"marginal s/frame {marg}",
                17,
            )
        )
    return out


def run_survey(
    spec: Survey,
    root: Path,
    tools: Sequence[str] = DEFAULT_TOOLS,
    interpolation: str = "bilinear",
    memory_limit: str = "1GiB",
    scaling: Sequence[int] = (),
    repeat: int = 1,
    warmup: bool = True,
    keep: bool = False,
    real_dir: Path = REAL_DIR,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Generate (or reuse) the survey, run each tool (fresh processes, ``repeat`` times,
    alternating), the stackengine scaling runs, and measure each co-add."""
    import numpy as np
    from astropy.io import fits

    from .stats import summarize_runs

    root = Path(root).resolve()
    n, size = spec.n_frames, spec.size
    n_all = max([n, *scaling])
    full, generated = prepare_survey(replace(spec, n_frames=n_all), root, real_dir, log)
    manifest = full if n == n_all else subset_manifest(full, n)
    outdir = full.parent / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    grid_path = full.parent / json.loads(full.read_text())["grid"]
    targs = (f"grid={grid_path}", f"interpolation={interpolation}")
    swarp = swarp_executable()
    skipped = {
        t: "SWarp is not installed (Debian package swarp)"
        for t in tools
        if t.startswith("swarp") and not swarp
    }
    runnable = [t for t in tools if t not in skipped]
    available = available_bytes()
    cache = page_cache(manifest_files(manifest), available, True, False)
    log(f"page cache: {cache}")
    if warmup and runnable:  # imports' .pyc, numba's caches: untimed, on a small grid
        tiny = subset_manifest(full, min(3, n_all))
        small = grid_header(_grid_box([fits.getheader(manifest_files(tiny)[0])], size))
        small_path = outdir / "grid_warmup.head"
        small.tofile(small_path, sep="\n", endcard=True, padding=False, overwrite=True)
        log("warm-up (untimed, 3 frames on a small grid): " + ", ".join(runnable))
        for t in runnable:
            run_tool(
                t,
                tiny,
                outdir / f"warmup_{t}.fits",
                memory_limit,
                (f"grid={small_path}", f"interpolation={interpolation}"),
            )
            (outdir / f"warmup_{t}.fits").unlink(missing_ok=True)
    runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        for t in runnable:
            log(f"run {rep + 1}/{repeat}: {t} ...")
            rec = run_tool(t, manifest, outdir / f"{t}.fits", memory_limit, targs)
            rec["repeat"] = rep
            state = f"{rec['wall_s']:.1f} s" if rec["ok"] else f"FAILED: {rec.get('error')}"
            log(f"  {t}: {state}")
            runs.append(rec)
    mpix = n * size * size / 1e6
    rows: dict[str, dict[str, Any]] = {}
    for t in tools:
        if t in skipped:
            rows[t] = {"ok": False, "skipped": skipped[t]}
            continue
        rows[t] = summarize_runs([r for r in runs if r["method"] == t], mpix)
        good = [r for r in runs if r["method"] == t and r.get("ok")]
        if good:
            rows[t].update(
                {
                    k: v
                    for k, v in good[-1].items()
                    if k.startswith(("swarp_", "worker_", "client_", "sum_"))
                }
            )
    log("selecting the stars of the checks")
    sel = select_stars(manifest)
    _, gw, _ = grid_wcs(manifest)
    star_xy = np.column_stack([sel["all_x"], sel["all_y"]])
    for t, r in rows.items():
        if r.get("ok"):
            log(f"measuring {t}")
            r["stars"] = measure_image(Path(r["out"]), sel, gw, t.startswith("swarp"))
            r["trail_leak"] = trail_leak(Path(r["out"]), manifest, gw, star_xy)
    one, two = rows.get("stackengine") or {}, rows.get("stackengine-cluster") or {}
    if one.get("ok") and two.get("ok"):  # the same bits on the cluster as on threads?
        two["same_bits_as_stackengine"] = _same_bits(Path(one["out"]), Path(two["out"]))
    floor = truth_render(sel)
    scale = _scaling(full, scaling, outdir, memory_limit, targs, log) if scaling else None
    if not keep:
        for r in runs:
            Path(r.get("out", "")).unlink(missing_ok=True)
    data = json.loads(manifest.read_text())
    ny, nx = data["truth"]["grid_shape"]
    return {
        "benchmark": "survey",
        "data_dir": str(full.parent),
        "generated": generated,
        "n_frames": n,
        "size": size,
        "field_area": spec.field,
        "seed": spec.seed,
        "density": spec.density,
        "grid_shape": [ny, nx],
        "n_catalogue_stars": data["truth"]["n_stars"],
        "real_frames": data["truth"]["real_frames"],
        "tpv_vs_sip_max_px": data["truth"]["tpv_vs_sip_max_px"],
        "corner_distortion_px": data["truth"]["corner_distortion_px_frame0"],
        "n_trails": sum(1 for p in data["truth"]["frames"][:n] if p["trail"]),
        "interpolation": interpolation,
        "memory_limit": memory_limit,
        "repeat": repeat,
        "page_cache": cache,
        "cpu_count": os.cpu_count(),
        "swarp": swarp,
        "params": {t: _tool_params(memory_limit, interpolation)[t] for t in tools},
        "selection": {
            "counts": sel["counts"],
            "n": int(len(sel["x"])),
            "predicted_noise_rms_px": _rms(sel["noise_px"]),
            "median_cover": _median(sel["cover"]),
        },
        "rows": rows,
        "truth_render": floor,
        "scaling": scale,
        "checks": survey_checks(rows, memory_limit, scale),
        "runs": runs,
    }


def _same_bits(a: Path, b: Path) -> bool:
    """Are the two images' primary arrays identical (NaN where NaN)?"""
    import numpy as np
    from astropy.io import fits

    return bool(np.array_equal(fits.getdata(a), fits.getdata(b), equal_nan=True))


def _rms(values: Any) -> float | None:
    import numpy as np

    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else None


def _median(values: Any) -> float | None:
    import numpy as np

    return float(np.median(values)) if len(values) else None


def _scaling(
    full: Path, ns: Sequence[int], outdir: Path, memory_limit: str, targs: Sequence[str], log: Log
) -> dict[str, Any]:
    """stackengine (threads) on the first N frames for each N, one fresh process each."""
    points = []
    bound = parse_bytes(memory_limit) + RSS_SLACK_BYTES
    n_all = len(json.loads(full.read_text())["files"])
    for k in sorted(set(ns)):
        sub = full if k == n_all else subset_manifest(full, k)
        log(f"scaling: stackengine, N={k} ...")
        rec = run_tool("stackengine", sub, outdir / f"scaling_{k}.fits", memory_limit, targs)
        Path(rec["out"]).unlink(missing_ok=True)
        p: dict[str, Any] = {"n": k, "ok": bool(rec.get("ok")), "run": rec}
        if p["ok"]:
            p.update(
                wall_s=rec["wall_s"],
                s_per_frame=rec["wall_s"] / k,
                cpu_s=rec["cpu_s"],
                peak_rss_mib=rec["peak_rss_bytes"] / MIB,
                rss_ok=rec["peak_rss_bytes"] <= bound,
                other_cpu_s=rec.get("other_cpu_s"),
            )
            log(f"  N={k}: {rec['wall_s']:.1f} s")
        else:
            p["error"] = rec.get("error")
            log(f"  N={k}: FAILED: {p['error']}")
        points.append(p)
    return {"points": points, "linearity": _linear(points)}


# -- the report ------------------------------------------------------------------------------


def _c(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _accuracy_cells(s: dict[str, Any]) -> list[str]:
    off = s.get("header_wcs_offset_px", "–")
    if off != "–":
        off = "none" if off is None else ("grid" if off < 1e-3 else f"off {off:.3g} px")
    return [
        str(s.get("n_stars", 0)),
        _c(s.get("rms_px"), ".4f"),
        _c(s.get("mean_dx_px"), "+.4f"),
        _c(s.get("mean_dy_px"), "+.4f"),
        _c(s.get("max_px"), ".3f"),
        _c(s.get("flux_ratio_median"), ".4f"),
        _c(s.get("flux_ratio_scatter"), ".4f"),
        off,
    ]


def format_survey(report: dict[str, Any]) -> str:
    """The markdown report of :func:`run_survey`."""
    from .markdown import _checks, _head, _row

    ny, nx = report["grid_shape"]
    rows = report["rows"]
    base = rows.get("stackengine") or {}
    lines = [
        f"### Synthetic survey: {report['n_frames']} frames of {report['size']}x"
        f"{report['size']} float32 TAN-SIP, field {report['field_area']:g}x a frame "
        f"(grid {nx}x{ny}), {report['interpolation']}, memory_limit={report['memory_limit']}",
        "",
        f"{report['cpu_count']} CPUs; page cache: {report['page_cache']}; "
        f"{report['repeat']} run(s) each, alternating, medians; every run a fresh process "
        f"(wall around it; CPU and peak RSS of it and its children; after imports: the "
        f"child's time after its import phase). Frames in `{report['data_dir']}`; SWarp: "
        f"`{report.get('swarp') or 'not installed'}`.",
        "",
        *_head(
            [
                "tool",
                "wall s",
                "after imports s",
                "CPU s",
                "peak RSS MiB",
                "wall / stackengine's",
                "others CPU s",
            ],
            1,
        ),
    ]
    order = [t for t in TOOLS if t in rows]
    for t in order:
        r = rows[t]
        if not r.get("ok"):
            state = r.get("skipped") or f"FAILED: {r.get('error')}"
            lines.append(_row([f"`{t}`", state.replace("|", "/"), *[""] * 5]))
            continue
        ratio = f"{r['wall_s'] / base['wall_s']:.2f}" if base.get("ok") else "–"
        rss = f"{r['peak_rss_bytes'] / MIB:.0f}"
        if r.get("sum_peak_rss_bytes"):
            rss += f" (all processes {r['sum_peak_rss_bytes'] / MIB:.0f})"
        lines.append(
            _row(
                [
                    f"`{t}`",
                    f"{r['wall_s']:.2f}",
                    _c(r.get("work_s"), ".2f"),
                    f"{r['cpu_s']:.2f}",
                    rss,
                    ratio,
                    _c(r.get("other_cpu_s"), ".1f"),
                ]
            )
        )
    lines += [
        "",
        *_head(
            [
                "co-add",
                "stars",
                "RMS px",
                "mean dx px",
                "mean dy px",
                "max px",
                "flux ratio",
                "flux scatter",
                "header WCS",
                "trail leak",
            ],
            1,
        ),
    ]
    for t in order:
        r = rows[t]
        if r.get("ok"):
            cells = _accuracy_cells(r.get("stars") or {})
            lines.append(_row([f"`{t}`", *cells, _c(r.get("trail_leak"), ".2f")]))
    floor = _accuracy_cells(report["truth_render"])
    lines.append(_row(["truth render (floor)", *floor[:-1], "–", "–"]))
    others = sum(r.get("other_cpu_s") or 0 for r in report["runs"])
    capacity = sum(r["wall_s"] for r in report["runs"]) * (report["cpu_count"] or 1)
    if capacity and others > 0.1 * capacity:
        lines += [
            "",
            f"**Not a quiet machine**: other processes used {others:.0f} CPU-s during "
            f"the timed runs ({others / capacity:.0%} of the machine's CPU time); the "
            "times are indicative.",
        ]
    same = (rows.get("stackengine-cluster") or {}).get("same_bits_as_stackengine")
    if same is not None:
        word = "bit-identical to" if same else "NOT bit-identical to"
        lines += ["", f"The LocalCluster co-add is {word} the threaded one."]
    sel = report["selection"]
    counts = "; ".join(f"{k} {v}" for k, v in sel["counts"].items())
    lines += [
        "",
        f"Stars: the truth catalogue ({report['n_catalogue_stars']} stars, the pattern of "
        f"{', '.join(report['real_frames'])} tiled over the field) projected through the grid "
        f"WCS; checked on {sel['n']} ({counts}); median {_c(sel['median_cover'], '.0f')} "
        f"frames each; their photon and sky noise predicts a centroid RMS of "
        f"{_c(sel['predicted_noise_rms_px'], '.4f')} px. Position: `sep.winpos` in the "
        f"co-add against the truth (RMS and max of the radial offset, mean offsets); flux: "
        f"aperture r={R_APERTURE:g} px minus the median of the {R_ANNULUS[0]:g}-"
        f"{R_ANNULUS[1]:g} px annulus, over the truth flux x the mean grid-per-frame pixel "
        f"area at the star (surface brightness kept); scatter: 1.4826 MAD. Truth render: "
        f"the same measurement on noiseless stamps of the truth on the grid. Trail leak: "
        f"matched-filter amplitude of the {report['n_trails']} satellite trail(s) in the "
        f"co-add over amplitude / frames covering (0 rejected, ~1 averaged in). Header WCS: "
        f"the co-add's own header WCS against the grid.",
        f"Distortion: SIP, {report['corner_distortion_px']:.2f} px at frame 0's corner; "
        f"SWarp reads the same polynomial as TPV (largest TPV-SIP difference "
        f"{report['tpv_vs_sip_max_px']:.2g} px).",
    ]
    sc = report.get("scaling")
    if sc:
        lines += [
            "",
            *_head(
                ["N (stackengine)", "wall s", "s/frame", "CPU s", "peak RSS MiB", "others CPU s"], 1
            ),
        ]
        for p in sc["points"]:
            if not p["ok"]:
                lines.append(
                    _row(
                        [str(p["n"]), f"FAILED: {p.get('error')}".replace("|", "/"), "", "", "", ""]
                    )
                )
                continue
            lines.append(
                _row(
                    [
                        str(p["n"]),
                        f"{p['wall_s']:.2f}",
                        f"{p['s_per_frame']:.3f}",
                        f"{p['cpu_s']:.1f}",
                        f"{p['peak_rss_mib']:.0f}",
                        _c(p.get("other_cpu_s"), ".1f"),
                    ]
                )
            )
        lin = sc["linearity"]
        marg = ", ".join(f"{m:.3f}" for m in lin["marginal_s_per_frame"]) or "–"
        lines += ["", f"Marginal s/frame between consecutive N: {marg}."]
    lines += ["", "**Parameters**", ""]
    lines += [f"- `{t}`: {p}" for t, p in report["params"].items()]
    return "\n".join(lines + _checks(report["checks"])) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.survey",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=200, help="frames (default 200)")
    p.add_argument("--size", type=int, default=2048, help="frame side, px (default 2048)")
    p.add_argument(
        "--field", type=float, default=10.0, help="sky field area in frames (default 10)"
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument(
        "--density",
        type=float,
        default=1.0,
        help="stars per pixel over the real field's (default 1; more for small runs)",
    )
    p.add_argument("--dir", default="bench_data", help="folder of the survey and results")
    p.add_argument("--real", type=Path, default=REAL_DIR, help="the uam_ngc2420 folder")
    p.add_argument("--tools", nargs="+", choices=TOOLS, default=list(DEFAULT_TOOLS))
    p.add_argument("--interpolation", choices=list(INTERPOLATION), default="bilinear")
    p.add_argument("--memory-limit", default="1GiB")
    p.add_argument(
        "--scaling",
        type=int,
        nargs="*",
        default=[],
        help="also stackengine on the first N frames for each N",
    )
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the co-adds")
    p.add_argument("--generate-only", action="store_true")
    p.add_argument("--markdown", help="report path (default DIR/survey_results.md)")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--run-one", help=argparse.SUPPRESS)
    p.add_argument("--manifest", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--stack-args", default="[]", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        return _child_main(args)
    if args.n < 1 or args.size < 64 or args.field < 1 or any(k < 1 for k in args.scaling):
        p.error("--n, --scaling >= 1; --size >= 64; --field >= 1")
    if args.density <= 0:
        p.error("--density > 0")
    spec = Survey(args.n, args.size, args.field, args.seed, args.density)
    if args.generate_only:
        full = replace(spec, n_frames=max([args.n, *args.scaling]))
        manifest, made = prepare_survey(full, Path(args.dir), args.real, _stderr)
        print(f"{manifest} ({'generated' if made else 'reused'})")
        return 0
    report = run_survey(
        spec,
        Path(args.dir),
        args.tools,
        args.interpolation,
        args.memory_limit,
        args.scaling,
        args.repeat,
        not args.no_warmup,
        args.keep,
        args.real,
    )
    text = format_survey(report)
    print(text)
    md = Path(args.markdown) if args.markdown else Path(args.dir) / "survey_results.md"
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    ok = all(c["ok"] for c in report["checks"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
