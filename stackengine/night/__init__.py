"""A whole night in one call: ``se.run_night`` and ``stackengine run``.

From a folder of raw frames to masters, one calibrated, registered stack per
filter, a report and the configuration used:

- :mod:`.plan`: the frames' summary to a plan (masters, which master calibrates
  which frames, groups of lights), headers only;
- :mod:`.config`: every choice with its default, as a TOML document;
- :mod:`.execute`: the masters and the stacks;
- :mod:`.report`: ``report.png`` (contact sheet) and ``report.md``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from .config import DEFAULTS, config_text, load_config
from .execute import CONFIG_TOML, NightResult, StackStats, check_outputs, execute_night
from .model import WrittenFiles
from .plan import LightGroup, MasterPlan, NightPlan, plan_night

__all__ = ["run_night", "plan_night", "load_config", "config_text", "DEFAULTS", "NightPlan",
           "NightResult", "MasterPlan", "LightGroup", "StackStats"]  # fmt: skip


def run_night(
    paths: Any = None,
    out_dir: str | os.PathLike = "night",
    config: str | os.PathLike | dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    overwrite: bool = False,
    log: Any = None,
) -> NightPlan | NightResult:
    """Reduce a night: masters, one calibrated, registered stack per filter, a report.

    The frames are sorted by their headers (:func:`stackengine.summary`: type,
    filter, exposure, shape); a master bias is made of the bias frames, a master
    dark per exposure (and a per-second one, scaled, for frames of exposures
    without their own), a master flat per filter; each filter's lights are
    calibrated, registered by their stars, normalized and sigma-clipped into one
    stack (RGB for colour cameras). Written into ``out_dir``: ``master_*.fits``,
    ``stack_*.fits``, ``report.png``, ``report.md`` and ``config.toml``, the
    choices used, which ``config`` replays.

    Parameters
    ----------
    paths : files, folders or globs, optional
        The raw frames; default the configuration's ``inputs``.
    out_dir : str or path-like
        The output folder (made if missing; its parent must exist).
    config : path, dict or None
        Choices over the defaults (:data:`~stackengine.night.config.DEFAULTS`):
        a ``config.toml`` of an earlier run, edited or not, or the same as a dict
        (``{"stack": {"normalize": "photometric"}}``).
    dry_run : bool
        Plan only: read the headers, return the plan; no pixel is read, nothing
        is written.
    overwrite : bool
        Replace the files of an earlier run in ``out_dir`` (else refused before
        any work, naming the file). A run that fails removes the files it wrote
        (and the folder, if it made it): no partial night is left.
    log : callable, optional
        Called with a line of text per step.

    Returns
    -------
    NightPlan or NightResult
        The plan (``dry_run``; ``plan.describe()`` prints it), else what was made:
        ``result.masters``, ``result.stacks`` (files and numbers),
        ``result.files``.

    Raises
    ------
    ParameterError
        No lights among the frames, a bad configuration.
    OutputError
        An output exists (without ``overwrite``) or cannot be written.
    StackEngineError
        Any error of calibration or registration, naming the frame.
    """
    out = Path(out_dir)
    plan = plan_night(paths, config, out_dir=out)
    if dry_run:
        return plan
    check_outputs(plan, out, overwrite)
    made = not out.exists()
    written = WrittenFiles()
    try:
        result = execute_night(plan, out, overwrite=overwrite, log=log, written=written)
        if plan.config["output"]["report"]:
            from .report import write_report

            result.files += write_report(result, written)
        from .._version import __version__
        from .report import write_text

        header = (f"stackengine {__version__}: the configuration of this run.\n"
                  f"Replay it: stackengine run --config {CONFIG_TOML} -o DIR (RAW... replace "
                  "the inputs); edit any choice.")  # fmt: skip
        config_file = written.add(write_text(out / CONFIG_TOML, config_text(plan.config, header)))
        result.files.append(config_file)
    except BaseException:  # no partial night: what this run wrote goes, nothing else
        written.remove()
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty
        raise
    return result
