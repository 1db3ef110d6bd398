"""The figures and numbers of the registration page, from two real sets.

Reads the frames from ``../shared/data/real`` beside the checkout at run time
(nothing is copied into the repository)::

    cd /path/to/stackengine && python docs/figures/registration_real.py

``seestar_ngc7023`` (ZWO Seestar S50, a Bayer GRBG mosaic, 1080 x 1920): one
raw 10 s frame of 2024 and one 20 s frame of 2025 (turned 121.5 deg against
it), debayered bilinearly; the stack without registration, with
``register="stars"`` and with ``register="stars", normalize="photometric"``;
the registered stack's coverage (``count``); and the table of the fitted
transforms from :func:`stackengine.register`. ``uam_ngc2420`` (CAFOS, Calar
Alto 2.2 m): the six B lights (2 to 60 s, drifting up to ~5 px) stacked
without and with registration (both ``normalize="additive+scale"`` so that
the short frames count as much as the long ones), and the stars' FWHM in
both and in the single frames, measured with ``sep`` (twice the half-light
radius, the median over isolated unsaturated stars).

Writes into ``docs/figures``: ``registration_raw_frame.png``,
``registration_plain_vs_registered.png``, ``registration_count.png`` and
``registration_uam.png`` (8-bit palette PNGs, the images downsampled for
display), and prints every number the page quotes. Runs in about a minute on
two cores.

Display: every image is stretched by ``asinh`` between its 1st and 99.8th
percentiles (the Seestar zooms by their own); an RGB image uses one range for
its three channels (a *linked* stretch, so the colours are the data's, not
colour-balanced).
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import sep  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import stackengine as se  # noqa: E402
from stackengine.kernels.debayer import debayer  # noqa: E402

REAL = Path(os.environ.get("STACKENGINE_REAL_DATA", ROOT.parent / "shared" / "data" / "real"))
SEESTAR = REAL / "seestar_ngc7023"
UAM = REAL / "uam_ngc2420"
OUT = ROOT / "docs" / "figures"
PERCENTILES = (1.0, 99.8)  # the one stretch rule of every image
SOFTNESS = 12.0  # asinh(SOFTNESS x) / asinh(SOFTNESS) of the 0-1 scaled values
#: the zoomed crops (x0, y0, size), 0-based output pixels
CROP_SEESTAR = (470, 880, 200)  # NGC 7023's star and its neighbours, inside every frame
CROP_UAM = (380, 400, 160)


def asinh_stretch(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = np.clip((np.nan_to_num(image, nan=lo) - lo) / (hi - lo), 0.0, 1.0)
    return np.clip(np.arcsinh(SOFTNESS * x) / np.arcsinh(SOFTNESS), 0.0, 1.0)


def stretch_range(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanpercentile(image, PERCENTILES)
    return float(lo), float(hi)


def shown(image: np.ndarray, step: int = 1, rng: tuple[float, float] | None = None) -> np.ndarray:
    """The image stretched (linked over channels), every ``step``-th pixel after a
    ``step`` x ``step`` block mean (a display downsample that keeps faint stars)."""
    lo, hi = rng or stretch_range(image)
    if step > 1:
        ny, nx = image.shape[0] // step, image.shape[1] // step
        a = image[: ny * step, : nx * step]
        image = np.nanmean(a.reshape(ny, step, nx, step, *a.shape[2:]), axis=(1, 3))
    return asinh_stretch(image, lo, hi)


def save_png(fig: plt.Figure, path: Path, dpi: int = 80, colors: int = 128) -> None:
    """Save as an 8-bit palette PNG (a quarter of matplotlib's RGBA size)."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB")
    img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB, {img.size[0]} px)")


def box(ax: plt.Axes, crop: tuple[int, int, int], step: int = 1) -> None:
    x0, y0, size = crop
    ax.add_patch(
        Rectangle(
            (x0 / step - 0.5, y0 / step - 0.5),
            size / step,
            size / step,
            fill=False,
            ec="tab:orange",
            lw=1.0,
        )  # fmt: skip
    )


