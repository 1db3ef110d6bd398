"""Rejection algorithms of issue 3 through stack(): reference, hand-worked and published values.

The reference (tests/reference.py) is written from REJECTION_SPEC.md independently of the
numba kernels; the hand-worked cases carry their arithmetic in comments; the ESD case
checks Rosner (1983)'s example as published in the NIST/SEMATECH e-Handbook.
"""

from __future__ import annotations

import math
import statistics
import warnings

import dask.array as da
import numpy as np
import pytest
from conftest import unread_stack
from hypothesis import event, given, settings
from hypothesis import strategies as st

import stackengine as se
from stackengine.errors import ParameterError

try:
    from .reference import MAD_TO_STD, esd_statistics, line_fit, reference_stack, winsorized_scale
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from reference import MAD_TO_STD, esd_statistics, line_fit, reference_stack, winsorized_scale

OUTPUTS = ("image", "count", "rejected_low", "rejected_high", "noise")
DECISIONS = ("count", "rejected_low", "rejected_high")
ALGORITHMS = ("sigma", "winsorized", "linear_fit", "percentile", "minmax", "extrema", "esd")
LISTS = (["extrema", "minmax", "sigma"], ["minmax", "winsorized"], ["percentile", "esd"])
TIE_RTOL = 1e-9
NAN = math.nan


def run(stack, **kw):
    """stack() on a numpy (frame, y, x) array, computed; outputs as numpy arrays."""
    res = se.stack(stack, **kw).compute(scheduler="sync")
    out = {name: res[name].values for name in OUTPUTS}
    assert out["image"].dtype == np.float32 and out["noise"].dtype == np.float32
    assert all(out[name].dtype == np.int16 for name in DECISIONS)  # n < 32768
    return out


def assert_pixel(values, expected, **kw):
    """One pixel (frame values) through stack() and the reference, against ``expected``."""
    stack = np.asarray(values, dtype=np.float64)[:, None, None]
    for who in ("reference", "stack"):
        res = (reference_stack if who == "reference" else run)(stack, **kw)
        for name, want in expected.items():
            got = res[name][0, 0]
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(got), (who, name, got)
            else:
                assert got == pytest.approx(want, rel=1e-6, abs=1e-6), (who, name, got, want)


# ------------------------------------------------------------------- property tests


def random_stack(rng, n, shape, dtype, nan_frac, inf_frac, outlier_frac, outlier_amp):
    """Noisy frames around per-pixel levels, with outliers; NaN/inf for float dtypes."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        level, scale = 5000.0, 10 ** rng.uniform(0.0, 2.5)  # small scales: many ties
    else:
        level, scale = rng.uniform(-100.0, 100.0), 10 ** rng.uniform(-2.0, 2.0)
    x = level + rng.normal(0.0, 3 * scale, shape) + rng.normal(0.0, scale, (n, *shape))
    hit = rng.random(x.shape) < outlier_frac
    x[hit] += (
        rng.choice([-1.0, 1.0], hit.sum()) * outlier_amp * scale * rng.uniform(1, 2, hit.sum())
    )
    if dtype.kind == "u":
        return np.clip(np.rint(x), 0, 65535).astype(dtype)
    x = x.astype(dtype)
    x[rng.random(x.shape) < nan_frac] = np.nan
    inf = rng.random(x.shape) < inf_frac
    x[inf] = rng.choice([-np.inf, np.inf], inf.sum())
    return x


sigmas = st.floats(0.5, 5.0)
fractions = st.sampled_from([0.0, 0.05, 0.1, 0.2]) | st.floats(0.0, 1.0)


@st.composite
def cases(draw, reject):
    """A random stack and stack() parameters valid for ``reject``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(3, 30))
    dtype = draw(st.sampled_from(["float32", "float64", "uint16"]))
    nan_frac = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]) | st.floats(0.0, 1.0))
    inf_frac = draw(st.sampled_from([0.0, 0.05]))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 12)))
    outliers = draw(st.floats(0.0, 0.4)), draw(st.floats(0.0, 50.0))
    stack = random_stack(rng, n, shape, dtype, nan_frac, inf_frac, *outliers)
    center, spread = draw(st.sampled_from([("median", "mad_std"), ("mean", "std")]))
    kw = dict(
        reject=reject,
        sigma_lower=draw(sigmas),
        sigma_upper=draw(sigmas),
        maxiters=draw(st.sampled_from([1, 2, 5, None])),
        center=center,
        spread=spread,
        percentile_low=draw(fractions),
        percentile_high=draw(fractions),
        esd_alpha=draw(st.sampled_from([0.05, 0.01]) | st.floats(0.001, 0.5)),
        esd_max_outliers=draw(st.sampled_from([0.0, 0.3, 0.5]) | st.floats(0.0, 0.95)),
        combine=draw(st.sampled_from(["mean", "median"])),
        fallback=draw(st.sampled_from([None, "median"])),
    )
    n_low = draw(st.integers(0, n - 1))
    kw.update(n_low=n_low, n_high=draw(st.integers(0, n - 1 - n_low)))
    # minmax bounds: None, or values present in the data (exercises the inclusive bounds)
    finite = np.sort(stack[np.isfinite(stack)].astype(np.float64))
    if finite.size:
        picks = sorted(float(rng.choice(finite)) for _ in range(2))
        kw["min_value"] = draw(st.sampled_from([None, picks[0], picks[0] - 0.5]))
        kw["max_value"] = draw(st.sampled_from([None, picks[1], picks[1] + 0.5]))
    if kw["combine"] == "mean" and draw(st.booleans()):
        kw["weights"] = rng.uniform(0.1, 10.0, n)
    return stack, kw


