"""The "1000 Bayer frames" measurement of issue 16: time and peak RSS against N.

``python -m benchmarks.bayer_scaling --n 100 300 1000 --dir /work/bench/data``

Seestar S50 owners stack thousands of 10 s frames of 1080 x 1920 one-shot-colour
mosaics. This module

1. makes (or reuses) ``DIR/bayer_seestar_<N>x1920x1080/``: ``N`` (the largest
   asked) uint16 FITS frames 1080 wide x 1920 high (numpy shape (1920, 1080)),
   ``BAYERPAT = 'GRBG'``, ``EXPTIME = 10``: a seeded star field (:data:`N_STARS`
   Gaussian stars, FWHM :data:`FWHM_PX`, each with its own colour) seen through a
   GRBG colour filter, sky :data:`SKY_ADU` ADU, Gaussian noise of the Poisson
   variance plus a read noise; frame ``i`` drifts by a seeded few pixels and
   turns by ``i`` x :data:`ROTATION_DEG_PER_FRAME` (an alt-az mount's field
   rotation) about the frame's centre. Frame ``i`` does not depend on N; the
   manifest (``manifest.json``, written last, reused while it matches) keeps each
   frame's true ``dx``, ``dy`` and ``angle_deg``. The N-frame run takes the first N
   files (:func:`benchmarks.workload.subset_manifest`);
2. for each N, runs ``stackengine stack FRAMES --register stars --memory-limit
   1GiB -o OUT.fits --overwrite`` (with the harness's explicit rejection
   arguments, which are the CLI's defaults: sigma 3/3 about the median by
   mad_std, 5 iterations, mean) in a fresh process (:func:`benchmarks.runner.run_jobs`:
   wall time around the child, its CPU time and peak RSS, ``VmHWM`` of the child
   and ``ru_maxrss`` of its children), after an untimed warm-up on 3 frames;
   :class:`ProcSampler` samples the child's ``RssAnon``, ``RssFile`` and open
   files meanwhile (``VmHWM`` also counts the touched pages of memory-mapped
   frames);
3. checks each image: 3 colour planes, ``count`` max == N, and the median
   FWHM of the green plane's stars (``sep``: twice the half-flux radius of
   isolated, unsaturated stars) against the same measurement on a noiseless
   full-resolution render of the stars (:func:`truth_fwhm`);
4. reports N, wall s, s per frame, CPU s, peak RSS MiB, and two targets: peak RSS
   <= memory_limit + 256 MiB at every N, and a linear cost (the marginal seconds
   per frame between consecutive N within :data:`LINEAR_TOLERANCE` of each other).

Imports only the standard library at module level.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .methods import parse_bytes
from .registration import RSS_SLACK_BYTES
from .runner import Job, _stderr, run_jobs
from .system import available_bytes, page_cache
from .workload import Workload, manifest_files, subset_manifest

__all__ = [
    "GENERATOR_VERSION",
    "HEIGHT",
    "WIDTH",
    "check_image",
    "format_bayer_scaling",
    "frame_truth",
    "ProcSampler",
    "main",
    "measure_fwhm",
    "prepare_bayer",
    "render_frame",
    "run_bayer_scaling",
    "truth_fwhm",
]

#: Bump when the frames' pixels or their truth change.
GENERATOR_VERSION = 1
HEIGHT, WIDTH = 1920, 1080  # Seestar S50: 1080 wide, 1920 high
PATTERN = "GRBG"
#: GRBG: the channel (0 R, 1 G, 2 B) of pixel (y % 2, x % 2)
CFA = ((1, 0), (2, 1))
SEED = 20250116
N_STARS = 400
FWHM_PX = 3.0
SKY_ADU = 800.0
READ_NOISE_ADU = 5.0
EXPTIME_S = 10.0
#: Largest drift of a frame along x and y, px (seeded, uniform).
MAX_DRIFT_PX = 4.0
#: Field rotation: frame i is turned by i times this (5 degrees at frame 1000).
ROTATION_DEG_PER_FRAME = 0.005
#: Stars are drawn in windows of +- this many sigmas.
WINDOW_SIGMAS = 5.0
#: Linear cost: each marginal s/frame within this fraction of their mean.
LINEAR_TOLERANCE = 0.25
STACK_ARGS = ("--register", "stars")
DEFAULT_N = (100, 300, 1000)
MIB = 1024**2
Log = Callable[[str], None]


# -- the frames ------------------------------------------------------------------------------


def _pad(n_frames: int) -> int:
    """Margin of the star field around the frame: the largest excursion of a corner."""
    half = math.hypot(HEIGHT, WIDTH) / 2
    turn = 2 * half * math.sin(math.radians(ROTATION_DEG_PER_FRAME * n_frames) / 2)
    return math.ceil(math.hypot(MAX_DRIFT_PX, MAX_DRIFT_PX) + turn + 16)


def star_field(pad: int) -> dict[str, Any]:
    """Stars on a canvas ``pad`` px wider than the frame on every side (canvas pixels):
    positions, peaks (ADU) and colours (R, G, B factors, G = 1)."""
    import numpy as np

    rng = np.random.default_rng([SEED, 1])
    h, w = HEIGHT + 2 * pad, WIDTH + 2 * pad
    n = round(N_STARS * h * w / (HEIGHT * WIDTH))
    colour = np.ones((n, 3))
    colour[:, 0] = rng.uniform(0.5, 1.6, n)  # red over green
    colour[:, 2] = rng.uniform(0.4, 1.3, n)  # blue over green
    return {
        "x": rng.uniform(0, w, n),
        "y": rng.uniform(0, h, n),
        "peak": 10.0 ** rng.uniform(2.0, 4.0, n),
        "colour": colour,
    }


def frame_truth(i: int) -> dict[str, float]:
    """Frame ``i``'s true placement: ``dx``, ``dy`` (px) and ``angle_deg`` (seeded per frame)."""
    import numpy as np

    dx, dy = np.random.default_rng([SEED, 2, i]).uniform(-MAX_DRIFT_PX, MAX_DRIFT_PX, 2)
    return {"dx": float(dx), "dy": float(dy), "angle_deg": ROTATION_DEG_PER_FRAME * i}


