"""The peer methods: ccdproc (default and tuned ``mem_limit``), astropy, numpy, bottleneck.

Each is what a user of that library would write: the in-memory peers read all
frames into one ``(n, H, W)`` float32 array (:func:`benchmarks.frameio.load_cube`;
FITS through astropy, TIFF through tifffile). All clip at 3/3 sigma about the
median with the MAD-based standard deviation and average what is left, except
the median-only peers (``numpy-median``, ``bottleneck-median``: a plain median,
no clipping), which are labelled so in the reports. Registered on import of
:mod:`benchmarks.methods`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .frameio import import_readers, is_tiff, load_cube, read_frame, write_image
from .methods import Mark, register

__all__: list[str] = []

MAD_TO_STD = 1.482602218505602
_CCDPROC = (
    "ccdproc.combine(files, method='average', sigma_clip=True, sigma_clip_func=np.ma.median, "
    "sigma_clip_dev_func=mad_std, unit='adu'{mem}); low/high thresh 3, float64, ONE clipping "
    "pass (Combiner.sigma_clipping maxiters=1); TIFF: frames read with tifffile into a list "
    "of CCDData first (ccdproc reads only FITS)"
)


def _tiff_ccd(path: str) -> Any:
    """A TIFF frame as CCDData (float32), its EXPTIME from the benchmark's description."""
    import json

    import numpy as np
    import tifffile
    from astropy.nddata import CCDData

    with tifffile.TiffFile(path) as tif:
        note = tif.pages[0].description
    try:
        meta = {k: v for k, v in json.loads(note).items() if k in ("IMAGETYP", "EXPTIME")}
    except ValueError:
        meta = {}
    return CCDData(read_frame(path).astype(np.float32), unit="adu", meta=meta)


def _ccdproc_calibrate(files: list[str], calib: dict[str, str], folder: Path) -> list[str]:
    """``ccdproc.ccd_process`` per frame (bias, dark by EXPTIME, flat over its mean),
    each reduced frame written to ``folder`` as FITS (as a ccdproc user does)."""
    import ccdproc
    from astropy import units as u
    from astropy.nddata import CCDData

    masters = {k: CCDData.read(p, unit="adu") for k, p in calib.items()}
    folder.mkdir(parents=True, exist_ok=True)
    reduced = []
    for i, f in enumerate(files):
        ccd = _tiff_ccd(f) if is_tiff(f) else CCDData.read(f, unit="adu")
        ccd = ccdproc.ccd_process(
            ccd,
            master_bias=masters.get("bias"),
            dark_frame=masters.get("dark"),
            master_flat=masters.get("flat"),
            exposure_key="EXPTIME",
            exposure_unit=u.s,
        )
        path = folder / f"reduced_{i:04d}.fits"
        ccd.write(path, overwrite=True)
        reduced.append(str(path))
    return reduced


def _ccdproc(
    files: list[str],
    out: str,
    mark: Mark,
    mem_limit: float | None,
    calibration: dict[str, str] | None = None,
) -> None:
    import ccdproc
    import numpy as np
    from astropy.stats import mad_std

    import_readers(files)
    mark("import")
    inputs: list[Any] = list(files)
    folder = Path(out).with_suffix(".reduced")
    if calibration:
        inputs = _ccdproc_calibrate(files, calibration, folder)
        mark("calibrate")
    elif is_tiff(files[0]):
        from astropy.nddata import CCDData

        inputs = [CCDData(read_frame(f).astype(np.float32), unit="adu") for f in files]
        mark("read")
    kwargs = {} if mem_limit is None else {"mem_limit": mem_limit}
    ccd = ccdproc.combine(
        inputs,
        method="average",
        sigma_clip=True,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
        unit="adu",
        **kwargs,
    )
    mark("stack")
    write_image(ccd.data, out)
    mark("write")
    if calibration:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


def _in_memory(files: list[str], out: str, mark: Mark, reduce: Callable[[Any], Any]) -> None:
    """The in-memory peers: (their library already imported) load every frame into
    one cube, reduce it along the frames, write the image; phases marked."""
    import_readers(files)  # (no calibrated variant: run_one gives these no masters)
    mark("import")
    cube = load_cube(files)
    mark("read")
    image = reduce(cube)
    mark("stack")
    write_image(image, out)
    mark("write")


