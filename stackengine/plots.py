"""Figures of a normalization, as NormalizeScaleGradient shows them (optional extra ``plots``).

Per non-reference frame of a photometric normalization, two PNG files:

``frame_NNN_photometry.png``
    NSG's *photometry graph*: reference flux against target flux of the stars
    matched to the reference (channel 0), the stars the robust fit kept and
    those it rejected, and the fitted line ``ref = k tgt``; beside it the
    ratio ``ref / tgt`` of every star against its flux, which shows at a
    glance whether one scale fits faint and bright stars alike.
``frame_NNN_gradient.png``
    NSG's *gradient graph*: the gradient model ``G`` subtracted from the frame,
    as a horizontal profile (its mean over all rows, against x) and a
    vertical profile (its mean over all columns, against y), exactly as the
    tile kernels evaluate it (bilinear between the nodes of the model's grid,
    held constant beyond the last node), with the background samples
    ``k B_target - B_reference`` it was fitted to (means of bin columns / rows).

and one ``summary.png`` for every mode: the scale of each frame (with its
error bars in photometric mode), its weight ``(noise_ref / (k_i noise_i))**2``
(what ``weights="photometric"`` uses), and in photometric mode the stars
matched and used and the range of the gradient model; the reference frame is
shaded. Simple modes (additive, ...) write the summary only, with the offsets
instead of the star counts.

matplotlib is imported inside the functions and drawn with its Agg canvas
(no pyplot, no global state), so the module imports without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import xarray as xr

from ._figures import (
    _label,
    gradient_figure,
    gradient_profiles,
    photometry_figure,
    report_weights,
    summary_figure,
)
from .errors import OutputError, ParameterError
from .normalize.plan import Normalization

__all__ = [
    "normalization_report",
    "plot_normalization",
    "gradient_profiles",
    "report_weights",
    "photometry_figure",
    "gradient_figure",
    "summary_figure",
]


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ParameterError(
            'normalization plots need matplotlib: pip install "stackengine[plots]"'
        ) from None


def _names(norm: Normalization, frames: xr.DataArray | None) -> list[str] | None:
    """The frames' file names, or None."""
    n = norm.scale.shape[0]
    if frames is None:
        return None
    if frames.sizes.get("frame") != n:
        raise ParameterError(
            f"frames has {frames.sizes.get('frame')} frames, the normalization {n}"
        )
    if "path" not in frames.coords:
        return None
    return [Path(str(p)).name for p in frames.coords["path"].values]


def _targets(norm: Normalization, folder: Path) -> list[tuple[str, int | None, Path]]:
    n = norm.scale.shape[0]
    digits = max(3, len(str(n - 1)))
    out: list[tuple[str, int | None, Path]] = []
    if norm.mode == "photometric":
        for i in range(n):
            if i != norm.reference:
                stem = f"frame_{i:0{digits}d}"
                out.append(("photometry", i, folder / f"{stem}_photometry.png"))
                out.append(("gradient", i, folder / f"{stem}_gradient.png"))
    out.append(("summary", None, folder / "summary.png"))
    return out


def _prepare_folder(folder: Path, paths: list[Path], overwrite: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder")
    if not overwrite:
        for p in paths:
            if p.exists() or p.is_symlink():
                raise OutputError(f"{p}: exists (pass overwrite=True / --overwrite)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create the plot folder ({exc.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: plot folder is not writable")


def normalization_report(
    norm: Normalization,
    folder: str | os.PathLike,
    *,
    frames: xr.DataArray | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the photometry and gradient graphs of every frame and a summary as PNG.

    Parameters
    ----------
    norm : Normalization
        From :func:`stackengine.normalize.plan_normalization`.
    folder : str or path-like
        Where to write; created if missing.
    frames : xarray.DataArray, optional
        The frames that were normalized: their file names label the figures.
    overwrite : bool
        Replace existing files; otherwise an existing target is an error
        (checked for every target before anything is written).

    Returns
    -------
    list of Path
        The files written: in photometric mode ``frame_NNN_photometry.png``
        and ``frame_NNN_gradient.png`` for every frame but the reference,
        then ``summary.png`` (the only one for the other modes).

    Raises
    ------
    OutputError
        A target exists and ``overwrite`` is False, or the folder cannot be
        created or written.
    ParameterError
        matplotlib is not installed (``pip install "stackengine[plots]"``).
    """
    from .io.atomic import atomic_output

    _require_matplotlib()
    folder = Path(folder)
    names = _names(norm, frames)
    shape = None if frames is None else (frames.sizes["y"], frames.sizes["x"])
    targets = _targets(norm, folder)
    _prepare_folder(folder, [p for *_, p in targets], overwrite)
    written = []
    for kind, i, path in targets:
        if kind == "photometry":
            fig = photometry_figure(norm, i, _label(names, i))
        elif kind == "gradient":
            fig = gradient_figure(norm, i, _label(names, i), shape)
        else:
            fig = summary_figure(norm, names)
        with atomic_output(path, overwrite) as tmp:
            fig.savefig(tmp, format="png")
        written.append(path)
    return written


def plot_normalization(
    frames: Any,
    folder: str | os.PathLike,
    *,
    mode: str = "photometric",
    reference: int | str | None = None,
    smoothness: float = 2.0,
    star_fallback: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Plan a normalization of ``frames`` and write its report (:func:`normalization_report`).

    The measurements (pass 1) are cached per file, so calling this after
    :func:`stackengine.stack` with the same options reads no pixel again and
    plots exactly the normalization that the stack applied.

    Parameters
    ----------
    frames : xarray.DataArray or array
        From :func:`stackengine.open_frames`, or any (frame, y, x[, channel]) array.
    folder : str or path-like
        Where to write the PNG files; created if missing.
    mode, reference, smoothness, star_fallback
        As the ``normalize``, ``reference``, ``smoothness`` and
        ``star_fallback`` parameters of :func:`stackengine.stack`.
    overwrite : bool
        Replace existing files.

    Returns
    -------
    list of Path
        The files written.
    """
    from .frames import _from_memory
    from .normalize.plan import check_mode, plan_normalization

    _require_matplotlib()
    check_mode(mode)
    if mode is None:
        raise ParameterError("plot_normalization: mode=None: there is no normalization to plot")
    if star_fallback not in (None, "additive+scale"):
        raise ParameterError(f"star_fallback={star_fallback!r}: choose None or 'additive+scale'")
    if isinstance(smoothness, bool) or not isinstance(smoothness, int | float) or smoothness < 0:
        raise ParameterError(f"smoothness={smoothness!r}: must be a number >= 0")
    summary = Path(folder) / "summary.png"
    if not overwrite and (summary.exists() or summary.is_symlink()):  # fail before reading
        raise OutputError(f"{summary}: exists (pass overwrite=True / --overwrite)")
    arr = frames if isinstance(frames, xr.DataArray) else _from_memory(frames, None)
    norm = plan_normalization(
        arr, mode, reference=reference, smoothness=smoothness, star_fallback=star_fallback
    )
    return normalization_report(norm, folder, frames=arr, overwrite=overwrite)
