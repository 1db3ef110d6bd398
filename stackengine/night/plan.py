"""From the frames' summary to the plan of a night: headers only, no pixel read.

:func:`plan_night` sorts the frames by :func:`stackengine.summary` (type, filter,
exposure, shape), decides the masters to make (a bias per frame shape, a dark per
exposure, a per-second dark where some frames need scaling, a flat per filter),
which master calibrates which frames, the overscan and trim from the section
cards, and one group of lights per filter and shape (colour frames stay
colour). Every decision is a line of :attr:`NightPlan.decisions`;
:meth:`NightPlan.describe` prints the whole plan as tables.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..calibrate.summary import summary
from ..errors import CalibrationError, ParameterError
from .config import load_config
from .model import LightGroup, MasterPlan, NightPlan, _shape_text

__all__ = ["MasterPlan", "LightGroup", "NightPlan", "plan_night"]


def _excluded(path: str, patterns: Sequence[str]) -> bool:
    name = os.path.basename(path)
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p)
               or fnmatch.fnmatchcase(path, os.path.abspath(p)) for p in patterns)  # fmt: skip


def _sections(plan: NightPlan, table: pd.DataFrame) -> None:
    """Overscan and trim per frame shape: the user's, or from readable BIASSEC cards."""
    from ..calibrate.sections import parse_section

    cal = plan.config["calibration"]
    for shape, rows in table.groupby("shape", sort=False):
        where = _shape_text(shape)
        if cal["overscan"] != "auto":
            plan.sections[shape] = {
                "overscan": cal["overscan"],
                "trim": None if cal["trim"] == "auto" else cal["trim"],
            }
            continue
        cards = set(rows["biassec"])
        if cards == {None}:
            plan.sections[shape] = {
                "overscan": "none",
                "trim": None if cal["trim"] == "auto" else cal["trim"],
            }
            continue
        problem = None
        if None in cards or len(cards) > 1:
            problem = "the frames' BIASSEC cards differ or are missing in some"
        else:
            cards_used = ["biassec", "trimsec"] if rows["trimsec"].notna().any() else [
                "biassec", "datasec"]  # fmt: skip
            for card in cards_used:
                if len(set(rows[card])) > 1:
                    problem = f"the frames' {card.upper()} cards differ"
                    break
                text = rows[card].iloc[0]
                try:
                    if text is not None:
                        parse_section(text, shape, path=rows["path"].iloc[0], card=card.upper())
                except CalibrationError as exc:
                    problem = str(exc)
                    break
        if problem:
            plan.sections[shape] = {
                "overscan": "none",
                "trim": None if cal["trim"] == "auto" else cal["trim"],
            }
            plan.decisions.append(
                f"{where} frames: no overscan subtracted, not trimmed: "
                f"{problem} (set calibration.overscan/trim to a section)"
            )
        else:
            plan.sections[shape] = {"overscan": "auto", "trim": cal["trim"]}
            plan.decisions.append(
                f"{where} frames: overscan {rows['biassec'].iloc[0]} "
                "(BIASSEC) subtracted row by row, trimmed by TRIMSEC/DATASEC"
            )


def _types_from_names(plan: NightPlan) -> None:
    """Frames without a known IMAGETYP whose file name names one type by a word of
    its own ('bias_001.fits', 'flat-V-3.fit') take that type, said in the plan."""
    from ..calibrate.summary import _name_kind

    table = plan.table = plan.table.copy()
    typed: dict[str, list[str]] = {}
    for i in table.index[table["imagetyp"].isna()]:
        kind = _name_kind(table.at[i, "path"])
        if kind is not None:
            table.at[i, "imagetyp"] = kind
            table.at[i, "decided"] += f"; typed {kind} by its file name"
            typed.setdefault(kind, []).append(os.path.basename(table.at[i, "path"]))
    for kind, names in typed.items():
        shown = ", ".join(names) if len(names) <= 2 else f"{names[0]} .. {names[-1]}"
        plan.decisions.append(
            f"{len(names)} frame{'s' * (len(names) > 1)} with no known IMAGETYP ({shown}) "
            f"taken as {kind} by their file names (frames.types_from_names = false: left out)"
        )


