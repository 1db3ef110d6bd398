"""Drawing for :mod:`stackengine.plots`: the figures themselves, on matplotlib's Agg canvas.

Each ``*_figure`` function returns a :class:`matplotlib.figure.Figure` attached
to a ``FigureCanvasAgg`` (no pyplot, no global state); matplotlib is imported
inside them. :func:`gradient_profiles` and :func:`report_weights` compute the
numbers the figures show.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .normalize.plan import Normalization

__all__ = [
    "gradient_profiles",
    "report_weights",
    "photometry_figure",
    "gradient_figure",
    "summary_figure",
]

_CHANNEL_COLOURS = {1: ["C0"], 3: ["tab:red", "tab:green", "tab:blue"]}
_REF_SHADE = "#fff2b3"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colours(channels: int) -> list[str]:
    return _CHANNEL_COLOURS.get(channels, [f"C{c % 10}" for c in range(channels)])


def _hat_weights(n: int, step: float, nodes: int) -> np.ndarray:
    """Mean over pixels 0..n-1 of each node's bilinear weight (the kernel's clamping)."""
    if nodes < 2:
        return np.ones(max(nodes, 1))
    f = np.clip(np.arange(n, dtype=np.float64) / step, 0.0, nodes - 1.0)
    i0 = np.minimum(np.floor(f), nodes - 2).astype(np.intp)
    w = f - i0
    out = np.bincount(i0, 1.0 - w, minlength=nodes) + np.bincount(i0 + 1, w, minlength=nodes)
    return out / n


def gradient_profiles(
    grid: np.ndarray, step: tuple[float, float], shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal and vertical mean profiles of a gradient model (NSG's gradient graph).

    Parameters
    ----------
    grid : numpy.ndarray
        ``(gy, gx)`` node values; node ``(i, j)`` sits at pixel
        ``(i * step_y, j * step_x)`` (``Normalization.grad[i, c]``).
    step : tuple of float
        ``(step_y, step_x)``, ``Normalization.step``.
    shape : tuple of int, optional
        ``(ny, nx)`` of the frames; default: the nodes span the frame edge to
        edge, ``n = round((g - 1) * step) + 1``.

    Returns
    -------
    x, along_x, y, along_y : numpy.ndarray
        Node x coordinates and the mean of ``G`` over all pixel rows
        ``0..ny-1`` there; node y coordinates and the mean over all pixel
        columns there. ``G`` is bilinear between nodes, so each profile is
        exactly linear between the points returned.
    """
    g = np.asarray(grid, dtype=np.float64)
    gy, gx = g.shape
    sy, sx = (float(s) for s in step)
    if shape is None:
        shape = (round((gy - 1) * sy) + 1, round((gx - 1) * sx) + 1)
    ny, nx = (int(n) for n in shape)
    along_x = _hat_weights(ny, sy, gy) @ g
    along_y = g @ _hat_weights(nx, sx, gx)
    return sx * np.arange(gx), along_x, sy * np.arange(gy), along_y


def report_weights(norm: Normalization) -> np.ndarray:
    """Per frame ``(noise_ref / (|k_i| noise_i))**2``, averaged over channels.

    The weights ``stack(weights="photometric")`` gives (NSG's NWEIGHT); the
    reference has 1.
    """
    noise = norm.noise_after()
    return ((noise[norm.reference] / noise) ** 2).mean(axis=1)


def _label(names: list[str] | None, k: int) -> str:
    return f"frame {k}" if names is None else f"{names[k]} (frame {k})"


