"""The numba block kernel against the plain-numpy reference, astropy and hand-worked values."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from astropy.stats import mad_std as astropy_mad_std
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning
from hypothesis import event, given, settings
from hypothesis import strategies as st

from stackengine.kernels.combine import COMBINE_CODES
from stackengine.kernels.engine import N_OUT, N_STAGE_PARAMS, STAGE_SIGMA, reduce_block

try:
    from .reference import MAD_TO_STD, reference_stack
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from reference import MAD_TO_STD, reference_stack

OUTPUTS = ("image", "count", "rejected_low", "rejected_high", "noise")
TIE_RTOL = 1e-9
SQRT_HALF_PI = math.sqrt(math.pi / 2)


# --------------------------------------------------------------------------- helpers


def run_kernel(stack, *, reject=None, combine="mean", weights=None, **defaults):
    """Call ``reduce_block`` on ``stack`` (n, ...) with reference_stack-style arguments."""
    n = stack.shape[0]
    block = np.ascontiguousarray(np.asarray(stack).reshape(n, -1))
    specs = [] if reject is None else ([reject] if isinstance(reject, str | dict) else reject)
    stages = np.full(len(specs), STAGE_SIGMA, dtype=np.int64)
    params = np.zeros((len(specs), N_STAGE_PARAMS))
    base = dict(sigma_lower=3.0, sigma_upper=3.0, maxiters=5, center="median", spread="mad_std")
    base.update(defaults)
    for i, spec in enumerate(specs):
        p = dict(base, **({} if isinstance(spec, str) else spec))
        assert p.pop("method", "sigma") == "sigma"
        params[i, :5] = [
            p["sigma_lower"],
            p["sigma_upper"],
            -1 if p["maxiters"] is None else p["maxiters"],
            {"median": 0, "mean": 1}[p["center"]],
            {"mad_std": 0, "std": 1}[p["spread"]],
        ]
    use_weights = weights is not None
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    out = reduce_block(block, stages, params, COMBINE_CODES[combine], w, use_weights)
    assert out.shape == (N_OUT, block.shape[1])
    return {name: out[i].reshape(stack.shape[1:]) for i, name in enumerate(OUTPUTS)}


def both(values, **kw):
    """Kernel and reference results for one pixel given as a list of frame values."""
    stack = np.asarray(values, dtype=np.float64)[:, None]
    k = {name: v[0] for name, v in run_kernel(stack, **kw).items()}
    r = {name: v[0] for name, v in reference_stack(stack, **kw).items()}
    return k, r


def assert_pixel(values, expected, **kw):
    """Check one pixel against hand-worked ``expected`` in both kernel and reference."""
    for res in both(values, **kw):
        for name, want in expected.items():
            got = res[name]
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(got), (name, got)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=1e-12), (name, got, want)


def make_stack(seed, n, npix, dtype, nan_frac, inf_frac, outlier_frac, outlier_amp):
    """Continuous random frames (exact ties with a bound have probability ~0)."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        level = 5000.0 if dtype.kind == "u" else 0.0
        scale = 10 ** rng.uniform(0.0, 2.5)  # small scales give many integer ties
    else:
        level = rng.uniform(-100.0, 100.0)
        scale = 10 ** rng.uniform(-2.0, 2.0)
    pixel_level = level + rng.normal(0.0, 3 * scale, npix)
    pixel_scale = scale * rng.uniform(0.5, 2.0, npix)
    x = pixel_level + rng.normal(0.0, 1.0, (n, npix)) * pixel_scale
    hit = rng.random((n, npix)) < outlier_frac
    x[hit] += (
        rng.choice([-1.0, 1.0], hit.sum()) * outlier_amp * scale * rng.uniform(1, 2, hit.sum())
    )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    x = x.astype(dtype)
    x[rng.random((n, npix)) < nan_frac] = np.nan
    inf = rng.random((n, npix)) < inf_frac
    x[inf] = rng.choice([-np.inf, np.inf], inf.sum())
    return x


