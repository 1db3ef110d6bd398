"""Registration mode: registered stacks timed against a plain one, with Siril as a peer.

``python -m benchmarks --register [--max-shift 20 --max-rotation 2] [--no-siril]``:
for the chosen workload (default the standard 50 x 4096^2 float32 FITS) the harness

1. makes a *registered workload* in ``DIR/<workload>_registered/``: the
   workload's frames with each frame moved by a seeded shift (uniform in
   ``±max_shift`` px along x and y) and rotation (uniform in ``±max_rotation``
   degrees about the frame's centre). The frames are drawn from a larger truth:
   a star field (the workload's star density, Gaussian stars of the same
   widths and peaks) on a canvas :func:`margin` pixels wider on every side,
   rendered analytically at each frame's pixels (so a frame's edges hold real
   stars and sky, and no interpolation touches the frames), then scaled, noised
   and hit by cosmic rays exactly as the workload's frame ``i`` (the same random
   streams). Written in the workload's pixel type and format, and as uint16
   FITS in ``uint16/`` for Siril (which works on integer or [0, 1] data; the
   float frames lie in about 800..27000 ADU, so uint16 holds them rounded). The
   manifest (``manifest.json``, written last; reused while it matches) keeps the
   true transform of every frame (``truth``: ``dx``, ``dy``, ``angle_deg`` and
   the 3x3 frame-to-canvas matrix);
2. registers the frames once, untimed, with ``se.register`` and compares the
   matrices with the truth: the RMS (and max) position error over a grid of the
   reference frame's pixels, in px (:func:`transform_errors`);
3. times, alternating in one run, each a fresh process, ``--repeat`` times,
   medians: ``stackengine stack FRAMES -o OUT.fits`` (*plain*: the frames are
   not aligned, so stars smear), the same with ``--register stars`` (*lanczos3*,
   the default kernel) and with ``--register stars --interpolation bilinear``
   (the standard mode's rejection: sigma 3/3 about the median by mad_std, 5
   iterations, mean), and Siril 1.x (``siril-cli -s script.ssf``: ``link``,
   ``setref`` (stackengine's reference frame), ``register -transf=similarity``,
   ``stack r_seq rej s 3 3 -nonorm``) on the uint16 copies, when ``siril-cli``
   is installed; peak RSS from ``getrusage`` of the child and its children
   (Siril's own process too);
4. compares the images in the area every frame covers: each against the
   noiseless truth on the reference frame's grid (noise over the ideal, bias,
   residuals), their star FWHM (``se.register``'s per-image ``fwhm``), and
   Siril's (scaled back from [0, 1] by 65535) against stackengine's
   (correlation, RMS difference, offset, and the shift between them);
5. the targets (issue 16): registered wall / plain wall <= 2 (medians, whole
   process) and the registered stack's peak RSS <= memory_limit + 256 MiB.

Imports only the standard library at module level.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .checks import check
from .methods import Mark, parse_bytes
from .runner import Job, _stderr, drop_results, method_info, run_facts, run_jobs
from .system import available_bytes, page_cache
from .workload import (
    Workload,
    _manifest_workload,
    _write_frame,
    manifest_files,
)

__all__ = [
    "MAX_ROTATION_DEG",
    "MAX_SHIFT_PX",
    "RATIO_TARGET",
    "REGISTERED_VERSION",
    "RSS_SLACK_BYTES",
    "SIRIL",
    "VARIANTS",
    "common_box",
    "format_registration",
    "frame_transforms",
    "margin",
    "prepare_registered",
    "registered_truth",
    "registration_checks",
    "registration_markdown",
    "registration_plot",
    "run_registration",
    "siril_method",
    "transform_errors",
    "truth_matrices",
]

#: Bump when the registered frames' pixels or their truth change.
REGISTERED_VERSION = 1
#: Default largest shift (px, along x and y) and rotation (degrees) of a frame.
MAX_SHIFT_PX = 20.0
MAX_ROTATION_DEG = 2.0
#: Issue 16: a registered stack's wall time at most this times the plain stack's.
RATIO_TARGET = 2.0
#: Issue 16: the registered stack's peak RSS at most memory_limit + this.
RSS_SLACK_BYTES = 256 * 1024**2
#: The timed stackengine variants: label -> extra ``stackengine stack`` arguments.
VARIANTS: dict[str, tuple[str, ...]] = {
    "plain": (),
    "lanczos3": ("--register", "stars"),
    "bilinear": ("--register", "stars", "--interpolation", "bilinear"),
}
REGISTERED = ("lanczos3", "bilinear")
#: The Siril peer's method name (resolved by :func:`benchmarks.methods.get_method`).
SIRIL = "siril"
SIRIL_CLI = "siril-cli"
#: uint16 full scale: Siril reads uint16 as value / 65535 and writes [0, 1] floats.
U16_SCALE = 65535.0
#: Grid of the reference frame's pixels on which the transforms are compared.
GRID = 33
GIB = 1024**3


# -- the registered workload -----------------------------------------------------------------


def margin(wl: Workload, max_shift: float, max_rotation: float) -> int:
    """Pixels of truth around the frame's nominal place: the largest excursion of a
    frame's corner (shift + rotation about the centre) plus 16 px, rounded up."""
    half = math.hypot(wl.height, wl.width) / 2
    turn = 2 * half * math.sin(math.radians(max_rotation) / 2)
    return math.ceil(math.hypot(max_shift, max_shift) + turn + 16)