def _frame_xy(stars: dict[str, Any], t: dict[str, float], pad: int) -> tuple[Any, Any]:
    """The stars' positions in a frame: the canvas turned by ``angle_deg`` about the
    frame's centre and moved by ``dx``, ``dy``."""
    a = math.radians(t["angle_deg"])
    c, s = math.cos(a), math.sin(a)
    cx, cy = (WIDTH - 1) / 2, (HEIGHT - 1) / 2
    u, v = stars["x"] - pad - cx - t["dx"], stars["y"] - pad - cy - t["dy"]
    return c * u + s * v + cx, -s * u + c * v + cy  # inverse rotation: canvas -> frame


def render_frame(
    stars: dict[str, Any], t: dict[str, float], pad: int, mosaic: bool = True, channel: int = 1
) -> Any:
    """Noiseless frame (float32, ADU): sky plus the stars at the frame's pixels.

    ``mosaic``: each pixel sees its GRBG filter's colour of each star; else every
    pixel sees colour ``channel`` (the truth of one plane). Each star is drawn in
    a small window only.
    """
    import numpy as np

    sigma = FWHM_PX / (2 * math.sqrt(2 * math.log(2)))
    r = math.ceil(WINDOW_SIGMAS * sigma)
    xs, ys = _frame_xy(stars, t, pad)
    inside = (xs > -r) & (xs < WIDTH + r) & (ys > -r) & (ys < HEIGHT + r)
    xs, ys = xs[inside], ys[inside]
    peak, colour = stars["peak"][inside], stars["colour"][inside]
    off = np.arange(-r, r + 1)
    px = np.floor(xs).astype(np.int64)[:, None, None] + off[None, None, :]  # (n, 1, w)
    py = np.floor(ys).astype(np.int64)[:, None, None] + off[None, :, None]  # (n, w, 1)
    g = np.exp(
        -((px - xs[:, None, None]) ** 2 + (py - ys[:, None, None]) ** 2) / (2 * sigma * sigma)
    )
    if mosaic:
        ch = np.asarray(CFA)[py % 2, px % 2]  # (n, w, w)
        g *= np.take_along_axis(colour[:, None, :], ch.reshape(len(xs), -1, 1), 2).reshape(ch.shape)
    else:
        g *= colour[:, channel, None, None]
    g *= peak[:, None, None]
    px, py = np.broadcast_to(px, g.shape), np.broadcast_to(py, g.shape)
    ok = (px >= 0) & (px < WIDTH) & (py >= 0) & (py < HEIGHT)
    flat = np.bincount((py * WIDTH + px)[ok], g[ok], minlength=HEIGHT * WIDTH)
    return (flat.reshape(HEIGHT, WIDTH) + SKY_ADU).astype(np.float32)