def data_scale(stack):
    x = np.asarray(stack, dtype=np.float64)
    finite = x[np.isfinite(x)]
    return max(1.0, float(np.abs(finite).max())) if finite.size else 1.0


def assert_close(got, want, scale, where=None):
    """Equal to float32 rounding relative to the data scale; NaN positions equal."""
    if where is not None:
        got, want = got[where], want[where]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * scale, equal_nan=True)


def astropy_clip(x, *, cumulative, maxiters, center, spread, sigma_lower, sigma_upper):
    """astropy's sigma_clip along axis 0 (float64 data).

    String ``cenfunc``/``stdfunc`` take astropy's compiled fast path; callables take its
    python loop, which (astropy 8.0, ``copy=True``) masks every value rejected in any
    iteration, i.e. is cumulative like DESIGN.md.
    """
    if cumulative:
        cenfunc = {"median": np.nanmedian, "mean": np.nanmean}[center]

        def mad(d, axis=None):
            return astropy_mad_std(d, axis=axis, ignore_nan=True)

        stdfunc = {"mad_std": mad, "std": np.nanstd}[spread]
    else:
        cenfunc, stdfunc = center, spread
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # "Input data contains invalid"
        return sigma_clip(
            np.asarray(x, dtype=np.float64),
            axis=0,
            sigma_lower=sigma_lower,
            sigma_upper=sigma_upper,
            maxiters=maxiters,
            cenfunc=cenfunc,
            stdfunc=stdfunc,
            return_bounds=True,
        )


# ------------------------------------------------------------ kernel vs reference (property)

sigmas = st.floats(0.5, 5.0, allow_nan=False)
centers_spreads = st.sampled_from(
    [("median", "mad_std"), ("median", "std"), ("mean", "mad_std"), ("mean", "std")]
)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(["float32", "float64", "uint16", "int16"]))
    data = dict(
        seed=draw(st.integers(0, 2**32 - 1)),
        n=draw(st.integers(2, 40)),
        npix=draw(st.integers(1, 60)),
        dtype=dtype,
        nan_frac=draw(st.sampled_from([0.0, 0.05, 0.3, 0.8, 1.0]) | st.floats(0.0, 1.0)),
        inf_frac=draw(st.sampled_from([0.0, 0.02, 0.2])),
        outlier_frac=draw(st.floats(0.0, 0.5)),
        outlier_amp=draw(st.floats(0.0, 50.0)),
    )
    center, spread = draw(centers_spreads)
    params = dict(
        sigma_lower=draw(sigmas),
        sigma_upper=draw(sigmas),
        maxiters=draw(st.sampled_from([1, 2, 5, None])),
        center=center,
        spread=spread,
        combine=draw(st.sampled_from(sorted(COMBINE_CODES))),
    )
    mode = draw(st.sampled_from(["none", "sigma", "sigma", "two stages"]))
    if mode == "none":
        params["reject"] = None
    elif mode == "sigma":
        params["reject"] = "sigma"
    else:
        c2, s2 = draw(centers_spreads)
        second = dict(
            method="sigma",
            sigma_lower=draw(sigmas),
            sigma_upper=draw(sigmas),
            maxiters=draw(st.sampled_from([1, 3, None])),
            center=c2,
            spread=s2,
        )
        params["reject"] = ["sigma", second]
    if params["combine"] == "mean" and draw(st.booleans()):
        params["weights_seed"] = draw(st.integers(0, 2**32 - 1))
    return data, params


