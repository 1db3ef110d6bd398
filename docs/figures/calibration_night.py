"""The figures and numbers of the calibration page, from two real nights.

Reads the frames from ``../shared/data/real`` beside the checkout at run time
(nothing is copied into the repository); the masters are written to a
temporary folder and deleted afterwards::

    cd /path/to/stackengine && python docs/figures/calibration_night.py

``uam_ngc2420`` (CAFOS, Calar Alto 2.2 m): the master bias of the two bias
frames, the master B flat of the one B dome flat (bias-subtracted), light
``science_NGC2420_B_uamA_0026.fits`` raw and calibrated, and the stack of the
three 60 s B lights calibrated inside the tile tasks, all as the page's
commands make them (the Python API's defaults do not read the frames' malformed
BIASSEC, the command line's need ``--overscan none``). ``ast443_bigccd`` (SBIG
STL-1001E): the master bias, the master dark of the four 60 s darks, the
per-second master dark of all six darks (``dark_scale=True``), the median of
each raw dark against its exposure and the 300 s dark calibrated with the 60 s
master scaled by 5.

Writes into ``docs/figures``: ``calibration_raw_light.png``,
``calibration_master_bias.png``, ``calibration_master_flat_B.png``,
``calibration_calibrated_light.png``, ``calibration_stack_B.png`` and
``calibration_dark_levels.png`` (900 px wide, 8-bit palette PNGs), and prints
every number the page quotes: the masters' levels, the missing pixels, the
sky's flatness before and after the flat (5-95 % spread of the medians of
32 x 32 boxes), the lights' drift (median shift of the stars' centroids
against frame 0026) and the dark levels. Runs in about 10 s.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import stackengine as se  # noqa: E402

REAL = Path(os.environ.get("STACKENGINE_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
UAM = REAL / "uam_ngc2420"
AST = REAL / "ast443_bigccd"
OUT = ROOT / "docs" / "figures"
LIGHT = "science_NGC2420_B_uamA_0026.fits"
#: the crop shown at full resolution beside each frame: (x0, y0, size), 0-based pixels
CROP_STARS = (380, 170, 200)  # the dust shadow near (450, 260) and a bright pair of stars
CROP_CORNER = (0, 0, 200)  # the bias's first rows and columns
PERCENTILES = (1.0, 99.0)  # the one stretch rule of every image


def stretch(image: np.ndarray) -> tuple[float, float]:
    """The display range: the 1st and 99th percentiles of the finite pixels."""
    lo, hi = np.nanpercentile(image, PERCENTILES)
    return float(lo), float(hi)


def save_png(fig: plt.Figure, path: Path, colors: int = 256) -> None:
    """Save as an 8-bit palette PNG (a quarter of matplotlib's RGBA size)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB")
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB, {img.size[0]} px)")


def image_figure(image: np.ndarray, title: str, unit: str, crop: tuple, path: Path) -> None:
    """The whole frame (left) and a crop at full resolution (right), one stretch, a colorbar."""
    lo, hi = stretch(image)
    x0, y0, size = crop
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9.0, 4.4), layout="constrained", gridspec_kw={"width_ratios": [1, 1]}
    )
    shown = dict(origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="antialiased")
    left.imshow(image, **shown)
    left.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), size, size, fill=False, ec="tab:orange", lw=1.2))
    left.set_title("whole frame (1024 x 1024)", fontsize=9)
    part = image[y0 : y0 + size, x0 : x0 + size]
    mappable = right.imshow(
        part, extent=(x0 - 0.5, x0 + size - 0.5, y0 - 0.5, y0 + size - 0.5), **shown
    )
    right.set_title(
        f"x {x0 + 1}-{x0 + size}, y {y0 + 1}-{y0 + size} (1-based), full resolution", fontsize=9
    )
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    bar = fig.colorbar(mappable, ax=[left, right], shrink=0.9, pad=0.01)
    bar.set_label(f"{unit} (stretch: 1-99 percentiles, {lo:.4g} to {hi:.4g})", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=11)
    save_png(fig, path)


def sky_spread(image: np.ndarray, box: int = 32) -> tuple[float, float]:
    """Median sky and the 5-95 % spread of the medians of box x box blocks, relative to it
    (rows and columns 3-1022, 1-based: the first two rows are no image)."""
    a = image[2:1022, 2:1022]
    n = a.shape[0] // box
    blocks = a[: n * box, : n * box].reshape(n, box, n, box).swapaxes(1, 2).reshape(n, n, -1)
    med = np.nanmedian(blocks, axis=2)
    level = float(np.median(med))
    p5, p95 = np.percentile(med, [5, 95])
    return level, float((p95 - p5) / level)