def check_against_reference(stack, kw):
    got = run(stack, **kw)
    ref = reference_stack(stack, tie_rtol=TIE_RTOL, **kw)
    # A different decision is tolerated only at a near tie (a value within 1e-9 relative of a
    # bound, where float rounding may legitimately decide either way); see reference.py.
    differ = np.zeros(stack.shape[1:], dtype=bool)
    for name in DECISIONS:
        differ |= got[name] != ref[name]
    if differ.any():
        event("decision differs at a near tie")
    if ref["near_tie"].any():
        event("near tie flagged")
    bad = differ & ~ref["near_tie"]
    for name in DECISIONS:
        np.testing.assert_array_equal(got[name][bad], ref[name][bad], err_msg=name)
    n_finite = np.isfinite(stack.astype(np.float64)).sum(axis=0)
    np.testing.assert_array_equal(
        got["count"] + got["rejected_low"] + got["rejected_high"], n_finite
    )
    # float32 outputs: relative 1e-6, or 1e-6 of the data's magnitude where the result is
    # small beside the values it comes from (a mean near 0 of values near 1000)
    finite = np.abs(stack[np.isfinite(stack)].astype(np.float64))
    scale = max(1.0, float(finite.max()) if finite.size else 1.0)
    for name in ("image", "noise"):
        np.testing.assert_allclose(
            got[name][~differ],
            ref[name][~differ],
            rtol=1e-6,
            atol=1e-6 * scale,
            equal_nan=True,
            err_msg=name,
        )


@pytest.mark.parametrize("reject", [*ALGORITHMS, *LISTS], ids=str)
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_matches_reference(reject, data):
    check_against_reference(*data.draw(cases(reject)))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_random_lists_match_reference(data):
    reject = data.draw(st.lists(st.sampled_from(ALGORITHMS), min_size=1, max_size=4))
    check_against_reference(*data.draw(cases(reject)))


# ------------------------------------------------------------------------ hand-worked


def test_ccdproc_weighted_mean():
    # ccdproc docs: weights [1, 5, 10] on frames 0, -1000, +1000:
    # (1*0 + 5*(-1000) + 10*1000) / (1 + 5 + 10) = 5000 / 16 = 312.5
    values = [0.0, -1000.0, 1000.0]
    assert_pixel(values, dict(image=312.5, count=3), reject=None, weights=np.array([1, 5, 10]))


