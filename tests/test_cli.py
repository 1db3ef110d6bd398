"""The command line: stack, info, demo, and one clear error line for each kind of bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from astropy.io import fits

from stackengine.cli import main


def _run(args, cwd=None):
    """Run the installed CLI as a user would: a fresh process, captured output."""
    proc = subprocess.run(
        [sys.executable, "-m", "stackengine.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


def _assert_one_line_error(code, err, *needles):
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


def test_stack_to_fits_matches_api(fits_frames, tmp_path):
    paths, data = fits_frames
    out = tmp_path / "out.fits"
    assert (
        main(
            [
                "stack",
                *map(str, paths),
                "-o",
                str(out),
                "--maxiters",
                "none",
                "--sigma-lower",
                "2.5",
            ]
        )
        == 0
    )
    import stackengine as se

    ref = se.stack(data, maxiters=None, sigma_lower=2.5).compute()
    with fits.open(out) as hdul:
        np.testing.assert_array_equal(hdul[0].data, ref["image"].values)
        np.testing.assert_array_equal(hdul["COUNT"].data, ref["count"].values)
        assert hdul[0].header["NCOMBINE"] == len(paths)


def test_info_lists_frames(fits_frames, capsys):
    paths, _ = fits_frames
    assert main(["info", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    assert f"{len(paths)} frames" in out and "(45, 33)" in out and "float32" in out
    assert "EXPTIME=10.0" in out and "FILTER=R" in out


def test_demo_runs_a_night_twice_and_refuses_a_foreign_folder(tmp_path):
    """The demo makes a raw night, runs it from bias to stack and draws its picture;
    run twice it replaces its own output (and says so); it never touches a folder
    it did not make. Its picture's stack has no trail and no smear: checked on the
    files (the trail's pixels are rejected; the plain mean keeps them)."""
    from astropy.io import fits

    code, out, err = _run(["demo"], cwd=tmp_path)
    assert code == 0, err
    folder = tmp_path / "stackengine_demo"
    assert (folder / "demo.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    for name in ("master_bias.fits", "master_flat_L.fits", "stack_L.fits", "report.png"):
        assert (folder / "night" / name).exists(), name
    assert "rejected" in out and "noise" in out
    final = fits.getdata(folder / "night" / "stack_L.fits").astype(np.float64)
    plain = fits.getdata(folder / "plain_mean.fits").astype(np.float64)

    def trail_excess(image: np.ndarray, dy: int) -> float:
        """Median excess of the demo trail's line (moved by dy rows) over the rows 6
        px on either side of it."""
        h, w = image.shape
        cols = np.arange(w)
        rows = np.round(0.15 * h + 0.7 * cols).astype(int) + dy
        ok = (rows - 6 >= 0) & (rows + 6 < h)
        c, r = cols[ok], rows[ok]
        side = (image[r - 6, c] + image[r + 6, c]) / 2
        return float(np.nanmedian(image[r, c] - side))

    assert trail_excess(plain, 0) > 150  # the trail (3000 ADU in 1 of 12 frames)
    # the final stack is registered: the trail moved with the drift; nowhere near
    assert max(trail_excess(final, dy) for dy in range(-20, 21)) < 25
    code, out, err = _run(["demo"], cwd=tmp_path)
    assert code == 0, err
    assert "replacing the previous demo output" in out
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not the demo's")
    code, _, err = _run(["demo", "-o", str(foreign)], cwd=tmp_path)
    _assert_one_line_error(code, err, "mine", "not a folder the demo made")
    assert (foreign / "keep.txt").read_text() == "not the demo's"


def test_no_file_matches(tmp_path):
    pattern = tmp_path / "nothing*.fits"
    code, _, err = _run(["stack", pattern, "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, pattern, "no file matches")
    assert not (tmp_path / "o.fits").exists()


def test_missing_file(fits_frames, tmp_path):
    paths, _ = fits_frames
    missing = tmp_path / "gone.fits"
    code, _, err = _run(["stack", *paths, missing, "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, missing)
    assert not (tmp_path / "o.fits").exists()


def test_truncated_file(fits_frames, tmp_path):
    paths, _ = fits_frames
    raw = paths[3].read_bytes()
    paths[3].write_bytes(raw[: len(raw) - 4000])
    code, _, err = _run(["stack", *paths, "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, paths[3].name, "truncated")
    assert not (tmp_path / "o.fits").exists()


def test_corrupt_file(fits_frames, tmp_path):
    paths, _ = fits_frames
    paths[5].write_bytes(b"this is not a FITS file at all" * 200)
    code, _, err = _run(["stack", *paths, "-o", tmp_path / "o.zarr"])
    _assert_one_line_error(code, err, paths[5].name)
    assert not (tmp_path / "o.zarr").exists()


def test_unreadable_file(fits_frames, tmp_path):
    paths, _ = fits_frames
    if os.geteuid() == 0:
        # root reads any file: make the path something that cannot be read as a file
        paths[2].unlink()
        paths[2].mkdir()
    else:  # pragma: no cover - CI runs as root
        paths[2].chmod(0)
    code, _, err = _run(["stack", *paths, "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, paths[2].name)
    assert not (tmp_path / "o.fits").exists()


def test_shape_mismatch_names_file_and_shapes(fits_frames, tmp_path):
    paths, _ = fits_frames
    odd = tmp_path / "odd.fits"
    fits.PrimaryHDU(np.zeros((45, 34), np.float32)).writeto(odd)
    code, _, err = _run(["stack", *paths, odd, "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, odd, "(45, 34)", "(45, 33)")
    assert not (tmp_path / "o.fits").exists()


def test_dtype_mismatch(fits_frames, tmp_path):
    paths, _ = fits_frames
    odd = tmp_path / "odd.fits"
    fits.PrimaryHDU(np.zeros((45, 33), np.float64)).writeto(odd)
    code, _, err = _run(["stack", *paths, odd, "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, odd, "float64", "float32")


def test_channel_mismatch(tmp_path):
    import tifffile

    grey = tmp_path / "grey.tif"
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(grey, np.zeros((20, 30), np.uint16))
    tifffile.imwrite(rgb, np.zeros((20, 30, 3), np.uint16), photometric="rgb")
    code, _, err = _run(["stack", grey, rgb, "-o", tmp_path / "o.tif"])
    _assert_one_line_error(code, err, rgb, "channel")


def test_fewer_than_two_frames_for_rejection(fits_frames, tmp_path):
    paths, _ = fits_frames
    code, _, err = _run(["stack", paths[0], "-o", tmp_path / "o.fits"])
    _assert_one_line_error(code, err, "at least 2 frames")
    assert not (tmp_path / "o.fits").exists()
    code, _, err = _run(["stack", paths[0], "-o", tmp_path / "o.fits", "--reject", "none"])
    assert code == 0, err


def test_output_exists(fits_frames, tmp_path):
    paths, _ = fits_frames
    out = tmp_path / "o.fits"
    out.write_bytes(b"precious")
    code, _, err = _run(["stack", *paths, "-o", out])
    _assert_one_line_error(code, err, out, "exists")
    assert out.read_bytes() == b"precious"
    code, _, err = _run(["stack", *paths, "-o", out, "--overwrite"])
    assert code == 0, err
    assert fits.getdata(out).shape == (45, 33)


def test_output_folder_missing_or_not_writable(fits_frames, tmp_path):
    paths, _ = fits_frames
    out = tmp_path / "no" / "such" / "dir" / "o.fits"
    code, _, err = _run(["stack", *paths, "-o", out])
    _assert_one_line_error(code, err, out.parent)
    assert not out.exists()
    if os.geteuid() != 0:  # pragma: no cover - root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, _, err = _run(["stack", *paths, "-o", locked / "o.fits"])
        _assert_one_line_error(code, err, locked)


def test_bad_parameter_is_one_line(fits_frames, tmp_path):
    paths, _ = fits_frames
    code, _, err = _run(["stack", *paths, "-o", tmp_path / "o.fits", "--sigma-lower", "-2"])
    _assert_one_line_error(code, err, "sigma_lower")
    code, _, err = _run(["stack", *paths, "-o", tmp_path / "o.fits", "--reject", "magic"])
    _assert_one_line_error(code, err, "magic")
    assert not (tmp_path / "o.fits").exists()


def test_progress_prints_percentage_and_eta(fits_frames, tmp_path, capsys):
    paths, _ = fits_frames
    assert main(["stack", *map(str, paths), "-o", str(tmp_path / "p.fits"), "--progress"]) == 0
    err = capsys.readouterr().err
    import re

    assert re.search(r"100% \[#+\] \d+/\d+ tasks  elapsed \d+:\d\d  ETA 0:00", err), err
    assert main(["stack", *map(str, paths), "-o", str(tmp_path / "q.fits"), "--quiet"]) == 0
    assert "ETA" not in capsys.readouterr().err


def test_performance_report_on_local_cluster(fits_frames, tmp_path):
    paths, _ = fits_frames
    report = tmp_path / "report.html"
    assert (
        main(
            [
                "stack",
                *map(str, paths),
                "-o",
                str(tmp_path / "r.zarr"),
                "--workers",
                "1",
                "--report",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    assert report.stat().st_size > 1000 and b"<html" in report.read_bytes()[:2000].lower()
    code = main(
        [
            "stack",
            *map(str, paths),
            "-o",
            str(tmp_path / "s.zarr"),
            "--report",
            str(tmp_path / "x.html"),
        ]
    )
    assert code == 1 and not (tmp_path / "s.zarr").exists()


def test_local_stack_never_imports_distributed(fits_frames, tmp_path):
    """A local stack (and its FITS and zarr writes) runs on dask's threaded scheduler
    without importing distributed (a fifth of a second); the command line's entry
    point leaves the collector enabled for anything after it."""
    paths, _ = fits_frames
    script = (
        "import gc, sys\n"
        "from stackengine import cli\n"
        "import stackengine as se\n"
        f"paths = {[str(p) for p in paths]!r}\n"
        f"code = cli.run(['stack', *paths, '-o', {str(tmp_path / 'a.fits')!r}, '--quiet'])\n"
        "res = se.stack(se.open_frames(paths), normalize='additive+scale')\n"
        f"se.write(res, {str(tmp_path / 'b.zarr')!r})\n"
        "print(code, 'distributed' in sys.modules, gc.isenabled())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "0 False True"
    with fits.open(tmp_path / "a.fits") as hdul:
        assert hdul[0].data.shape == (45, 33)