def star_centroids(image: np.ndarray) -> np.ndarray:
    """(y, x) centroids of isolated unsaturated stars, 15 mad_std above the sky."""
    img = np.nan_to_num(image, nan=float(np.nanmedian(image)))
    sky = np.median(img)
    noise = 1.4826 * np.median(np.abs(img - sky))
    labels, n = ndimage.label(ndimage.gaussian_filter(img, 2) > sky + 15 * noise)
    index = np.arange(1, n + 1)
    centres = ndimage.center_of_mass(np.clip(img - sky, 0, None), labels, index)
    peaks = ndimage.maximum(img, labels, index)
    sizes = ndimage.sum(np.ones_like(img), labels, index)
    keep = [
        c
        for c, p, s in zip(centres, peaks, sizes, strict=True)
        if p < 40000 and 5 < s < 400 and 20 < c[0] < 1004 and 20 < c[1] < 1004
    ]
    return np.array(keep)


def drift(frames: np.ndarray, reference: int) -> list[tuple[int, float, float]]:
    """Per frame: stars matched within 8 px of the reference's and their median (dy, dx)."""
    ref = star_centroids(frames[reference])
    out = []
    for frame in frames:
        stars = star_centroids(frame)
        shifts = []
        for p in ref:
            d = np.hypot(*(stars - p).T)
            if d.size and d.min() < 8:
                shifts.append(stars[d.argmin()] - p)
        dy, dx = np.median(shifts, axis=0) if shifts else (np.nan, np.nan)
        out.append((len(shifts), float(dy), float(dx)))
    return out


