"""The ``stackengine`` command line: a thin argparse front end over the Python API."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from ._version import __version__
from .cli_calibration import (
    add_calibration_options,
    calibration_from_args,
    make_master,
    write_calibrated,
)
from .cli_options import add_input_options, add_stack_options
from .errors import ParameterError, StackEngineError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``stackengine`` command."""
    parser = argparse.ArgumentParser(
        prog="stackengine",
        description="Out-of-core, parallel stacking of registered astronomical frames.",
    )
    parser.add_argument("--version", action="version", version=f"stackengine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="reject and combine frames into one image")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, help="result: .zarr, .fits or .tif")
    add_stack_options(p)
    add_calibration_options(p)

    p = sub.add_parser("master", help="make a master bias, dark or flat")
    p.add_argument("kind", choices=["bias", "dark", "flat"], help="what to make")
    p.add_argument("inputs", nargs="+", help="the calibration frames: files, folders or globs")
    p.add_argument("-o", "--output", required=True, help="the master: .fits, .zarr or .tif")
    add_stack_options(p)
    add_calibration_options(p, masters=False)

    p = sub.add_parser(
        "calibrate", help="write calibrated copies of the lights (streamed, tile by tile)"
    )
    p.add_argument("inputs", nargs="+", help="the lights: files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, help="folder for the calibrated FITS files")
    p.add_argument("--overwrite", action="store_true", help="replace existing calibrated files")
    add_calibration_options(p)
    add_input_options(p)

    p = sub.add_parser(
        "info",
        help="show frames, shape, dtype and key headers, or group them by type, filter, exposure",
    )
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument(
        "--by",
        default=None,
        metavar="COLUMNS",
        help="print one line per group of frames, e.g. imagetyp,filter,exptime (the frames "
        "may then differ in shape)",
    )
    p.add_argument(
        "--filter-keys",
        default=None,
        metavar="KEYS",
        help="header keywords tried in turn for the filter (default FILTER,FILTNAME,INSFLNAM,"
        "FILTER1)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATTERN:COLUMN=VALUE",
        help="override what the headers say for the files a path, name or glob matches, "
        "e.g. 'flat-*.FIT:imagetyp=flat'; repeatable",
    )
    add_input_options(p)

    p = sub.add_parser(
        "normalize-report", help="measure frames and write normalization plots (no stacking)"
    )
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("--plots", required=True, metavar="DIR", help="folder for the PNG plots")
    p.add_argument("--normalize", default="photometric", help="mode (default photometric)")
    p.add_argument("--reference", default=None, help="reference frame: index or path (auto)")
    p.add_argument("--smoothness", type=float, default=2.0, help="gradient smoothness (2)")
    p.add_argument("--star-fallback", default=None, choices=["additive+scale"])
    add_input_options(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing plots")

    p = sub.add_parser(
        "run",
        help="a whole night: sort the raw frames, make the masters, calibrate, register and "
        "stack the lights per filter, write a report and the configuration used",
    )
    p.add_argument(
        "inputs", nargs="*", help="the raw frames: files, folders or globs (default: --config's)"
    )
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="the output folder")
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="a configuration (the config.toml of an earlier run, edited or not): replays it",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one choice of the configuration, e.g. stack.normalize=photometric; "
        "repeatable",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATTERN:COLUMN=VALUE",
        help="override what the headers say, e.g. 'flat-*.FIT:imagetyp=flat'; repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; read no pixel")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run's files")

    p = sub.add_parser(
        "demo", help="make a synthetic raw night, run it from bias to stack, draw a picture"
    )
    p.add_argument(
        "-o",
        "--output",
        default="stackengine_demo",
        help="the demo's folder (stackengine_demo); an earlier demo output there is replaced",
    )

    return parser


def _reference(text: str | None) -> int | str | None:
    if text is None:
        return None
    return int(text) if text.lstrip("-").isdigit() else text


def _hdu(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


def _storage_options(items: list[str]) -> dict[str, Any] | None:
    """``--storage-option KEY=VALUE`` entries as a (nested) dict, None if there are none."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--storage-option {item}: expected KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, leaf = key.strip().split(".")
        node = options
        for name in parents:
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise ParameterError(f"--storage-option {item}: {name} is already a value")
            node = child
        node[leaf] = value
    return options or None


def _cmd_stack(args: argparse.Namespace) -> int:
    from . import open_frames
    from .progress import progress_context
    from .tasks.cluster import scheduler_context
    from .tasks.write import check_write

    reject = None if args.reject.lower() == "none" else args.reject
    if isinstance(reject, str) and "," in reject:
        reject = [r.strip() for r in reject.split(",")]
    t0 = time.perf_counter()
    check_write(
        args.output,
        overwrite=args.overwrite,
        dtype=args.dtype,
        compression=args.compression,
        resume=args.resume,
    )
    _log_to_stderr()
    storage = _storage_options(args.storage_option)
    frames = open_frames(
        _inputs_without(args.inputs, args.output, storage),
        hdu=_hdu(args.hdu),
        storage_options=storage,
        allow_duplicates=args.allow_duplicates,
        pad=args.register is not None,  # registered frames may differ in shape
    )
    with ExitStack() as stack_ctx:
        client = stack_ctx.enter_context(
            scheduler_context(args.scheduler, workers=args.workers, memory_limit=args.memory_limit)
        )
        if args.report:
            stack_ctx.enter_context(_performance_report(client, args.report))
        show = sys.stderr.isatty() if args.progress is None else args.progress
        stack_ctx.enter_context(progress_context("stacking", enabled=show, address=args.scheduler))
        out, n = _stack_and_write(args, frames, reject)
        if args.plots and args.normalize:
            _plots(args, frames)
    dt = time.perf_counter() - t0
    shape = "x".join(str(s) for s in frames.shape[1:])
    what = f"made the master {args.kind} of" if args.command == "master" else "stacked"
    frames_word = "frame" if n == 1 else "frames"
    print(f"{what} {n} {frames_word} of {shape} ({frames.dtype}) into {out} in {dt:.1f} s")
    return 0


def _inputs_without(inputs: list[str], output: str, storage: dict | None) -> list[str]:
    """The inputs expanded to files, without the output (a previous run's result that a
    glob matches again): it is never read as an input; a warning names it."""
    from pathlib import Path

    from .io.atomic import written_by_stackengine
    from .io.remote import expand, is_url

    files = expand(inputs, storage)
    if is_url(output):
        return files
    target = os.path.realpath(output)
    kept = [f for f in files if is_url(f) or os.path.realpath(f) != target]
    if len(kept) < len(files):
        if not written_by_stackengine(Path(output)):  # a frame of the user's: keep it safe
            raise ParameterError(
                f"{output}: is one of the input frames and was not written by stackengine; "
                "choose another output"
            )
        print(
            f"stackengine: warning: {output} is the output; not read as an input", file=sys.stderr
        )
    return kept


def _stack_and_write(args: argparse.Namespace, frames: Any, reject: object) -> tuple[Any, int]:
    """stack() with the command line's options, then write() the result; returns the
    path written and the number of frames combined."""
    from . import stack, write

    if args.command == "master":
        return make_master(args, frames, _stack_kwargs(args, reject)), frames.sizes["frame"]
    result = stack(frames, calibration=calibration_from_args(args), **_stack_kwargs(args, reject))
    for line in result.attrs.get("selection", []):  # what frame selection decided, per frame
        print(f"select: {line}")
    out = write(
        result,
        args.output,
        overwrite=args.overwrite,
        dtype=args.dtype,
        compression=args.compression,
        resume=args.resume,
    )
    return out, int(result.attrs["n_frames"])


def _stack_kwargs(args: argparse.Namespace, reject: object) -> dict[str, Any]:
    """stack()'s keywords from the command line's options."""
    return dict(
        reject=reject,
        sigma_lower=args.sigma_lower,
        sigma_upper=args.sigma_upper,
        maxiters=args.maxiters,
        center=args.center,
        spread=args.spread,
        percentile_low=args.percentile_low,
        percentile_high=args.percentile_high,
        n_low=args.n_low,
        n_high=args.n_high,
        min_value=args.min_value,
        max_value=args.max_value,
        esd_alpha=args.esd_alpha,
        esd_max_outliers=args.esd_max_outliers,
        fallback=args.fallback,
        normalize=args.normalize,
        reference=_reference(args.reference),
        smoothness=args.smoothness,
        star_fallback=args.star_fallback,
        combine=args.combine,
        weights=args.weights,
        memory_limit=args.memory_limit,
        register=args.register,
        transform=args.transform,
        interpolation=args.interpolation,
        framing=args.framing,
        conserve_flux=args.conserve_flux,
        select=args.select,
        bayer=args.bayer,
        debayer=args.debayer,
        output_wcs=args.output_wcs,
        shape_out=args.shape_out,
        wcs_accuracy=args.wcs_accuracy,
        output_scale=args.output_scale,
        pixfrac=args.pixfrac,
        drizzle_kernel=args.drizzle_kernel,
        weight_maps=args.weight_maps,
        masks=args.masks,
        match_background=args.match_background,
    )


def _performance_report(client: object, filename: str):
    """dask.distributed's performance report of the run, written to ``filename``."""
    from .errors import ParameterError

    if client is None:
        raise ParameterError("--report needs a dask.distributed cluster (--scheduler or --workers)")
    try:
        import bokeh  # noqa: F401  (dask's performance report draws with bokeh)
    except ImportError:
        raise ParameterError('--report needs bokeh: pip install "stackengine[cluster]"') from None
    from distributed import performance_report

    return performance_report(filename=filename)


def _log_to_stderr() -> None:
    """stackengine's log lines (e.g. how many tiles a resumed run computes) on stderr."""
    import logging

    logger = logging.getLogger("stackengine")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("stackengine: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from .io.remote import expand

    t0 = time.perf_counter()
    _log_to_stderr()
    written = write_calibrated(args, expand(args.inputs, _storage_options(args.storage_option)))
    dt = time.perf_counter() - t0
    frames_word = "frame" if len(written) == 1 else "frames"
    print(f"calibrated {len(written)} {frames_word} into {args.output} in {dt:.1f} s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .calibrate.summary import (
        FILTER_KEYS,
        decisions,
        group_table,
        overrides_from_text,
        summarize,
        summary,
    )
    from .frames import frame_sources

    keys = FILTER_KEYS if args.filter_keys is None else args.filter_keys.split(",")
    overrides = overrides_from_text(args.set) or None
    hdu, storage = _hdu(args.hdu), _storage_options(args.storage_option)
    if args.by is not None:
        by = [c.strip() for c in args.by.split(",") if c.strip()]
        table = summary(
            args.inputs, hdu=hdu, filter_keys=keys, overrides=overrides, storage_options=storage
        )
        print(group_table(table, by))
        return 0
    frames = frame_sources(
        args.inputs, hdu=hdu, storage_options=storage, allow_duplicates=args.allow_duplicates
    )
    first = frames[0]
    print(
        f"{len(frames)} frames, shape {first.shape}, dtype {first.dtype}, layout unit {first.block}"
    )
    table = summarize(frames, filter_keys=keys, overrides=overrides)
    cards = ("EXPTIME", "EXPOSURE", "FILTER", "IMAGETYP", "DATE-OBS", "OBJECT")
    for f, kind, filt in zip(frames, table["imagetyp"], table["filter"], strict=True):
        header = getattr(f, "header", {}) or {}
        shown = "  ".join(f"{k}={header[k]}" for k in cards if k in header)
        print(f"  {f.path}  type={kind or '-'}  filter={filt or '-'}  {shown}".rstrip())
    print(decisions(table))
    return 0


def _cmd_normalize_report(args: argparse.Namespace) -> int:
    from . import open_frames

    storage = _storage_options(args.storage_option)
    _plots(
        args,
        open_frames(
            args.inputs,
            hdu=_hdu(args.hdu),
            storage_options=storage,
            allow_duplicates=args.allow_duplicates,
        ),
    )
    return 0


def _plots(args: argparse.Namespace, frames: object) -> None:
    """Normalization plots (photometry, gradient, summary) into ``args.plots``."""
    from .plots import plot_normalization

    written = plot_normalization(
        frames,
        args.plots,
        mode=args.normalize,
        reference=_reference(args.reference),
        smoothness=args.smoothness,
        star_fallback=args.star_fallback,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(written)} normalization plots into {args.plots}")


def _cmd_run(args: argparse.Namespace) -> int:
    from .calibrate.summary import overrides_from_text
    from .night import load_config, plan_night, run_night
    from .night.execute import output_names

    t0 = time.perf_counter()
    config = load_config(args.config)
    for item in args.option:
        from .night.config import set_option

        set_option(config, item)
    for column, spec in overrides_from_text(args.set).items():
        config["frames"]["overrides"].setdefault(column, {}).update(spec)
    inputs = args.inputs or None
    if args.dry_run:
        plan = plan_night(inputs, config, out_dir=args.output)
        print(plan.describe())
        print(f"\nwould write into {args.output}: {', '.join(output_names(plan))}")
        return 0
    _log_to_stderr()
    from .progress import progress_context

    with progress_context("night", enabled=sys.stderr.isatty()):
        result = run_night(inputs, args.output, config, overwrite=args.overwrite,
                           log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    print(result.plan.describe())
    notes = [f"stack {s.name}: {n}" for s in result.stacks for n in s.notes]
    for line in [*result.warnings, *notes]:
        print(f"stackengine: warning: {line}", file=sys.stderr)
    dt = time.perf_counter() - t0
    print(f"\nwrote {len(result.files)} files into {args.output} in {dt:.1f} s: "
          f"{', '.join(p.name for p in result.files)}")  # fmt: skip
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(output=args.output)
    return 0


def _one_line_warnings() -> None:
    """stackengine's warnings as one line each; the libraries' notes about the files
    they read (astropy's card fixes, tifffile's tag notes) are not shown."""
    import logging
    import warnings

    from astropy.utils.exceptions import AstropyWarning

    logging.getLogger("tifffile").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=AstropyWarning)

    def show(message: Any, category: Any, filename: str, lineno: int, *args: Any) -> None:
        print(f"stackengine: warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 on success)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "stack": _cmd_stack,
        "master": _cmd_stack,
        "calibrate": _cmd_calibrate,
        "info": _cmd_info,
        "demo": _cmd_demo,
        "run": _cmd_run,
        "normalize-report": _cmd_normalize_report,
    }
    try:
        return handlers[args.command](args)
    except StackEngineError as exc:
        print(f"stackengine: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. disk full while writing: one line, no traceback
        print(f"stackengine: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stackengine: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # an unexpected failure (a bug, a lost cluster): one line
        if os.environ.get("STACKENGINE_DEBUG"):
            raise
        print(
            f"stackengine: error: {type(exc).__name__}: {exc} "
            "(set STACKENGINE_DEBUG=1 for a traceback)",
            file=sys.stderr,
        )
        return 1


def run(argv: Sequence[str] | None = None) -> int:
    """The ``stackengine`` command: :func:`main` in a process of its own.

    The process ends when the command does, so the objects alive before the
    work (the imported libraries) and after it are moved to the cyclic
    collector's permanent generation (:func:`gc.freeze`): collections during
    the run skip the libraries, and the interpreter's shutdown does not scan
    the whole heap once more (0.2–0.5 s). :func:`main` itself leaves ``gc``
    alone, for callers that go on after it.
    """
    gc.freeze()
    _one_line_warnings()
    try:
        code = main(argv)
    finally:
        gc.freeze()
    if code == 130:  # interrupted: the temporaries are gone and the lock released, but
        # threads of the abandoned computation may still wait in a pool that the
        # interpreter's shutdown would join: end the process now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