def _write_frame(model: Any, i: int, path: Path) -> None:
    """Noise (Poisson variance as a Gaussian, plus read noise), round to uint16, write."""
    import numpy as np
    from astropy.io import fits

    rng = np.random.default_rng([SEED, 3, i])
    noise = rng.standard_normal(model.shape, dtype=np.float32)
    noise *= np.sqrt(model + np.float32(READ_NOISE_ADU**2))
    model += noise
    data = np.clip(np.rint(model), 0, 65535).astype(np.uint16)
    header = fits.Header()
    header["IMAGETYP"] = "LIGHT"
    header["EXPTIME"] = EXPTIME_S
    header["BAYERPAT"] = (PATTERN, "Bayer pattern of the mosaic")
    header["INSTRUME"] = "synthetic Seestar S50"
    tmp = path.with_suffix(".tmp")
    fits.PrimaryHDU(data, header).writeto(tmp, overwrite=True)  # BITPIX 16, BZERO 32768
    tmp.replace(path)


def prepare_bayer(n_frames: int, root: Path, log: Log | None = None) -> tuple[Path, bool]:
    """Make (or reuse) the ``n_frames`` Seestar-like frames in ``root/bayer_seestar_...``.

    Returns the manifest (the fields :func:`benchmarks.workload.subset_manifest` needs:
    ``files``, ``scales``, ``workload``; and ``truth``: per frame ``dx``, ``dy``,
    ``angle_deg``; ``pad``) and whether the frames were made now.
    """
    import time

    folder = Path(root) / f"bayer_seestar_{n_frames}x{HEIGHT}x{WIDTH}"
    manifest = folder / "manifest.json"
    names = [f"frame_{i:04d}.fits" for i in range(n_frames)]
    pad = _pad(n_frames)
    want = {
        "generator": f"bayer_scaling {GENERATOR_VERSION}",
        "workload": {
            "n_frames": n_frames,
            "height": HEIGHT,
            "width": WIDTH,
            "dtype": "uint16",
            "format": "fits",
            "bayer": PATTERN,
            "seed": SEED,
        },  # fmt: skip
        "files": names,
    }
    frame_bytes = HEIGHT * WIDTH * 2
    if manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} == want and all(
            (folder / n).is_file() and (folder / n).stat().st_size >= frame_bytes for n in names
        ):
            return manifest, False
    manifest.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"generating {n_frames} GRBG frames of {WIDTH}x{HEIGHT} uint16 FITS in {folder}")
    stars = star_field(pad)
    truth = [frame_truth(i) for i in range(n_frames)]
    start = time.perf_counter()
    for i, name in enumerate(names):
        _write_frame(render_frame(stars, truth[i], pad), i, folder / name)
        if log and (i + 1) % 100 == 0:
            log(f"  {i + 1} frames ({time.perf_counter() - start:.0f} s)")
    data = {**want, "scales": [1.0] * n_frames, "truth": {"pad": pad, "frames": truth}}
    manifest.write_text(json.dumps(data, indent=1))
    return manifest, True