def frame_transforms(wl: Workload, max_shift: float, max_rotation: float) -> list[dict]:
    """Each frame's true placement on the canvas: ``dx``, ``dy`` (px) and ``angle_deg``.

    Seeded per frame (``[seed, 2**29, i]``), independent of ``n_frames``.
    """
    import numpy as np

    out = []
    for i in range(wl.n_frames):
        rng = np.random.default_rng([wl.seed, 1 << 29, i])
        dx, dy = rng.uniform(-max_shift, max_shift, 2)
        angle = rng.uniform(-max_rotation, max_rotation)
        out.append({"dx": float(dx), "dy": float(dy), "angle_deg": float(angle)})
    return out


def frame_to_canvas(wl: Workload, t: dict[str, float], pad: int) -> Any:
    """3x3 matrix: frame pixel ``(x, y, 1)`` -> canvas pixel (rotation about the frame's
    centre by ``angle_deg``, then the shift, then ``pad`` to the canvas)."""
    import numpy as np

    a = math.radians(t["angle_deg"])
    c, s = math.cos(a), math.sin(a)
    cx, cy = (wl.width - 1) / 2, (wl.height - 1) / 2
    rot = np.array([[c, -s], [s, c]])
    shift = np.array([cx + pad + t["dx"], cy + pad + t["dy"]]) - rot @ np.array([cx, cy])
    m = np.eye(3)
    m[:2, :2], m[:2, 2] = rot, shift
    return m


def truth_matrices(truth: dict[str, Any], ref: int) -> Any:
    """The true registration matrices, (n, 3, 3): reference pixel -> frame ``k``'s pixel
    (``inv(A_k) @ A_ref``, ``A`` the frame-to-canvas matrices), stackengine's convention."""
    import numpy as np

    a = np.asarray(truth["frame_to_canvas"], dtype=np.float64)
    return np.linalg.inv(a) @ a[ref]


def _star_field(wl: Workload, pad: int) -> dict[str, Any]:
    """Stars on the canvas (canvas pixels): positions, widths, peaks; as the workload draws
    them (:func:`benchmarks.workload._sky_model`) but over the larger canvas."""
    import numpy as np

    h, w = wl.height + 2 * pad, wl.width + 2 * pad
    n = max(3, round(wl.stars_per_mpix * h * w / 1e6))
    rng = np.random.default_rng([wl.seed, 1 << 29, 1 << 20])
    return {
        "y": rng.uniform(0, h, n),
        "x": rng.uniform(0, w, n),
        "sigma": rng.uniform(1.0, 2.0, n),
        "peak": 10.0 ** rng.uniform(1.7, 4.3, n),
    }


def frame_model(wl: Workload, stars: dict[str, Any], to_canvas: Any) -> Any:
    """Sky plus the canvas's stars seen at a frame's pixels (float32): each star a Gaussian
    centred at its position mapped into the frame (rotation keeps it round)."""
    import numpy as np

    model = np.full((wl.height, wl.width), wl.sky, dtype=np.float32)
    inv = np.linalg.inv(to_canvas)
    xs = inv[0, 0] * stars["x"] + inv[0, 1] * stars["y"] + inv[0, 2]
    ys = inv[1, 0] * stars["x"] + inv[1, 1] * stars["y"] + inv[1, 2]
    for y, x, s, a in zip(ys, xs, stars["sigma"], stars["peak"], strict=True):
        r = math.ceil(5 * s)
        y0, y1 = max(0, math.floor(y) - r), min(wl.height, math.floor(y) + r + 1)
        x0, x1 = max(0, math.floor(x) - r), min(wl.width, math.floor(x) + r + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        model[y0:y1, x0:x1] += (a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))).astype(
            np.float32
        )
    return model


def _registered_key(wl: Workload, max_shift: float, max_rotation: float) -> dict[str, Any]:
    return {
        "version": REGISTERED_VERSION,
        "workload": _manifest_workload(wl),
        "max_shift_px": max_shift,
        "max_rotation_deg": max_rotation,
    }


