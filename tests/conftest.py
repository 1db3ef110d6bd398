"""Shared fixtures: paths to the real data beside the repository, small synthetic stacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
REAL = SHARED / "data" / "real"
PEER = SHARED / "data" / "peer"


@pytest.fixture(scope="session")
def real_dir() -> Path:
    assert REAL.is_dir(), f"{REAL}: the shared real data must sit beside the repository"
    return REAL


@pytest.fixture(scope="session")
def peer_dir() -> Path:
    assert PEER.is_dir(), f"{PEER}: the shared peer data must sit beside the repository"
    return PEER


def noisy_stack(
    n=25, shape=(37, 29), *, seed=0, nan_frac=0.02, outlier_frac=0.03, dtype=np.float32
):
    """Gaussian frames (100 +- 5) with NaNs and bright outliers, as (n, y, x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(100.0, 5.0, (n, *shape))
    x[rng.random(x.shape) < outlier_frac] += rng.uniform(50, 500)
    x[rng.random(x.shape) < nan_frac] = np.nan
    return x.astype(dtype)


@pytest.fixture
def fits_frames(tmp_path):
    """Twelve small float32 FITS frames with NaNs and outliers; returns (paths, stack)."""
    from astropy.io import fits

    data = noisy_stack(12, (45, 33), seed=3)
    paths = []
    for i, frame in enumerate(data):
        p = tmp_path / f"f{i:02d}.fits"
        hdr = fits.Header({"EXPTIME": 10.0 + i, "FILTER": "R", "IMAGETYP": "LIGHT"})
        fits.PrimaryHDU(frame, header=hdr).writeto(p)
        paths.append(p)
    return paths, data


def unread_stack(shape=(6, 8, 8)):
    """A lazy stack whose blocks fail if computed, and the list of their calls.

    For checks that bad parameters raise before any pixel is read.
    """
    import dask.array as da

    calls: list[int] = []

    def boom(block):
        calls.append(1)
        raise AssertionError("data was read")

    lazy = da.zeros(shape, chunks=(shape[0], 4, 4)).map_blocks(
        boom, dtype=float, meta=np.empty((0, 0, 0))
    )
    return lazy, calls