@settings(max_examples=1000, deadline=None)
@given(cases())
def test_kernel_matches_reference(case):
    data, params = case
    stack = make_stack(**data)
    params = dict(params)
    wseed = params.pop("weights_seed", None)
    if wseed is not None:
        params["weights"] = np.random.default_rng(wseed).uniform(0.1, 10.0, data["n"])
    k = run_kernel(stack, **params)
    r = reference_stack(stack, tie_rtol=TIE_RTOL, **params)
    # Every pixel is compared; a different decision is tolerated only where a kept value
    # lay within 1e-9 (relative) of a bound, where float rounding may legitimately differ.
    differ = np.zeros(stack.shape[1:], dtype=bool)
    for name in ("count", "rejected_low", "rejected_high"):
        differ |= k[name] != r[name]
    if differ.any():
        event("decision differs at a near tie")
    bad = differ & ~r["near_tie"]
    for name in ("count", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(k[name][bad], r[name][bad], err_msg=name)
    ok = ~differ
    n_finite = np.isfinite(stack.astype(np.float64)).sum(axis=0)
    np.testing.assert_array_equal(k["count"] + k["rejected_low"] + k["rejected_high"], n_finite)
    scale = data_scale(stack) * data["n"]
    assert_close(k["image"], r["image"], scale, ok)
    assert_close(k["noise"], r["noise"], scale, ok)
    # pixels are independent: any split of the block (tile size) gives the same bits
    cut = data["npix"] // 2
    parts = [run_kernel(stack[:, :cut], **params), run_kernel(stack[:, cut:], **params)]
    for name in OUTPUTS:
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), k[name])


# ---------------------------------------------------------------- kernel vs astropy


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 40),
    npix=st.integers(1, 60),
    nan_frac=st.floats(0.0, 0.6),
    outlier_frac=st.floats(0.0, 0.4),
    sl=sigmas,
    su=sigmas,
    cs=centers_spreads,
    maxiters=st.sampled_from([1, 2, 5, None]),
)
def test_kernel_matches_astropy(seed, n, npix, nan_frac, outlier_frac, sl, su, cs, maxiters):
    center, spread = cs
    stack = make_stack(seed, n, npix, "float64", nan_frac, 0.02, outlier_frac, 30.0)
    kw = dict(sigma_lower=sl, sigma_upper=su, maxiters=maxiters, center=center, spread=spread)
    k = run_kernel(stack, reject="sigma", **kw)
    ok = ~reference_stack(stack, reject="sigma", tie_rtol=TIE_RTOL, **kw)["near_tie"]
    _check_against_astropy(stack, k, ok, **kw)


def _check_against_astropy(stack, k, ok, **kw):
    finite = np.isfinite(stack)
    fast, lo, hi = astropy_clip(stack, cumulative=False, **kw)
    fast_count = (~fast.mask).sum(axis=0)
    scale = data_scale(stack)
    if kw["maxiters"] == 1:
        # DESIGN: one iteration equals astropy.stats.sigma_clip exactly, low/high included.
        np.testing.assert_array_equal(k["count"][ok], fast_count[ok])
        np.testing.assert_array_equal(k["rejected_low"][ok], (finite & (stack < lo)).sum(0)[ok])
        np.testing.assert_array_equal(k["rejected_high"][ok], (finite & (stack > hi)).sum(0)[ok])
        assert_close(k["image"], np.ma.mean(fast, axis=0).filled(np.nan), scale, ok)
        return
    # Several iterations: astropy's python loop is cumulative, like DESIGN -> equal.
    slow, _, _ = astropy_clip(stack, cumulative=True, **kw)
    np.testing.assert_array_equal(k["count"][ok], (~slow.mask).sum(axis=0)[ok])
    assert_close(k["image"], np.ma.mean(slow, axis=0).filled(np.nan), scale, ok)
    # astropy's compiled fast path iterates on the same sets but then masks the ORIGINAL
    # data outside the LAST bounds only, so a value rejected in an earlier iteration comes
    # back when the final bounds widen to include it (see test_astropy_fast_path_readmits).
    # It therefore keeps exactly the cumulative survivors plus those re-admitted values.
    readmitted = slow.mask & finite & (stack >= lo) & (stack <= hi)
    np.testing.assert_array_equal(k["count"][ok], (fast_count - readmitted.sum(axis=0))[ok])


