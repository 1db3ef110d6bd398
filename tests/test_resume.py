"""Resumable zarr output: a killed run leaves nothing at the target; --resume completes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

import stackengine as se
from stackengine.demo import make_frames
from stackengine.errors import OutputError
from stackengine.io.write_zarr import MARKERS, partial_path

VARIABLES = ("image", "count", "rejected_low", "rejected_high", "noise")


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume_frames")
    paths, _ = make_frames(folder, n_frames=24, size=768, seed=9)
    return paths


def _cli(args):
    return [sys.executable, "-m", "stackengine", "stack", *map(str, args)]


def test_killed_run_resumes_with_identical_result(frames, tmp_path):
    out = tmp_path / "stack.zarr"
    options = ["--memory-limit", "1MiB", "--maxiters", "none", "--quiet"]
    proc = subprocess.Popen(_cli([*frames, "-o", out, *options]), stderr=subprocess.DEVNULL)
    markers = partial_path(out) / MARKERS
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if markers.is_dir() and len(os.listdir(markers)) >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # a killed run never leaves anything at the final path
    written = len(os.listdir(markers))
    assert written >= 3

    # without --resume the partial output is refused, with one clear line
    again = subprocess.run(_cli([*frames, "-o", out, *options]), capture_output=True, text=True)
    assert again.returncode == 1 and ".stack.zarr.partial" in again.stderr
    assert "--resume" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    resumed = subprocess.run(
        _cli([*frames, "-o", out, *options, "--resume"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    line = next(ln for ln in resumed.stderr.splitlines() if "resuming" in ln)
    done, total, computed = (
        int(w)
        for w in __import__("re").findall(
            r"(\d+) of (\d+) tiles already "
            r"written, computing (\d+)",
            line,
        )[0]
    )
    assert done >= written and computed == total - done and computed > 0
    assert not partial_path(out).exists()

    reference = se.stack(se.open_frames(frames), maxiters=None).compute()
    with xr.open_zarr(out) as result:
        for name in VARIABLES:
            np.testing.assert_array_equal(result[name].values, reference[name].values)


def test_resume_refuses_a_different_job(frames, tmp_path):
    out = tmp_path / "s.zarr"
    partial = partial_path(out)
    small = se.stack(se.open_frames(frames[:4]), memory_limit="16MiB")
    with pytest.raises(KeyboardInterrupt):
        # interrupt after the metadata: the partial store stays for resume
        from stackengine.tasks import formats as wz

        real = wz.write_tile

        def interrupt(*args):
            raise KeyboardInterrupt

        wz.write_tile = interrupt
        try:
            se.write(small, out)
        finally:
            wz.write_tile = real
    assert partial.is_dir() and not out.exists()
    other = se.stack(se.open_frames(frames[:5]), memory_limit="16MiB")
    with pytest.raises(OutputError, match="different job"):
        se.write(other, out, resume=True)
    se.write(small, out, resume=True)
    assert out.is_dir() and not partial.exists()