def test_ccdproc_clip_extrema():
    # ccdproc docs: clip_extrema(nlow=1, nhigh=1) on 90, 20, 10, 40, 25, 35 drops 10 and 90;
    # mean of 20, 40, 25, 35 = 120 / 4 = 30
    values = [90, 20, 10, 40, 25, 35]
    expected = dict(image=30.0, count=4, rejected_low=1, rejected_high=1)
    assert_pixel(values, expected, reject="extrema", n_low=1, n_high=1)


# Which of several EQUAL values is rejected matters only with weights. One order decides
# everywhere: (value, frame index) ascending, as REJECTION_SPEC.md writes it for extrema
# (lows from its start, highs from its end, like ccdproc's argsort-based clip_extrema).


def test_extrema_ties_follow_frame_order():
    # [5, 1, 5], n_high 1: order (1, f1), (5, f0), (5, f2) -> the last, frame 2, goes.
    # weights [1, 1, 2]: (1*5 + 1*1) / 2 = 3 (dropping frame 0 instead gives 11/3).
    assert_pixel([5, 1, 5], dict(image=3.0), reject="extrema", n_low=0, weights=[1, 1, 2])
    # [1, 5, 1], n_low 1: order (1, f0), (1, f2), (5, f1) -> frame 0 goes: (5 + 2*1)/3 = 7/3
    assert_pixel([1, 5, 1], dict(image=7 / 3), reject="extrema", n_high=0, weights=[1, 1, 2])
    # ccdproc masks the same frames
    from astropy.nddata import CCDData
    from ccdproc import Combiner

    for values, nlow, nhigh, masked in (([5, 1, 5], 0, 1, 2), ([1, 5, 1], 1, 0, 0)):
        comb = Combiner([CCDData(np.full((1, 1), float(v)), unit="adu") for v in values])
        comb.clip_extrema(nlow=nlow, nhigh=nhigh)
        assert np.flatnonzero(comb.data_arr.mask.ravel()).tolist() == [masked]


def test_linear_fit_ties_follow_frame_order():
    # [1, 8, 0, 1, 5], sigma 2; sorted 0, 1 (f0), 1 (f3), 5, 8 with ranks 0..4: ybar 3,
    # sum (r-2)(y-3) = 6 + 2 + 0 + 2 + 10 = 20 -> b = 2, a = -1; fit -1, 1, 3, 5, 7;
    # residuals 1, 0, -2, 0, 1; sigma_fit 0.8, threshold 1.6: rank 2 (frame 3) is out low.
    # weights [1, 1, 1, 3, 1]: (1 + 8 + 0 + 5)/4 = 3.5 (dropping frame 0 instead: 16/6).
    kw = dict(reject="linear_fit", sigma_lower=2, sigma_upper=2, weights=[1, 1, 1, 3, 1])
    assert_pixel([1, 8, 0, 1, 5], dict(count=4, rejected_low=1, image=3.5), **kw)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_esd_ties_follow_frame_order(sign):
    # 20 frames, 0 except 5 at frames 3 and 12; k = floor(0.05 * 20) = 1. mean 0.5, squares
    # 18*0.25 + 2*20.25 = 45, std1 sqrt(45/19) = 1.5390, R_1 = 4.5/1.5390 = 2.924; t(0.99875,
    # 18 dof) = 3.5101, lambda_1 = 19 t / sqrt(20 (18 + t^2)) = 2.708 < R_1: one 5 goes.
    # High: the last maximum in frame order, frame 12; weight 2 on frame 3: 10/20 = 0.5.
    # Low (mirrored): the first minimum, frame 3: -5 / 19 (frame 12 left, weight 1).
    v = np.zeros(20)
    v[[3, 12]] = 5 * sign
    weights = np.ones(20)
    weights[3] = 2
    cands, stat, lam, _ = esd_statistics(v, esd_alpha=0.05, k=1)
    assert (stat[0], lam[0]) == pytest.approx((4.5 / math.sqrt(45 / 19), 2.708246), abs=1e-6)
    expected = dict(count=19, image=0.5 if sign > 0 else -5 / 19)
    assert_pixel(v, expected, reject="esd", esd_max_outliers=0.05, weights=weights)