def prepare_registered(
    wl: Workload,
    root: Path,
    max_shift: float = MAX_SHIFT_PX,
    max_rotation: float = MAX_ROTATION_DEG,
    log: Callable[[str], None] | None = None,
) -> tuple[Path, Path, bool]:
    """Make (or reuse) the registered workload of ``wl`` in ``root/<wl.key()>_registered``.

    Returns the manifest of the frames (``wl``'s pixel type and format), the
    manifest of their uint16 FITS copies (for Siril; the same manifest when the
    frames are uint16 FITS) and whether they were made now. The manifest's
    ``truth`` holds ``pad`` (canvas margin, px), ``transforms`` (per frame:
    ``dx``, ``dy``, ``angle_deg``), ``frame_to_canvas`` (per frame, 3x3) and
    ``n_canvas_stars``; ``scales`` the frames' scale factors.
    """
    folder = Path(root) / f"{wl.key()}_registered"
    manifest = folder / "manifest.json"
    u16_manifest = folder / "manifest_uint16.json"
    same = wl.dtype == "uint16" and wl.format == "fits"
    names = [f"frame_{i:04d}{wl.suffix}" for i in range(wl.n_frames)]
    u16_names = names if same else [f"uint16/frame_{i:04d}.fits" for i in range(wl.n_frames)]
    want = {**_registered_key(wl, max_shift, max_rotation), "files": names}
    if manifest.exists() and u16_manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} == want and all(
            (folder / n).is_file() for n in [*names, *u16_names]
        ):
            return manifest, u16_manifest, False
    manifest.unlink(missing_ok=True)
    u16_manifest.unlink(missing_ok=True)
    (folder / "uint16").mkdir(parents=True, exist_ok=True)
    pad = margin(wl, max_shift, max_rotation)
    if log:
        log(
            f"generating the registered workload ({wl.describe()}, shifts up to {max_shift:g} "
            f"px, rotations up to {max_rotation:g} deg, from a star field {pad} px wider) in "
            f"{folder}"
        )
    stars = _star_field(wl, pad)
    transforms = frame_transforms(wl, max_shift, max_rotation)
    mats = [frame_to_canvas(wl, t, pad) for t in transforms]
    u16 = replace(wl, dtype="uint16", format="fits", int_gain=1.0, int_offset=0.0)
    scales = []
    for i, (name, u16_name) in enumerate(zip(names, u16_names, strict=True)):
        model = frame_model(wl, stars, mats[i])
        scales.append(_write_frame(wl, model, i, folder / name))
        if not same:  # the same random streams: the same noise and cosmic rays, rounded
            _write_frame(u16, model, i, folder / u16_name)
    truth = {
        "pad": pad,
        "n_canvas_stars": int(len(stars["x"])),
        "transforms": transforms,
        "frame_to_canvas": [m.tolist() for m in mats],
        "convention": "frame pixel (x, y, 1) -> canvas pixel; x = column, 0-based, "
        "integers at pixel centres",
    }
    u16_data = {**want, "workload": _manifest_workload(u16), "files": u16_names}
    u16_manifest.write_text(json.dumps({**u16_data, "scales": scales, "truth": truth}, indent=1))
    manifest.write_text(json.dumps({**want, "scales": scales, "truth": truth}, indent=1))
    return manifest, u16_manifest, True


def registered_truth(wl: Workload, manifest: Path, ref: int) -> Any:
    """The noiseless expectation of a registered mean stack on the reference frame's grid:
    ``gain * mean(scale) * (sky + stars seen by frame ref) + offset``, float32."""
    import numpy as np

    data = json.loads(Path(manifest).read_text())
    pad = data["truth"]["pad"]
    model = frame_model(wl, _star_field(wl, pad), np.asarray(data["truth"]["frame_to_canvas"][ref]))
    model *= np.float32(wl.gain * np.mean(np.asarray(data["scales"], dtype=np.float64)))
    if wl.offset:
        model += np.float32(wl.offset)
    return model


# -- the transforms against the truth ------------------------------------------------------


def transform_errors(table: Any, truth: dict[str, Any], wl: Workload) -> dict[str, Any]:
    """``se.register``'s matrices against the true ones, on a ``GRID`` x ``GRID`` grid of the
    reference frame's pixels: ``rms_px`` (over all frames and points), ``max_px``, per frame
    ``per_frame_rms_px``; ``reference``; the rotation and shift ranges found."""
    import numpy as np

    ref = int(table.attrs["reference"])
    true = truth_matrices(truth, ref)
    found = np.asarray(table["matrix"].values, dtype=np.float64)
    frames = [int(k) for k in table["frame"].values]
    gx, gy = np.meshgrid(np.linspace(0, wl.width - 1, GRID), np.linspace(0, wl.height - 1, GRID))
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    per_frame, all_sq, worst = [], [], 0.0
    for k, m in zip(frames, found, strict=True):
        a, b = m @ pts, true[k] @ pts
        d = np.hypot(a[0] / a[2] - b[0] / b[2], a[1] / a[2] - b[1] / b[2])
        per_frame.append(float(np.sqrt(np.mean(d**2))))
        all_sq.append(d**2)
        worst = max(worst, float(d.max()))
    rot = [math.degrees(math.atan2(m[1, 0], m[0, 0])) for m in true]
    return {
        "reference": ref,
        "reference_path": str(table.attrs.get("reference_path", "")),
        "n_frames": len(frames),
        "rms_px": float(np.sqrt(np.mean(np.concatenate(all_sq)))),
        "max_px": worst,
        "per_frame_rms_px": per_frame,
        "grid": GRID,
        "true_rotation_deg": [min(rot), max(rot)],
        "true_shift_px": float(max(np.hypot(m[0, 2], m[1, 2]) for m in true)),
        "rms_px_matched": [float(v) for v in table["rms_px"].values],
        "n_matched": [int(v) for v in table["n_matched"].values],
    }


def _register_frames(manifest: Path, log: Callable[[str], None]) -> tuple[Any, float]:
    """``se.register`` of the manifest's frames (default settings), and its wall time."""
    import stackengine as se

    start = time.perf_counter()
    table = se.register(se.open_frames([str(f) for f in manifest_files(manifest)]))
    wall = time.perf_counter() - start
    log(f"se.register: reference frame {table.attrs['reference']} ({wall:.1f} s)")
    return table, wall


# -- Siril -----------------------------------------------------------------------------------


def siril_available() -> str | None:
    """Path of ``siril-cli``, or None."""
    return shutil.which(SIRIL_CLI)


