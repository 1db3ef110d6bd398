"""The window kernel's first sigma iteration across a group of pixels.

``reduce_block_window`` decides the first iteration of median/mad_std sigma stages
for a whole group at once (``sigma.sigma_first_columns``) and only sends the pixels
that rejected something on to the per-pixel iteration. These tests check that

* the group-wide median and MAD equal numpy's ``median`` and ``median(|x - med|)``
  to the bit;
* the kernel gives the same bits with the group-wide pass on and off
  (``vector_max``), for every output, on awkward data (outliers, NaN, inf, integer
  ties, constant columns, odd and even frame counts, several stages);
* the kernel agrees with the plain-numpy reference of ``tests/reference.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stackengine.kernels.combine import COMBINE_CODES
from stackengine.kernels.engine import N_STAGE_PARAMS, network, out_rows
from stackengine.kernels.normalize import geometry
from stackengine.kernels.select import MAD_TO_STD, network_sort
from stackengine.kernels.sigma import median_mad_columns, sigma_first_columns
from stackengine.kernels.window import group_buffer, reduce_block_window

try:
    from .reference import reference_stack
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from reference import reference_stack

OUTPUTS = ("image", "count", "rejected_low", "rejected_high", "noise")
TIE_RTOL = 1e-9
ALWAYS = 10**6  # vector_max: the group-wide pass for any frame count
CENTERS = {"median": 0, "mean": 1}
SPREADS = {"mad_std": 0, "std": 1, "winsorized": 2}


def stage_row(sigma_lower, sigma_upper, maxiters, center="median", spread="mad_std"):
    row = np.zeros(N_STAGE_PARAMS)
    row[:5] = [
        sigma_lower,
        sigma_upper,
        -1 if maxiters is None else maxiters,
        CENTERS[center],
        SPREADS[spread],
    ]
    return row


def run_window(block, stages, *, combine="mean", fallback=False, vector_max=-1, norm=None):
    """``reduce_block_window`` on a (frames, pixels) block; ``norm`` = (scale, offset)."""
    n, npix = block.shape
    plain = norm is None
    if plain:
        scale, offset = np.ones((n, 1)), np.zeros((n, 1))
        exact = block.dtype in (np.float32, np.uint16)
    else:
        scale, offset = (np.asarray(v, dtype=np.float64).reshape(n, 1) for v in norm)
        exact = False
    grad = np.zeros(scale.shape + (1, 1))
    geom = geometry((n, 1, npix), 0, 0)
    buf = group_buffer(n, np.float32 if exact else np.float64)
    params = np.array(stages, dtype=np.float64).reshape(-1, N_STAGE_PARAMS)
    out = np.empty((5, npix), dtype=np.float64)
    norm = (None, None, None, None) if plain else (scale, offset, grad, geom)
    reduce_block_window(
        np.ascontiguousarray(block), network(n), params, COMBINE_CODES[combine], fallback,
        buf, *norm, out_rows(out)[0], vector_max,
    )  # fmt: skip
    return out


def assert_same_bits(a, b):
    assert a.shape == b.shape
    for i, name in enumerate(OUTPUTS):
        np.testing.assert_array_equal(a[i].view(np.int64), b[i].view(np.int64), err_msg=name)


def make_block(rng, n, npix, kind, dtype, nan_frac, outlier_frac):
    """(n, npix) test data of one of a few kinds, with outliers and missing values."""
    if kind == "gauss":
        x = rng.normal(1000.0, 10.0, (n, npix))
    elif kind == "ties":  # integer values, many equal: ties at the median and bounds
        x = np.rint(rng.normal(100.0, rng.uniform(0.2, 3.0), (n, npix)))
    elif kind == "constant":  # MAD 0 in most columns
        x = np.full((n, npix), 7.0)
        x[rng.random((n, npix)) < 0.05] += rng.choice([-1.0, 1.0, 0.5])
    else:  # heavy tails
        x = rng.standard_cauchy((n, npix))
    hit = rng.random((n, npix)) < outlier_frac
    x[hit] += rng.choice([-1.0, 1.0], hit.sum()) * 60000.0
    if np.dtype(dtype).kind == "u":
        return np.clip(np.rint(x), 0, 65535).astype(dtype)
    x = x.astype(dtype)
    missing = rng.random((n, npix)) < nan_frac
    x[missing] = rng.choice([np.nan, np.inf, -np.inf], missing.sum())
    return x


# ------------------------------------------------------ group-wide median and MAD


@pytest.mark.parametrize("n", [1, 2, 3, 4, 9, 10, 31, 50, 51])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_median_mad_columns_equal_numpy(n, dtype):
    rng = np.random.default_rng(n)
    gw = 200
    buf = group_buffer(n, dtype)
    data = np.rint(rng.normal(0.0, 4.0, (n, gw))) / 4.0  # ties and exact halves
    data[:, : gw // 2] = rng.normal(50.0, 3.0, (n, gw // 2))
    buf[:, :gw] = data.astype(dtype)
    network_sort(buf, gw, network(n))
    med, mad, tmp = (np.zeros(buf.shape[1]) for _ in range(3))
    median_mad_columns(buf, gw, med, mad, tmp)
    x = buf[:, :gw].astype(np.float64)
    want_med = np.median(x, axis=0)
    want_mad = np.median(np.abs(x - want_med), axis=0)
    np.testing.assert_array_equal(med[:gw], want_med)
    np.testing.assert_array_equal(mad[:gw], want_mad)


def test_sigma_first_columns_decisions():
    # 10 frames of 0..9 keep everything (median 4.5, MAD 2.5, s = 3.7065: bounds
    # [-6.62, 15.62]); a 100 in the last frame is rejected at once (MAD unchanged:
    # bounds the same); a NaN column is left to the per-pixel path.
    n = 10
    buf = group_buffer(n, np.float64)
    base = np.arange(n, dtype=np.float64)
    cols = [base, np.r_[base[:-1], 100.0], np.r_[base[:-1], np.inf]]
    for g, col in enumerate(cols):
        buf[:, g] = col
    cnt = np.array([n, n, n - 1] + [0] * (buf.shape[1] - 3), dtype=np.int32)
    start = np.zeros(buf.shape[1], dtype=np.int32)
    work = np.zeros((4, buf.shape[1]))
    params = np.array([stage_row(3.0, 3.0, 5), stage_row(0.5, 0.5, 1)])
    tried = sigma_first_columns(buf, 3, cnt, params, start, work)
    assert tried == 2
    # column 0 keeps all in stage 1 (bounds +-11.1) but not in stage 2 (+-1.85)
    assert list(start[:3]) == [1, 0, 0]
    s = 2.5 * MAD_TO_STD
    assert work[2, 0] == pytest.approx(4.5 - 0.5 * s) and work[3, 0] == pytest.approx(4.5 + 0.5 * s)
    assert work[2, 1] == pytest.approx(4.5 - 3 * s) and work[3, 1] == pytest.approx(4.5 + 3 * s)
    # a mean/std stage first: nothing is tried
    params = np.array([stage_row(3.0, 3.0, 5, "mean", "std"), stage_row(3.0, 3.0, 5)])
    assert sigma_first_columns(buf, 3, cnt, params, start, work) == 0
    assert list(start[:3]) == [0, 0, 0]


# ------------------------------------------------- on and off: the same bits


@st.composite
def stage_lists(draw):
    count = draw(st.integers(1, 3))
    stages = []
    for _ in range(count):
        center, spread = draw(
            st.sampled_from(
                [("median", "mad_std")] * 4
                + [("median", "std"), ("mean", "std"), ("median", "winsorized")]
            )
        )
        stages.append(
            stage_row(
                draw(st.sampled_from([3.0, 2.0, 1.0]) | st.floats(0.3, 5.0)),
                draw(st.sampled_from([3.0, 2.5]) | st.floats(0.3, 5.0)),
                draw(st.sampled_from([1, 2, 5, None, 0])),
                center,
                spread,
            )
        )
    return stages


@settings(max_examples=120, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 70),
    npix=st.sampled_from([1, 7, 100, 530]),
    kind=st.sampled_from(["gauss", "ties", "constant", "cauchy"]),
    dtype=st.sampled_from(["float32", "float64", "uint16"]),
    nan_frac=st.sampled_from([0.0, 0.0, 0.02, 0.3]),
    outlier_frac=st.sampled_from([0.0, 0.001, 0.05, 0.3]),
    stages=stage_lists(),
    combine=st.sampled_from(sorted(COMBINE_CODES)),
    fallback=st.booleans(),
    normalized=st.booleans(),
)
def test_vector_pass_gives_the_same_bits(
    seed, n, npix, kind, dtype, nan_frac, outlier_frac, stages, combine, fallback, normalized
):
    rng = np.random.default_rng(seed)
    block = make_block(rng, n, npix, kind, dtype, nan_frac, outlier_frac)
    norm = (rng.uniform(0.5, 2.0, n), rng.uniform(-50.0, 50.0, n)) if normalized else None
    kw = dict(combine=combine, fallback=fallback, norm=norm)
    scalar = run_window(block, stages, vector_max=0, **kw)
    assert_same_bits(run_window(block, stages, vector_max=ALWAYS, **kw), scalar)
    assert_same_bits(run_window(block, stages, **kw), scalar)  # the default threshold


@pytest.mark.parametrize("n", [10, 11, 20, 50])
def test_vector_pass_same_bits_gaussian_benchmark_like(n):
    # the benchmark's data: float32 1000 +- 10 with 0.1% outliers at 60000
    rng = np.random.default_rng(n)
    block = (1000 + 10 * rng.standard_normal((n, 3000))).astype(np.float32)
    block[rng.random(block.shape) < 0.001] = 60000
    stages = [stage_row(3.0, 3.0, 5)]
    scalar = run_window(block, stages, vector_max=0)
    assert_same_bits(run_window(block, stages, vector_max=ALWAYS), scalar)
    # and about 80% of the pixels kept every value, the others lost one or more
    count = scalar[1]
    assert 0.6 < np.mean(count == n) < 0.95
    assert np.all(scalar[2] + scalar[3] + count == n)


# ------------------------------------------------------- against the reference


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 70),
    kind=st.sampled_from(["gauss", "ties", "constant"]),
    nan_frac=st.sampled_from([0.0, 0.0, 0.05]),
    outlier_frac=st.sampled_from([0.001, 0.05, 0.2]),
    sigma=st.sampled_from([1.5, 2.0, 3.0]),
    maxiters=st.sampled_from([1, 2, 5, None]),
    second=st.booleans(),
    combine=st.sampled_from(["mean", "median", "sum"]),
)
def test_vector_pass_matches_reference(
    seed, n, kind, nan_frac, outlier_frac, sigma, maxiters, second, combine
):
    rng = np.random.default_rng(seed)
    block = make_block(rng, n, 300, kind, "float64", nan_frac, outlier_frac)
    stages = [stage_row(sigma, sigma, maxiters)]
    reject = [dict(method="sigma", sigma_lower=sigma, sigma_upper=sigma, maxiters=maxiters)]
    if second:
        stages.append(stage_row(2.5, 2.0, 3))
        reject.append(dict(method="sigma", sigma_lower=2.5, sigma_upper=2.0, maxiters=3))
    out = run_window(block, stages, combine=combine, vector_max=ALWAYS)
    k = {name: out[i] for i, name in enumerate(OUTPUTS)}
    r = reference_stack(
        block, reject=reject, center="median", spread="mad_std", combine=combine,
        tie_rtol=TIE_RTOL,
    )  # fmt: skip
    # a decision may differ only where a kept value lay within 1e-9 of a bound
    ok = ~r["near_tie"]
    for name in ("count", "rejected_low", "rejected_high"):
        np.testing.assert_array_equal(k[name][ok], r[name][ok], err_msg=name)
    scale = max(1.0, float(np.nanmax(np.abs(np.where(np.isfinite(block), block, 0.0))))) * n
    for name in ("image", "noise"):
        np.testing.assert_allclose(
            k[name][ok], r[name][ok], rtol=1e-9, atol=1e-12 * scale, equal_nan=True, err_msg=name
        )