#: Rosner (1983), reproduced in NIST/SEMATECH e-Handbook 1.3.5.17.3 (generalized ESD test).
ROSNER = [
    -0.25, 0.68, 0.94, 1.15, 1.20, 1.26, 1.26, 1.34, 1.38, 1.43, 1.49, 1.49, 1.55, 1.56,
    1.58, 1.65, 1.69, 1.70, 1.76, 1.77, 1.81, 1.91, 1.94, 1.96, 1.99, 2.06, 2.09, 2.10,
    2.14, 2.15, 2.23, 2.24, 2.26, 2.35, 2.37, 2.40, 2.47, 2.54, 2.62, 2.64, 2.90, 2.92,
    2.92, 2.93, 3.21, 3.26, 3.30, 3.59, 3.68, 4.30, 4.64, 5.34, 5.42, 6.01,
]  # fmt: skip
#: The handbook's table for up to 10 outliers, alpha 0.05: R_i and lambda_i (3 decimals).
ROSNER_R = [3.118, 2.942, 3.179, 2.810, 2.815, 2.848, 2.279, 2.310, 2.101, 2.067]
ROSNER_LAMBDA = [3.158, 3.151, 3.143, 3.136, 3.128, 3.120, 3.111, 3.103, 3.094, 3.085]


def test_rosner_esd_statistics_match_published_table():
    x = np.array(ROSNER)
    assert x.size == 54
    cands, stat, lam, _ = esd_statistics(x, esd_alpha=0.05, k=10)
    # Direct computation, i = 1: mean and sample std (ddof 1) of the 54 values, farthest 6.01.
    r1 = (6.01 - statistics.fmean(ROSNER)) / statistics.stdev(ROSNER)
    assert stat[0] == pytest.approx(r1, rel=1e-12) and x[cands[0]] == 6.01
    # The handbook truncates to 3 decimals: 3.1189 -> 3.118, 3.1588 -> 3.158, ...
    assert np.all((stat - ROSNER_R >= 0) & (stat - ROSNER_R < 1e-3)), stat
    assert np.all((lam - ROSNER_LAMBDA >= 0) & (lam - ROSNER_LAMBDA < 1e-3)), lam
    # R_3 = 3.179 > lambda_3 = 3.143 is the last exceedance: 6.01, 5.42, 5.34 are outliers
    assert [i + 1 for i in range(10) if stat[i] > lam[i]] == [3]
    assert sorted(x[cands[:3]]) == [5.34, 5.42, 6.01]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rosner_esd_through_stack(sign):
    # k = floor(10/54 * 54) = 10 candidates; frames in shuffled order; the 3 published outliers
    # go (high, or low for the mirrored data); the other 51 are averaged.
    x = sign * np.random.default_rng(5).permutation(ROSNER)
    kept = sign * np.array(ROSNER[:51])
    side = dict(rejected_high=3, rejected_low=0) if sign > 0 else dict(rejected_low=3)
    expected = dict(count=51, image=kept.mean(), **side)
    assert_pixel(x, expected, reject="esd", esd_alpha=0.05, esd_max_outliers=10 / 54)
    # esd_max_outliers = 0 tests no candidate at all
    assert_pixel(x, dict(count=54), reject="esd", esd_max_outliers=0.0)


