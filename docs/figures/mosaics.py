"""The figures and numbers of the Mosaics page.

Run from the checkout (reads ``../shared/data/real`` beside it at run time;
nothing is copied into the repository)::

    cd /path/to/stackengine && python docs/figures/mosaics.py

1. ``mosaics_seestar.png``: the four plate-solved 10 s Seestar S50 frames of
   ``seestar_ngc7023`` (Bayer GRBG, their own TAN WCS each) co-added through their
   WCS onto a north-up grid (``register="wcs", output_wcs="optimal"``), debayered in
   the tile tasks, and the coverage (``count``).
2. ``mosaics_survey.png``: a synthetic survey made by the benchmark's generator
   (:mod:`benchmarks.survey`: the star pattern of the real NGC 2420 frames tiled
   over a field six frames large, 30 dithered frames of 512 x 512 px with TAN-SIP
   WCSs, cosmic rays, satellite trails) and a sky level of its own per frame; the
   co-add without and with ``match_background=True``, the coverage and the
   exposure map with the frames' outlines.
3. ``mosaics_drizzle.png``: eight undersampled frames (stars of FWHM 1.3 px)
   dithered by fractions of a pixel: one frame, the bilinear co-add on the
   frames' own pixel scale, and the drizzle (``pixfrac=0.6``) onto pixels half
   as large (``output_scale=0.5``).

Writes the PNGs into ``docs/figures`` and prints the numbers the page quotes.
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from registration_real import no_ticks, save_png, shown, stretch_range  # noqa: E402

import stackengine as se  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"


def _outline(ax: plt.Axes, header: fits.Header, grid: WCS, step: int = 1) -> None:
    """A frame's edges on the grid's pixels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = WCS(header)
    h, wd = header["NAXIS2"], header["NAXIS1"]
    x = np.r_[np.linspace(-0.5, wd - 0.5, 20), np.full(20, wd - 0.5),
              np.linspace(wd - 0.5, -0.5, 20), np.full(20, -0.5)]  # fmt: skip
    y = np.r_[np.full(20, -0.5), np.linspace(-0.5, h - 0.5, 20), np.full(20, h - 0.5),
              np.linspace(h - 0.5, -0.5, 20)]  # fmt: skip
    gx, gy = grid.all_world2pix(*w.all_pix2world(x, y, 0), 0)
    ax.plot(gx / step, gy / step, lw=0.6, color="white", alpha=0.7)


def seestar() -> None:
    paths = sorted(str(p) for p in (REAL / "seestar_ngc7023").glob("*10.0s*.fit"))
    t0 = time.time()
    ds = se.stack(paths, register="wcs", output_wcs="optimal")
    image, count = ds["image"].values, ds["count"].values[..., 1]  # green's coverage
    print(f"seestar: {len(paths)} frames -> {image.shape} in {time.time() - t0:.1f} s; "
          f"count {count.min()}..{count.max()}")  # fmt: skip
    grid = WCS(ds.attrs["wcs"])
    # display only: each channel's sky subtracted and scaled by its noise (neutral sky)
    sky = np.nanmedian(image, axis=(0, 1))
    noise = 1.4826 * np.nanmedian(np.abs(image - sky), axis=(0, 1))
    neutral = (image - sky) / noise
    fig, axes = plt.subplots(1, 2, figsize=(9, 5.6), layout="constrained")
    axes[0].imshow(shown(neutral, 2, (-2.0, 40.0)), origin="lower")
    axes[0].set_title("4 Seestar frames co-added through their WCS (RGB)")
    im = axes[1].imshow(count[::2, ::2], origin="lower", cmap="viridis", vmin=0, vmax=4)
    for p in paths:
        _outline(axes[1], fits.getheader(p), grid, 2)
    axes[1].set_title("coverage (count) and the frames' outlines")
    fig.colorbar(im, ax=axes[1], shrink=0.7, label="frames")
    no_ticks(*axes)
    save_png(fig, HERE / "mosaics_seestar.png")