# -- the images ------------------------------------------------------------------------------


def measure_fwhm(image: Any, max_value: float = 50000.0) -> dict[str, Any]:
    """Median star FWHM (px) of an image by ``sep``: twice the half-flux radius of the
    isolated (no close neighbour), unflagged stars with a peak below ``max_value``."""
    import numpy as np
    import sep

    data = np.ascontiguousarray(np.nan_to_num(image, nan=0.0), dtype=np.float64)
    bkg = sep.Background(data)
    data = data - bkg.back()
    objs = sep.extract(data, 10.0, err=bkg.globalrms, minarea=5)
    x, y = objs["x"], objs["y"]
    close = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(close, np.inf)
    keep = (objs["flag"] == 0) & (objs["peak"] < max_value) & (close.min(axis=1) > 15)
    keep &= (x > 20) & (x < data.shape[1] - 20) & (y > 20) & (y < data.shape[0] - 20)
    if not keep.any():
        return {"fwhm_px": None, "n_stars": 0}
    r, _ = sep.flux_radius(data, x[keep], y[keep], np.full(keep.sum(), 6.0), 0.5, subpix=5)
    return {"fwhm_px": float(np.median(2 * r)), "n_stars": int(keep.sum())}


def truth_fwhm(manifest: Path) -> dict[str, Any]:
    """The FWHM measurement on a noiseless green render of frame 0 at full resolution."""
    data = json.loads(Path(manifest).read_text())
    pad = data["truth"]["pad"]
    model = render_frame(star_field(pad), data["truth"]["frames"][0], pad, mosaic=False)
    return measure_fwhm(model - SKY_ADU)


def check_image(path: Path, n_frames: int) -> dict[str, Any]:
    """An output image's planes, ``count`` max and green-plane FWHM."""
    import numpy as np
    from astropy.io import fits

    out: dict[str, Any] = {}
    with fits.open(path) as hdul:
        out["hdus"] = [h.name for h in hdul]
        image = np.asarray(hdul[0].data, dtype=np.float32)
        out["image_shape"] = list(image.shape)
        out["n_planes"] = image.shape[0] if image.ndim == 3 else 1
        if "COUNT" in hdul:
            out["count_max"] = int(np.nanmax(hdul["COUNT"].data))
    green = image[1] if image.ndim == 3 else image
    out.update({f"green_{k}": v for k, v in measure_fwhm(green).items()})
    out["rgb"] = out["n_planes"] == 3
    out["count_ok"] = out.get("count_max") == n_frames
    return out


# -- the runs -------------------------------------------------------------------------------