def test_linear_fit_hand_worked():
    # [0, 1, 2, 3, 14], sigma 1.5, ranks r = 0..4: rbar 2, ybar 4; sum (r-2)(y-4) =
    # (-2)(-4) + (-1)(-3) + 0 + (1)(-1) + (2)(10) = 30, sum (r-2)^2 = 10 -> b = 3, a = 4 - 6 = -2.
    # fit -2, 1, 4, 7, 10; residuals y - fit = 2, 0, -2, -4, 4; sigma_fit = 12/5 = 2.4;
    # threshold 1.5 * 2.4 = 3.6: 3 is 4 below (low), 14 is 4 above (high). 3 values left < 5:
    # stop. Mean of 0, 1, 2 = 1.
    assert line_fit(np.array([0.0, 1, 2, 3, 14])) == pytest.approx((-2.0, 3.0))
    expected = dict(count=3, rejected_low=1, rejected_high=1, image=1.0)
    assert_pixel([14, 2, 0, 3, 1], expected, reject="linear_fit", sigma_lower=1.5, sigma_upper=1.5)
    # [0, 1, 3, 3, 11, 15], sigma 2. Pass 1: rbar 2.5, ybar 5.5, sum (r-rbar)(y-ybar) = 52.5,
    # sum (r-rbar)^2 = 17.5 -> b = 3, a = 5.5 - 7.5 = -2; fit -2, 1, 4, 7, 10, 13; residuals
    # 2, 0, -1, -4, 1, 2; sigma_fit 10/6; threshold 3.333: the second 3 (rank 3) is 4 below.
    # Pass 2 on [0, 1, 3, 11, 15]: ybar 6, sum (r-2)(y-6) = 12 + 5 + 0 + 5 + 18 = 40 -> b = 4,
    # a = -2; fit -2, 2, 6, 10, 14; residuals 2, -1, -3, 1, 1; sigma_fit 1.6, threshold 3.2:
    # nothing new -> stop. Mean 30/5 = 6.
    values = [15, 3, 0, 11, 3, 1]
    expected = dict(count=5, rejected_low=1, rejected_high=0, image=6.0)
    for maxiters in (1, 5, None):
        assert_pixel(values, expected, reject="linear_fit", sigma_lower=2, maxiters=maxiters)
    # with fewer than 5 values the stage rejects nothing
    assert_pixel([0, 1, 2, 100], dict(count=4), reject="linear_fit", sigma_lower=0.1)


def test_winsorized_hand_worked():
    # [2, 4, 4, 5, 6, 7, 20], sigma 2. Pass 1: med 5, |x - 5| = 3,1,1,0,1,2,15 -> MAD 1,
    # s0 = 1.4826. Round 1: clip to 5 -/+ 1.5*s0 = [2.7761, 7.2239]: 2 -> 2.7761, 20 -> 7.2239;
    # s1 = 1.134 * pstdev(...) = 1.7541; |s1 - s0| > 5e-4 s0, go on. s2..s9 = 1.9502, 2.0985,
    # 2.1737, 2.2024, 2.2135, 2.2179, 2.2195, 2.2202 (|s9 - s8| = 6.5e-4 <= 1.1e-3: stop).
    # Bounds 5 -/+ 2*2.2202 = [0.560, 9.440]: 20 out high, 2 stays.
    v = np.array([2.0, 4, 4, 5, 6, 7, 20])
    med, hist = winsorized_scale(v)
    s0 = MAD_TO_STD
    assert med == 5 and hist[0] == s0
    assert hist[1] == pytest.approx(
        1.134 * statistics.pstdev([5 - 1.5 * s0, *v[1:6], 5 + 1.5 * s0])
    )
    want = [1.4826, 1.7541, 1.9502, 2.0985, 2.1737, 2.2024, 2.2135, 2.2179, 2.2195, 2.2202]
    assert hist == pytest.approx(want, abs=1e-4)
    # Pass 2 on [2, 4, 4, 5, 6, 7]: med 4.5, |x - 4.5| = 2.5,.5,.5,.5,1.5,2.5 -> MAD (0.5 +
    # 1.5)/2 = 1; s: 1.4826 -> 1.6514 -> 1.7993 -> 1.8128 -> 1.8128; bounds [0.874, 8.126]:
    # nothing new. Mean (2+4+4+5+6+7)/6 = 28/6.
    med2, hist2 = winsorized_scale(v[:6])
    assert med2 == 4.5 and hist2[-1] == pytest.approx(1.81282, abs=1e-5)
    expected = dict(count=6, rejected_low=0, rejected_high=1, image=28 / 6)
    assert_pixel(
        [20, 4, 2, 5, 7, 4, 6], expected, reject="winsorized", sigma_lower=2, sigma_upper=2
    )
    # plain sigma clipping (s = MAD std 1.4826, bounds [2.035, 7.965]) also drops the 2
    assert_pixel(v, dict(count=5, rejected_low=1), reject="sigma", sigma_lower=2, sigma_upper=2)


