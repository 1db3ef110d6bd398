"""Carry out a night's plan: the masters, then each filter's calibrated, registered stack.

Masters are made by :func:`stackengine.master` and written first (each later
master and stack is calibrated by the files written); each group of lights is
registered by its stars on the calibrated frames (:func:`stackengine.register`,
frames that cannot be registered dropped and said), then stacked by
:func:`stackengine.stack` with the calibration, that registration table, the
normalization, weights and rejection of the configuration. Every output is
checked before any pixel is read: an existing file is refused unless
``overwrite``. Warnings raised on the way are collected into the report.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputError
from ..register import RegistrationError
from .model import (
    CONFIG_TOML,
    REPORT_MD,
    REPORT_PNG,
    LightGroup,
    MasterPlan,
    NightPlan,
    NightResult,
    StackStats,
    WrittenFiles,
)

__all__ = ["StackStats", "NightResult", "execute_night", "output_names"]


def output_names(plan: NightPlan) -> list[str]:
    """Every file a run of ``plan`` writes into its folder."""
    names = [m.file for m in plan.masters if not m.given]
    names += [g.file for g in plan.lights]
    if plan.config["output"]["report"]:
        names += [REPORT_PNG, REPORT_MD]
    return [*names, CONFIG_TOML]


def check_outputs(plan: NightPlan, out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any pixel is read, an output folder whose files exist (unless
    ``overwrite``) or that cannot be made."""
    from ..io.atomic import check_output

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a folder")
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise OutputError(f"{out_dir.parent}: output folder does not exist")
        return
    for name in output_names(plan):
        check_output(out_dir / name, overwrite)


def _none(value: Any) -> Any:
    return None if isinstance(value, str) and value in ("none", "auto") else value


def _make_master(m: MasterPlan, plan: NightPlan, files: dict[str, str], out_dir: Path,
                 overwrite: bool) -> Path:  # fmt: skip
    from ..masters import master
    from ..tasks.write import write

    options = dict(plan.config["masters"])
    options["reject"] = _none(options["reject"])
    if len(m.paths) == 1:
        options["reject"] = None  # one frame: nothing to reject (said in the report)
    sections = plan.calibration(m.shape)
    ds = master(m.paths, m.kind, bias=files.get(m.bias or ""), dark=files.get(m.dark or ""),
                dark_scale=m.dark_scale, overscan=sections["overscan"], trim=sections["trim"],
                **options)  # fmt: skip
    return write(ds, out_dir / m.file, overwrite=overwrite, dtype=plan.config["output"]["dtype"])


def _flat(path: str | None, plan: NightPlan) -> Any:
    """The master flat as calibration takes it: its file, or, when the lights' filters
    were not read from the standard cards (``frames.overrides`` of the filter, other
    ``filter_keys``), its pixels without a filter, as the plan matched it already
    (the lights' headers may name the filter otherwise)."""
    from .config import DEFAULTS

    frames = plan.config["frames"]
    standard = frames["filter_keys"] == DEFAULTS["frames"]["filter_keys"]
    if path is None or (standard and "filter" not in frames["overrides"]):
        return path
    import xarray as xr

    from .report import read_image

    image = xr.DataArray(read_image(path), dims=("y", "x"))
    return xr.Dataset({"image": image}, attrs={"inputs": [path], "filter": None})


def _calibration(g: LightGroup, plan: NightPlan, files: dict[str, str]) -> dict[str, Any] | None:
    sections = plan.calibration(g.shape)
    bad = plan.config["calibration"]["bad_pixels"]
    flat = _flat(files.get(g.flat or ""), plan)
    spec = {"overscan": sections["overscan"], "trim": sections["trim"],
            "bias": files.get(g.bias or ""), "dark": files.get(g.dark or ""),
            "dark_scale": bool(g.dark and g.dark_scale), "flat": flat,
            "bad_pixels": None if bad == "none" else bad}  # fmt: skip
    if all(spec[k] is None for k in ("bias", "dark", "flat", "bad_pixels", "trim")) and (
        spec["overscan"] in (None, "none")
    ):
        return None  # nothing to calibrate: the frames as they are
    return spec


def stack_options(g: LightGroup, plan: NightPlan, n: int) -> dict[str, Any]:
    """:func:`stackengine.stack`'s keywords for a group of ``n`` lights (a registration
    table is added by :func:`_stack_group`)."""
    s = plan.config["stack"]
    bayer = {"auto": None, "none": False}.get(s["bayer"], s["bayer"])
    options = dict(
        normalize=_none(s["normalize"]), reject=_none(s["reject"]),
        sigma_lower=s["sigma_lower"], sigma_upper=s["sigma_upper"], maxiters=s["maxiters"],
        center=s["center"], spread=s["spread"], combine=s["combine"],
        weights=_none(s["weights"]), memory_limit=s["memory_limit"],
        reference=_none(s["reference"]), transform=s["transform"],
        interpolation=s["interpolation"], framing=s["framing"], bayer=bayer,
        debayer=s["debayer"],
    )  # fmt: skip
    if n < 2:  # one light: calibrated (and debayered) only
        options.update(normalize=None, reject=None, weights=None, reference=None)
    return options


