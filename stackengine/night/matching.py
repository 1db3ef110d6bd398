"""Which master calibrates which frames: the masters to make and the groups of lights.

A master bias per frame shape; a master dark per exposure; a per-second master
dark (scaled by exposure) where some frames have no dark of their own exposure
and a bias separates the darks' bias level; a master flat per filter. The
lights are grouped by filter and frame shape (frames of other sizes are
stacked apart), colour frames (BAYERPAT) stay colour. Each choice that is not
plain is a line of :attr:`NightPlan.decisions`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from .model import LightGroup, MasterPlan, NightPlan, _num, _shape_text

__all__ = ["masters_and_groups"]

#: exposures this close (relative) are the same exposure
_SAME_EXPOSURE = 1e-3


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "x"


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _SAME_EXPOSURE * max(abs(a), abs(b), 1e-9)


def _exptime(value: Any) -> float:
    return float(value) if value is not None and not math.isnan(float(value)) else math.nan


def _dark_for(plan: NightPlan, darks: dict, shape: tuple, exptimes: list[float], bias: Any,
              what: str, make_scaled: Any) -> tuple[str | None, bool]:  # fmt: skip
    """The master dark (name) and scaling for frames of ``exptimes``, by the config."""
    mode = plan.config["calibration"]["dark"]
    if mode == "none":
        return None, False
    if mode not in ("auto", "match", "scale"):  # a path: a master given
        return "dark", True
    groups = darks.get(shape, {})
    if not groups:
        return None, False
    times = {t for t in exptimes if not math.isnan(t)}
    if mode in ("auto", "match") and len(times) == 1:
        t = times.pop()
        match = next((name for dt, name in groups.items() if _same(dt, t)), None)
        if match:
            return match, False
    if mode == "match":
        plan.decisions.append(f"{what}: no dark of exposure {','.join(map(_num, exptimes))} s "
                              "(calibration.dark = match): not dark-subtracted")  # fmt: skip
        return None, False
    if bias is None:
        plan.decisions.append(f"{what}: darks of other exposures but no bias to separate "
                              "their bias level: not dark-subtracted")  # fmt: skip
        return None, False
    if any(math.isnan(t) for t in exptimes):
        plan.decisions.append(f"{what}: an exposure time is missing: not dark-subtracted")
        return None, False
    return make_scaled(shape), True


def _master(name: str, kind: str, rows: pd.DataFrame, shape: tuple, **kw: Any) -> MasterPlan:
    """The plan of master ``name`` made of the frames ``rows``, written to master_<name>.fits."""
    return MasterPlan(name, kind, list(dict.fromkeys(rows["path"])), f"master_{name}.fits",
                      shape, **kw)  # fmt: skip


def masters_and_groups(plan: NightPlan, used: pd.DataFrame, lights: pd.DataFrame) -> None:
    """Fill ``plan.masters`` and ``plan.lights`` from the frames kept (``used``)."""
    cfg, cal = plan.config, plan.config["calibration"]
    shapes = list(dict.fromkeys(used["shape"]))
    several = len(shapes) > 1
    suffix = {s: (f"_{_shape_text(s)}" if several else "") for s in shapes}
    biases: dict[tuple, str] = {}
    for shape, rows in used[used["imagetyp"] == "bias"].groupby("shape", sort=False):
        if cal["bias"] != "auto":
            break
        name = "bias" + suffix[shape]
        plan.masters.append(_master(name, "bias", rows, shape, exptime=0.0))
        biases[shape] = name
    if cal["bias"] not in ("auto", "none"):
        plan.masters.append(MasterPlan("bias", "bias", [], "", (0, 0), given=cal["bias"]))
        biases = {s: "bias" for s in shapes}
    elif cal["bias"] == "none":
        plan.decisions.append("calibration.bias = none: no bias subtracted")
    darks: dict[tuple, dict[float, str]] = {}
    for (shape, t), rows in used[used["imagetyp"] == "dark"].groupby(
        ["shape", "exptime"], sort=True
    ):
        if cal["dark"] not in ("auto", "match", "scale") or math.isnan(t):
            continue
        name = f"dark_{_num(t)}s" + suffix[shape]
        plan.masters.append(
            _master(name, "dark", rows, shape, exptime=float(t), bias=biases.get(shape))
        )
        darks.setdefault(shape, {})[float(t)] = name
    if cal["dark"] not in ("auto", "match", "scale", "none"):
        plan.masters.append(MasterPlan("dark", "dark", [], "", (0, 0), given=cal["dark"]))
    scaled: dict[tuple, str] = {}

    def make_scaled(shape: tuple) -> str:
        if shape not in scaled:
            rows = used[(used["imagetyp"] == "dark") & (used["shape"] == shape)]
            name = "dark_per_s" + suffix[shape]
            plan.masters.append(_master(name, "dark", rows, shape, exptime=1.0,
                                        bias=biases.get(shape), dark_scale=True))  # fmt: skip
            scaled[shape] = name
            plan.decisions.append(
                f"{_shape_text(shape)}: a per-second master dark of all "
                f"{len(rows)} darks, scaled to each frame's exposure"
            )
        return scaled[shape]

    flats: dict[tuple, str] = {}
    for (shape, filt), rows in used[used["imagetyp"] == "flat"].groupby(
            ["shape", used["filter"].fillna("")], sort=True):  # fmt: skip
        if cal["flat"] == "none":
            break
        if filt in cal["flats"]:
            continue  # the user's master instead
        name = "flat" + (f"_{_slug(filt)}" if filt else "") + suffix[shape]
        times = [_exptime(t) for t in rows["exptime"]]
        dark, scale = _dark_for(plan, darks, shape, times, biases.get(shape),
                                f"flat {filt or '(no filter)'}", make_scaled)  # fmt: skip
        exptime = times[0] if len(set(times)) == 1 else None
        master = _master(name, "flat", rows, shape, filter=filt or None, exptime=exptime,
                         bias=biases.get(shape), dark=dark, dark_scale=scale)  # fmt: skip
        plan.masters.append(master)
        flats[(shape, filt)] = name
        if biases.get(shape) is None and dark is None:
            plan.decisions.append(
                f"master {name}: no bias or dark of its frames' size: the flat keeps its "
                "bias level (its shape is slightly wrong)"
            )
    for filt, given in cal["flats"].items():
        if given != "none":
            plan.masters.append(MasterPlan(f"flat_{_slug(filt)}", "flat", [], "", (0, 0),
                                           filter=filt, given=given))  # fmt: skip
    by_filter = lights.groupby(["shape", lights["filter"].fillna("")], sort=True)
    filters_with_shapes: dict[str, int] = {}
    for _shape, filt in by_filter.groups:
        filters_with_shapes[filt] = filters_with_shapes.get(filt, 0) + 1
    for (shape, filt), rows, target in _by_target(plan, by_filter):
        name = _slug(filt) if filt else "nofilter"
        if target is not None:
            name = f"{_slug(target)}_{name}"
        if filters_with_shapes[filt] > 1:
            name += f"_{_shape_text(shape)}"
            plan.decisions.append(
                f"filter {filt or '(none)'}: lights of several frame sizes: "
                f"the {_shape_text(shape)} ones are stacked apart"
            )
        paths = list(dict.fromkeys(rows["path"]))
        times = [_exptime(t) for t in rows["exptime"]]
        what = f"stack {name}"
        bayers = {b for b in rows["bayerpat"] if b}
        bayer_cfg = cfg["stack"]["bayer"]
        bayer = None
        if bayer_cfg == "auto":
            bayer = bayers.pop() if len(bayers) == 1 else None
            if bayer:
                plan.decisions.append(
                    f"{what}: colour frames (BAYERPAT {bayer}): calibrated as "
                    "mosaics, debayered, stacked as RGB"
                )
        elif bayer_cfg != "none":
            bayer = bayer_cfg
        group = LightGroup(name, filt or None, shape, paths, times, f"stack_{name}.fits",
                           bayer=bayer, bias=biases.get(shape))  # fmt: skip
        group.dark, group.dark_scale = _dark_for(plan, darks, shape, times, group.bias, what,
                                                 make_scaled)  # fmt: skip
        if cal["flat"] == "none":
            plan.decisions.append(f"{what}: calibration.flat = none: not flat-fielded")
        elif filt in cal["flats"]:
            group.flat = None if cal["flats"][filt] == "none" else f"flat_{_slug(filt)}"
            if group.flat is None:
                plan.decisions.append(f"{what}: calibration.flats says none: not flat-fielded")
        elif (shape, filt) in flats:
            group.flat = flats[(shape, filt)]
        else:
            others = sorted(f or "(none)" for s, f in flats if s == shape)
            plan.decisions.append(
                f"{what}: no flat for filter {filt or '(none)'}"
                + (f" (flats only for {', '.join(others)})" if others else "")
                + ": stacked without flat-fielding"
            )
        if group.n_frames == 1:
            plan.decisions.append(f"{what}: a single light: calibrated only (no registration, "
                                  "normalization or rejection)")  # fmt: skip
        plan.lights.append(group)


def _target(value: Any) -> str:
    return re.sub(r"\s+", " ", str(value)).strip() if isinstance(value, str) else ""


def _by_target(plan: NightPlan, by_filter: Any) -> list[tuple[tuple, pd.DataFrame, str | None]]:
    """Each (shape, filter) group of lights, split by OBJECT when it names several
    fields with at least two lights each (``frames.split_by_object``: "auto")."""
    mode = plan.config["frames"]["split_by_object"]
    out: list[tuple[tuple, pd.DataFrame, str | None]] = []
    for key, rows in by_filter:
        targets = rows["object"].map(_target)
        counts = targets.value_counts()
        if len(counts) < 2 or mode == "no":
            out.append((key, rows, None))
            continue
        names = ", ".join(f"{t or '(none)'} ({n})" for t, n in counts.items())
        if mode == "auto" and counts.min() < 2:
            plan.decisions.append(
                f"filter {key[1] or '(none)'}: OBJECT differs ({names}) but not as fields of "
                'two lights or more: stacked together (frames.split_by_object = "yes" to '
                "split them; lights of another field are dropped by the registration)"
            )
            out.append((key, rows, None))
            continue
        plan.decisions.append(
            f"filter {key[1] or '(none)'}: lights of {len(counts)} objects ({names}): "
            'stacked apart (frames.split_by_object = "no" to stack them together)'
        )
        for target in counts.index:
            out.append((key, rows[targets == target], target or "noobject"))
    return out