def test_percentile_hand_worked():
    # [100, 90, 130, 70, 105, 111]: sorted 70, 90, 100, 105, 111, 130 -> median (100+105)/2
    # = 102.5. Low: (102.5 - 70)/102.5 = 0.317 > 0.2 -> out; (102.5 - 90)/102.5 = 0.122 kept.
    # High: (130 - 102.5)/102.5 = 0.268 > 0.1 -> out; (111 - 102.5)/102.5 = 0.083 kept (a
    # low median of 100 would drop 111: 0.11 > 0.1). Mean of 90, 100, 105, 111 = 101.5.
    expected = dict(count=4, rejected_low=1, rejected_high=1, image=101.5)
    values = [100, 90, 130, 70, 105, 111]
    assert_pixel(values, expected, reject="percentile", percentile_low=0.2, percentile_high=0.1)
    # limits 0.05: 90 (0.122 below) and 111 (0.083 above) go too; 100 and 105 (both 2.5/102.5
    # = 0.024 away) stay: mean 102.5
    expected = dict(count=2, rejected_low=2, rejected_high=2, image=102.5)
    kw = dict(reject="percentile", percentile_low=0.05, percentile_high=0.05)
    assert_pixel(values, expected, **kw)


@pytest.mark.parametrize(
    ("lo", "hi", "expected"),
    [
        # [5, -3, 12, 7, 100]: min 0 only -> -3 low; mean of 5, 12, 7, 100 = 31
        (0.0, None, dict(count=4, rejected_low=1, rejected_high=0, image=31.0)),
        # max 10 only -> 12 and 100 high; mean of 5, -3, 7 = 3
        (None, 10.0, dict(count=3, rejected_low=0, rejected_high=2, image=3.0)),
        # bounds are inclusive: [-3, 12] keeps -3 and 12; mean of 5, -3, 12, 7 = 21/4
        (-3.0, 12.0, dict(count=4, rejected_low=0, rejected_high=1, image=5.25)),
        (None, None, dict(count=5, rejected_low=0, rejected_high=0, image=24.2)),
    ],
)
def test_minmax_hand_worked(lo, hi, expected):
    assert_pixel([5, -3, 12, 7, 100], expected, reject="minmax", min_value=lo, max_value=hi)


def test_extrema_more_than_finite():
    # 6 frames, n_low 2, n_high 3 (5 < 6 frames: valid).
    stack = np.array(
        [
            [NAN, 3.0, 6.0],
            [4.0, NAN, 5.0],
            [NAN, 8.0, 4.0],
            [1.0, 1.0, 3.0],
            [np.inf, 6.0, 2.0],
            [9.0, NAN, 1.0],
        ]
    )[:, None, :]
    # pixel 0: finite 4, 1, 9 (m = 3): low min(2, 3) = 2 -> 1, 4; high min(3, 3-2) = 1 -> 9.
    # pixel 1: finite 3, 8, 1, 6 (m = 4): low 1, 3; high min(3, 2) = 2 -> 6, 8.
    # pixel 2: 6..1: low 1, 2; high 6, 5, 4; 3 is kept.
    expected = dict(
        count=[0, 0, 1], rejected_low=[2, 2, 2], rejected_high=[1, 2, 3], image=[NAN, NAN, 3.0]
    )
    kw = dict(reject="extrema", n_low=2, n_high=3)
    for res in (reference_stack(stack, **kw), run(stack, **kw)):
        for name, want in expected.items():
            np.testing.assert_array_equal(res[name][0], want, err_msg=name)