@pytest.mark.parametrize("maxiters", [1, 5, None])
@pytest.mark.parametrize("sigmas_lu", [(3.0, 3.0), (2.0, 4.0), (1.5, 2.5)])
@pytest.mark.parametrize("cs", [("median", "mad_std"), ("mean", "std")])
def test_astropy_fixed_stack(cs, sigmas_lu, maxiters):
    center, spread = cs
    stack = make_stack(7, 31, 400, "float64", 0.05, 0.01, 0.08, 20.0)
    kw = dict(
        sigma_lower=sigmas_lu[0],
        sigma_upper=sigmas_lu[1],
        maxiters=maxiters,
        center=center,
        spread=spread,
    )
    k = run_kernel(stack, reject="sigma", **kw)
    r = reference_stack(stack, reject="sigma", tie_rtol=TIE_RTOL, **kw)
    ok = ~r["near_tie"]
    assert ok.all()
    assert k["rejected_low"].sum() > 0 and k["rejected_high"].sum() > 0
    _check_against_astropy(stack, k, ok, **kw)


def test_astropy_fast_path_readmits():
    # Hand-worked, median/mad_std, sigma 1.5, iterate to convergence, values
    # [7, 10, 10, 12, 13, 15, 16]:
    # it 1: median 12, |x-12| = 5,2,2,0,1,3,4 -> MAD 2, s = 2.9652, bounds [7.552, 16.448]
    #       -> 7 rejected low.
    # it 2: [10,10,12,13,15,16], median 12.5, |dev| sorted .5,.5,2.5,2.5,2.5,3.5 -> MAD 2.5,
    #       s = 3.7065, bounds [6.940, 18.060] -> nothing new: converged.
    # Cumulative (DESIGN, astropy's python loop): 6 kept, mean 76/6. astropy's fast path
    # masks by the final bounds [6.94, 18.06], which contain 7 again: 7 kept.
    values = [7.0, 10.0, 10.0, 12.0, 13.0, 15.0, 16.0]
    kw = dict(reject="sigma", sigma_lower=1.5, sigma_upper=1.5, maxiters=None)
    assert_pixel(values, dict(count=6, rejected_low=1, rejected_high=0, image=76 / 6), **kw)
    clip = dict(maxiters=None, center="median", spread="mad_std", sigma_lower=1.5, sigma_upper=1.5)
    stack = np.array(values)[:, None]
    fast, lo, hi = astropy_clip(stack, cumulative=False, **clip)
    slow, _, _ = astropy_clip(stack, cumulative=True, **clip)
    assert (~fast.mask).sum() == 7
    assert (~slow.mask).sum() == 6
    assert lo[0] == pytest.approx(12.5 - 1.5 * 2.5 * MAD_TO_STD)
    # with maxiters=1 astropy's fast path and the kernel agree: 6 kept
    one, _, _ = astropy_clip(stack, cumulative=False, **dict(clip, maxiters=1))
    assert (~one.mask).sum() == 6
    assert_pixel(values, dict(count=6), **dict(kw, maxiters=1))


# ----------------------------------------------------------------------- hand-worked


NAN = float("nan")
SIGMA = dict(reject="sigma")
MEAN_MAD = dict(reject="sigma", center="mean", spread="mad_std")

