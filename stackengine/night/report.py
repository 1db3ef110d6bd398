"""The report of a night: a PNG contact sheet and a markdown summary.

``report.png`` (matplotlib, Agg): one raw light, every master, and for each
stack its image, its coverage (``count``: how many frames each pixel combines)
and its rejection map (values rejected per pixel). ``report.md``: the frames by
type, filter and exposure, what was decided and why, the masters' levels, each
stack's frames used and dropped, registration residuals, star fwhm, noise and
rejection, and the warnings met on the way.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .._version import __version__
from ..io.atomic import atomic_output
from .model import REPORT_MD, REPORT_PNG, NightPlan, NightResult, WrittenFiles

__all__ = [
    "read_image",
    "read_stack",
    "rejected_share",
    "contact_sheet",
    "report_text",
    "write_text",
]

#: the largest side of an image on the contact sheet (pixels, by striding)
_THUMB = 400


def _open(path: str | Path) -> Any:
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cameras' odd cards are not the report's business
        return fits.open(path, memmap=False, lazy_load_hdus=False)


def read_image(path: str | Path) -> np.ndarray:
    """The primary image of a FITS file as float32."""
    with _open(path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32)


def read_stack(path: str | Path) -> tuple[np.ndarray, ...]:
    """A written stack's image, count (per pixel, the smallest over colour channels),
    rejected values per pixel (low + high, summed over channels) and noise map (None
    when the stack has none)."""
    with _open(path) as hdul:
        image = np.asarray(hdul[0].data, dtype=np.float32)
        count = np.asarray(hdul["COUNT"].data)
        rejected = np.asarray(hdul["REJECTED_LOW"].data, dtype=np.int64) + np.asarray(
            hdul["REJECTED_HIGH"].data, dtype=np.int64
        )
        names = {h.name for h in hdul}
        noise = np.asarray(hdul["NOISE"].data, dtype=np.float32) if "NOISE" in names else None
    if count.ndim == 3:
        count, rejected = count.min(axis=0), rejected.sum(axis=0)
        noise = None if noise is None else noise.mean(axis=0)
    return image, count, rejected, noise


def rejected_share(path: str | Path) -> float:
    """The share of a written stack's values that were rejected (all channels)."""
    with _open(path) as hdul:
        kept = float(np.sum(hdul["COUNT"].data, dtype=np.float64))
        rejected = float(np.sum(hdul["REJECTED_LOW"].data, dtype=np.float64)) + float(
            np.sum(hdul["REJECTED_HIGH"].data, dtype=np.float64)
        )
    return rejected / (kept + rejected) if kept + rejected else math.nan


def _thumb(image: np.ndarray) -> np.ndarray:
    """``image`` (y, x) or (channel, y, x) strided to at most _THUMB pixels a side."""
    step = max(1, math.ceil(max(image.shape[-2:]) / _THUMB))
    return image[..., ::step, ::step]