class ProcSampler(threading.Thread):
    """Samples this process's children every ``interval`` s (Linux ``/proc``): the
    largest ``RssAnon`` and ``RssFile`` (bytes) and number of open files seen.

    ``VmHWM`` counts the pages of memory-mapped files that a process touched
    (clean pages of the page cache, which the kernel can drop) with its own
    memory; the samples tell the two apart. Use as a context manager.
    """

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval, self.parent = interval, os.getpid()
        self.peak = {"rss_anon_bytes": 0, "rss_file_bytes": 0, "open_files": 0, "samples": 0}
        self._stop_event = threading.Event()

    def _children(self) -> list[str]:
        kids = []
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    stat = Path(entry.path, "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.parent:
                    kids.append(entry.path)
        return kids

    def _sample(self) -> None:
        for proc in self._children():
            try:
                fields = dict(
                    line.split(":", 1) for line in Path(proc, "status").read_text().splitlines()
                )
                n_fds = len(os.listdir(Path(proc, "fd")))
            except (OSError, ValueError):
                continue
            for key, name in (("rss_anon_bytes", "RssAnon"), ("rss_file_bytes", "RssFile")):
                if name in fields:
                    kib = int(fields[name].split()[0])
                    self.peak[key] = max(self.peak[key], kib * 1024)
            self.peak["open_files"] = max(self.peak["open_files"], n_fds)
            self.peak["samples"] += 1

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self._sample()

    def __enter__(self) -> ProcSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join()


def _workload(n: int) -> Workload:
    """The harness's description of the N-frame set (its size and pixel type)."""
    return Workload(n_frames=n, height=HEIGHT, width=WIDTH, dtype="uint16")


def _linear(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Marginal seconds per frame between consecutive N, and whether they agree."""
    ok = [p for p in points if p.get("ok")]
    marginal = [
        (b["wall_s"] - a["wall_s"]) / (b["n"] - a["n"]) for a, b in zip(ok, ok[1:], strict=False)
    ]
    if not marginal:
        return {"marginal_s_per_frame": [], "linear": None}
    mean = sum(marginal) / len(marginal)
    spread = max(abs(m - mean) for m in marginal) / mean if mean > 0 else math.inf
    return {"marginal_s_per_frame": marginal, "spread": spread,
            "linear": spread <= LINEAR_TOLERANCE}  # fmt: skip


def run_bayer_scaling(
    ns: Sequence[int],
    root: Path,
    memory_limit: str = "1GiB",
    keep: bool = False,
    warmup: bool = True,
    log: Log = _stderr,
) -> dict[str, Any]:
    """Generate the frames, stack each N in a fresh process, check the images."""
    ns = sorted(set(ns))
    root = Path(root).resolve()
    manifest, generated = prepare_bayer(max(ns), root, log)
    outdir = root / "results_bayer"
    outdir.mkdir(parents=True, exist_ok=True)
    subsets = {n: subset_manifest(manifest, n) for n in ns}
    if warmup:  # numba's caches, the imports' .pyc: untimed
        tiny = subset_manifest(manifest, 3)
        log("warm-up: 3 frames")
        warm = Job("stackengine", tiny, _workload(3), "warmup", stack_args=STACK_ARGS)
        run_jobs([warm], outdir, memory_limit, log=lambda _: None)
    available = available_bytes()
    cache = page_cache(manifest_files(subsets[max(ns)]), available, True, False)
    log(f"page cache: {cache}")
    runs = []
    for n in ns:  # one at a time, each sampled
        job = Job("stackengine", subsets[n], _workload(n), f"n{n}", stack_args=STACK_ARGS)
        with ProcSampler() as sampler:
            runs += run_jobs([job], outdir, memory_limit, 1, None, log, available)
        runs[-1]["sampled"] = sampler.peak
    bound = parse_bytes(memory_limit) + RSS_SLACK_BYTES
    points = []
    for n, rec in zip(ns, runs, strict=True):
        p = {"n": n, "ok": bool(rec.get("ok")), "run": rec}
        if p["ok"]:
            p.update(
                wall_s=rec["wall_s"],
                s_per_frame=rec["wall_s"] / n,
                cpu_s=rec["cpu_s"],
                peak_rss_mib=rec["peak_rss_bytes"] / MIB,
                rss_ok=rec["peak_rss_bytes"] <= bound,
                other_cpu_s=rec.get("other_cpu_s"),
                sampled=rec["sampled"],
                image=check_image(Path(rec["out"]), n),
            )
            log(f"N={n}: image {p['image']}")
        else:
            p["error"] = rec.get("error")
        points.append(p)
    if not keep:
        for p in points:
            Path(p["run"].get("out", "")).unlink(missing_ok=True)
    return {
        "benchmark": "bayer_scaling",
        "data_dir": str(manifest.parent),
        "generated": generated,
        "memory_limit": memory_limit,
        "rss_bound_mib": bound / MIB,
        "page_cache": cache,
        "command": "stackengine stack FRAMES --register stars --memory-limit "
        f"{memory_limit} -o OUT.fits --overwrite (sigma 3/3 median mad_std, 5 iterations, mean)",
        "truth": truth_fwhm(manifest),
        "points": points,
        "linearity": _linear(points),
    }


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_bayer_scaling(report: dict[str, Any]) -> str:
    """The table of a report of :func:`run_bayer_scaling`."""
    lines = [
        f"Bayer scaling: GRBG {WIDTH}x{HEIGHT} uint16 FITS, {report['command']}",
        f"frames in {report['data_dir']}; page cache: {report['page_cache']}",
        "",
        f"{'N':>5} {'wall s':>8} {'s/frame':>8} {'CPU s':>8} {'peak RSS MiB':>13} "
        f"{'RSS ok':>7} {'anon MiB':>9} {'file MiB':>9} {'open files':>10} {'planes':>6} "
        f"{'count max':>9} {'FWHM G px':>9} {'others CPU s':>12}",
    ]
    for p in report["points"]:
        if not p["ok"]:
            lines.append(f"{p['n']:>5} FAILED: {p.get('error')}")
            continue
        im, sam = p["image"], p.get("sampled") or {}
        anon, file = sam.get("rss_anon_bytes", 0), sam.get("rss_file_bytes", 0)
        lines.append(
            f"{p['n']:>5} {p['wall_s']:>8.1f} {p['s_per_frame']:>8.3f} {p['cpu_s']:>8.1f} "
            f"{p['peak_rss_mib']:>13.0f} {'yes' if p['rss_ok'] else 'NO':>7} "
            f"{anon / MIB:>9.0f} {file / MIB:>9.0f} {sam.get('open_files', 0):>10d} "
            f"{im['n_planes']:>6} {_fmt(im.get('count_max'), 'd'):>9} "
            f"{_fmt(im.get('green_fwhm_px'), '.2f'):>9} {_fmt(p.get('other_cpu_s'), '.1f'):>12}"
        )
    lin = report["linearity"]
    marg = ", ".join(f"{m:.3f}" for m in lin["marginal_s_per_frame"]) or "-"
    state = {True: "yes", False: "NO", None: "-"}[lin["linear"]]
    lines += [
        "",
        f"truth FWHM (noiseless green render, same measurement): "
        f"{_fmt(report['truth']['fwhm_px'], '.2f')} px",
        f"RSS bound: memory_limit {report['memory_limit']} + 256 MiB = "
        f"{report['rss_bound_mib']:.0f} MiB",
        f"marginal s/frame between consecutive N: {marg}; linear (within "
        f"{LINEAR_TOLERANCE:.0%}): {state}",
        "peak RSS: VmHWM of the child (and ru_maxrss of its children), which counts the "
        "touched pages of memory-mapped frames; anon / file MiB and open files: the largest "
        "RssAnon, RssFile and fd count in samples every 0.5 s",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bayer_scaling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--n", type=int, nargs="+", default=list(DEFAULT_N), help="frame counts")
    p.add_argument("--dir", default="bench_data", help="folder of the frames and results")
    p.add_argument("--memory-limit", default="1GiB")
    p.add_argument("--json", help="write the report as JSON")
    p.add_argument("--keep", action="store_true", help="keep the stacked images")
    p.add_argument("--no-warmup", action="store_true")
    args = p.parse_args(argv)
    if min(args.n) < 3:
        p.error("--n: each frame count must be >= 3")
    report = run_bayer_scaling(args.n, Path(args.dir), args.memory_limit, args.keep,
                               not args.no_warmup)  # fmt: skip
    print(format_bayer_scaling(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    ok = all(p["ok"] and p["rss_ok"] for p in report["points"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