def survey() -> None:
    from benchmarks.survey import Survey, prepare_survey

    with tempfile.TemporaryDirectory() as tmp:
        spec = Survey(n_frames=30, size=512, field=6.0, density=4.0)
        manifest, _ = prepare_survey(spec, Path(tmp))
        folder = manifest.parent
        rng = np.random.default_rng(1)
        paths = []
        for k, p in enumerate(sorted(folder.glob("frame_*.fits"))):
            with fits.open(p) as hdul:  # a sky level of its own per frame
                data = hdul[0].data + np.float32(rng.uniform(-150, 150))
                header = hdul[0].header
            out = Path(tmp) / f"sky_{k:02d}.fits"
            fits.PrimaryHDU(data.astype(np.float32), header=header).writeto(out)
            paths.append(str(out))
        grid_header = fits.Header.fromtextfile(folder / "grid.head")
        kw = {"register": "wcs", "output_wcs": grid_header, "interpolation": "lanczos3"}
        t0 = time.time()
        plain = se.stack(paths, **kw)
        image = plain["image"].values
        t1 = time.time()
        matched = se.stack(paths, match_background=True, **kw)
        mimage = matched["image"].values
        print(f"survey: {len(paths)} frames of 512^2 -> {image.shape}; plain {t1 - t0:.1f} s, "
              f"matched {time.time() - t1:.1f} s; offsets "
              f"{np.round(matched['background_offset'].values[:6], 1)} ...")  # fmt: skip
        count, exposure = matched["count"].values, matched["exposure"].values
        print(f"  count {count.min()}..{count.max()}, exposure {exposure.max():.0f} s max")
        grid = WCS(grid_header)
        rng_ = stretch_range(mimage)
        fig, axes = plt.subplots(2, 2, figsize=(10, 9.6), layout="constrained")
        axes[0, 0].imshow(shown(image, 2, rng_), origin="lower", cmap="gray")
        axes[0, 0].set_title("30 frames, each its own sky level: seams")
        axes[0, 1].imshow(shown(mimage, 2, rng_), origin="lower", cmap="gray")
        axes[0, 1].set_title("match_background=True")
        im = axes[1, 0].imshow(count[::2, ::2], origin="lower", cmap="viridis")
        fig.colorbar(im, ax=axes[1, 0], shrink=0.8, label="frames kept")
        axes[1, 0].set_title("coverage (count)")
        im = axes[1, 1].imshow(exposure[::2, ::2], origin="lower", cmap="magma")
        for p in paths:
            _outline(axes[1, 1], fits.getheader(p), grid, 2)
        fig.colorbar(im, ax=axes[1, 1], shrink=0.8, label="seconds")
        axes[1, 1].set_title("exposure map and the frames' outlines")
        no_ticks(*axes.ravel())
        save_png(fig, HERE / "mosaics_survey.png")


def _undersampled(tmp: Path) -> list[str]:
    rng = np.random.default_rng(3)
    s = 1.0 / 3600
    stars = np.column_stack([150 + rng.uniform(-0.008, 0.008, 40),
                             2 + rng.uniform(-0.008, 0.008, 40)])  # fmt: skip
    flux = rng.uniform(300, 3000, 40)
    paths = []
    for k in range(8):
        h = fits.Header()
        h.update({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN",
                  "CRVAL1": 150 + rng.uniform(-1, 1) * s, "CRVAL2": 2 + rng.uniform(-1, 1) * s,
                  "CRPIX1": 40.5, "CRPIX2": 40.5, "CDELT1": -s, "CDELT2": s})  # fmt: skip
        h["EXPTIME"] = 60.0
        yy, xx = np.mgrid[0:80, 0:80].astype(float)
        data = 20 + rng.normal(0, 0.5, (80, 80))
        w = WCS(h)
        for (r, d), f in zip(stars, flux, strict=True):
            x, y = w.all_world2pix(r, d, 0)
            # pixel-integrated Gaussian of sigma 0.55 px (FWHM 1.3 px: undersampled)
            from scipy.special import erf

            def cdf(a, sig=0.55):
                return 0.5 * (1 + erf(a / (sig * np.sqrt(2))))

            px = cdf(xx + 0.5 - x) - cdf(xx - 0.5 - x)
            py = cdf(yy + 0.5 - y) - cdf(yy - 0.5 - y)
            data += f * px * py
        path = tmp / f"u{k}.fits"
        fits.PrimaryHDU(data.astype(np.float32), header=h).writeto(path)
        paths.append(str(path))
    return paths


def drizzle() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = _undersampled(Path(tmp))
        one = fits.getdata(paths[0])
        coadd = se.stack(paths, register="wcs", output_wcs="optimal", interpolation="bilinear")
        driz = se.stack(paths, register="wcs", output_wcs="optimal", output_scale=0.5,
                        interpolation="drizzle", pixfrac=0.6)  # fmt: skip
        a, b = coadd["image"].values, driz["image"].values
        print(f"drizzle: co-add {a.shape}, drizzle {b.shape}; peak/sum of the brightest star "
              f"{np.nanmax(a):.0f} vs {np.nanmax(b):.0f}")  # fmt: skip
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.8), layout="constrained")
        zoom = (slice(22, 58), slice(22, 58))  # the middle of the field, 36 frame pixels
        for ax, img, title in ((axes[0], one[zoom], "one frame (FWHM 1.3 px)"),
                               (axes[1], a[zoom], "bilinear co-add, same pixels"),
                               (axes[2], b[44:116, 44:116], "drizzle: pixfrac 0.6, pixels / 2"),
                               ):  # fmt: skip
            ax.imshow(shown(img), origin="lower", cmap="gray", interpolation="nearest")
            ax.set_title(title, fontsize=10)
        no_ticks(*axes)
        save_png(fig, HERE / "mosaics_drizzle.png")


def main() -> None:
    seestar()
    survey()
    drizzle()


if __name__ == "__main__":
    main()
