"""The command line's calibration options and commands (``master``, ``calibrate``).

Argument definitions and the calls into the Python API only; :mod:`stackengine.cli`
dispatches to them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = [
    "add_calibration_options",
    "calibration_from_args",
    "make_master",
    "write_calibrated",
]


def _section(text: str) -> str:
    """auto, none, or an IRAF section such as [1025:1056,1:1024]."""
    return text.lower() if text.lower() in ("auto", "none") else text


def add_calibration_options(p: argparse.ArgumentParser, *, masters: bool = True) -> None:
    """--bias, --dark, --flat, --dark-scale, --overscan, --trim, --bad-pixels, --flat-min."""
    g = p.add_argument_group("calibration")
    g.add_argument("--bias", default=None, metavar="MASTER", help="master bias to subtract")
    g.add_argument("--dark", default=None, metavar="MASTER", help="master dark to subtract")
    if masters:
        g.add_argument("--flat", default=None, metavar="MASTER", help="master flat to divide by")
    g.add_argument(
        "--dark-scale",
        action="store_true",
        help="scale the dark by each frame's exposure over the dark's (per-second masters too)",
    )
    g.add_argument(
        "--overscan",
        type=_section,
        default=None,
        metavar="auto|none|SECTION",
        help="subtract each row's overscan level; auto (the default when calibrating) = the "
        "BIASSEC card where the frames have one",
    )
    g.add_argument(
        "--trim",
        type=_section,
        default=None,
        metavar="auto|none|SECTION",
        help="keep this section; auto = TRIMSEC, else DATASEC (the default with an overscan)",
    )
    if masters:
        g.add_argument(
            "--bad-pixels",
            default=None,
            metavar="auto|FILE",
            help="pixels to treat as missing: a mask file (nonzero = bad), or auto = hot pixels "
            "of the master dark and low-response pixels of the master flat",
        )
        g.add_argument(
            "--flat-min",
            type=float,
            default=None,
            metavar="VALUE",
            help="flat pixels below VALUE are missing (default 0.1 x the flat's median)",
        )


def calibration_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """stack()'s ``calibration`` from the command line's options; None when none is asked
    for (no master, no section): frames are then stacked as they are."""
    spec = {
        "bias": args.bias,
        "dark": args.dark,
        "flat": getattr(args, "flat", None),
        "dark_scale": args.dark_scale,
        "overscan": args.overscan,
        "trim": args.trim,
        "bad_pixels": getattr(args, "bad_pixels", None),
        "min_value": getattr(args, "flat_min", None),
    }
    if all(spec[k] is None for k in ("bias", "dark", "flat", "bad_pixels", "overscan", "trim")):
        return None
    spec["overscan"] = spec["overscan"] or "auto"
    return spec


def make_master(args: argparse.Namespace, frames: Any, stack_options: dict[str, Any]) -> Path:
    """``stackengine master KIND``: make the master and write it."""
    from . import master, write

    if stack_options.get("normalize") is not None:
        from .errors import ParameterError

        raise ParameterError(
            f"master {args.kind}: --normalize does not apply (a master's normalization is "
            "fixed by its kind: flats by their median, per-second darks by their exposure)"
        )
    if stack_options.get("register") is not None:
        from .errors import ParameterError

        raise ParameterError(f"master {args.kind}: calibration frames are not registered")
    skip = ("normalize", "reference", "smoothness", "star_fallback", "register", "transform",
            "interpolation", "framing", "conserve_flux", "select")  # fmt: skip
    options = {k: v for k, v in stack_options.items() if k not in skip}
    result = master(
        frames,
        args.kind,
        bias=args.bias,
        dark=args.dark,
        dark_scale=args.dark_scale,
        overscan=args.overscan or "auto",
        trim=args.trim,
        **options,
    )
    return write(result, args.output, overwrite=args.overwrite, dtype=args.dtype)


def write_calibrated(args: argparse.Namespace, paths: list[str]) -> list[Path]:
    """``stackengine calibrate``: each light calibrated into ``args.output``/NAME.fits,
    streamed tile by tile; nothing is written before every check passed."""
    import xarray as xr

    from . import write
    from .calibrate.api import calibration_plan
    from .calibrate.plan import calibration_options
    from .errors import OutputError
    from .frames import open_frames
    from .tasks.write import check_write

    folder = Path(args.output)
    if not folder.is_dir() and not folder.parent.is_dir():
        raise OutputError(f"{folder.parent}: output folder does not exist")
    frames = open_frames(paths, allow_duplicates=False)
    spec = calibration_options(calibration_from_args(args) or {"overscan": "auto"})
    calibrated, calib = calibration_plan(frames, spec, frame_chunk=1)  # every check first
    made = not folder.is_dir()
    if made:
        folder.mkdir()
    resized = bool(calib.settings.get("trim") or calib.settings.get("overscan"))
    source = frames.coords["path"].values
    targets = [folder / (Path(str(p)).name.rsplit(".", 1)[0] + ".fits") for p in source]
    if len(set(targets)) < len(targets):
        raise OutputError(f"{folder}: two lights have the same file name; calibrate them apart")
    try:
        for target in targets:
            check_write(target, overwrite=args.overwrite)
    except Exception:
        if made:
            folder.rmdir()  # ours, and still empty
        raise
    from .frames import source_of

    stack = source_of(frames.data)
    written = []
    for k, target in enumerate(targets):
        header = getattr(stack.frames[k], "full_header", None)
        attrs = {"calibration": calibrated.attrs["calibration"], "calibrated_from": str(source[k])}
        if header is not None:
            attrs["fits_header"] = header().tostring()
        if resized:  # the raw frame's sections do not describe the calibrated copy
            attrs["fits_cards"] = {"BIASSEC": None, "TRIMSEC": None, "DATASEC": None}
        image = calibrated[k].drop_vars([c for c in calibrated.coords if c != "x"], errors="ignore")
        ds = xr.Dataset({"image": image}, attrs=attrs)
        written.append(write(ds, target, overwrite=args.overwrite))
    return written