def uam_night(tmp: Path) -> None:
    print(f"uam_ngc2420 ({UAM})")
    table = se.summary(UAM)
    pick = lambda kind, filt=None, t=None: sorted(  # noqa: E731
        table[
            (table.imagetyp == kind)
            & ((table["filter"] == filt) if filt else True)
            & ((table.exptime == t) if t is not None else True)
        ]["path"]
    )
    bias_path, flat_path = tmp / "bias.fits", tmp / "flat_B.fits"
    se.write(se.master(pick("bias"), "bias"), bias_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        se.write(se.master(pick("flat", "JohnsonB"), "flat", bias=str(bias_path)), flat_path)
        lights_b = pick("light", "JohnsonB")
        lights_60 = pick("light", "JohnsonB", 60.0)
        calib = {"bias": str(bias_path), "flat": str(flat_path)}
        calibrated_all = se.calibrate(lights_b, **calib).values
        result = se.stack(se.open_frames(lights_60), calibration=calib)
        stacked, count = result["image"].values, result["count"].values
    for w in {str(w.message) for w in caught}:
        print(f"  warning: {w}")
    raw = se.open_frames(str(UAM / LIGHT)).values[0].astype(np.float64)
    bias = se.open_frames(str(bias_path)).values[0]
    flat = se.open_frames(str(flat_path)).values[0]
    light = calibrated_all[[Path(p).name for p in lights_b].index(LIGHT)]

    print(f"  master bias: median {np.median(bias):.1f}, mean {bias.mean():.1f} ADU")
    print(
        f"  master B flat: mean {flat.mean():.4f}, median {np.median(flat):.4f}, "
        f"1-99 % {np.percentile(flat, 1):.3f}-{np.percentile(flat, 99):.3f}, "
        f"below 0.1 x median: {(flat < 0.1 * np.median(flat)).sum()} pixels in rows "
        f"{sorted({int(y) + 1 for y in np.nonzero(flat < 0.1 * np.median(flat))[0]})}"
    )
    level, spread = sky_spread(raw - bias)
    print(
        f"  light {LIGHT}: raw median {np.median(raw):.0f} ADU; sky (raw - bias) {level:.0f} ADU, "
        f"5-95 % spread of 32x32 box medians {100 * spread:.1f} %"
    )
    level, spread = sky_spread(light)
    print(
        f"  calibrated: sky {level:.0f} ADU, spread {100 * spread:.1f} %, "
        f"missing (NaN) {int(np.isnan(light).sum())} pixels"
    )
    level, spread = sky_spread(stacked)
    kept = {int(k): int(n) for k, n in zip(*np.unique(count, return_counts=True), strict=True)}
    print(
        f"  stack of {len(lights_60)} x 60 s: sky {level:.0f} ADU, spread {100 * spread:.1f} %, "
        f"pixels by count kept {kept}"
    )
    ref = [Path(p).name for p in lights_b].index(LIGHT)
    for path, (n, dy, dx) in zip(lights_b, drift(calibrated_all, ref), strict=True):
        print(
            f"  drift of {Path(path).name} against {LIGHT}: dy {dy:+.2f} px, dx {dx:+.2f} px "
            f"({n} stars)"
        )

    image_figure(
        raw, f"Raw light: {LIGHT} (B, 60 s)", "ADU", CROP_STARS, OUT / "calibration_raw_light.png"
    )
    image_figure(
        bias,
        "Master bias: 2 bias frames, sigma-clipped mean",
        "ADU",
        CROP_CORNER,
        OUT / "calibration_master_bias.png",
    )
    image_figure(
        flat,
        "Master B flat: 1 dome flat, bias-subtracted, normalized to mean 1",
        "relative response",
        CROP_STARS,
        OUT / "calibration_master_flat_B.png",
    )
    image_figure(
        light,
        f"Calibrated light: ({LIGHT} - bias) / (flat / mean(flat))",
        "ADU",
        CROP_STARS,
        OUT / "calibration_calibrated_light.png",
    )
    image_figure(
        stacked,
        "Stack of the three calibrated 60 s B lights (sigma clip 3/3, mean)",
        "ADU",
        CROP_STARS,
        OUT / "calibration_stack_B.png",
    )


def ast443_darks(tmp: Path) -> None:
    print(f"ast443_bigccd ({AST})")
    table = se.summary(AST)
    biases = sorted(table[table.imagetyp == "bias"]["path"])
    darks = table[table.imagetyp == "dark"].sort_values(["exptime", "path"])
    darks_60 = sorted(darks[darks.exptime == 60.0]["path"])
    bias_path, d60_path, dps_path = tmp / "ast_bias.fits", tmp / "dark_60.fits", tmp / "dps.fits"
    se.write(se.master(biases, "bias"), bias_path)
    se.write(se.master(darks_60, "dark", bias=str(bias_path)), d60_path)
    se.write(se.master(list(darks["path"]), "dark", bias=str(bias_path), dark_scale=True), dps_path)
    bias = se.open_frames(str(bias_path)).values[0].astype(np.float64)
    d60 = se.open_frames(str(d60_path)).values[0].astype(np.float64)
    dps = se.open_frames(str(dps_path)).values[0].astype(np.float64)
    b_med, d60_med, dps_med = np.median(bias), np.median(d60), np.median(dps)
    print(
        f"  master bias median {b_med:.2f} ADU; master dark (60 s) median {d60_med:.3f} ADU "
        f"({d60_med / 60:.4f} ADU/s); per-second master dark median {dps_med:.4f} ADU/s"
    )
    points = []
    for path in biases:
        points.append((0.0, float(np.median(se.open_frames(path).values[0]))))
    for path, t in zip(darks["path"], darks["exptime"], strict=True):
        med = float(np.median(se.open_frames(path).values[0]))
        points.append((float(t), med))
        print(
            f"  {Path(path).name}: {t:g} s, median {med:g} ADU; predicted "
            f"median(bias + {t:g}/60 x dark60) {np.median(bias + t / 60 * d60):.2f}, "
            f"median(bias + {t:g} x dark/s) {np.median(bias + t * dps):.2f}"
        )
    d300 = str(darks[darks.exptime == 300.0]["path"].iloc[0])
    cal = se.calibrate(d300, bias=str(bias_path), dark=str(d60_path), dark_scale=True).values[0]
    print(
        f"  300 s dark calibrated with the 60 s master x 5: median {np.nanmedian(cal):.2f}, "
        f"mean {np.nanmean(cal):.2f} ADU"
    )

    t = np.array([p[0] for p in points])
    med = np.array([p[1] for p in points])
    fig, ax = plt.subplots(figsize=(9.0, 4.2), layout="constrained")
    line = np.linspace(0, 310, 2)
    ax.plot(
        line,
        b_med + line * d60_med / 60,
        color="tab:blue",
        lw=1.2,
        label=f"bias + t/60 x dark(60 s): {b_med:.1f} + {d60_med / 60:.4f} t",
    )
    ax.plot(
        line,
        b_med + line * dps_med,
        color="tab:green",
        lw=1.2,
        ls="--",
        label=f"bias + t x dark per second: {b_med:.1f} + {dps_med:.4f} t",
    )
    ax.plot(t, med, "o", color="black", ms=5, label="median of each raw frame (3 bias, 6 darks)")
    ax.annotate(
        f"300 s: measured {med[t == 300][0]:.0f}; predicted "
        f"{np.median(bias + 5 * d60):.1f}\n(the median of bias + 5 x dark(60 s))",
        xy=(300, med[t == 300][0]),
        xytext=(170, 1012),
        fontsize=8,
        arrowprops=dict(arrowstyle="->", lw=0.8),
    )
    ax.set_xlabel("exposure time (s)")
    ax.set_ylabel("median level (ADU)")
    ax.set_xlim(-8, 315)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("ast443_bigccd (SBIG STL-1001E, -5 C): dark level against exposure", fontsize=11)
    save_png(fig, OUT / "calibration_dark_levels.png", colors=64)


def main() -> None:
    if not REAL.is_dir():
        sys.exit(
            f"{REAL}: not found; the frames are read from ../shared/data/real beside the "
            "checkout (or set STACKENGINE_REAL_DATA)"
        )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        uam_night(Path(folder))
        ast443_darks(Path(folder))
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
