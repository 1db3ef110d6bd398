"""The figures and numbers of the normalization page, from a real photometric run.

Builds the photometric acceptance set of ``tests/test_photometric.py`` (same
seeds, same data): the real SAAO frame ``a8280271.fits`` from
``../shared/data/real`` (536 x 520, its own background, noise, hot pixels and
two stars) plus 150 injected Gaussian stars (sigma 1.8 px, peaks 100-4000 ADU)
is the truth; frame i is ``truth / k_i + G_i + noise`` with k_0 = 1 and k_i
uniform in [0.6, 1.4], G_i a random quadratic gradient of 20 % of the sky
level, Gaussian noise of 3 ADU and 0.03 % cosmic-ray hits. The eight frames are
written as FITS files to a temporary folder, opened with
:func:`stackengine.open_frames`, stacked with ``normalize="photometric"``
(reference 0), and the report is written with
:func:`stackengine.plots.plot_normalization` (pass 1 is cached, so this reads
no pixel again). Three of its figures are copied to ``docs/_static``::

    cd /path/to/stackengine && python docs/figures/normalization_report.py

It prints the accuracy quoted on the page: the scale error |k_i / k_true - 1|
and the large-scale residual of the stack (medians of 32 x 32 blocks of
``stack - (truth + G_0)``, RMS, in units of the injected gradient amplitude)
for ``photometric`` and for ``additive+scale``. Runs in about 15 s.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import stackengine as se  # noqa: E402
from stackengine.plots import plot_normalization  # noqa: E402

SAAO = ROOT.parent / "shared" / "data" / "real" / "ccdproc_saao_single_frame" / "a8280271.fits"
STATIC = ROOT / "docs" / "_static"
N_FRAMES = 8


def truth_image(n_stars: int = 150, seed: int = 11) -> np.ndarray:
    """The SAAO frame plus ``n_stars`` Gaussian stars (as tests/test_photometric.py)."""
    truth = fits.getdata(SAAO).astype(np.float64)
    rng = np.random.default_rng(seed)
    h, w = truth.shape
    yy, xx = np.mgrid[0:h, 0:w]
    sigma, r = 1.8, 12
    for _ in range(n_stars):
        y0, x0 = rng.uniform(25, h - 25), rng.uniform(25, w - 25)
        peak = 10 ** rng.uniform(2.0, 3.6)
        ys, xs = slice(int(y0) - r, int(y0) + r), slice(int(x0) - r, int(x0) + r)
        d2 = (yy[ys, xs] - y0) ** 2 + (xx[ys, xs] - x0) ** 2
        truth[ys, xs] += peak * np.exp(-d2 / (2 * sigma**2))
    return truth


def gradient(shape: tuple[int, int], amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """A random quadratic surface with peak-to-peak ``amplitude``, minimum 0."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    a, b, c, d, e = rng.normal(0, 1, 5)
    g = a * yy + b * xx + c * yy**2 + d * xx**2 + e * xx * yy
    return (g - g.min()) / np.ptp(g) * amplitude


def large_scale(residual: np.ndarray, block: int = 32) -> np.ndarray:
    """Medians of ``block`` x ``block`` cells, minus their median."""
    h, w = residual.shape
    hb, wb = h // block, w // block
    cells = residual[: hb * block, : wb * block].reshape(hb, block, wb, block)
    medians = np.median(cells.transpose(0, 2, 1, 3).reshape(hb, wb, -1), axis=2)
    return medians - np.median(medians)


def main() -> None:
    truth = truth_image()
    rng = np.random.default_rng(3)
    amplitude = 0.2 * float(np.median(truth))
    ks = np.concatenate([[1.0], rng.uniform(0.6, 1.4, N_FRAMES - 1)])
    grads = [gradient(truth.shape, amplitude, rng) for _ in range(N_FRAMES)]
    with tempfile.TemporaryDirectory(prefix="stackengine-nsg-") as tmp:
        folder = Path(tmp)
        for i in range(N_FRAMES):
            frame = truth / ks[i] + grads[i] + rng.normal(0, 3.0, truth.shape)
            hits = rng.random(truth.shape) < 3e-4
            frame[hits] += rng.uniform(300, 3000, hits.sum())
            fits.PrimaryHDU(frame.astype(np.float32)).writeto(folder / f"light_{i:03d}.fits")
        frames = se.open_frames(sorted(folder.glob("light_*.fits")))
        t0 = time.perf_counter()
        result = se.stack(frames, normalize="photometric", reference=0).compute()
        t1 = time.perf_counter()
        report = plot_normalization(frames, folder / "report", reference=0)
        t2 = time.perf_counter()
        plain = se.stack(frames, normalize="additive+scale", reference=0).compute()
        err = np.abs(result["scale"].values[1:] / ks[1:] - 1.0)
        target = truth + grads[0]
        rms = {
            name: float(np.sqrt(np.mean(large_scale(res["image"].values - target) ** 2)))
            for name, res in (("photometric", result), ("additive+scale", plain))
        }
        print(f"stack {t1 - t0:.1f} s, report ({len(report)} files) {t2 - t1:.1f} s")
        print(f"true k: {np.round(ks, 4)}")
        print(f"fitted: {np.round(result['scale'].values, 4)}")
        print(f"stars matched: {result['n_stars'].values}")
        print(f"scale error: median {100 * np.median(err):.3f} %, worst {100 * err.max():.3f} %")
        for name, value in rms.items():
            print(f"large-scale residual, {name}: {100 * value / amplitude:.2f} % of the gradient")
        print(f"ratio: {rms['additive+scale'] / rms['photometric']:.0f}x")
        show = 1 + int(np.argmax(result["gradient_range"].values[1:]))  # the largest gradient
        print(f"figures of frame {show}")
        STATIC.mkdir(exist_ok=True)
        for kind, name in (("photometry", f"frame_{show:03d}_photometry.png"),
                           ("gradient", f"frame_{show:03d}_gradient.png"),
                           ("summary", "summary.png")):  # fmt: skip
            shutil.copyfile(folder / "report" / name, STATIC / f"normalization_{kind}.png")
            print(f"wrote {STATIC / f'normalization_{kind}.png'}")


if __name__ == "__main__":
    main()