def plan_night(
    paths: Any = None,
    config: Any = None,
    *,
    table: pd.DataFrame | None = None,
    out_dir: str | os.PathLike | None = None,
) -> NightPlan:
    """Plan a night from its frames' headers: no pixel is read.

    Parameters
    ----------
    paths : files, folders or globs, optional
        The raw frames; default the configuration's ``inputs``.
    config : path, mapping or None
        Choices over the defaults (:func:`~stackengine.night.config.load_config`).
    table : pandas.DataFrame, optional
        The frames' :func:`stackengine.summary`, if already made.
    out_dir : path, optional
        The output folder: frames inside it (an earlier run's masters and stacks,
        when the inputs are a glob that matches them) are left out.

    Returns
    -------
    NightPlan
        The masters to make, the groups of lights to stack, what was left out
        and why, every decision as a line of text.

    Raises
    ------
    ParameterError
        No inputs, no lights among the frames, a bad configuration.
    """
    cfg = load_config(config)
    if paths is not None:
        paths = [str(p) for p in paths] if isinstance(paths, list | tuple) else [str(paths)]
        cfg["inputs"] = [p if "://" in p else os.path.abspath(p) for p in paths]
    if not cfg["inputs"]:
        raise ParameterError("no input frames: give the raw frames (or inputs in the config)")
    if table is None:
        table = summary(cfg["inputs"], filter_keys=cfg["frames"]["filter_keys"],
                        overrides=cfg["frames"]["overrides"] or None)  # fmt: skip
    plan = NightPlan(table=table, config=cfg)
    if cfg["frames"]["types_from_names"]:
        _types_from_names(plan)
    keep, hinted = [], {}
    inside = None if out_dir is None else os.path.realpath(out_dir) + os.sep
    for i, row in plan.table.iterrows():
        if _excluded(row["path"], cfg["frames"]["exclude"]):
            plan.dropped.append((row["path"], "excluded by frames.exclude"))
        elif inside and os.path.realpath(row["path"]).startswith(inside):
            plan.dropped.append((row["path"], "in the output folder (an earlier run's output)"))
        elif row["imagetyp"] is None:
            plan.dropped.append(
                (
                    row["path"],
                    f"type not recognised (IMAGETYP "
                    f"{row['imagetyp_raw']!r}); set it in frames.overrides",
                )
            )
        elif len(row["shape"]) != 2:
            plan.dropped.append((row["path"], f"not a 2-D frame (shape {row['shape']})"))
        else:
            keep.append(i)
            if "the file name says" in row["decided"]:
                hinted.setdefault(row["decided"], []).append(os.path.basename(row["path"]))
    for text, names in hinted.items():
        shown = ", ".join(names) if len(names) <= 2 else f"{names[0]} .. {names[-1]}"
        plan.decisions.append(
            f"{len(names)} frame{'s' * (len(names) > 1)} ({shown}): {text}; "
            "the header wins (set frames.overrides to change it)"
        )
    table = plan.table
    used = table.loc[keep]
    lights = used[used["imagetyp"] == "light"]
    if lights.empty:
        counts = used["imagetyp"].value_counts()
        parts = [f"{n} {k}" for k, n in counts.items()]
        unknown = int(table.loc[[i for i in table.index if i not in set(keep)], "imagetyp"]
                      .isna().sum())  # fmt: skip
        if unknown:
            parts.append(f"{unknown} of no known type (IMAGETYP missing or not recognised)")
        found = ", ".join(parts) or "none usable"
        raise ParameterError(
            f"no lights among the {len(table)} frames ({found}): nothing to stack; mark the "
            "lights in frames.overrides (--set 'PATTERN:imagetyp=light'), or make masters "
            "only with 'stackengine master'"
        )
    _sections(plan, used)
    from .matching import masters_and_groups

    masters_and_groups(plan, used, lights)
    return plan