def _stretch(image: np.ndarray, soft: bool) -> np.ndarray:
    """0..1 display values: 0.5-99.5 % linear (masters, maps), or for lights and stacks
    an asinh stretch from 2 sky sigmas below the sky to 50 above it."""
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.zeros(image.shape, np.float32)
    if soft:
        sky = float(np.median(finite))
        sigma = 1.482602218505602 * float(np.median(np.abs(finite - sky))) or 1.0
        lo, hi = sky - 2 * sigma, sky + 50 * sigma
    else:
        lo, hi = np.percentile(finite, [0.5, 99.5])
    scaled = np.clip((image - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    if soft:
        scaled = np.arcsinh(10 * scaled) / np.arcsinh(10)
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32)


def _show(ax: Any, image: np.ndarray, title: str, kind: str) -> None:
    ax.set_axis_off()
    ax.set_title(title if len(title) < 48 else title[:22] + "..." + title[-22:], fontsize=8)
    image = _thumb(image)
    if kind == "map":
        im = ax.imshow(image, origin="lower", cmap="viridis", interpolation="nearest")
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    elif image.ndim == 3:  # colour: (channel, y, x), each channel stretched
        rgb = np.stack([_stretch(c, True) for c in image], axis=-1)
        ax.imshow(rgb, origin="lower", interpolation="nearest")
    else:
        ax.imshow(_stretch(image, kind != "master"), origin="lower", cmap="gray",
                  interpolation="nearest")  # fmt: skip


def contact_sheet(result: NightResult, path: str | Path) -> Path:
    """Draw ``report.png``: a raw light and the masters on the first row(s), then one
    row per stack: the image, its count map and its rejection map."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    plan = result.plan
    group = plan.lights[0]  # its longest light
    pairs = zip(group.exptimes, group.paths, strict=False)  # a cube: one path, many planes
    first = max(pairs, key=lambda tp: (tp[0] == tp[0], tp[0]))[1]
    raw = read_image(first)
    raw = raw[0] if raw.ndim == 3 else raw  # a cube: its first plane
    top: list[tuple[np.ndarray, str, str]] = [
        (raw, f"raw light\n{os.path.basename(first)}", "light")
    ]
    for name, file in result.masters.items():
        m = plan.master(name)
        n = len(m.paths) if m else 0
        top.append((read_image(file), f"master {name}\n({n} frame{'s' * (n != 1)})", "master"))
    cols = max(3, min(len(top), 5))
    top_rows = math.ceil(len(top) / cols)
    rows = top_rows + len(result.stacks)
    fig = Figure(figsize=(3.0 * cols, 3.0 * rows), dpi=80, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, (image, title, kind) in enumerate(top):
        _show(axes[k // cols, k % cols], image, title, kind)
    for r, s in enumerate(result.stacks, start=top_rows):
        image, count, rejected, _ = read_stack(s.file)
        _show(axes[r, 0], image, f"stack {s.name}: {s.used} of {s.given} lights", "stack")
        _show(axes[r, 1], count, f"{s.name} coverage (count {s.coverage[0]}-{s.coverage[1]})",
              "map")  # fmt: skip
        share = "" if math.isnan(s.rejected) else f", {100 * s.rejected:.2f} %"
        _show(axes[r, 2], rejected, f"{s.name} rejected values{share}", "map")
    fig.suptitle(f"stackengine run: {len(plan.table)} frames -> {result.out_dir.name}",
                 fontsize=10)  # fmt: skip
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:  # the run checked its outputs before
        fig.savefig(tmp, format="png")
    return path


def _num(value: float, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _table(rows: list[list[str]]) -> list[str]:
    head, *body = rows
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in body)]  # fmt: skip


def report_text(result: NightResult) -> str:
    """``report.md``: the decisions and the numbers of a run."""
    plan: NightPlan = result.plan
    lines = [f"# stackengine run: {result.out_dir.name}", "",
             f"stackengine {__version__}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, "
             f"{len(plan.table)} frames, {result.seconds:.1f} s. Configuration: `config.toml` "
             "(replay or edit it: `stackengine run --config config.toml -o DIR`).", "",
             "## The frames", "", "```"]  # fmt: skip
    from ..calibrate.summary import group_table

    lines += group_table(plan.table, ["imagetyp", "filter", "exptime", "shape"]).splitlines()
    lines += ["```", "", "## Decisions", ""]
    lines += [f"- {d}" for d in plan.decisions] or ["- (none beyond the defaults)"]
    if plan.dropped:
        lines += ["", "Left out:", ""]
        lines += [f"- `{os.path.basename(p)}`: {why}" for p, why in plan.dropped]
    lines += ["", "## Masters", ""]
    rows = [["master", "frames", "exptime", "filter", "calibrated by", "median", "mad_std",
             "file"]]  # fmt: skip
    for m in plan.masters:
        st = result.master_stats.get(m.name, {})
        by = ", ".join(x for x in (m.bias, m.dark) if x) or "-"
        rows.append([m.name, "given" if m.given else str(len(m.paths)),
                     "-" if m.exptime is None else f"{m.exptime:g}", m.filter or "-", by,
                     _num(st.get("median", math.nan), 6), _num(st.get("mad_std", math.nan)),
                     f"`{m.given or m.file}`"])  # fmt: skip
    lines += _table(rows) if plan.masters else ["(none: no calibration frames)"]
    lines += ["", "## Stacks", ""]
    rows = [["stack", "lights used", "exptimes (s)", "bias", "dark", "flat",
             "registration rms (px) median / max", "star fwhm (px)", "NOISE map median",
             "stack noise (sky mad_std)", "rejected", "time (s)", "file"]]  # fmt: skip
    for s, g in zip(result.stacks, plan.lights, strict=True):
        rms = f"{np.median(s.rms_px):.3f} / {max(s.rms_px):.3f}" if s.rms_px else "-"
        dark = (g.dark or "-") + (" (scaled)" if g.dark and g.dark_scale else "")
        rows.append([s.name + (" (RGB)" if g.bayer else ""), f"{s.used} of {s.given}",
                     ", ".join(f"{t:g}" for t in sorted(set(g.exptimes))), g.bias or "-",
                     dark, g.flat or "-", rms,
                     _num(float(np.median(s.fwhm))) if s.fwhm else "-", _num(s.noise),
                     _num(s.sky_noise), _num(100 * s.rejected, 3) + " %",
                     f"{s.seconds:.1f}", f"`{s.file.name}`"])  # fmt: skip
    lines += _table(rows)
    for s in result.stacks:
        options = ", ".join(f"{k}={v}" for k, v in s.options.items() if k != "memory_limit")
        lines += ["", f"**{s.name}**: {options}; reference `{os.path.basename(s.reference)}`"
                  if s.reference else f"**{s.name}**: {options}"]  # fmt: skip
        lines += [f"- dropped `{d}`" for d in s.dropped]
        lines += [f"- **{n}**" for n in s.notes]
    if result.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in result.warnings]
    lines += ["", f"![contact sheet]({REPORT_PNG})" if (result.out_dir / REPORT_PNG).exists()
              or plan.config["output"]["report"] else ""]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file renamed; nothing is
    left on failure)."""
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:  # the run checked its outputs before
        tmp.write_text(text, encoding="utf-8")
    return path


def write_report(result: NightResult, written: WrittenFiles | None = None) -> list[Path]:
    """Write ``report.png`` and ``report.md`` into the run's folder (each recorded in
    ``written`` as soon as it is written)."""
    written = written if written is not None else WrittenFiles()
    png = written.add(contact_sheet(result, result.out_dir / REPORT_PNG))
    md = written.add(write_text(result.out_dir / REPORT_MD, report_text(result)))
    return [png, md]