def crop_of(image: np.ndarray, crop: tuple[int, int, int]) -> np.ndarray:
    x0, y0, size = crop
    return image[y0 : y0 + size, x0 : x0 + size]


def no_ticks(*axes: plt.Axes) -> None:
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


def star_fwhm(image: np.ndarray, saturation: float = 40000.0) -> tuple[float, int]:
    """Median FWHM (twice the half-light radius, sep.flux_radius) of the isolated,
    unsaturated stars 10 sigma above the background, and how many."""
    d = np.ascontiguousarray(np.nan_to_num(image, nan=float(np.nanmedian(image))), dtype=np.float64)
    bkg = sep.Background(d)
    s = d - bkg
    obj = sep.extract(s, 10, err=bkg.globalrms, minarea=5)
    edge = 20
    ok = (
        (obj["flag"] == 0)
        & (obj["peak"] + bkg.globalback < saturation)
        & (obj["x"] > edge) & (obj["x"] < d.shape[1] - edge)
        & (obj["y"] > edge) & (obj["y"] < d.shape[0] - edge)
    )  # fmt: skip
    obj = obj[ok]
    radius, flag = sep.flux_radius(
        s, obj["x"], obj["y"], 6.0 * np.clip(obj["a"], 1.0, None), 0.5, subpix=5
    )
    fwhm = 2.0 * radius[(flag == 0) & (radius > 0.5)]
    return float(np.median(fwhm)), int(fwhm.size)


def transform_rows(table) -> list[dict]:
    """Per frame: the matrix's shift, rotation and scale, and the registration's numbers."""
    rows = []
    for k in range(table.sizes["frame"]):
        m = table.matrix.values[k]
        rows.append(
            dict(
                frame=Path(str(table.path.values[k])).name,
                exptime=float(table.exptime.values[k]),
                dx=float(m[0, 2]),
                dy=float(m[1, 2]),
                angle=math.degrees(math.atan2(m[1, 0], m[0, 0])),
                scale=math.sqrt(abs(np.linalg.det(m[:2, :2]))),
                n_stars=int(table.n_stars.values[k]),
                n_matched=int(table.n_matched.values[k]),
                rms_px=float(table.rms_px.values[k]),
                fwhm=float(table.fwhm.values[k]),
            )
        )
    return rows