def siril_version() -> str | None:
    """``siril-cli --version``'s answer, or None."""
    exe = siril_available()
    if not exe:
        return None
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    return (proc.stdout or proc.stderr).strip().splitlines()[-1] if proc.returncode == 0 else None


_SIRIL_PARAMS = (
    "siril-cli -d WORK -s script.ssf (a fresh process): requires 1.0.0; set32bits; setext fits; "
    "cd in; link frame_ -out=..; cd ..; setref frame_ REF+1; register frame_ "
    "-transf=similarity; stack r_frame_ rej s 3 3 -nonorm -out=result (sigma clipping about "
    "the median, mean); the uint16 frames linked into WORK/in; the [0, 1] result x 65535 "
    "written as float32 FITS (untimed-sized: one image); the registered frames deleted"
)


def _siril_script(ref: int | None) -> str:
    lines = ["requires 1.0.0", "set32bits", "setext fits", "cd in", "link frame_ -out=..", "cd .."]
    if ref is not None:
        lines.append(f"setref frame_ {ref + 1}")  # Siril counts from 1
    lines += ["register frame_ -transf=similarity", "stack r_frame_ rej s 3 3 -nonorm -out=result"]
    return "\n".join(lines) + "\n"


def _siril_steps(log_text: str) -> dict[str, float]:
    """Siril's own "Execution time" per command, from its log."""
    steps: dict[str, float] = {}
    command = None
    for line in log_text.splitlines():
        m = re.search(r"Running command: (\S+)", line)
        if m:
            command = m.group(1)
        m = re.search(r"Execution time: ([\d.]+) (s|ms|min)", line)
        if m and command:
            value = float(m.group(1)) * {"s": 1.0, "ms": 1e-3, "min": 60.0}[m.group(2)]
            steps[command] = steps.get(command, 0.0) + value
    return steps


def _siril_error(log_text: str) -> str:
    keys = ("error", "fail", "cannot", "not enough", "no star", "unable")
    hits = [ln.strip() for ln in log_text.splitlines() if any(k in ln.lower() for k in keys)]
    tail = hits[-3:] or log_text.strip().splitlines()[-3:]
    return " | ".join(tail)