HAND_CASES = [
    # median 3, |x-3| = 2,1,0,1,97 -> MAD 1, s = 1.4826; 3-sigma bounds [-1.448, 7.448] -> 100
    # out high; iteration 2 on [1,2,3,4]: median 2.5, MAD 1 -> nothing new. Mean 2.5;
    # population std of 1..4 = sqrt(1.25) -> noise sqrt(1.25)/2.
    *(
        pytest.param(
            [1, 2, 3, 4, 100],
            dict(SIGMA, maxiters=m),
            dict(image=2.5, count=4, rejected_low=0, rejected_high=1, noise=1.25**0.5 / 2),
            id=f"one-high-outlier-maxiters{m}",
        )
        for m in (1, 5, None)
    ),
    pytest.param([-100, 1, 2, 3, 4], SIGMA, dict(image=2.5, count=4, rejected_low=1), id="low"),
    # [0,1,3,6,10,21]: median (3+6)/2 = 4.5; |x-4.5| sorted 1.5,1.5,3.5,4.5,5.5,16.5 -> MAD
    # (3.5+4.5)/2 = 4, s = 5.9304. sigma_upper 3: hi = 4.5 + 17.791 = 22.29 -> 21 kept (a
    # low-median MAD 3.5 would give hi 20.07 and reject it). sigma_upper 2.7: hi = 4.5 + 16.012
    # = 20.51 -> 21 rejected (a high-median MAD 4.5 would give hi 22.52 and keep it).
    pytest.param(
        [0, 1, 3, 6, 10, 21],
        dict(SIGMA, sigma_upper=3.0, maxiters=1),
        dict(count=6, rejected_high=0, image=41 / 6),
        id="even-mad-kept",
    ),
    pytest.param(
        [0, 1, 3, 6, 10, 21],
        dict(SIGMA, sigma_upper=2.7, maxiters=1),
        dict(count=5, rejected_high=1, image=4.0),
        id="even-mad-rejected",
    ),
    # [-1,-1,0,1,v], v > 1: median 0, |dev| sorted 0,1,1,1,v -> MAD 1; sigma_upper 1 puts
    # hi at exactly 1.482602218505602: pins the digits of the constant, which continuous
    # random data cannot see.
    *(
        pytest.param(
            [-1.0, -1.0, 0.0, 1.0, v],
            dict(SIGMA, sigma_lower=1.0, sigma_upper=1.0, maxiters=1),
            dict(count=4 + kept, rejected_low=0, rejected_high=1 - kept),
            id=f"mad-constant-{v}",
        )
        for v, kept in ((1.4826022, 1), (1.4826023, 0))
    ),
    # [10,11,12,13,14,20,100], 3 sigma. it 1: median 13, |dev| sorted 0,1,1,2,3,7,87 -> MAD
    # 2, s 2.965, [4.10, 21.90] -> 100 out. it 2: median 12.5, |dev| sorted .5,.5,1.5,1.5,
    # 2.5,7.5 -> MAD 1.5, s 2.224, [5.83, 19.17] -> 20 out. it 3: [10..14] median 12, MAD 1,
    # [7.55, 16.45] -> nothing new.
    pytest.param(
        [10, 11, 12, 13, 14, 20, 100],
        dict(SIGMA, maxiters=1),
        dict(count=6, rejected_high=1, image=80 / 6),
        id="maxiters1",
    ),
    *(
        pytest.param(
            [10, 11, 12, 13, 14, 20, 100],
            dict(SIGMA, maxiters=m),
            dict(count=5, rejected_low=0, rejected_high=2, image=12.0),
            id=f"maxiters{m}",
        )
        for m in (2, 5, None)
    ),
    # 0..9, sigma_lower 1, sigma_upper 10. it 1: median 4.5, |dev| sorted .5,.5,1.5,1.5,2.5,
    # 2.5,... -> MAD 2.5, s 3.7065, lo 0.7935 -> 0 out low. it 2: [1..9] median 5, MAD 2,
    # s 2.965, lo 2.035 -> 1 and 2 out low. Nothing is ever above hi.
    pytest.param(
        list(range(10)),
        dict(SIGMA, sigma_lower=1.0, sigma_upper=10.0, maxiters=1),
        dict(count=9, rejected_low=1, rejected_high=0, image=5.0),
        id="asymmetric-1",
    ),
    pytest.param(
        list(range(10)),
        dict(SIGMA, sigma_lower=1.0, sigma_upper=10.0, maxiters=2),
        dict(count=7, rejected_low=3, rejected_high=0, image=6.0),
        id="asymmetric-2",
    ),
    # constant: s = 0 -> bounds [5, 5], inclusive: all kept, noise 0
    *(
        pytest.param(
            [5.0] * 4,
            dict(SIGMA, sigma_lower=0.5, sigma_upper=0.5, maxiters=None, center=c, spread=s),
            dict(image=5.0, count=4, rejected_low=0, rejected_high=0, noise=0.0),
            id=f"constant-{c}-{s}",
        )
        for c in ("median", "mean")
        for s in ("mad_std", "std")
    ),
    # [0,2,0,2] mean/std: mean 1, population std 1 (exact), sigma 1 -> bounds exactly
    # [0, 2]: every value sits on a bound and is kept (inclusive bounds).
    pytest.param(
        [0.0, 2.0, 0.0, 2.0],
        dict(SIGMA, center="mean", spread="std", sigma_lower=1.0, sigma_upper=1.0),
        dict(count=4, image=1.0, noise=0.5),
        id="inclusive-bounds",
    ),
    # missing values are never kept nor counted as rejected
    *(
        pytest.param(
            values,
            dict(SIGMA, combine=comb),
            dict(image=NAN, count=0, rejected_low=0, rejected_high=0, noise=NAN),
            id=f"all-missing-{i}-{comb}",
        )
        for i, values in enumerate(([NAN] * 4, [NAN, np.inf, -np.inf]))
        for comb in sorted(COMBINE_CODES)
    ),
    # [1,1,1,4], center mean, spread mad_std, sigma 0.5: mean 1.75, median 1, |x-1| =
    # 0,0,0,3 -> MAD 0 -> s 0 -> bounds [1.75, 1.75]: the three 1s out low, the 4 out high;
    # nothing is left -> image NaN, count 0, noise NaN.
    pytest.param(
        [1, 1, 1, 4],
        dict(MEAN_MAD, sigma_lower=0.5, sigma_upper=0.5),
        dict(image=NAN, count=0, rejected_low=3, rejected_high=1, noise=NAN),
        id="everything-rejected",
    ),
    *(
        pytest.param(
            [NAN, 7.0, np.inf],
            dict(SIGMA, combine=comb),
            dict(image=7.0, count=1, rejected_low=0, rejected_high=0, noise=0.0),
            id=f"single-finite-{comb}",
        )
        for comb in sorted(COMBINE_CODES)
    ),
]