def seestar() -> None:
    print(f"seestar_ngc7023 ({SEESTAR})")
    paths = sorted(str(p) for p in SEESTAR.glob("*.fit"))
    frames = se.open_frames(paths)
    table = se.register(frames)
    ref = int(table.attrs["reference"])
    print(f"  se.register: reference frame {ref} ({Path(paths[ref]).name}), "
          f"transform {table.attrs['transform']}")  # fmt: skip
    rows = transform_rows(table)
    print(
        "  frame | exptime | dx | dy | rotation (deg) | scale | n_stars | n_matched | rms_px | fwhm"
    )
    for r in rows:
        print(
            f"  {r['frame']} | {r['exptime']:g} | {r['dx']:.2f} | {r['dy']:.2f} | "
            f"{r['angle']:.3f} | {r['scale']:.5f} | {r['n_stars']} | {r['n_matched']} | "
            f"{r['rms_px']:.3f} | {r['fwhm']:.2f}"
        )

    # 1. a raw frame of each night, debayered
    raw = frames.values
    rgb = [debayer(raw[k].astype(np.float32), "GRBG", "bilinear") for k in (0, ref)]
    for k, image in zip((0, ref), rgb, strict=True):
        med = [float(np.median(image[..., c])) for c in range(3)]
        zeros = 100 * np.mean(raw[k] == 0)
        print(
            f"  raw frame {k} debayered: median R {med[0]:.0f}, G {med[1]:.0f}, "
            f"B {med[2]:.0f} ADU; zero pixels in the mosaic {zeros:.1f} %"
        )
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 7.4), layout="constrained")
    for ax, k, image in zip(axes, (0, ref), rgb, strict=True):
        ax.imshow(shown(image, 2), origin="lower", interpolation="antialiased")
        ax.set_title(
            f"{Path(paths[k]).name}\n{rows[k]['exptime']:g} s, "
            f"rotation {rows[k]['angle']:.1f} deg against frame {ref}",
            fontsize=8,
        )
        no_ticks(ax)
    fig.suptitle("Seestar S50 raw frames (GRBG mosaic, bilinear debayer, 1080 x 1920)", fontsize=10)
    save_png(fig, OUT / "registration_raw_frame.png")

    # 2. plain, registered, registered + photometric normalization
    t0 = time.perf_counter()
    plain = se.stack(se.open_frames(paths)).compute()
    registered = se.stack(se.open_frames(paths), register="stars").compute()
    photometric = se.stack(
        se.open_frames(paths), register="stars", normalize="photometric"
    ).compute()
    print(f"  three stacks in {time.perf_counter() - t0:.1f} s")
    count = registered["count"].values[..., 1]
    low = registered["rejected_low"].values[..., 1]
    inside = count + low + registered["rejected_high"].values[..., 1] == 6
    img = registered["image"].values
    print(
        f"  registered: median G {np.nanmedian(img[..., 1][inside]):.0f} ADU where all six "
        f"frames cover, {np.nanmedian(img[..., 1][~inside]):.0f} elsewhere; where all six "
        f"cover, {100 * np.mean(low[inside] >= 2):.0f} % of the pixels rejected >= 2 "
        "frames as low"
    )
    print("  photometric: scale", np.round(photometric["scale"].values.ravel(), 3),
          "gradient range", np.round(photometric["gradient_range"].values.ravel(), 1))  # fmt: skip
    for name, result in (("plain", plain), ("registered", registered),
                         ("photometric", photometric)):  # fmt: skip
        g = result["image"].values[..., 1]
        print(f"  {name}: star FWHM (G) {star_fwhm(g, 60000.0)[0]:.2f} px "
              f"({star_fwhm(g, 60000.0)[1]} stars)")  # fmt: skip
    stacks = (
        (plain, "no registration"),
        (registered, 'register="stars"'),
        (photometric, 'register="stars",\nnormalize="photometric"'),
    )
    fig, axes = plt.subplots(
        2, 3, figsize=(9.6, 9.6), layout="constrained", gridspec_kw={"height_ratios": [1.78, 1]}
    )
    for col, (result, title) in enumerate(stacks):
        image = result["image"].values
        rng = stretch_range(image)
        axes[0, col].imshow(shown(image, 3, rng), origin="lower", interpolation="antialiased")
        box(axes[0, col], CROP_SEESTAR, 3)
        axes[0, col].set_title(title, fontsize=9)
        axes[1, col].imshow(shown(crop_of(image, CROP_SEESTAR)), origin="lower",
                            interpolation="nearest")  # fmt: skip
        no_ticks(axes[0, col], axes[1, col])
    x0, y0, size = CROP_SEESTAR
    axes[1, 0].set_ylabel(f"x {x0}-{x0 + size - 1}, y {y0}-{y0 + size - 1}\n(full resolution, "
                          "own stretch)",
                          fontsize=8)  # fmt: skip
    fig.suptitle("Six Seestar S50 frames of NGC 7023 (4 x 10 s in 2024, 2 x 20 s in 2025)",
                 fontsize=10)  # fmt: skip
    save_png(fig, OUT / "registration_plain_vs_registered.png")

    # 3. the coverage: count (frames kept) of the two registered stacks
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 5.6), layout="constrained")
    cmap = plt.get_cmap("viridis", 6)
    for ax, (result, title) in zip(axes, stacks[1:], strict=True):
        kept = result["count"].values[..., 1]
        covered = (
            kept + result["rejected_low"].values[..., 1] + result["rejected_high"].values[..., 1]
        )
        hist = {int(k): int(n) for k, n in zip(*np.unique(kept, return_counts=True), strict=True)}
        cover = {int(k): int(n) for k, n in zip(*np.unique(covered, return_counts=True),
                                                 strict=True)}  # fmt: skip
        print(f"  {title.replace(chr(10), ' ')}: pixels by count (G) {hist}; by frames covering "
              f"(count + rejected) {cover}")  # fmt: skip
        im = ax.imshow(kept[::2, ::2], origin="lower", cmap=cmap, vmin=0.5, vmax=6.5,
                       extent=(-0.5, kept.shape[1] - 0.5, -0.5, kept.shape[0] - 0.5),
                       interpolation="nearest")  # fmt: skip
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=7)
    bar = fig.colorbar(im, ax=axes, ticks=range(1, 7), shrink=0.8)
    bar.set_label("count: frames kept per pixel (G)", fontsize=8)
    fig.suptitle('result["count"] of the registered Seestar stacks (channel G)', fontsize=9)
    save_png(fig, OUT / "registration_count.png", colors=32)