def _tick(names: list[str] | None, k: int, width: int = 24) -> str:
    if names is None:
        return str(k)
    name = names[k]
    if len(name) > width:
        name = name[: width // 2 - 1] + "…" + name[-(width // 2) :]
    return f"{k}: {name}"


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def photometry_figure(norm: Normalization, i: int, label: str) -> Any:
    """NSG's photometry graph of frame ``i``.

    Parameters
    ----------
    norm : Normalization
        A photometric normalization (``norm.details["pairs"]``).
    i : int
        The frame (not the reference).
    label : str
        Its name in the title.

    Returns
    -------
    matplotlib.figure.Figure
        Left: reference against target flux of the matched stars (channel 0),
        kept (``collections[0]``) and rejected (``collections[1]``) by the fit,
        and the line ``ref = k tgt`` (``lines[0]``). Right: ``ref / tgt`` per
        star against the target flux (log), with ``k``, ``k ± k_err`` and
        ``k (1 ± 1 %)``. A frame without a fit (star_fallback) gets a note.
    """
    fig = _figure(11.0, 4.6)
    left, right = fig.subplots(1, 2)
    k, err = norm.scale[i, 0], norm.table.get("scale_err", np.zeros_like(norm.scale))[i, 0]
    fallback = bool(np.asarray(norm.table.get("fallback", np.zeros(len(norm.scale))))[i])
    pairs = norm.details.get("pairs", {}).get(i)
    if pairs is None:
        fig.suptitle(f"{label}: no photometric scale")
        n = int(np.asarray(norm.table.get("n_stars", np.zeros(len(norm.scale))))[i])
        why = f"{n} stars matched to the reference: too few for a photometric fit"
        how = "normalized with 'additive+scale' instead" if fallback else ""
        _note(left, f"{why}\n{how}")
        _note(right, f"scale k = {k:.5g}")
        return fig
    ref, tgt = np.asarray(pairs["ref_flux"]), np.asarray(pairs["tgt_flux"])
    used = np.asarray(pairs["used"], dtype=bool)
    channel = " (channel 0)" if norm.scale.shape[1] > 1 else ""
    title = f"{label}: k = {k:.5f} ± {err:.5f}{channel}, {used.sum()} of {used.size} stars used"
    fig.suptitle(title + (" — fell back to 'additive+scale'" if fallback else ""))
    left.scatter(tgt[used], ref[used], s=14, color="C0", label=f"used ({used.sum()})")
    left.scatter(
        tgt[~used], ref[~used], s=30, color="C3", marker="x", label=f"rejected ({(~used).sum()})"
    )
    top = max(float(np.nanmax(tgt, initial=0.0)), 1.0) * 1.05
    left.plot([0.0, top], [0.0, k * top], color="k", lw=1, label=f"ref = {k:.4f} · tgt")
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    left.xaxis.set_major_formatter(EngFormatter())
    left.yaxis.set_major_formatter(EngFormatter())
    left.set_xlabel("target flux")
    left.set_ylabel("reference flux")
    left.set_title("matched stars")
    left.legend(loc="upper left", fontsize="small")
    left.grid(alpha=0.3)
    pos = tgt > 0
    ratio = np.full(tgt.shape, np.nan)
    ratio[pos] = ref[pos] / tgt[pos]
    right.scatter(tgt[used & pos], ratio[used & pos], s=14, color="C0")
    right.scatter(tgt[~used & pos], ratio[~used & pos], s=30, color="C3", marker="x")
    right.axhline(k, color="k", lw=1)
    right.axhspan(k - err, k + err, color="0.75", zorder=0)
    for f in (0.99, 1.01):
        right.axhline(k * f, color="0.5", lw=0.8, ls="--")
    right.set_xscale("log")
    right.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    right.xaxis.set_major_formatter(EngFormatter())
    right.xaxis.set_minor_formatter(NullFormatter())
    good = ratio[used & pos]
    if good.size:
        spread = max(float(np.ptp(good)), 1e-3 * abs(k))
        right.set_ylim(good.min() - 0.5 * spread, good.max() + 0.5 * spread)
    right.set_xlabel("target flux")
    right.set_ylabel("reference / target flux")
    right.set_title("flux ratio per star (line: k ± k_err; dashed: ±1 %)")
    right.grid(alpha=0.3, which="both")
    return fig


def _bilinear(grid: np.ndarray, step: tuple[float, float], y: Any, x: Any) -> np.ndarray:
    """``G(y, x)`` as the tile kernels evaluate it (clamped beyond the last node)."""
    gy, gx = grid.shape

    def cell(c: Any, s: float, n: int) -> tuple[np.ndarray, np.ndarray]:
        f = np.clip(np.asarray(c, dtype=np.float64) / s, 0.0, n - 1.0)
        i = np.minimum(np.floor(f), max(n - 2, 0)).astype(np.intp)
        return i, f - i

    i, wy = cell(y, step[0], gy)
    j, wx = cell(x, step[1], gx)
    i1, j1 = np.minimum(i + 1, gy - 1), np.minimum(j + 1, gx - 1)
    top = grid[i, j] * (1.0 - wx) + grid[i, j1] * wx
    return top * (1.0 - wy) + (grid[i1, j] * (1.0 - wx) + grid[i1, j1] * wx) * wy


def _sample_means(values: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the finite values along ``axis`` and where there is at least one."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    return total / np.maximum(count, 1), count > 0


def gradient_figure(
    norm: Normalization, i: int, label: str, shape: tuple[int, int] | None = None
) -> Any:
    """NSG's gradient graph of frame ``i``: the mean profiles of its model ``G``.

    Parameters
    ----------
    norm : Normalization
        A photometric normalization.
    i : int
        The frame (not the reference).
    label : str
        Its name in the title.
    shape : tuple of int, optional
        ``(ny, nx)`` of the frames (see :func:`gradient_profiles`).

    Returns
    -------
    matplotlib.figure.Figure
        Left: :func:`gradient_profiles` along x, right: along y, one line per
        channel; the dots are the background bins ``k B_i - B_r`` it was fitted
        to, shown as the profile plus the mean residual of the bins of each
        bin column (row), so bins masked by stars do not bias them.
    """
    fig = _figure(11.0, 4.2)
    horizontal, vertical = fig.subplots(1, 2)
    channels = norm.scale.shape[1]
    fallback = bool(np.asarray(norm.table.get("fallback", np.zeros(len(norm.scale))))[i])
    if norm.grad is None or fallback:
        fig.suptitle(f"{label}: no gradient model")
        _note(horizontal, "normalized with 'additive+scale': no gradient model (G = 0)")
        _note(vertical, "")
        return fig
    phot = norm.details.get("photometry")
    yy = xx = None
    if phot is not None:
        bins_i, bins_r = phot[i].bins, phot[norm.reference].bins
        yy, xx = bins_r.yc, bins_r.xc
    colours = _colours(channels)
    ranges = []
    for c in range(channels):
        x, px, y, py = gradient_profiles(norm.grad[i, c], norm.step, shape)
        ranges.append(float(np.ptp(norm.grad[i, c])))
        name = f"channel {c}" if channels > 1 else "model G"
        horizontal.plot(x, px, color=colours[c], lw=1.6, label=name)
        vertical.plot(y, py, color=colours[c], lw=1.6, label=name)
        if phot is not None:
            diff = norm.scale[i, c] * bins_i.value[..., c] - bins_r.value[..., c]
            resid = diff - _bilinear(norm.grad[i, c], norm.step, yy[:, None], xx[None, :])
            for ax, pos, axis, prof in ((horizontal, xx, 0, px), (vertical, yy, 1, py)):
                mean, ok = _sample_means(resid, axis)
                level = np.interp(pos, x if axis == 0 else y, prof) + mean
                dots = {"ms": 3.5, "alpha": 0.55, "label": "background bins" if c == 0 else None}
                ax.plot(pos[ok], level[ok], "o", color=colours[c], **dots)
    spans = ", ".join(f"{r:.4g}" for r in ranges)
    fig.suptitle(f"{label}: gradient model G subtracted (x' = k·x − G), peak to peak {spans}")
    horizontal.set_title("horizontal profile: mean of G over all rows")
    horizontal.set_xlabel("x (pixels)")
    vertical.set_title("vertical profile: mean of G over all columns")
    vertical.set_xlabel("y (pixels)")
    for ax in (horizontal, vertical):
        ax.set_ylabel("G (reference units)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def summary_figure(norm: Normalization, names: list[str] | None = None) -> Any:
    """One figure for all frames: scale, weight and stars or offsets.

    Parameters
    ----------
    norm : Normalization
        Any mode.
    names : list of str, optional
        File names of the frames, for the tick labels.

    Returns
    -------
    matplotlib.figure.Figure
        Panels: scale per frame and channel (with ``scale_err`` error bars in
        photometric mode); :func:`report_weights`; photometric: stars matched
        and used by the fit, and the gradient model's peak-to-peak range;
        other modes: the offsets. The reference is shaded.
    """
    n, channels = norm.scale.shape
    photometric = norm.mode == "photometric"
    panels = 4 if photometric else 3
    fig = _figure(min(16.0, max(8.0, 0.4 * n + 3.0)), 2.1 * panels + (1.2 if n <= 40 else 0.4))
    axes = fig.subplots(panels, 1, sharex=True)
    frames = np.arange(n)
    colours = _colours(channels)
    offsets = (np.arange(channels) - (channels - 1) / 2) * min(0.12, 0.6 / channels)
    err = norm.table.get("scale_err") if photometric else None
    for c in range(channels):
        yerr = None if err is None else np.asarray(err)[:, c]
        style = {"fmt": "o", "ms": 4, "capsize": 3, "color": colours[c]}
        label = f"channel {c}" if channels > 1 else None
        axes[0].errorbar(frames + offsets[c], norm.scale[:, c], yerr=yerr, label=label, **style)
    axes[0].set_ylabel("scale k" if photometric else "scale")
    axes[1].bar(frames, report_weights(norm), color="C2")
    axes[1].set_ylabel("weight")
    if photometric:
        matched = np.asarray(norm.table["n_stars"])
        pairs = norm.details.get("pairs", {})
        used = np.array([np.count_nonzero(pairs[k]["used"]) if k in pairs else 0 for k in range(n)])
        used[norm.reference] = matched[norm.reference]
        axes[2].bar(frames, matched, color="0.75", label="matched")
        axes[2].bar(frames, used, width=0.5, color="C0", label="used by the fit")
        axes[2].set_ylabel("stars")
        axes[2].set_ylim(0, 1.35 * max(int(matched.max(initial=0)), 1))
        axes[2].legend(fontsize="small", loc="upper center", ncols=2)
        ranges = np.asarray(norm.table["gradient_range"])
        for c in range(channels):
            axes[3].plot(frames, ranges[:, c], "s", color=colours[c])
        axes[3].set_ylabel("gradient\npeak to peak")
        fallback = np.flatnonzero(np.asarray(norm.table.get("fallback", np.zeros(n))))
        note = {"textcoords": "offset points", "ha": "center", "fontsize": "small", "color": "C1"}
        for k in fallback:
            axes[0].annotate("fallback", (k, norm.scale[k, 0]), xytext=(0, 8), **note)
    else:
        for c in range(channels):
            axes[2].plot(frames + offsets[c], norm.offset[:, c], "o", color=colours[c])
        axes[2].set_ylabel("offset")
    r = norm.reference
    for ax in axes:
        label = "reference" if ax is axes[0] else None
        ax.axvspan(r - 0.45, r + 0.45, color=_REF_SHADE, zorder=0, label=label)
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize="small", loc="best")
    if n <= 40:
        ticks = [_tick(names, k) for k in range(n)]
        turn = {} if names is None else {"rotation": 60, "ha": "right"}
        axes[-1].set_xticks(frames, ticks, fontsize="small", **turn)
    axes[-1].set_xlabel("frame")
    axes[-1].set_xlim(-0.6, n - 0.4)
    fig.suptitle(f"normalization '{norm.mode}': reference {_label(names, norm.reference)}")
    return fig