def _run_siril(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> dict[str, Any]:
    """The Siril peer (see :data:`_SIRIL_PARAMS`); ``stack_args`` may hold ``ref=N``."""
    exe = siril_available()
    if not exe:
        raise RuntimeError(f"{SIRIL_CLI} is not installed")
    ref = None
    for arg in opts.get("stack_args") or ():
        if arg.startswith("ref="):
            ref = int(arg[4:])
    mark("import")
    work = Path(out).with_suffix(".siril")
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    for i, f in enumerate(files):
        (work / "in" / f"frame_{i + 1:05d}.fits").symlink_to(Path(f).resolve())
    (work / "script.ssf").write_text(_siril_script(ref))
    logfile = work / "siril.log"
    with open(logfile, "w") as fh:
        proc = subprocess.Popen(
            [exe, "-d", str(work), "-s", str(work / "script.ssf")],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    mark("siril")
    text = logfile.read_text(errors="replace")
    result = work / "result.fits"
    if proc.returncode != 0 or not result.is_file():
        for path in work.glob("*.fit*"):  # keep the log and the script, not gigabytes of frames
            path.unlink()
        raise RuntimeError(f"siril-cli failed (exit {proc.returncode}): {_siril_error(text)}")
    counts = re.findall(r"Total: (\d+) failed, (\d+) registered", text)
    stacked = re.findall(r"(\d+) images have been stacked", text)
    from astropy.io import fits

    from .frameio import write_image

    with fits.open(result) as hdul:
        image = hdul[0].data.astype("float32")
    if image.ndim == 3:  # a one-channel cube
        image = image[0]
    # Siril writes rows bottom-up (FITS convention) as astropy reads them: no flip needed
    write_image(image * U16_SCALE, out)
    shutil.rmtree(work, ignore_errors=True)
    mark("convert+write")
    return {
        "siril_steps_s": _siril_steps(text),
        "siril_peak_rss_bytes": usage.ru_maxrss * 1024,
        "siril_cpu_s": usage.ru_utime + usage.ru_stime,
        "siril_failed_frames": int(counts[-1][0]) if counts else None,
        "siril_stacked_frames": int(stacked[-1]) if stacked else None,
        "siril_log_tail": text.strip().splitlines()[-4:],
    }


def siril_method() -> tuple[str, Callable]:
    """``(params, run)`` of the Siril peer, for :func:`benchmarks.methods.get_method`."""
    return _SIRIL_PARAMS, _run_siril


# -- comparing the images ---------------------------------------------------------------------


def common_box(truth: dict[str, Any], ref: int, wl: Workload, inset: int = 4) -> tuple[int, int]:
    """The smallest border ``b`` (multiple of 8) such that the box ``[b, W-1-b] x [b, H-1-b]``
    of the reference grid lies inside every frame by ``inset`` px (the kernels' support):
    ``(b_y, b_x)``, the same ``b`` twice. The box is convex and so is what every frame
    covers, so its corners decide."""
    import numpy as np

    mats = truth_matrices(truth, ref)
    h, w = wl.height, wl.width
    for b in range(0, min(h, w) // 2, 8):
        xs, ys = [b, w - 1 - b, b, w - 1 - b], [b, b, h - 1 - b, h - 1 - b]
        pts = np.stack([xs, ys, np.ones(4)])
        p = mats @ pts
        x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        if np.all((x >= inset) & (x <= w - 1 - inset) & (y >= inset) & (y <= h - 1 - inset)):
            return b, b
    return min(h, w) // 2, min(h, w) // 2


def _versus_truth(image: Any, truth: Any, ideal: float) -> dict[str, Any]:
    import numpy as np

    from .accuracy import BACKGROUND_FRACTION, MAD_TO_STD, RESIDUAL_SIGMAS

    resid = image.astype(np.float64) - truth
    finite = np.isfinite(resid)
    background = finite & (truth <= truth.min() + BACKGROUND_FRACTION * ideal)
    kept = resid[background]
    med = float(np.median(kept))
    spread = MAD_TO_STD * float(np.median(np.abs(kept - med)))
    with np.errstate(invalid="ignore"):
        n_resid = int(np.count_nonzero(~(np.abs(resid) <= RESIDUAL_SIGMAS * ideal)))
    stars = finite & (truth > truth.min() + 20 * ideal)
    flux = float(np.sum(resid[stars]) / np.sum(truth[stars] - truth.min())) if stars.any() else 0
    return {
        "noise_adu": spread,
        "noise_ratio": spread / ideal,
        "median_bias_adu": med,
        "n_residual": n_resid,
        "frac_residual": n_resid / resid.size,
        "n_nonfinite": int(resid.size - np.count_nonzero(finite)),
        "star_flux_error": flux,
        "n_pixels": int(resid.size),
    }


def compare_registered(
    rows: dict[str, dict[str, Any]], wl: Workload, manifest: Path, ref: int,
    log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Each image against the truth (sets ``row["truth"]``), the images' star FWHM, and
    Siril's against stackengine's lanczos3 image, in the box every frame covers."""
    import numpy as np

    from .accuracy import load_image

    data = json.loads(Path(manifest).read_text())
    by, bx = common_box(data["truth"], ref, wl)
    box = (slice(by, wl.height - by), slice(bx, wl.width - bx))
    log(f"comparing the images in the common box [{by}:{wl.height - by}, {bx}:{wl.width - bx}]")
    truth = registered_truth(wl, manifest, ref)[box].astype(np.float64)
    images: dict[str, Any] = {}
    for label, row in rows.items():
        if row.get("ok"):
            images[label] = load_image(Path(row["out"]), np.float32)[box]
            row["truth"] = _versus_truth(images[label], truth, wl.ideal_noise)
    out: dict[str, Any] = {"box": [by, wl.height - by, bx, wl.width - bx]}
    out["fwhm"] = _fwhm({"truth": truth.astype(np.float32), **images}, log)
    if "siril" in images and "lanczos3" in images:
        a = images["lanczos3"].astype(np.float64)
        b = images["siril"].astype(np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        d = b[ok] - a[ok]
        off = float(np.median(d))
        out["siril_vs_stackengine"] = {
            "against": "lanczos3",
            "correlation": float(np.corrcoef(a[ok], b[ok])[0, 1]),
            "median_offset_adu": off,
            "rms_diff_adu": float(np.sqrt(np.mean((d - off) ** 2))),
            "rms_diff_over_ideal_noise": float(np.sqrt(np.mean((d - off) ** 2)) / wl.ideal_noise),
            "rel_rms_diff": float(np.sqrt(np.mean((d - off) ** 2)) / np.std(a[ok])),
            "n_pixels": int(ok.sum()),
        }
        shift = (out["fwhm"].get("shift_px") or {}).get("siril")
        if shift is not None:
            out["siril_vs_stackengine"]["shift_vs_truth_px"] = shift
    return out


def _fwhm(images: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Star FWHM of each image (``se.register``'s per-frame median, the truth as reference)
    and each image's offset from the truth at its centre (px)."""
    import numpy as np

    try:
        import stackengine as se

        names = list(images)
        cube = np.stack([np.nan_to_num(images[k], nan=float(np.nanmedian(images[k])))
                         for k in names])  # fmt: skip
        with warnings.catch_warnings():  # the smeared plain stack may not register: fine
            warnings.simplefilter("ignore")
            table = se.register(cube, reference=0, drop_failed=True)
    except Exception as exc:  # a failure here must not lose the timings
        log(f"star FWHM not measured: {type(exc).__name__}: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}"}
    fwhm = {names[int(k)]: float(v) for k, v in zip(table["frame"].values, table["fwhm"].values,
                                                   strict=True)}  # fmt: skip
    h, w = images[names[0]].shape
    centre = np.array([(w - 1) / 2, (h - 1) / 2, 1.0])
    shift = {}
    for k, m in zip(table["frame"].values, table["matrix"].values, strict=True):
        p = m @ centre
        shift[names[int(k)]] = float(np.hypot(p[0] / p[2] - centre[0], p[1] / p[2] - centre[1]))
    return {"fwhm_px": fwhm, "shift_px": shift}


# -- running -----------------------------------------------------------------------------------


def _tiny(wl: Workload, root: Path) -> tuple[Path, Path]:
    """The warm-up's tiny registered set (3 x 256^2, enough stars for Siril's 10 pairs)."""
    tiny = replace(wl, n_frames=3, height=256, width=256, stars_per_mpix=2000.0)
    manifest, u16, _ = prepare_registered(tiny, root / "warmup", 4.0, 1.0)
    return manifest, u16


def _ratios(runs: list[dict[str, Any]], res: dict[str, Any], label: str) -> dict[str, Any]:
    """``label`` over plain: medians of wall, CPU and work, and the wall ratio per round."""
    plain, var = res.get("plain", {}), res.get(label, {})
    if not (plain.get("ok") and var.get("ok")):
        return {}
    out: dict[str, Any] = {
        "wall": var["wall_s"] / plain["wall_s"],
        "cpu": var["cpu_s"] / plain["cpu_s"],
    }
    if plain.get("work_s") and var.get("work_s"):
        out["work"] = var["work_s"] / plain["work_s"]
    walls: dict[int, dict[str, float]] = {}
    for r in runs:
        if r.get("ok") and r["label"] in ("plain", label):
            walls.setdefault(r["repeat"], {})[r["label"]] = r["wall_s"]
    rounds = [w[label] / w["plain"] for w in walls.values() if len(w) == 2]
    if rounds:
        out["per_round"] = rounds
    return out


def registration_checks(
    res: dict[str, dict[str, Any]], ratios: dict[str, Any], memory_limit: str
) -> list[dict[str, Any]]:
    """Issue 16's targets for each registered variant: the wall ratio and the peak RSS."""
    out: list[dict[str, Any]] = []
    plain = res.get("plain", {})
    bound = parse_bytes(memory_limit) + RSS_SLACK_BYTES
    for label in REGISTERED:
        r, row = ratios.get(label) or {}, res.get(label, {})
        if r.get("wall") is not None:
            note = f"{row['wall_s']:.2f} s / {plain['wall_s']:.2f} s"
            if r.get("per_round"):
                note += f"; per round {min(r['per_round']):.2f} .. {max(r['per_round']):.2f}"
            if r.get("work") is not None:
                note += f"; after imports {r['work']:.2f} x"
            note += f"; CPU time {r['cpu']:.2f} x"
            name = f"stackengine registered stack ({label}) wall / plain stack wall"
            out.append(check(name, r["wall"], RATIO_TARGET, "x", "<=", note=note, issue=16))
        if row.get("ok"):
            note = f"bound = memory_limit {memory_limit} + 256 MiB"
            if plain.get("ok"):
                note += f"; plain stack {plain['peak_rss_bytes'] / GIB:.3f} GiB"
            name = f"stackengine registered stack ({label}) peak RSS"
            out.append(check(name, row["peak_rss_bytes"] / GIB, bound / GIB, "GiB", "<=", note, 16))
    return out


def run_registration(
    base: Workload,
    root: Path,
    memory_limit: str = "512MiB",
    repeat: int = 1,
    warmup: bool = True,
    keep: bool = False,
    log: Callable[[str], None] | None = None,
    warm_cache: bool = True,
    cold_cache: bool = False,
    max_shift: float = MAX_SHIFT_PX,
    max_rotation: float = MAX_ROTATION_DEG,
    siril: bool = True,
    **_: Any,
) -> dict[str, Any]:
    """Run the registration mode on ``base`` (see the module); returns the report dict.

    ``results[label]`` are the summaries (``plain``, ``lanczos3``, ``bilinear``,
    ``siril``; each with ``truth``), ``ratios[label]`` registered / plain,
    ``transforms`` the check of ``se.register`` against the truth, ``images`` the
    FWHM and Siril-against-stackengine comparison; ``benchmark`` =
    ``"registration"``; printed by :func:`format_registration`. ``siril=False``
    (or no ``siril-cli``) leaves Siril out (``results["siril"]["skipped"]``).
    """
    from .stats import median_run, summarize_runs

    log = log or _stderr
    root = Path(root).resolve()
    manifest, u16_manifest, generated = prepare_registered(base, root, max_shift, max_rotation, log)
    outdir = root / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    table, register_s = _register_frames(manifest, log)
    truth = json.loads(manifest.read_text())["truth"]
    transforms = transform_errors(table, truth, base)
    transforms["wall_s"] = register_s
    ref = transforms["reference"]
    log(
        f"transforms vs truth: RMS {transforms['rms_px']:.4f} px, max {transforms['max_px']:.4f} px"
    )
    siril_exe = siril_available() if siril else None
    siril_skip = None if siril_exe else ("not run (--no-siril)" if not siril else
                                         f"{SIRIL_CLI} is not installed")  # fmt: skip
    available = available_bytes()
    files = manifest_files(manifest) + (manifest_files(u16_manifest) if siril_exe else [])
    cache = page_cache(list(dict.fromkeys(files)), available, warm_cache, cold_cache)
    log(f"page cache: {cache}")
    jobs = [Job("stackengine", manifest, base, label, stack_args=args)
            for label, args in VARIANTS.items()]  # fmt: skip
    if siril_exe:
        jobs.append(Job(SIRIL, u16_manifest, base, SIRIL, stack_args=(f"ref={ref}",)))
    if warmup:
        tiny, tiny16 = _tiny(base, root)
        warm = [replace(j, manifest=tiny16 if j.method == SIRIL else tiny,
                        label=f"warmup_{j.label}", stack_args=j.stack_args[:4]
                        if j.method != SIRIL else ()) for j in jobs]  # fmt: skip
        log("warm-up: " + ", ".join(j.label for j in warm))
        run_jobs(warm, outdir, memory_limit, 1, None, lambda _: None)
    runs = run_jobs(jobs, outdir, memory_limit, repeat, None, log, available, cold_cache)
    labels = [*VARIANTS, SIRIL]
    res = {lb: summarize_runs([r for r in runs if r["label"] == lb], base.mpix_frames)
           for lb in labels}  # fmt: skip
    if siril_skip:
        res[SIRIL] = {"ok": False, "skipped": siril_skip, "n_runs": 0}
    elif res[SIRIL].get("ok"):  # Siril's own times and counts, from the median run
        rep = median_run([r for r in runs if r["label"] == SIRIL and r.get("ok")])
        res[SIRIL].update({k: v for k, v in rep.items() if k.startswith("siril_")})
    images = compare_registered(res, base, manifest, ref, log)
    ratios = {lb: _ratios(runs, res, lb) for lb in labels[1:]}
    drop_results(outdir, keep)
    plain_params = method_info(["stackengine"], memory_limit, 0)["stackengine"]["params"]
    params = {
        label: plain_params.replace("FRAMES -o", " ".join(["FRAMES", *args, "-o"]))
        for label, args in VARIANTS.items()
    }
    params[SIRIL] = _SIRIL_PARAMS
    return {
        "benchmark": "registration",
        "workload": asdict(base),
        "preset": _preset(base),
        "data_dir": str(manifest.parent),
        "generated": generated,
        "max_shift_px": max_shift,
        "max_rotation_deg": max_rotation,
        "pad_px": truth["pad"],
        **run_facts(cache, memory_limit, 0, repeat),
        "siril_version": siril_version() if siril_exe else None,
        "params": params,
        "results": res,
        "ratios": ratios,
        "transforms": transforms,
        "images": images,
        "truth": {"ideal_noise_adu": base.ideal_noise},
        "checks": registration_checks(res, ratios, memory_limit),
        "runs": runs,
    }


def _preset(wl: Workload) -> str | None:
    from .runner import preset_of

    return preset_of(wl)


# -- printing ----------------------------------------------------------------------------------


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(label, summary, ratio cell) per variant, in order."""
    out = []
    for label in [*VARIANTS, SIRIL]:
        r = report["results"].get(label) or {"ok": False, "skipped": "not run"}
        ratio = 1.0 if label == "plain" else (report["ratios"].get(label) or {}).get("wall")
        out.append((label, r, "-" if ratio is None else f"{ratio:.2f}x"))
    return out


def format_registration(report: dict[str, Any]) -> str:
    """The human-readable tables of a registration report (see :func:`run_registration`)."""
    from .report import format_checks, wall_range

    wl = Workload(**report["workload"])
    lines = [
        f"registration benchmark: {wl.describe()}, shifted up to {report['max_shift_px']:g} px "
        f"and rotated up to {report['max_rotation_deg']:g} deg; memory_limit="
        f"{report['memory_limit']}, {report['cpu_count']} CPUs; frames in {report['data_dir']}",
        f"preset: {report.get('preset') or '-'}; page cache: {report['page_cache']}; "
        f"{report['repeat']} run(s) each, alternating; medians shown; Siril: "
        f"{report.get('siril_version') or 'not run'}",
        "",
        f"{'variant':<10} {'wall s':>8} {'CPU s':>8} {'peak RSS GiB':>13} {'Mpix-frames/s':>14} "
        f"{'vs plain':>9} {'noise/ideal':>11} {'bias ADU':>9} {'residuals':>10} {'FWHM px':>8} "
        f"{'wall range':>12} {'others CPU s':>12}",
    ]
    fwhm = (report["images"].get("fwhm") or {}).get("fwhm_px") or {}
    for label, r, ratio in _rows(report):
        if not r.get("ok"):
            lines.append(f"{label:<10} {r.get('skipped') or 'FAILED: ' + str(r.get('error'))}")
            continue
        t = r.get("truth") or {}
        lines.append(
            f"{label:<10} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} "
            f"{r['peak_rss_bytes'] / GIB:>13.3f} {r['mpix_frames_per_s']:>14.1f} {ratio:>9} "
            f"{_cell(t.get('noise_ratio'), '.3f'):>11} {_cell(t.get('median_bias_adu'), '.2f'):>9} "
            f"{_cell(t.get('n_residual'), 'd'):>10} {_cell(fwhm.get(label), '.2f'):>8} "
            f"{wall_range(r):>12} {_cell(r.get('other_cpu_s'), '.1f'):>12}"
        )
    lines += ["", f"truth FWHM: {_cell(fwhm.get('truth'), '.2f')} px (the noiseless reference "
              "frame, same measurement)"]  # fmt: skip
    lines += ["", "phases (s, median run):"]
    for label, r, _ in _rows(report):
        if r.get("ok"):
            phases = ", ".join(f"{k} {v:.3f}" for k, v in (r.get("phases_s") or {}).items())
            lines.append(f"  {label}: {phases}")
            if r.get("siril_steps_s"):
                steps = ", ".join(f"{k} {v:.2f}" for k, v in r["siril_steps_s"].items())
                lines.append(f"    Siril's own times: {steps}; siril-cli peak RSS "
                             f"{r['siril_peak_rss_bytes'] / GIB:.3f} GiB; frames that failed to "
                             f"register: {r.get('siril_failed_frames')}, stacked: "
                             f"{r.get('siril_stacked_frames')}")  # fmt: skip
    t = report["transforms"]
    lines += [
        "",
        f"transforms: se.register (default settings, {t['wall_s']:.1f} s, untimed here) against "
        f"the truth on a {t['grid']}x{t['grid']} grid of the reference frame ({t['reference']}): "
        f"RMS {t['rms_px']:.4f} px, max {t['max_px']:.4f} px over {t['n_frames']} frames "
        f"(true rotations {t['true_rotation_deg'][0]:.2f} .. {t['true_rotation_deg'][1]:.2f} deg, "
        f"shifts up to {t['true_shift_px']:.1f} px at the origin)",
    ]
    s = report["images"].get("siril_vs_stackengine")
    if s:
        lines += [
            f"Siril vs stackengine ({s['against']}), box {report['images']['box']}: correlation "
            f"{s['correlation']:.6f}, median offset {s['median_offset_adu']:.3f} ADU, RMS "
            f"difference {s['rms_diff_adu']:.3f} ADU ({s['rms_diff_over_ideal_noise']:.3f} x the "
            f"ideal stack noise; {s['rel_rms_diff']:.2e} of the image's spread)"
        ]
    lines += [
        "",
        "vs plain = wall / plain wall (medians, whole process). noise/ideal, bias, residuals: "
        "against the noiseless truth on the reference frame's grid, in the box every frame "
        "covers (residual: > 5 ideal noises off); FWHM: se.register's median star FWHM of "
        "each image. plain is not registered: its stars smear.",
        "",
        "parameters:",
        *(f"  {k}: {v}" for k, v in report["params"].items()),
    ]
    if report["checks"]:
        lines += ["", "targets (issue 16):"]
        if report.get("preset") != "standard" or wl.dtype != "float32":
            lines.append("  (set for the standard workload, 50 x 4096^2 float32 FITS: indicative)")
        lines += format_checks(report["checks"])
    return "\n".join(lines)


def registration_markdown(report: dict[str, Any]) -> list[str]:
    """The registration report as markdown lines."""
    from .markdown import _checks, _head, _row, _wall

    wl = Workload(**report["workload"])
    fwhm = (report["images"].get("fwhm") or {}).get("fwhm_px") or {}
    lines = [
        f"### Registered stacks: {wl.describe()}, memory_limit={report['memory_limit']}",
        "",
        f"Frames shifted up to {report['max_shift_px']:g} px and rotated up to "
        f"{report['max_rotation_deg']:g}°; {report['repeat']} run(s) each, alternating; medians "
        "(min–max); each run a fresh process. Siril: "
        f"{report.get('siril_version') or 'not run'}.",
        "",
        *_head(["variant", "wall s (min–max)", "CPU s", "peak RSS GiB", "vs plain",
                "noise / ideal", "residuals", "FWHM px"], 1),
    ]  # fmt: skip
    for label, r, ratio in _rows(report):
        if not r.get("ok"):
            lines.append(_row([label, r.get("skipped") or "FAILED", *[""] * 6]))
            continue
        t = r.get("truth") or {}
        cells = [_wall(r), f"{r['cpu_s']:.2f}", f"{r['peak_rss_bytes'] / GIB:.3f}", ratio]
        cells += [_cell(t.get("noise_ratio"), ".3f"), _cell(t.get("n_residual"), "d")]
        lines.append(_row([label, *cells, _cell(fwhm.get(label), ".2f")]))
    t = report["transforms"]
    lines += ["", f"Transforms (se.register) against the truth: RMS {t['rms_px']:.4f} px, max "
              f"{t['max_px']:.4f} px over the field."]  # fmt: skip
    s = report["images"].get("siril_vs_stackengine")
    if s:
        lines += ["", f"Siril against stackengine ({s['against']}): correlation "
                  f"{s['correlation']:.6f}, RMS difference {s['rms_diff_adu']:.3f} ADU "
                  f"({s['rms_diff_over_ideal_noise']:.3f} ideal noises)."]  # fmt: skip
    lines += ["", "**Parameters**", ""]
    lines += [f"- {k}: {v}" for k, v in report["params"].items()]
    return lines + _checks(report["checks"])


def registration_plot(report: dict[str, Any], folder: Path) -> list[Path]:
    """``registration.png``: wall time and peak RSS per variant (and Siril)."""
    from .plots import _bars, _pyplot

    names, rows = [], []
    for label, r, _ in _rows(report):
        if r.get("ok"):
            names.append(label)
            rows.append(r)
    if not rows:
        return []
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 1.4 + 0.45 * len(rows)), layout="constrained")
    _bars(a1, names, rows, "wall_s", 1.0)
    a1.set_xlabel("wall s (whole process; lower is better)")
    _bars(a2, names, rows, "peak_rss_bytes", 1 / GIB)
    bound = (parse_bytes(report["memory_limit"]) + RSS_SLACK_BYTES) / GIB
    a2.axvline(bound, color="tab:red", linestyle="--", label="memory_limit + 256 MiB")
    a2.legend(fontsize=8, loc="lower right")
    a2.set_xlabel("peak RSS GiB")
    wl = report["workload"]
    fig.suptitle(f"registered vs plain stack: {wl['n_frames']} frames of {wl['height']}x"
                 f"{wl['width']} {wl['dtype']}", fontsize=9)  # fmt: skip
    path = folder / "registration.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