@pytest.mark.parametrize(("values", "kw", "expected"), HAND_CASES)
def test_hand_worked(values, kw, expected):
    assert_pixel(values, expected, **kw)


@pytest.mark.parametrize(
    ("combine", "image", "noise"),
    [
        # [1,2,6]: mean 3, deviations -2,-1,3 -> population std sqrt(14/3)
        ("mean", 3.0, math.sqrt(14 / 3) / math.sqrt(3)),
        ("median", 2.0, SQRT_HALF_PI * math.sqrt(14 / 3) / math.sqrt(3)),
        ("sum", 9.0, math.sqrt(14 / 3) * math.sqrt(3)),
        ("min", 1.0, math.sqrt(14 / 3)),
        ("max", 6.0, math.sqrt(14 / 3)),
    ],
)
def test_hand_combine(combine, image, noise):
    assert_pixel([2.0, 6.0, 1.0], dict(image=image, noise=noise, count=3), combine=combine)


def test_hand_weighted_mean():
    # ccdproc's documented example: weights [1,5,10] on [0,-1000,1000] -> 5000/16 = 312.5
    # var_w = (1*312.5^2 + 5*1312.5^2 + 10*687.5^2)/16 = 13437500/16 = 839843.75
    # noise = sqrt(var_w * (1 + 25 + 100)) / 16
    weights = np.array([1.0, 5.0, 10.0])
    noise = math.sqrt(839843.75 * 126) / 16
    assert_pixel([0.0, -1000.0, 1000.0], dict(image=312.5, count=3, noise=noise), weights=weights)
    # weights of rejected/missing frames drop out: frame 0 missing -> (-5000+10000)/15
    assert_pixel([np.nan, -1000.0, 1000.0], dict(image=5000 / 15, count=2), weights=weights)


def test_reference_multidimensional_pixels():
    # the reference takes (n, y, x[, c]) stacks; the kernel works on (n, pixels)
    stack = make_stack(3, 12, 24, "float32", 0.1, 0.0, 0.1, 20.0).reshape(12, 2, 3, 4)
    r = reference_stack(stack, reject="sigma")
    k = run_kernel(stack, reject="sigma")
    assert r["image"].shape == (2, 3, 4)
    np.testing.assert_array_equal(k["count"], r["count"])
    assert_close(k["image"], r["image"], data_scale(stack))


# ------------------------------------------------- many groups, both sort buffer dtypes


