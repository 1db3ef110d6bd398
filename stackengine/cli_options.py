"""The options of ``stackengine stack`` and of the commands that read frames (argparse)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_input_options", "add_stack_options"]


def _maxiters(text: str) -> int | None:
    if text.lower() in ("none", "0", "inf", "unlimited"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer or 'none': {text!r}") from None


def _optional_float(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'none': {text!r}") from None


def _weights(text: str | None) -> object:
    """``exptime``, ``noise``, ``keyword:NAME`` or comma-separated numbers."""
    if (
        text is None
        or text in ("exptime", "noise", "photometric", "map")
        or text.startswith("keyword:")
    ):
        return text
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"weights: expected exptime, noise, photometric, map, keyword:NAME or numbers, "
            f"got {text!r}"
        ) from None


def _output_wcs(text: str) -> object:
    """``optimal``, ``reference`` (None) or a FITS file / text header with the grid."""
    if text in ("optimal", "reference"):
        return None if text == "reference" else text
    from astropy.io import fits

    try:
        with open(text, "rb") as f:
            start = f.read(9)
        if start == b"SIMPLE  =":
            return fits.getheader(text)
        return fits.Header.fromtextfile(text)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"--output-wcs {text}: {exc}") from None


def _shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROWS,COLS, got {text!r}") from None
    return rows, cols


def _companion(text: str | None) -> object:
    """A pattern with {stem}/{name}/{dir}, an HDU name, or an HDU number."""
    if text is None or "{" in text:
        return text
    return int(text) if text.isdigit() else text


def add_sky_options(p: argparse.ArgumentParser) -> None:
    """Options of co-adds on a sky grid (``--register wcs``)."""
    sg = p.add_argument_group("sky co-adds and mosaics (--register wcs)")
    sg.add_argument(
        "--output-wcs",
        type=_output_wcs,
        default=None,
        metavar="GRID",
        help="the output grid: reference (the reference frame's, default), optimal (north-up "
        "TAN covering every frame at the finest scale), or a FITS file or text header",
    )
    sg.add_argument(
        "--shape-out", type=_shape, default=None, metavar="ROWS,COLS", help="the grid's shape"
    )
    sg.add_argument(
        "--wcs-accuracy",
        type=float,
        default=1e-3,
        help="largest error of the interpolated mapping in pixels (1e-3; 0: every pixel exactly)",
    )
    sg.add_argument(
        "--output-scale",
        type=float,
        default=None,
        help="with --output-wcs optimal: output pixel size in input pixels (e.g. 0.5)",
    )
    sg.add_argument("--pixfrac", type=float, default=1.0, help="drizzle: pixel shrink (1.0)")
    sg.add_argument("--drizzle-kernel", default="square", choices=["square", "point", "turbo"])
    sg.add_argument(
        "--weight-maps",
        type=_companion,
        default=None,
        metavar="SPEC",
        help="a weight map per frame (0 = bad): a pattern such as '{stem}.weight.fits' or the "
        "HDU of each frame's file holding it (e.g. WEIGHT or 1)",
    )
    sg.add_argument(
        "--masks", type=_companion, default=None, metavar="SPEC",
        help="a mask or flag image per frame (non-zero = bad), given as --weight-maps",
    )  # fmt: skip
    sg.add_argument(
        "--match-background",
        action="store_true",
        help="bring overlapping frames to one background level (offsets fitted to the overlaps)",
    )


def add_stack_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rejection")
    g.add_argument(
        "--reject",
        default="sigma",
        help="none, sigma, winsorized, linear_fit, percentile, minmax, extrema, esd, or a "
        "comma-separated list applied in order, e.g. extrema,minmax,sigma (default sigma)",
    )
    g.add_argument("--sigma-lower", type=float, default=3.0, help="lower threshold (default 3)")
    g.add_argument("--sigma-upper", type=float, default=3.0, help="upper threshold (default 3)")
    g.add_argument(
        "--maxiters",
        type=_maxiters,
        default=5,
        help="clipping iterations; 'none' = until nothing new is rejected (default 5)",
    )
    g.add_argument("--center", default="median", choices=["median", "mean"])
    g.add_argument("--spread", default="mad_std", choices=["mad_std", "std"])
    g.add_argument("--percentile-low", type=float, default=0.2, help="percentile (0.2)")
    g.add_argument("--percentile-high", type=float, default=0.1, help="percentile (0.1)")
    g.add_argument("--n-low", type=int, default=1, help="extrema: lowest values dropped (1)")
    g.add_argument("--n-high", type=int, default=1, help="extrema: highest values dropped (1)")
    g.add_argument("--min-value", type=_optional_float, default=None, help="minmax lower bound")
    g.add_argument("--max-value", type=_optional_float, default=None, help="minmax upper bound")
    g.add_argument("--esd-alpha", type=float, default=0.05, help="esd significance (0.05)")
    g.add_argument(
        "--esd-max-outliers", type=float, default=0.3, help="esd: largest share rejected (0.3)"
    )
    g.add_argument(
        "--fallback", default=None, choices=["median"], help="all rejected: median, not NaN"
    )
    g.add_argument("--combine", default="mean", choices=["mean", "median", "sum", "min", "max"])
    g.add_argument(
        "--weights",
        type=_weights,
        default=None,
        help="frame weights: exptime, noise, photometric, keyword:NAME or comma-separated "
        "numbers; map: per pixel, the --weight-maps (inverse variance)",
    )
    nz = p.add_argument_group("normalization")
    nz.add_argument(
        "--normalize",
        default=None,
        choices=[
            "additive",
            "multiplicative",
            "additive+scale",
            "multiplicative+scale",
            "photometric",
        ],
        help="normalize every frame to a reference frame before rejection",
    )
    nz.add_argument("--reference", default=None, help="reference frame: index or path (auto)")
    nz.add_argument(
        "--smoothness", type=float, default=2.0, help="photometric: gradient smoothness (2)"
    )
    nz.add_argument(
        "--star-fallback",
        default=None,
        choices=["additive+scale"],
        help="photometric: normalize frames with too few stars this way instead of failing",
    )
    rg = p.add_argument_group("registration")
    rg.add_argument(
        "--register",
        default=None,
        choices=["stars", "wcs"],
        help="align the frames before stacking: on the reference frame by their stars, or "
        "through each frame's WCS onto a sky grid (--output-wcs)",
    )
    rg.add_argument(
        "--transform",
        default="similarity",
        choices=["shift", "similarity", "affine", "homography"],
        help="the registration model (default similarity: shift, rotation, scale)",
    )
    rg.add_argument(
        "--interpolation",
        default="lanczos3",
        choices=["lanczos3", "bicubic", "bilinear", "nearest", "drizzle"],
        help="resampling kernel (default lanczos3, clamped against ringing); drizzle: "
        "--register wcs only",
    )
    rg.add_argument(
        "--framing",
        default="reference",
        choices=["reference", "union", "intersection"],
        help="the output grid: the reference frame's (default), all frames', or the common part",
    )
    rg.add_argument(
        "--select",
        action="append",
        default=None,
        metavar="RULE",
        help="keep frames by the registration's measurements, repeatable: fwhm<4.5, "
        "roundness>0.8, n_stars>=50, best:90%% (by fwhm) or best:90%%:n_stars",
    )
    rg.add_argument(
        "--conserve-flux",
        action="store_true",
        help="multiply by the frame-pixel area per output pixel (SWarp's flux scaling)",
    )
    add_sky_options(p)
    cg = p.add_argument_group("colour (one-shot-colour cameras)")
    cg.add_argument(
        "--bayer",
        default=None,
        metavar="PATTERN",
        help="Bayer pattern of the frames (RGGB, BGGR, GRBG, GBRG) overriding their "
        "BAYERPAT header, or 'none' to stack the raw mosaics (default: from the header)",
    )
    cg.add_argument(
        "--debayer",
        default="bilinear",
        choices=["bilinear", "mhc"],
        help="demosaicing method for Bayer frames (default bilinear; mhc: Malvar-He-Cutler)",
    )
    o = p.add_argument_group("input, output and resources")
    add_input_options(o)
    o.add_argument("--memory-limit", default="1GiB", help="memory budget per worker (1GiB)")
    o.add_argument(
        "--dtype",
        default=None,
        help="output image dtype: float32 (default), float64, uint8, uint16, ..., or 'input'",
    )
    o.add_argument("--compression", default=None, help="zlib, zstd, lzw (TIFF) or none")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output")
    o.add_argument(
        "--resume",
        action="store_true",
        help="zarr output: continue an interrupted run, computing only the missing tiles",
    )
    o.add_argument(
        "--scheduler",
        default=None,
        help="address of a dask.distributed scheduler (tcp://host:8786)",
    )
    o.add_argument(
        "--workers",
        type=int,
        default=None,
        help="start a local cluster of N worker processes (each with --memory-limit)",
    )
    shown = o.add_mutually_exclusive_group()
    shown.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="show progress with a percentage and an ETA on stderr (default: on a terminal)",
    )
    shown.add_argument("--quiet", dest="progress", action="store_false", help="show no progress")
    o.add_argument(
        "--report",
        default=None,
        metavar="HTML",
        help="write dask's performance report (needs --scheduler or --workers)",
    )
    o.add_argument(
        "--plots",
        default=None,
        metavar="DIR",
        help="write normalization plots (photometry, gradient, summary) into DIR",
    )


def add_input_options(p: Any) -> None:
    """--hdu, --allow-duplicates and --storage-option, for every command that reads frames."""
    p.add_argument("--hdu", default="0", help="FITS HDU number or name (default 0)")
    p.add_argument(
        "--allow-duplicates",
        action="store_true",
        help="stack a file given more than once that many times (default: an error)",
    )
    p.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option for URL inputs (s3://, gs://, https://), repeatable; "
        "VALUE is JSON when it parses (true, 3), a string otherwise; "
        "a dotted KEY nests (client_kwargs.endpoint_url=...)",
    )