def uam() -> None:
    print(f"uam_ngc2420 ({UAM})")
    paths = sorted(str(p) for p in UAM.glob("science_NGC2420_B_*.fits"))
    frames = se.open_frames(paths)
    table = se.register(frames)
    ref = int(table.attrs["reference"])
    for r in transform_rows(table):
        print(f"  {r['frame']}: {r['exptime']:g} s, dx {r['dx']:+.2f}, dy {r['dy']:+.2f}, "
              f"rotation {r['angle']:+.4f} deg, n_matched {r['n_matched']}, "
              f"rms {r['rms_px']:.3f} px")  # fmt: skip
    singles = [star_fwhm(frames.values[k].astype(np.float64)) for k in range(len(paths))]
    for p, (f, n) in zip(paths, singles, strict=True):
        print(f"  single {Path(p).name}: FWHM {f:.2f} px ({n} stars)")
    single = float(np.median([f for f, _ in singles]))
    plain = se.stack(se.open_frames(paths), normalize="additive+scale").compute()
    registered = se.stack(
        se.open_frames(paths), register="stars", normalize="additive+scale"
    ).compute()
    f_plain, n_plain = star_fwhm(plain["image"].values)
    f_reg, n_reg = star_fwhm(registered["image"].values)
    print(f"  FWHM: median single frame {single:.2f} px, plain stack {f_plain:.2f} px "
          f"({n_plain} stars), registered {f_reg:.2f} px ({n_reg} stars)")  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(8.0, 8.6), layout="constrained",
                             gridspec_kw={"height_ratios": [1, 1]})  # fmt: skip
    for col, (result, title, f) in enumerate(
        ((plain, "no registration", f_plain), (registered, 'register="stars"', f_reg))
    ):
        image = result["image"].values
        rng = stretch_range(image)
        axes[0, col].imshow(shown(image, 2, rng), origin="lower", cmap="gray",
                            interpolation="antialiased")  # fmt: skip
        box(axes[0, col], CROP_UAM, 2)
        axes[0, col].set_title(f"{title}: star FWHM {f:.2f} px", fontsize=9)
        axes[1, col].imshow(shown(crop_of(image, CROP_UAM), 1, rng), origin="lower", cmap="gray",
                            interpolation="nearest")  # fmt: skip
        no_ticks(axes[0, col], axes[1, col])
    x0, y0, size = CROP_UAM
    axes[1, 0].set_ylabel(f"x {x0}-{x0 + size - 1}, y {y0}-{y0 + size - 1} (full resolution)",
                          fontsize=8)  # fmt: skip
    fig.suptitle(
        f"NGC 2420, six B lights (2-60 s, reference {Path(paths[ref]).name}), "
        f'normalize="additive+scale"\nstar FWHM (sep): single frames {single:.2f} px (median), '
        f"plain stack {f_plain:.2f} px, registered stack {f_reg:.2f} px",
        fontsize=9,
    )
    save_png(fig, OUT / "registration_uam.png")


def main() -> None:
    if not REAL.is_dir():
        sys.exit(
            f"{REAL}: not found; the frames are read from ../shared/data/real beside the "
            "checkout (or set STACKENGINE_REAL_DATA)"
        )
    t0 = time.perf_counter()
    seestar()
    uam()
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