@pytest.mark.parametrize("n", [3, 50, 130])
@pytest.mark.parametrize("dtype", ["uint16", "float32", "float64"])
@pytest.mark.parametrize("combine", sorted(COMBINE_CODES))
def test_window_kernel_across_groups(n, dtype, combine):
    """Blocks wider than one sort group (64..512 pixels, float32 or float64 buffers),
    with a ragged last group, against the numpy reference; pixels stay independent."""
    npix = 64 * 20 + 37
    stack = make_stack(n + npix, n, npix, dtype, 0.1, 0.02, 0.05, 30.0)
    if dtype == "uint16":
        stack[:, 5] = 65535  # saturated: identical values, the MAD is 0
    params = dict(reject="sigma", sigma_lower=2.0, sigma_upper=2.5, maxiters=None)
    k = run_kernel(stack, combine=combine, **params)
    r = reference_stack(stack, combine=combine, tie_rtol=TIE_RTOL, **params)
    ok = ~r["near_tie"]
    for name in ("count", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(k[name][ok], r[name][ok], err_msg=name)
    scale = data_scale(stack) * n
    assert_close(k["image"], r["image"], scale, ok)
    assert_close(k["noise"], r["noise"], scale, ok)
    part = run_kernel(stack[:, 601:], combine=combine, **params)
    for name in OUTPUTS:
        np.testing.assert_array_equal(part[name], k[name][601:])


def test_window_kernel_fallback_median():
    """Every value rejected (a tiny threshold): fallback gives the median, count 0."""
    from stackengine.kernels.engine import reduce_block

    rng = np.random.default_rng(3)
    block = rng.normal(100.0, 5.0, (9, 700)).astype(np.float32)
    block[2, 10] = np.nan
    stages = np.array([STAGE_SIGMA])
    params = np.zeros((1, N_STAGE_PARAMS))
    params[0, :5] = (0.0, 0.0, -1, 1, 1)  # mean/std, zero sigma: rejects until empty
    out = reduce_block(block, stages, params, 0, np.ones(9), False, fallback=True)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_allclose(out[0], np.nanmedian(block.astype(np.float64), axis=0), rtol=1e-7)
    assert np.isnan(out[4]).all()


@pytest.mark.parametrize("combine", ["mean", "median", "sum", "min", "max"])
def test_unweighted_linear_fit_kernel_equals_general_kernel(combine):
    """Unweighted linear_fit runs in its own kernel (rank decisions, no mapping back to
    frames); equal weights send it through the general kernel (per-frame flags). Both
    must give the same counts exactly and the same values to float32 rounding, with
    missing values, ties, too few values and the median fallback."""
    from stackengine.kernels.combine import COMBINE_CODES
    from stackengine.kernels.engine import STAGE_LINEAR_FIT, reduce_block

    rng = np.random.default_rng(17)
    n, npix = 23, 3000
    block = rng.normal(500.0, 20.0, (n, npix))
    block[rng.random(block.shape) < 0.03] = 5000.0
    block[:, :300] = np.round(block[:, :300] / 25.0) * 25.0  # ties
    block[rng.random(block.shape) < 0.05] = np.nan
    block[:19, 300:400] = np.nan  # 4 values: fewer than a fit needs
    block[:, 400:450] = np.nan  # nothing at all: the fallback has nothing either
    params = np.zeros((1, 8))
    params[0, :3] = (2.0, 1.5, 5)
    code = COMBINE_CODES[combine]
    for fallback in (False, True):
        fast = reduce_block(block, np.array([STAGE_LINEAR_FIT]), params, code, np.ones(n), False,
                            fallback=fallback)  # fmt: skip
        general = reduce_block(block, np.array([STAGE_LINEAR_FIT]), params, code, np.ones(n),
                               True, fallback=fallback)  # fmt: skip
        np.testing.assert_array_equal(fast[1:4], general[1:4])
        assert fast[1].min() == 0 and (fast[2] + fast[3]).max() > 0  # both cases occur
        for row in (0, 4):
            np.testing.assert_allclose(fast[row], general[row], rtol=1e-12, atol=1e-9)
        assert np.isnan(fast[0, 400:450]).all()
