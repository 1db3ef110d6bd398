"""Compare every rejection algorithm on a synthetic stack with known outliers.

Writes ``docs/_static/rejection_comparison.png`` and prints the numbers it
shows. Deterministic (seeded); runs in about 15 s::

    cd /path/to/stackengine && python docs/figures/rejection_comparison.py

The data: ``SIZE`` x ``SIZE`` pixels, every frame a constant ``LEVEL`` plus
Gaussian noise of standard deviation ``SIGMA``, with three kinds of injected
outliers: cosmic rays (2 % of all values, +5 to +500 sigma, log-uniform),
cold values (0.5 %, -5 to -50 sigma) and two satellite trails (+8 sigma,
5 pixels wide, in two frames). Each algorithm runs through
:func:`stackengine.stack`; which values it kept is read back from stack()
outputs alone:

* most algorithms keep a contiguous run of a pixel's sorted values, so the
  kept values are those between the kept minimum and maximum
  (``combine="min"`` and ``"max"``); the script checks that their number
  equals ``count`` at every pixel;
* where that check fails (linear_fit can reject values in the middle of the
  sorted run), each frame k is probed with weights 1 for every frame and
  1e6 for frame k: the weighted mean differs from the plain mean exactly
  when frame k was kept (rejection does not depend on the weights), unless
  the value equals the mean to float32 precision (about one value in 10^6).

Metrics, per algorithm and frame count N:

* residual noise: RMS of (stacked mean - LEVEL) over all pixels, in units of
  the ideal SIGMA / sqrt(N) (1.0 = the mean of N clean frames);
* outliers kept: the share of the injected outlier values that survived;
* good values rejected: the share of the clean values that were rejected.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import stackengine as se  # noqa: E402

OUT = ROOT / "docs" / "_static" / "rejection_comparison.png"
SIZE = 160
LEVEL, SIGMA = 1000.0, 20.0
FRAME_COUNTS = (15, 40)
SEED = 20260

#: (label, stack() keywords); thresholds are the typical ones of each algorithm
CONFIGS = [
    ("none (plain mean)", dict(reject=None)),
    ("sigma 3/3 (median, mad_std)", dict(reject="sigma")),
    ("sigma 3/3 (mean, std)", dict(reject="sigma", center="mean", spread="std")),
    ("winsorized 4/3", dict(reject="winsorized", sigma_lower=4.0, sigma_upper=3.0)),
    ("linear_fit 5/2.5", dict(reject="linear_fit", sigma_lower=5.0, sigma_upper=2.5)),
    ("linear_fit 6/4", dict(reject="linear_fit", sigma_lower=6.0, sigma_upper=4.0)),
    ("percentile 0.2/0.1", dict(reject="percentile")),
    ("minmax [800, 1200]", dict(reject="minmax", min_value=800.0, max_value=1200.0)),
    ("extrema 1/1", dict(reject="extrema")),
    ("esd (alpha 0.05, max 30 %)", dict(reject="esd")),
    (
        "extrema, minmax, sigma (ccdproc order)",
        dict(reject=["extrema", "minmax", "sigma"], min_value=800.0, max_value=1200.0),
    ),
]


def make_stack(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(data, outlier mask), both (n, SIZE, SIZE); data float32."""
    shape = (n, SIZE, SIZE)
    data = rng.normal(LEVEL, SIGMA, shape).astype(np.float32)
    bad = np.zeros(shape, dtype=bool)
    cosmic = rng.random(shape) < 0.02
    amp = SIGMA * 10.0 ** rng.uniform(math.log10(5), math.log10(500), cosmic.sum())
    data[cosmic] += amp.astype(np.float32)
    cold = (rng.random(shape) < 0.005) & ~cosmic
    amp = SIGMA * 10.0 ** rng.uniform(math.log10(5), math.log10(50), cold.sum())
    data[cold] -= amp.astype(np.float32)
    bad |= cosmic | cold
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for frame, (slope, icpt) in zip((1, n // 2), ((0.6, 20.0), (-1.3, 190.0)), strict=True):
        dist = np.abs(yy - (slope * xx + icpt)) / math.hypot(1.0, slope)
        trail = dist <= 2.5
        data[frame][trail] += np.float32(8 * SIGMA)
        bad[frame] |= trail
    return data, bad


def kept_values(data: np.ndarray, kwargs: dict, image: np.ndarray, count: np.ndarray):
    """Boolean (frame, y, x): which values stack() kept (see the module notes)."""
    lo = se.stack(data, combine="min", **kwargs)["image"].values
    hi = se.stack(data, combine="max", **kwargs)["image"].values
    kept = (data >= lo) & (data <= hi)
    if np.array_equal(kept.sum(axis=0), count):
        return kept, "contiguous"
    n = data.shape[0]
    for k in range(n):
        w = np.ones(n)
        w[k] = 1e6
        probe = se.stack(data, combine="mean", weights=w, **kwargs)["image"].values
        kept[k] = probe != image
    return kept, "probed"


def evaluate(data: np.ndarray, bad: np.ndarray, kwargs: dict) -> dict[str, float]:
    """Stack once for the image, read back the kept values, return the metrics."""
    n = data.shape[0]
    mean = se.stack(data, combine="mean", **kwargs)
    image = mean["image"].values
    count = mean["count"].values
    kept, how = kept_values(data, kwargs, image, count)
    off = np.count_nonzero(kept.sum(axis=0) != count)
    assert off <= 5, f"{kwargs}: kept values disagree with count at {off} pixels"
    rms = math.sqrt(np.nanmean((image.astype(np.float64) - LEVEL) ** 2))
    return {
        "noise": rms / (SIGMA / math.sqrt(n)),
        "kept_bad": float(kept[bad].mean()),
        "rejected_good": float((~kept[~bad]).mean()),
        "empty": int(np.count_nonzero(count == 0)),
        "how": how,
    }


def run() -> dict[int, list[dict[str, float]]]:
    rng = np.random.default_rng(SEED)
    results = {}
    for n in FRAME_COUNTS:
        data, bad = make_stack(n, rng)
        print(f"N = {n}: {bad.sum()} outlier values of {bad.size} ({100 * bad.mean():.2f} %)")
        results[n] = []
        for label, kwargs in CONFIGS:
            r = evaluate(data, bad, kwargs)
            results[n].append(r)
            print(
                f"  {label:40s} noise {r['noise']:6.3f}"
                f"  outliers kept {100 * r['kept_bad']:6.2f} %"
                f"  good rejected {100 * r['rejected_good']:5.2f} %"
                f"  empty {r['empty']}  ({r['how']})"
            )
    return results


def plot(results: dict[int, list[dict[str, float]]]) -> None:
    labels = [label for label, _ in CONFIGS]
    y = np.arange(len(labels))[::-1]
    h = 0.38
    colors = {FRAME_COUNTS[0]: "#4c72b0", FRAME_COUNTS[1]: "#dd8452"}
    panels = [
        ("noise", "residual noise / (σ/√N)\n(1 = mean of N clean frames)", 1.0, 2.0),
        ("kept_bad", "injected outliers kept (%)", 100.0, None),
        ("rejected_good", "good values rejected (%)", 100.0, None),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12.5, 5.6), sharey=True, layout="constrained")
    for ax, (key, title, factor, xmax) in zip(axes, panels, strict=True):
        top = max(factor * r[key] for n in FRAME_COUNTS for r in results[n])
        limit = xmax if xmax is not None else top * 1.28
        for j, n in enumerate(FRAME_COUNTS):
            vals = np.array([factor * r[key] for r in results[n]])
            pos = y + (h / 2 if j == 0 else -h / 2)
            ax.barh(pos, np.minimum(vals, limit), height=h, color=colors[n], label=f"N = {n}")
            for p, v in zip(pos, vals, strict=True):
                text = f"{v:.2f}" if key == "noise" else f"{v:.1f}" if v >= 10 else f"{v:.2f}"
                if v > limit:
                    ax.text(limit * 0.98, p, f"{v:.1f} ▸", va="center", ha="right",
                            fontsize=7.5, color="white", fontweight="bold")  # fmt: skip
                else:
                    ax.text(v + limit * 0.01, p, text, va="center", ha="left", fontsize=7.5)
        if key == "noise":
            ax.axvline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_xlim(0, limit)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", color="0.9")
        ax.set_axisbelow(True)
    axes[0].set_yticks(y, labels, fontsize=9)
    axes[1].legend(loc="center right", fontsize=9)
    fig.suptitle(
        f"Rejection on synthetic stacks: {SIZE}×{SIZE} px, constant {LEVEL:g} + N(0, {SIGMA:g}); "
        "2 % cosmic rays (+5…+500σ), 0.5 % cold values (−5…−50σ), "
        "two +8σ satellite trails",
        fontsize=10,
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


def main() -> None:
    t0 = time.perf_counter()
    plot(run())
    print(f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