def test_fallback_median():
    # minmax with min 20 rejects all of [1, 2, 10, NaN, 4] (4 low). fallback=None: NaN.
    # fallback="median": median of the finite 1, 2, 4, 10 = (2 + 4)/2 = 3, count 0, noise NaN.
    values = [1, 2, 10, NAN, 4]
    base = dict(count=0, rejected_low=4, rejected_high=0, noise=NAN)
    kw = dict(reject="minmax", min_value=20.0)
    assert_pixel(values, dict(base, image=NAN), **kw)
    assert_pixel(values, dict(base, image=3.0), fallback="median", **kw)
    # sigma, center mean, spread mad_std, sigma 0.5 on [1, 1, 1, 4]: mean 1.75, MAD 0 ->
    # bounds [1.75, 1.75] reject all four; fallback median = 1 (before rejection)
    kw = dict(reject="sigma", center="mean", sigma_lower=0.5, sigma_upper=0.5)
    expected = dict(image=1.0, count=0, rejected_low=3, rejected_high=1, noise=NAN)
    assert_pixel([1, 4, 1, 1], expected, fallback="median", **kw)
    # nothing finite: NaN whatever the fallback
    assert_pixel([NAN, np.inf, -np.inf], dict(image=NAN, count=0), fallback="median")


# -------------------------------------------------------------------- parameter checks


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(reject="bogus"), "bogus"),
        (dict(reject=["minmax", "bogus"]), "bogus"),
        (dict(reject="winsorized", sigma_lower=-1.0), "sigma_lower"),
        (dict(reject="linear_fit", sigma_upper=-0.5), "sigma_upper"),
        (dict(reject="percentile", percentile_low=-0.1), "percentile_low"),
        (dict(reject="percentile", percentile_high=-1.0), "percentile_high"),
        (dict(reject="extrema", n_low=-1), "n_low"),
        (dict(reject="extrema", n_high=-2), "n_high"),
        (dict(reject="extrema", n_low=1.5), "n_low"),
        (dict(reject="extrema", n_high=0.5), "n_high"),
        (dict(reject="extrema", n_low=3, n_high=3), "n_low"),
        (dict(reject="extrema", n_low=0, n_high=6), "n_high"),
        (dict(reject="minmax", min_value=2.0, max_value=1.0), "min_value"),
        *[(dict(reject="esd", esd_alpha=a), "esd_alpha") for a in (0.0, 1.0, -0.1, 1.5)],
        *[(dict(reject="esd", esd_max_outliers=f), "esd_max_outliers") for f in (-0.1, 1.0, 2)],
        (dict(reject=None, weights=[1.0, 2.0]), "weights"),
        (dict(reject=None, weights=[1.0] * 5 + [-1.0]), "weights"),
        (dict(reject=None, weights=[1.0] * 6, combine="median"), "weights|median"),
        (dict(fallback="mean"), "fallback"),
        (dict(fallback="zero"), "fallback"),
    ],
)
def test_bad_parameters_raise_before_reading(kwargs, match):
    lazy, calls = unread_stack()
    with pytest.raises(ParameterError, match=match):
        se.stack(lazy, **kwargs)
    assert not calls


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(reject="extrema", n_low=2, n_high=3),  # 5 < 6 frames
        dict(reject="extrema", n_low=0, n_high=0),
        dict(reject="minmax", min_value=1.0, max_value=1.0),
        dict(reject="esd", esd_alpha=0.5, esd_max_outliers=0.0),
        dict(reject=["percentile", "esd"], percentile_low=0.0, percentile_high=0.0),
        dict(reject=list(ALGORITHMS), fallback="median"),
    ],
)
def test_valid_parameters_build_lazily(kwargs):
    def boom(block):
        raise AssertionError("data was read")

    lazy = da.zeros((6, 8, 8), chunks=(6, 4, 4)).map_blocks(
        boom, dtype=float, meta=np.empty((0, 0, 0))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = se.stack(lazy, **kwargs)
    assert res["image"].shape == (8, 8)