# measured: 10x the float32 stack below mem_limit (float64 data, uncertainty, masks); split
# into chunks above it, about 14 GB at the default mem_limit
@register(
    "ccdproc",
    _CCDPROC.format(mem="") + "; default mem_limit 16e9",
    memory_factor=10.0,
    memory_cap=14e9,
)
def _run_ccdproc(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    _ccdproc(files, out, mark, None, opts.get("calibration"))


@register("ccdproc-tuned", _CCDPROC.format(mem=", mem_limit={ccdproc_mem_limit}"))
def _run_ccdproc_tuned(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    _ccdproc(files, out, mark, float(opts["ccdproc_mem_limit"]), opts.get("calibration"))


@register(
    "astropy",
    "read all frames into one (n, H, W) float32 array; astropy.stats.sigma_clip(axis=0, "
    "sigma=3, maxiters=5, cenfunc='median', stdfunc='mad_std').mean(axis=0); its final mask is "
    "'outside the last bounds', so a value clipped in an early pass can come back",
    memory_factor=3.6,
)
def _run_astropy(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import numpy as np
    from astropy.stats import sigma_clip

    def reduce(cube: Any) -> Any:
        clipped = sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
        return clipped.mean(axis=0).filled(np.nan)

    _in_memory(files, out, mark, reduce)


def bottleneck_clip_mean(cube: Any, sigma: float = 3.0, maxiters: int = 5) -> Any:
    """Sigma-clipped mean with bottleneck, cumulative rejection; rejected values become NaN.

    Per pass: centre = ``bn.nanmedian``, spread = 1.4826 x ``bn.nanmedian(|x - centre|)``
    over the values kept so far; values outside ``centre +- sigma x spread`` are
    set to NaN in ``cube`` (modified in place); stops after ``maxiters`` passes
    or when a pass rejects nothing. Returns ``bn.nanmean(cube, axis=0)``.
    """
    import bottleneck as bn
    import numpy as np

    dev = np.empty_like(cube)
    for _ in range(maxiters):
        center = bn.nanmedian(cube, axis=0)
        np.subtract(cube, center, out=dev)
        np.abs(dev, out=dev)
        bound = bn.nanmedian(dev, axis=0)
        bound *= np.float32(sigma * MAD_TO_STD)
        with np.errstate(invalid="ignore"):
            out = dev > bound  # NaN (rejected before) compares False
        if not out.any():
            break
        cube[out] = np.nan
        del out
    del dev
    return bn.nanmean(cube, axis=0)


@register(
    "bottleneck",
    "read all frames into one (n, H, W) float32 array; up to 5 passes of: centre = "
    "bn.nanmedian(axis=0), spread = 1.4826 bn.nanmedian(|x - centre|), values beyond 3 spreads "
    "set to NaN (cumulative, as stackengine); then bn.nanmean(axis=0)",
    memory_factor=2.6,
)
def _run_bottleneck(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import bottleneck  # noqa: F401  (its import time belongs to the import phase)

    _in_memory(files, out, mark, bottleneck_clip_mean)


@register(
    "numpy-median",
    "MEDIAN ONLY (no clipping): read all frames into one (n, H, W) float32 array; "
    "np.median(cube, axis=0) (whole array in memory, as a plain numpy user would)",
    memory_factor=2.3,
    median_only=True,
)
def _run_numpy_median(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import numpy as np

    _in_memory(files, out, mark, lambda cube: np.median(cube, axis=0))


@register(
    "bottleneck-median",
    "MEDIAN ONLY (no clipping): read all frames into one (n, H, W) float32 array; "
    "bottleneck.nanmedian(cube, axis=0)",
    memory_factor=1.3,
    median_only=True,
)
def _run_bottleneck_median(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import bottleneck as bn

    _in_memory(files, out, mark, lambda cube: bn.nanmedian(cube, axis=0))