def _registration(frames: Any, g: LightGroup, plan: NightPlan, calibration: Any) -> Any:
    from ..calibrate.api import calibration_plan
    from ..calibrate.plan import calibration_options
    from ..register import register

    s = plan.config["stack"]
    calibrated = frames
    if calibration is not None:
        calibrated = calibration_plan(frames, calibration_options(calibration), frame_chunk=1)[0]
    bayer = g.bayer if g.bayer else False
    return register(calibrated, reference=_none(s["reference"]), transform=s["transform"],
                    drop_failed=bool(s["drop_failed"]), bayer=bayer)  # fmt: skip


def _mad_std(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    return float(1.482602218505602 * np.median(np.abs(values - np.median(values))))


def _measure(stats: StackStats, path: Path) -> None:
    """Noise, coverage and rejection of a written stack, read back from its file."""
    from .report import read_stack, rejected_share

    image, count, rejected, noise = read_stack(path)
    covered = count > 0
    stats.coverage = (int(count.min()), int(count.max()))
    if noise is not None and covered.any():
        stats.noise = float(np.nanmedian(noise[covered]))
    stats.sky_noise = _mad_std(image[covered]) if image.ndim == 2 else float(
        np.nanmedian([_mad_std(c[covered]) for c in image]))  # fmt: skip
    stats.rejected = rejected_share(path)


def _stack_group(g: LightGroup, plan: NightPlan, files: dict[str, str], out_dir: Path,
                 overwrite: bool) -> StackStats:  # fmt: skip
    from ..frames import open_frames
    from ..stack import stack
    from ..tasks.write import write

    t0 = time.perf_counter()
    stats = StackStats(g.name, out_dir / g.file, g.filter, g.n_frames, g.n_frames)
    calibration = _calibration(g, plan, files)
    frames = open_frames(g.paths)
    options = stack_options(g, plan, g.n_frames)
    register = None
    table = None
    if g.n_frames > 1 and plan.config["stack"]["register"] == "stars":
        try:
            table = _registration(frames, g, plan, calibration)
        except RegistrationError as exc:
            if plan.config["stack"]["if_unregistered"] != "stack":
                raise
            stats.notes.append(f"NOT REGISTERED: {exc}; stacked as the frames are")
    if table is not None:
        register = table
        stats.dropped = [f"{p}: cannot be registered" for p in table.attrs.get("dropped", [])]
        stats.used = int(table.sizes["frame"])
        stats.reference = str(table.attrs.get("reference_path"))
        ref = int(table.attrs["reference"])
        frame_ids = [int(f) for f in table["frame"].values]
        stats.rms_px = [float(r) for f, r in zip(frame_ids, table["rms_px"].values, strict=True)
                        if f != ref]  # fmt: skip
        stats.fwhm = [float(v) for v in table["fwhm"].values]
        if stats.used < 2:
            options.update(normalize=None, reject=None, weights=None)
    elif g.n_frames > 1 and plan.config["stack"]["register"] not in ("stars", "none"):
        register = plan.config["stack"]["register"]
    stats.options = {k: v for k, v in options.items() if v is not None}
    result = stack(frames, calibration=calibration, register=register, **options)
    path = write(result, stats.file, overwrite=overwrite, dtype=plan.config["output"]["dtype"])
    stats.file = Path(path)
    _measure(stats, stats.file)
    stats.seconds = time.perf_counter() - t0
    return stats


def _master_stats(path: Path) -> dict[str, float]:
    from .report import read_image

    image = read_image(path)
    return {"median": float(np.nanmedian(image)), "mad_std": _mad_std(image)}


def execute_night(plan: NightPlan, out_dir: str | Path, *, overwrite: bool = False,
                  log: Any = None, written: WrittenFiles | None = None) -> NightResult:  # fmt: skip
    """Make the masters and the stacks of ``plan`` in ``out_dir`` (see the module notes).

    Parameters
    ----------
    plan : NightPlan
        From :func:`~stackengine.night.plan.plan_night`.
    out_dir : str or Path
        The output folder (made if missing; its parent must exist).
    overwrite : bool
        Replace files of an earlier run.
    log : callable, optional
        Called with one line of progress per step (the command line prints them).
    written : WrittenFiles, optional
        Records each file as soon as it is written (a failed run removes them).

    Returns
    -------
    NightResult
        The files written and the numbers the report shows.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    check_outputs(plan, out, overwrite)
    out.mkdir(exist_ok=True)
    say = log or (lambda text: None)
    written = written if written is not None else WrittenFiles()
    result = NightResult(plan=plan, out_dir=out)
    files: dict[str, str] = {m.name: m.given for m in plan.masters if m.given}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m in plan.masters:
            if m.given:
                continue
            say(f"master {m.name}: {len(m.paths)} frame{'s' * (len(m.paths) != 1)}")
            path = written.add(_make_master(m, plan, files, out, overwrite))
            files[m.name] = str(path)
            result.masters[m.name] = Path(path)
            result.master_stats[m.name] = _master_stats(Path(path))
            result.files.append(Path(path))
        for g in plan.lights:
            say(f"stack {g.name}: {g.n_frames} light{'s' * (g.n_frames != 1)}")
            stats = _stack_group(g, plan, files, out, overwrite)
            written.add(stats.file)
            result.stacks.append(stats)
            result.files.append(stats.file)
    result.warnings = list(dict.fromkeys(str(w.message) for w in caught))
    result.seconds = time.perf_counter() - t0
    return result
