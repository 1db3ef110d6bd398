"""Calibration mode: a calibrated stack timed against a plain one, same frames, same rejection.

``python -m benchmarks --calibrate [--calibration-frames 5]`` (issue 15): for the
chosen workload (default the standard 50 x 4096^2 float32 FITS; any preset, dtype
or format) the harness

1. makes master bias, dark and flat FITS files beside the frames, in
   ``DIR/<workload>/calibration_r<R>/`` (untimed as far as the ratio goes; the
   times are reported): ``R`` synthetic raw bias, dark and flat frames each
   (:func:`raw_frame`; FITS in the workload's pixel type, seeded, EXPTIME 60 s
   for darks as for the lights, 1 s for flats), combined by the command line as a
   user would: ``stackengine master bias RAW_BIAS... -o bias.fits``, ``stackengine
   master dark RAW_DARK... --bias bias.fits -o dark.fits``, ``stackengine master
   flat RAW_FLAT... --bias bias.fits -o flat.fits`` (the defaults: sigma 3/3 +
   mean; the flat normalized to mean 1). The raw frames are deleted afterwards
   (kept with ``--keep``); the masters are reused while ``masters.json`` matches;
2. times, alternating in one run (plain, calibrated, plain, calibrated, ...),
   each method (default ``stackengine``) on the plain frames and with the
   masters: for stackengine ``stackengine stack FRAMES -o OUT.fits`` against
   ``stackengine stack FRAMES --bias B --dark D --flat F -o OUT.fits``, the same
   rejection as the standard mode (sigma 3/3 about the median by mad_std, 5
   iterations, mean), each a fresh process, ``--repeat`` times, medians; for
   ``ccdproc``/``ccdproc-tuned`` (optional peers) ``ccdproc.ccd_process`` per frame
   (bias, dark with EXPTIME, flat over its mean), the reduced frames written to a
   temporary folder (as a ccdproc user does), then the same ``ccdproc.combine``
   as the plain run;
3. checks stackengine's calibrated image: bit-identical with another tile size
   (``memory_limit`` / 8) and with the distributed scheduler (``--workers 2``),
   one untimed run each;
4. compares the images: the plain one with the truth and with the in-harness
   astropy reference as in the standard mode; the calibrated one with the same
   computed on the calibrated frames (a band of rows: numpy's ``(frame - bias -
   dark) / (flat / mean(flat))`` in float64 stored as float32, then
   ``astropy.stats.sigma_clip`` + mean), and, *uncalibrated* again (``image x
   flat / mean(flat) + bias + dark``), with the noiseless truth (the lights hold
   no bias, dark or flat: they are the standard frames, reused);
5. the targets: calibrated wall / plain wall <= 1.25 (medians, whole process)
   and the calibrated stack's peak RSS <= memory_limit + 256 MiB.

Imports only the standard library at module level.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .accuracy import RESIDUAL_SIGMAS, deviation, load_image, truth_accuracy
from .checks import check
from .evaluate import band_rows, compare_astropy
from .frameio import load_cube
from .methods import CALIBRATED_METHODS, parse_bytes
from .runner import REPO, Job, _stderr, drop_results, method_info, run_facts, run_jobs, warm_up
from .stats import summarize_runs
from .system import available_bytes, page_cache
from .workload import Workload, _stored, cosmic_ray_mask, manifest_files, prepare_workload
from .workload import truth_image as plain_truth

__all__ = [
    "CALIBRATED_METHODS",
    "DEFAULT_RAW_FRAMES",
    "KINDS",
    "MASTERS_VERSION",
    "RATIO_TARGET",
    "RSS_SLACK_BYTES",
    "calibrate_cube",
    "calibration_checks",
    "calibration_manifest",
    "calibration_markdown",
    "calibration_plot",
    "format_calibration",
    "load_masters",
    "prepare_masters",
    "raw_frame",
    "run_calibration",
]

#: Bump when the raw calibration frames or the way the masters are made change.
MASTERS_VERSION = 1
#: Raw frames per kind combined into each master (``--calibration-frames``).
DEFAULT_RAW_FRAMES = 5
KINDS = ("bias", "dark", "flat")
#: Issue 15: a calibrated stack's wall time at most this times the plain stack's.
RATIO_TARGET = 1.25
#: Issue 15: the calibrated stack's peak RSS at most memory_limit + this.
RSS_SLACK_BYTES = 256 * 1024**2
LABELS = ("plain", "calibrated")
#: The raw frames' signal (ADU): bias pedestal, column pattern, read noise; dark current
#: per 60 s, hot pixels; flat level and vignetting.
BIAS_LEVEL, BIAS_COLUMNS, READ_NOISE = 200.0, 3.0, 8.0
DARK_EXPTIME, DARK_LEVEL, HOT_FRACTION = 60.0, 3.0, 1e-3
FLAT_LEVEL, FLAT_VIGNETTING, FLAT_PRNU, FLAT_EXPTIME = 20000.0, 0.15, 0.01, 1.0
GIB = 1024**3


# -- raw frames and masters ------------------------------------------------------------------


def _patterns(wl: Workload) -> dict[str, Any]:
    """The noiseless bias, dark current (per DARK_EXPTIME) and flat response, float32."""
    import numpy as np

    h, w = wl.height, wl.width
    rng = np.random.default_rng([wl.seed, 1 << 31, 0])
    bias = np.empty((h, w), dtype=np.float32)
    bias[:] = BIAS_LEVEL + BIAS_COLUMNS * rng.standard_normal(w, dtype=np.float32)
    bias += np.linspace(0.0, 5.0, h, dtype=np.float32)[:, None]  # a slow gradient along y
    dark = np.full((h, w), DARK_LEVEL, dtype=np.float32)
    n_hot = max(1, round(HOT_FRACTION * h * w))
    dark.reshape(-1)[rng.integers(0, h * w, n_hot)] += rng.uniform(50, 2000, n_hot).astype(
        np.float32
    )
    yy = (np.arange(h, dtype=np.float32) - (h - 1) / 2) / (h / 2)
    xx = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / (w / 2)
    r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / 2  # 1 in the corners
    flat = (1 - FLAT_VIGNETTING * r2).astype(np.float32)
    flat *= 1 + FLAT_PRNU * rng.standard_normal((h, w), dtype=np.float32)
    return {"bias": bias, "dark": dark, "flat": flat}


def raw_frame(wl: Workload, kind: str, i: int, patterns: dict[str, Any] | None = None) -> Any:
    """Raw calibration frame ``i`` of ``kind``, as stored (the workload's pixel type).

    bias: ``bias + N(0, READ_NOISE)``; dark: ``bias + dark + N(0, READ_NOISE)``
    (60 s, as the lights); flat: ``bias + FLAT_LEVEL x flat + N(0, sqrt(FLAT_LEVEL x
    flat))`` (1 s). ``bias`` has a per-column pattern and a slow gradient, ``dark``
    hot pixels on 0.1 % of the pixels, ``flat`` a vignetting of 15 % in the
    corners and 1 % pixel response. Seeded per kind and frame.
    """
    import numpy as np

    p = patterns if patterns is not None else _patterns(wl)
    rng = np.random.default_rng([wl.seed, 1 << 31, 1 + KINDS.index(kind), i])
    noise = rng.standard_normal((wl.height, wl.width), dtype=np.float32)
    if kind == "flat":
        signal = np.float32(FLAT_LEVEL) * p["flat"]
        noise *= np.sqrt(signal)
        data = p["bias"] + signal
    else:
        noise *= np.float32(READ_NOISE)
        data = p["bias"] + p["dark"] if kind == "dark" else p["bias"].copy()
    data += noise
    return _stored(wl, data)


def _write_raw(wl: Workload, kind: str, i: int, path: Path, patterns: dict[str, Any]) -> None:
    from astropy.io import fits

    header = fits.Header()
    header["IMAGETYP"] = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT"}[kind]
    header["EXPTIME"] = {"bias": 0.0, "dark": DARK_EXPTIME, "flat": FLAT_EXPTIME}[kind]
    fits.PrimaryHDU(raw_frame(wl, kind, i, patterns), header).writeto(path, overwrite=True)


def _masters_key(wl: Workload, n_raw: int) -> dict[str, Any]:
    fields = asdict(wl)
    del fields["n_frames"], fields["format"]  # the raw frames are FITS, any number of lights
    return {"version": MASTERS_VERSION, "workload": fields, "raw_frames": n_raw}


def prepare_masters(
    wl: Workload,
    manifest: Path,
    n_raw: int = DEFAULT_RAW_FRAMES,
    keep_raw: bool = False,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Path], dict[str, Any]]:
    """Make (or reuse) the master bias, dark and flat of ``wl`` beside its frames.

    In ``manifest.parent / f"calibration_r{n_raw}"``: ``n_raw`` raw frames of each
    kind (:func:`raw_frame`) combined by ``stackengine master`` (a fresh process
    each, as a user runs it; see the module). Returns the masters' paths and what
    was done: ``generated``, ``raw_frames``, ``folder``, ``make_s`` (seconds per
    step: ``raw`` for writing the raw frames, then one per master).

    Raises
    ------
    RuntimeError
        ``stackengine master`` failed (its last lines of stderr).
    """
    folder = Path(manifest).parent / f"calibration_r{n_raw}"
    record = folder / "masters.json"
    paths = {k: folder / f"master_{k}.fits" for k in KINDS}
    want = _masters_key(wl, n_raw)
    info: dict[str, Any] = {"folder": str(folder), "raw_frames": n_raw, "how": _HOW}
    if record.exists() and all(p.is_file() for p in paths.values()):
        have = json.loads(record.read_text())
        if {k: have.get(k) for k in want} == want:
            return paths, {**info, "generated": False, "make_s": have.get("make_s", {})}
    record.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"making master bias, dark and flat from {n_raw} raw frames each in {folder}")
    make_s: dict[str, float] = {}
    start = time.perf_counter()
    patterns = _patterns(wl)
    raw: dict[str, list[Path]] = {}
    for kind in KINDS:
        raw[kind] = [folder / f"raw_{kind}_{i:03d}.fits" for i in range(n_raw)]
        for i, path in enumerate(raw[kind]):
            _write_raw(wl, kind, i, path, patterns)
    del patterns
    make_s["raw"] = time.perf_counter() - start
    extra = {"bias": [], "dark": ["--bias", str(paths["bias"])]}
    extra["flat"] = ["--bias", str(paths["bias"])]
    for kind in KINDS:
        cmd = [sys.executable, "-m", "stackengine", "master", kind, *map(str, raw[kind])]
        cmd += ["-o", str(paths[kind]), "--overwrite", "--quiet", *extra[kind]]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        make_s[kind] = time.perf_counter() - start
        if proc.returncode != 0 or not paths[kind].is_file():
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"stackengine master {kind} failed: {tail}")
    if not keep_raw:
        for path in (p for files in raw.values() for p in files):
            path.unlink()
    record.write_text(json.dumps({**want, "make_s": make_s}, indent=1))
    return paths, {**info, "generated": True, "make_s": make_s}


_HOW = (
    "synthetic raw bias/dark/flat FITS frames written by the harness, combined by "
    "'stackengine master bias|dark|flat RAW... -o MASTER.fits' (dark and flat with "
    "--bias; sigma 3/3 + mean; the flat normalized to mean 1)"
)


def calibration_manifest(manifest: Path, masters: dict[str, Path]) -> Path:
    """The frames' manifest with the masters (``"calibration"``), next to it.

    A child given this manifest calibrates (:func:`benchmarks.runner.run_one`
    passes the masters to the method as ``options["calibration"]``). Written as
    ``manifest_calibrated.json``; returns its path.
    """
    manifest = Path(manifest)
    data = json.loads(manifest.read_text())
    data["calibration"] = {k: str(Path(p).resolve()) for k, p in masters.items()}
    path = manifest.with_name("manifest_calibrated.json")
    path.write_text(json.dumps(data, indent=1))
    return path


def load_masters(masters: dict[str, Path], rows: slice | None = None) -> dict[str, Any]:
    """The masters' images (float32; rows ``rows``) and ``flat_mean``.

    ``flat_mean`` is the flat's mean over its finite pixels not below 0.1 x its
    median (stackengine's ``flat_min`` default), in float64, over the whole flat.
    """
    import numpy as np

    out = {k: load_image(Path(p), np.float32) for k, p in masters.items()}
    flat = out["flat"].astype(np.float64)
    finite = flat[np.isfinite(flat)]
    out["flat_mean"] = float(finite[finite >= 0.1 * np.median(finite)].mean())
    if rows is not None:
        out.update({k: out[k][rows] for k in KINDS})
    return out


def calibrate_cube(cube: Any, m: dict[str, Any]) -> Any:
    """``(cube - bias - dark) / (flat / flat_mean)`` frame by frame in float64, stored back
    into ``cube`` (float32); returns ``cube``.

    The arithmetic of ``ccdproc.ccd_process`` (subtract_bias, subtract_dark without
    scaling, flat_correct over the flat's mean) in that order.
    """
    import numpy as np

    bias, dark = (m[k].astype(np.float64) for k in ("bias", "dark"))
    flat = m["flat"].astype(np.float64) / m["flat_mean"]
    for frame in cube:
        frame[...] = (frame.astype(np.float64) - bias - dark) / flat
    return cube


def _uncalibrate(image: Any, m: dict[str, Any]) -> Any:
    """The calibrated image mapped back to the lights' units (float64): what a plain
    stack of the lights gives, for the comparison with the workload's truth."""
    import numpy as np

    flat = m["flat"].astype(np.float64) / m["flat_mean"]
    return image.astype(np.float64) * flat + m["bias"] + m["dark"]


# -- running -----------------------------------------------------------------------------------


def _tiny_masters(wl: Workload, root: Path, log: Callable[[str], None]) -> Path:
    """The warm-up's tiny frame set (3 x 64^2) with masters; its calibrated manifest."""
    tiny = replace(wl, n_frames=3, height=64, width=64)
    manifest, _ = prepare_workload(tiny, root)
    masters, _ = prepare_masters(tiny, manifest, n_raw=3, log=None)
    return calibration_manifest(manifest, masters)


def _identity_runs(
    manifest: Path, wl: Workload, outdir: Path, memory_limit: str, log: Callable[[str], None]
) -> tuple[list[Job], dict[str, str]]:
    small = f"{max(1, parse_bytes(memory_limit) // 8)}"
    jobs = [
        Job("stackengine", manifest, wl, "calibrated-tiles", memory_limit=small),
        Job("stackengine", manifest, wl, "calibrated-workers", stack_args=("--workers", "2")),
    ]
    what = {
        "calibrated-tiles": f"memory_limit={small} bytes (smaller tiles), threads",
        "calibrated-workers": f"--workers 2 (dask.distributed LocalCluster), memory_limit="
        f"{memory_limit}",
    }
    return jobs, what


def _identity(runs: list[dict[str, Any]], reference: dict[str, Any], what: dict[str, str]):
    """Is each identity run's image bit-identical (NaN too) to the timed calibrated image?"""
    import numpy as np

    out: dict[str, Any] = {}
    if not reference.get("ok"):
        return out
    ref = load_image(Path(reference["out"]), np.float32)
    for rec in runs:
        entry: dict[str, Any] = {"setting": what[rec["label"]], "ok": bool(rec.get("ok"))}
        if rec.get("ok"):
            img = load_image(Path(rec["out"]), np.float32)
            same = img.shape == ref.shape and np.array_equal(img, ref, equal_nan=True)
            entry["identical"] = bool(same)
            if not same and img.shape == ref.shape:
                entry["n_differ"] = int(np.count_nonzero(~((img == ref) | (img != img))))
        else:
            entry["error"] = rec.get("error") or rec.get("skipped")
        out[rec["label"]] = entry
    return out


def _calibrated_accuracy(
    row: dict[str, Any], wl: Workload, manifest: Path, masters: dict[str, Path], band: slice,
    hits: Any, truth: Any, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Set ``row["vs_astropy"]`` and ``row["truth"]`` of a calibrated summary; the reference."""
    import numpy as np
    from astropy.stats import sigma_clip

    m = load_masters(masters)
    image = load_image(Path(row["out"]), np.float32)
    mb = {**m, **{k: m[k][band] for k in KINDS}}
    log(f"in-harness reference of the calibrated image on rows {band.start}:{band.stop}")
    cube = calibrate_cube(load_cube(manifest_files(manifest), band), mb)
    clipped = sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
    ref = clipped.mean(axis=0).filled(np.nan).astype(np.float32)
    row["vs_astropy"] = deviation(image[band], ref, wl.adu_noise)
    row["truth"] = truth_accuracy(_uncalibrate(image, m), truth, wl.ideal_noise, hits)
    row["truth"]["uncalibrated"] = True
    return {"source": "in-harness astropy, calibrated frames", "rows": [band.start, band.stop]}


def _ratios(runs: list[dict[str, Any]], res: dict[str, dict[str, Any]], m: str) -> dict[str, Any]:
    """Calibrated over plain for method ``m``: medians of wall, work and stack phase, per round."""
    plain, cal = res["plain"][m], res["calibrated"][m]
    if not (plain.get("ok") and cal.get("ok")):
        return {}
    out: dict[str, Any] = {"wall": cal["wall_s"] / plain["wall_s"]}
    out["cpu"] = cal["cpu_s"] / plain["cpu_s"]
    if plain.get("work_s") and cal.get("work_s"):
        out["work"] = cal["work_s"] / plain["work_s"]

    def stack(r: dict[str, Any]) -> float | None:
        phases = r.get("phases_s") or {}
        keys = [k for k in phases if k != "import"]
        return sum(phases[k] for k in keys) if keys else None

    walls: dict[int, dict[str, float]] = {}
    stacks: dict[str, list[float]] = {"plain": [], "calibrated": []}
    for r in runs:
        if r["method"] == m and r.get("ok") and r["label"] in LABELS:
            walls.setdefault(r["repeat"], {})[r["label"]] = r["wall_s"]
            s = stack(r)
            if s is not None:
                stacks[r["label"]].append(s)
    rounds = [w["calibrated"] / w["plain"] for w in walls.values() if len(w) == 2]
    if rounds:
        out["per_round"] = rounds
    if stacks["plain"] and stacks["calibrated"]:
        out["stack"] = statistics.median(stacks["calibrated"]) / statistics.median(stacks["plain"])
    return out


def _state(entry: dict[str, Any]) -> str:
    """An identity run's outcome: identical, its error, or how many pixels differ."""
    if entry.get("identical"):
        return "identical"
    return entry.get("error") or f"DIFFERENT ({entry.get('n_differ')} pixels differ)"


def calibration_checks(
    res: dict[str, dict[str, Any]], ratios: dict[str, Any], subject: str, memory_limit: str,
    identity: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Issue 15's targets for ``subject``: the wall ratio, the calibrated peak RSS, and the
    calibrated image bit-identical across tile sizes and schedulers (when checked)."""
    out: list[dict[str, Any]] = []
    plain, cal = res["plain"].get(subject, {}), res["calibrated"].get(subject, {})
    r = ratios.get(subject) or {}
    if r.get("wall") is not None:
        note = f"{cal['wall_s']:.2f} s / {plain['wall_s']:.2f} s"
        if r.get("per_round"):
            note += f"; per round {min(r['per_round']):.2f} .. {max(r['per_round']):.2f}"
        if r.get("work") is not None:
            note += f"; after imports {r['work']:.2f} x"
        if r.get("stack") is not None:
            note += f"; stack+write phase alone {r['stack']:.2f} x"
        if r.get("cpu") is not None:
            note += f"; CPU time {r['cpu']:.2f} x"
        name = f"{subject} calibrated stack wall / plain stack wall"
        out.append(check(name, r["wall"], RATIO_TARGET, "x", "<=", note=note, issue=15))
    if cal.get("ok"):
        bound = parse_bytes(memory_limit) + RSS_SLACK_BYTES
        note = f"bound = memory_limit {memory_limit} + 256 MiB"
        if plain.get("ok"):
            note += f"; plain stack {plain['peak_rss_bytes'] / GIB:.3f} GiB"
        name = f"{subject} calibrated stack peak RSS"
        out.append(check(name, cal["peak_rss_bytes"] / GIB, bound / GIB, "GiB", "<=", note, 15))
    if identity:
        same = [e.get("identical", False) for e in identity.values()]
        note = "; ".join(f"{e['setting']}: {_state(e)}" for e in identity.values())
        name = f"{subject} calibrated image bit-identical across tile sizes and schedulers"
        value, target = float(sum(same)), float(len(same))
        out.append(check(name, value, target, "runs identical", ">=", note, 15))
    return out


def run_calibration(
    base: Workload,
    methods: Sequence[str],
    root: Path,
    memory_limit: str = "512MiB",
    repeat: int = 1,
    warmup: bool = True,
    keep: bool = False,
    log: Callable[[str], None] | None = None,
    ccdproc_mem_limit: str | int | None = None,
    warm_cache: bool = True,
    cold_cache: bool = False,
    raw_frames: int = DEFAULT_RAW_FRAMES,
    identity: bool = True,
) -> dict[str, Any]:
    """Run every method plain and calibrated on ``base``; returns the report dict.

    ``results["plain"|"calibrated"][method]`` are the summaries (with ``truth`` and
    ``vs_astropy``), ``ratios[method]`` calibrated / plain (``wall``, ``cpu``, ``work``:
    after imports, ``stack``: the phases after the imports, ``per_round``: the wall
    ratio of each round), ``masters``
    what was made, ``identity`` the untimed identity runs (``identity=False`` skips
    them); ``benchmark`` = ``"calibration"``; printed by :func:`format_calibration`.

    Raises
    ------
    ValueError
        A method without a calibrated variant (:data:`CALIBRATED_METHODS`).
    """
    log = log or _stderr
    unknown = [m for m in methods if m not in CALIBRATED_METHODS]
    if unknown or not methods:
        raise ValueError(
            f"--calibrate runs {', '.join(CALIBRATED_METHODS)}; not {', '.join(unknown) or 'none'}"
        )
    root = Path(root).resolve()
    ccd_limit = parse_bytes(ccdproc_mem_limit if ccdproc_mem_limit is not None else memory_limit)
    manifest, generated = prepare_workload(base, root, log=log)
    masters, made = prepare_masters(base, manifest, raw_frames, keep_raw=keep, log=log)
    log("masters: " + ", ".join(f"{k} {p}" for k, p in masters.items()))
    cal_manifest = calibration_manifest(manifest, masters)
    outdir = root / "results"
    outdir.mkdir(parents=True, exist_ok=True)
    available = available_bytes()
    files = [*manifest_files(manifest), *masters.values()]
    cache = page_cache(files, available, warm_cache, cold_cache)
    log(f"page cache: {cache}")
    if warmup:
        warm_up(methods, base, root, outdir, memory_limit, ccd_limit, log)
        tiny = _tiny_masters(base, root, log)
        warm = [Job(m, tiny, base, "warmup_calibrated") for m in methods]
        log("warm-up calibrated: " + ", ".join(methods))
        run_jobs(warm, outdir, memory_limit, 1, ccd_limit, lambda _: None)
    jobs = []
    for m in methods:
        jobs += [Job(m, manifest, base, "plain"), Job(m, cal_manifest, base, "calibrated")]
    runs = run_jobs(jobs, outdir, memory_limit, repeat, ccd_limit, log, available, cold_cache)
    res: dict[str, dict[str, Any]] = {
        label: {
            m: summarize_runs(
                [r for r in runs if r["method"] == m and r["label"] == label], base.mpix_frames
            )
            for m in methods
        }
        for label in LABELS
    }
    subject = "stackengine" if "stackengine" in methods else methods[0]
    checked: dict[str, Any] = {}
    what: dict[str, str] = {}
    if identity and subject == "stackengine":
        id_jobs, what = _identity_runs(cal_manifest, base, outdir, memory_limit, log)
        id_runs = run_jobs(id_jobs, outdir, memory_limit, 1, ccd_limit, log, available)
        checked = _identity(id_runs, res["calibrated"][subject], what)
        runs += id_runs
    log("comparing the images with the truth and with astropy")
    truth, hits = plain_truth(base), cosmic_ray_mask(base)
    for r in res["plain"].values():
        if r.get("ok"):
            r["truth"] = truth_accuracy(Path(r["out"]), truth, base.ideal_noise, hits)
    band = band_rows(base)
    references = {"plain": compare_astropy(res["plain"], base, manifest, None, log)}
    for r in res["calibrated"].values():
        if r.get("ok"):
            references["calibrated"] = _calibrated_accuracy(
                r, base, manifest, masters, band, hits, truth, log
            )
    ratios = {m: _ratios(runs, res, m) for m in methods}
    drop_results(outdir, keep)
    info = method_info(methods, memory_limit, ccd_limit)
    params = {m: info[m]["params"] for m in methods}
    cal_params = {m: _calibrated_params(m, params[m]) for m in methods}
    return {
        "benchmark": "calibration",
        "workload": asdict(base),
        "preset": _preset(base),
        "data_dir": str(manifest.parent),
        "generated": generated,
        "masters": {**made, "files": {k: str(p) for k, p in masters.items()}},
        **run_facts(cache, memory_limit, ccd_limit, repeat),
        "methods": list(methods),
        "params": params,
        "calibrated_params": cal_params,
        "subject": subject,
        "results": res,
        "ratios": ratios,
        "references": references,
        "truth": {
            "ideal_noise_adu": base.ideal_noise,
            "residual_sigmas": RESIDUAL_SIGMAS,
            "threshold_adu": RESIDUAL_SIGMAS * base.ideal_noise,
            "n_cr_pixels": int(hits.sum()),
        },
        "identity": checked,
        "checks": calibration_checks(res, ratios, subject, memory_limit, checked),
        "runs": runs,
    }


def _preset(wl: Workload) -> str | None:
    from .runner import preset_of

    return preset_of(wl)


def _calibrated_params(method: str, plain: str) -> str:
    if method == "stackengine":
        return plain.replace(
            "stackengine stack FRAMES -o", "stackengine stack FRAMES --bias BIAS --dark DARK "
            "--flat FLAT -o"
        )  # fmt: skip
    return (
        "per frame: ccdproc.ccd_process(CCDData.read(frame), master_bias=BIAS, dark_frame=DARK, "
        "master_flat=FLAT, exposure_key='EXPTIME', exposure_unit=u.s) written to a temporary "
        "folder; then " + plain
    )


# -- printing ----------------------------------------------------------------------------------


def format_calibration(report: dict[str, Any]) -> str:
    """The human-readable tables of a calibration report (see :func:`run_calibration`)."""
    from .report import format_checks, truth_cells, wall_range

    wl = Workload(**report["workload"])
    made = report["masters"]
    lines = [
        f"calibration benchmark: {wl.describe()}, memory_limit={report['memory_limit']}, "
        f"{report['cpu_count']} CPUs; frames in {report['data_dir']}",
        f"preset: {report.get('preset') or '-'}; page cache: {report['page_cache']}; "
        f"{report['repeat']} run(s) each, plain and calibrated alternating; medians shown",
        "",
    ]
    width = max(12, *(len(m) + 1 for m in report["methods"]))
    head = f"{'method':<{width}} {'variant':<11} {'wall s':>8} {'CPU s':>8} {'peak RSS GiB':>13}"
    head += f" {'Mpix-frames/s':>14} {'vs plain':>9} {'max|d| ref':>11} {'differ':>9}"
    lines.append(head + f" {'residuals':>10} {'CR left':>8} {'noise/ideal':>11}"
                 f" {'wall range':>12} {'others CPU s':>12}")  # fmt: skip
    for m in report["methods"]:
        for label in LABELS:
            r = report["results"][label][m]
            if not r["ok"]:
                state = r.get("skipped") or f"FAILED: {r.get('error')}"
                lines.append(f"{m:<{width}} {label:<11} {state}")
                continue
            ratio = (report["ratios"].get(m) or {}).get("wall") if label == "calibrated" else 1.0
            acc = r.get("vs_astropy") or {}
            dev = f"{acc['max_abs']:>11.3g} {acc['frac_differ']:>9.2e}" if acc else f"{'-':>21}"
            ratio_cell = "-" if ratio is None else f"{ratio:.2f}x"
            other = r.get("other_cpu_s")
            lines.append(
                f"{m:<{width}} {label:<11} {r['wall_s']:>8.2f} {r['cpu_s']:>8.2f} "
                f"{r['peak_rss_bytes'] / GIB:>13.3f} {r['mpix_frames_per_s']:>14.1f} "
                f"{ratio_cell:>9} {dev} {truth_cells(r)} {wall_range(r):>12} "
                f"{'-' if other is None else format(other, '.1f'):>12}"
            )
    lines += ["", "phases (s, median run):"]
    for m in report["methods"]:
        for label in LABELS:
            r = report["results"][label][m]
            if r["ok"]:
                phases = ", ".join(f"{k} {v:.3f}" for k, v in (r.get("phases_s") or {}).items())
                lines.append(f"  {m} {label}: {phases}")
    ref = report.get("references") or {}
    lines += [
        "",
        "vs plain = calibrated wall / plain wall (medians, whole process). max|d| ref, differ:",
        "against astropy sigma_clip(sigma=3, maxiters=5, median, mad_std).mean on a band of rows"
        + (" {}:{}".format(*ref["plain"]["rows"]) if ref.get("plain") else "")
        + " (plain: of the frames; calibrated: of numpy's (frame - bias - dark) / (flat /",
        "mean(flat)) in float64, stored as float32); differ = fraction with |image - ref| >",
        "1e-6 |ref|.",
        "residuals, CR left, noise/ideal: against the noiseless truth as in the standard report;",
        "the calibrated image is first mapped back (image x flat / mean(flat) + bias + dark):",
        "the lights hold no bias, dark or flat, so that is what a plain stack of them gives.",
        "others CPU s = CPU time the rest of the machine used during the run (/proc/stat).",
        "",
        f"masters: {made['how']}; {made['raw_frames']} raw frames each, "
        + ("made now" if made.get("generated") else "reused")
        + (
            " (" + ", ".join(f"{k} {v:.1f} s" for k, v in made.get("make_s", {}).items()) + ")"
            if made.get("make_s")
            else ""
        ),
        *(f"  {k}: {p}" for k, p in made["files"].items()),
        "",
        "parameters:",
    ]
    for m in report["methods"]:
        lines += [f"  {m} plain: {report['params'][m]}"]
        lines += [f"  {m} calibrated: {report['calibrated_params'][m]}"]
    if report.get("identity"):
        lines += ["", "identity (untimed runs of the calibrated stack, against the timed image):"]
        for label, e in report["identity"].items():
            lines.append(f"  {label}: {e['setting']}: {_state(e)}")
    if report["checks"]:
        lines += ["", "targets (issue 15):"]
        standard = report.get("preset") == "standard"
        if not standard or wl.dtype != "float32" or wl.format != "fits":
            lines.append("  (set for the standard workload, 50 x 4096^2 float32 FITS: indicative)")
        lines += format_checks(report["checks"])
    return "\n".join(lines)


def calibration_markdown(report: dict[str, Any]) -> list[str]:
    """The calibration report as markdown lines (:func:`benchmarks.markdown.to_markdown`)."""
    from .markdown import _checks, _head, _row, _truth, _wall

    wl = Workload(**report["workload"])
    lines = [
        f"### Calibrated stacks: {wl.describe()}, memory_limit={report['memory_limit']}",
        "",
        f"Preset: {report.get('preset') or '–'}; {report['cpu_count']} CPUs; page cache: "
        f"{report['page_cache']}; {report['repeat']} run(s) each, plain and calibrated "
        "alternating; medians (min–max). Each run is a fresh process on the same files.",
        "",
        *_head(["method", "variant", "wall s (min–max)", "CPU s", "peak RSS GiB"] + [
            "Mpix-frames/s", "vs plain", "max abs dev. vs ref", "differing px", "residuals",
            "CR left", "noise / ideal"
        ], 2),
    ]  # fmt: skip
    for m in report["methods"]:
        for label in LABELS:
            r = report["results"][label][m]
            if not r["ok"]:
                lines.append(_row([f"`{m}`", label, r.get("skipped") or "FAILED", *[""] * 9]))
                continue
            ratio = (report["ratios"].get(m) or {}).get("wall") if label == "calibrated" else 1.0
            acc = r.get("vs_astropy") or {}
            cells = [_wall(r), f"{r['cpu_s']:.2f}", f"{r['peak_rss_bytes'] / GIB:.3f}"]
            cells += [f"{r['mpix_frames_per_s']:.1f}", "–" if ratio is None else f"{ratio:.2f}x"]
            cells += [
                "–" if not acc else f"{acc['max_abs']:.3g}",
                "–" if not acc else f"{acc['frac_differ']:.2e}",
                *_truth(r),
            ]
            lines.append(_row([f"`{m}`", label, *cells]))
    made = report["masters"]
    lines += [
        "",
        "vs plain = calibrated wall / plain wall (medians, whole process). Deviation: against "
        "astropy's sigma_clip + mean on a band of rows (calibrated: of numpy's (frame − bias − "
        "dark) / (flat / mean(flat)), float64 stored as float32). Truth columns: the "
        "calibrated image mapped back (× flat / mean(flat) + bias + dark) against the "
        "noiseless truth.",
        "",
        f"Masters: {made['how']}; {made['raw_frames']} raw frames each.",
        "",
        "**Parameters**",
        "",
    ]
    for m in report["methods"]:
        lines.append(f"- `{m}` plain: {report['params'][m]}")
        lines.append(f"- `{m}` calibrated: {report['calibrated_params'][m]}")
    if report.get("identity"):
        lines += ["", "**Identity** (untimed calibrated runs against the timed image)", ""]
        for label, e in report["identity"].items():
            lines.append(f"- {label}: {e['setting']}: {_state(e)}")
    return lines + _checks(report["checks"])


def calibration_plot(report: dict[str, Any], folder: Path) -> list[Path]:
    """``calibration.png``: wall time and peak RSS, plain and calibrated, per method."""
    from .plots import _bars, _pyplot, _title

    names, rows = [], []
    for m in report["methods"]:
        for label in LABELS:
            r = report["results"][label][m]
            if r["ok"]:
                names.append(f"{m} {label}")
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
    fig.suptitle(f"calibrated vs plain stack: {report['workload']['n_frames']} frames of "
                 + _title(report), fontsize=9)  # fmt: skip
    path = folder / "calibration.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
