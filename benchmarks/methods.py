"""The stacking methods a benchmark child can run: stackengine, its peers, and the
rejection algorithms of stackengine.

A method is ``run(files, out_path, options, mark)``: it stacks ``files``,
writes the image to ``out_path`` (FITS) and calls ``mark(phase)`` at the end
of each phase; it may return a dict, merged into the child's record.
Libraries are imported inside ``run`` (their import time is part of the
child's measured time).

Rejection algorithms are methods named ``alg:SPEC`` (:func:`get_method`), where
``SPEC`` is an :data:`ALGORITHMS` name or several joined by ``+`` (stages in
that order, e.g. ``minmax+sigma``); each runs ``se.stack(reject=...)`` with the
parameters of :data:`ALGORITHMS` and ``combine='mean'``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_PREFIX",
    "METHODS",
    "Method",
    "algorithm_kwargs",
    "algorithm_params",
    "get_method",
    "parse_algorithms",
    "register",
]

Mark = Callable[[str], None]
ALGORITHM_PREFIX = "alg:"

#: Parameters of each rejection algorithm for the 50-frame benchmark (passed to se.stack).
ALGORITHMS: dict[str, dict[str, Any]] = {
    "sigma": dict(sigma_lower=3.0, sigma_upper=3.0, maxiters=5, center="median", spread="mad_std"),
    "winsorized": dict(sigma_lower=3.0, sigma_upper=3.0, maxiters=5),
    "linear_fit": dict(sigma_lower=5.0, sigma_upper=2.5, maxiters=5),  # PixInsight's defaults
    "percentile": dict(percentile_low=0.2, percentile_high=0.1),
    # a 16-bit ADC's range: outside the synthetic data, so this times a stage that rejects nothing
    "minmax": dict(min_value=0.0, max_value=65535.0),
    "extrema": dict(n_low=1, n_high=1),
    "esd": dict(esd_alpha=0.05, esd_max_outliers=0.3),
}


@dataclass(frozen=True)
class Method:
    """A stacking method run in a child process (see the module docstring)."""

    name: str
    params: str
    run: Callable[[list[str], str, dict[str, Any], Mark], dict[str, Any] | None]


METHODS: dict[str, Method] = {}


def register(name: str, params: str) -> Callable:
    """Register ``run(files, out_path, options, mark)`` as method ``name``.

    ``params`` describes the call; ``{memory_limit}`` in it is filled in.
    """

    def deco(func: Callable[[list[str], str, dict[str, Any], Mark], None]) -> Callable:
        METHODS[name] = Method(name, params, func)
        return func

    return deco


def parse_algorithms(text: str) -> list[str]:
    """A comma list of algorithm specs -> the specs, sigma first, duplicates dropped.

    A spec is an :data:`ALGORITHMS` name, names joined by ``+`` (a stage
    list), or ``all`` (every name). Sigma, the reference of the throughput
    ratios, is added first when missing.

    Raises
    ------
    ValueError
        An unknown name, a stage list whose stages set a shared parameter
        differently, or an empty list.
    """
    specs = []
    for item in (s.strip() for s in text.split(",")):
        specs += list(ALGORITHMS) if item == "all" else [item] if item else []
    if not specs:
        raise ValueError("no algorithms given")
    for spec in specs:
        algorithm_kwargs(spec)
    unique = list(dict.fromkeys(specs))
    return unique if "sigma" in unique else ["sigma", *unique]


def algorithm_kwargs(spec: str) -> dict[str, Any]:
    """The ``se.stack`` keyword arguments of an algorithm spec (``reject`` and its parameters)."""
    names = spec.split("+")
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {name!r}; choose from {', '.join(ALGORITHMS)}")
        for key, value in ALGORITHMS[name].items():
            if kwargs.get(key, value) != value:
                raise ValueError(f"{spec!r}: its stages set {key} differently")
            kwargs[key] = value
    return {"reject": names[0] if len(names) == 1 else names, **kwargs, "combine": "mean"}


def algorithm_params(spec: str) -> str:
    """The call an algorithm spec makes, as printed in the report (``{memory_limit}`` unfilled)."""
    args = ", ".join(f"{k}={_short(v)}" for k, v in algorithm_kwargs(spec).items())
    return f"se.stack({args}, memory_limit={{memory_limit}}) + se.write(.fits)"


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _run_algorithm(spec: str) -> Callable[[list[str], str, dict[str, Any], Mark], None]:
    def run(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
        import stackengine as se

        mark("import")
        frames = se.open_frames(files)
        res = se.stack(frames, **algorithm_kwargs(spec), memory_limit=opts["memory_limit"])
        se.write(res, out, overwrite=True)
        mark("stack+write")

    return run


def get_method(name: str) -> Method:
    """The registered method ``name``, the algorithm method ``alg:SPEC`` or ``norm:MODE``.

    ``norm:MODE`` times a normalization's measure pass and stack pass
    (:mod:`benchmarks.normalization`); its ``run`` returns what it found.

    Raises
    ------
    KeyError
        No such method or algorithm.
    """
    if name in METHODS:
        return METHODS[name]
    if name.startswith(ALGORITHM_PREFIX):
        spec = name[len(ALGORITHM_PREFIX) :]
        try:
            params = algorithm_params(spec)
        except ValueError as exc:
            raise KeyError(str(exc)) from None
        return Method(name, params, _run_algorithm(spec))
    if name.startswith("norm:"):
        from .normalization import normalization_method

        return Method(name, *normalization_method(name[len("norm:") :]))
    raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


def _write_fits(image: Any, out_path: str) -> None:
    import numpy as np
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(image, dtype=np.float32)).writeto(out_path, overwrite=True)


@register(
    "stackengine",
    "se.stack(reject='sigma', sigma_lower=3, sigma_upper=3, maxiters=5, center='median', "
    "spread='mad_std', combine='mean', memory_limit={memory_limit}) + se.write(.fits)",
)
def _run_stackengine(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import stackengine as se

    mark("import")
    frames = se.open_frames(files)
    res = se.stack(
        frames,
        reject="sigma",
        sigma_lower=3.0,
        sigma_upper=3.0,
        maxiters=5,
        center="median",
        spread="mad_std",
        combine="mean",
        memory_limit=opts["memory_limit"],
    )
    se.write(res, out, overwrite=True)
    mark("stack+write")


@register(
    "ccdproc",
    "ccdproc.combine(method='average', sigma_clip=True, sigma_clip_func=np.ma.median, "
    "sigma_clip_dev_func=mad_std, unit='adu'); defaults: low/high thresh 3, mem_limit 16e9, "
    "float64, ONE clipping pass (Combiner.sigma_clipping maxiters=1)",
)
def _run_ccdproc(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import ccdproc
    import numpy as np
    from astropy.stats import mad_std

    mark("import")
    ccd = ccdproc.combine(
        files,
        method="average",
        sigma_clip=True,
        sigma_clip_func=np.ma.median,
        sigma_clip_dev_func=mad_std,
        unit="adu",
    )
    mark("stack")
    _write_fits(ccd.data, out)
    mark("write")


@register(
    "astropy",
    "read all frames into one (n, H, W) float32 array; astropy.stats.sigma_clip(axis=0, "
    "sigma=3, maxiters=5, cenfunc='median', stdfunc='mad_std').mean(axis=0); its final mask is "
    "'outside the last bounds', so a value clipped in an early pass can come back",
)
def _run_astropy(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    import numpy as np
    from astropy.io import fits
    from astropy.stats import sigma_clip

    mark("import")
    with fits.open(files[0], memmap=False) as hdul:
        shape = hdul[0].data.shape
    cube = np.empty((len(files), *shape), dtype=np.float32)
    for i, path in enumerate(files):
        with fits.open(path, memmap=False) as hdul:
            cube[i] = hdul[0].data
    mark("read")
    clipped = sigma_clip(cube, axis=0, sigma=3, maxiters=5, cenfunc="median", stdfunc="mad_std")
    image = clipped.mean(axis=0).filled(np.nan)
    mark("stack")
    _write_fits(image, out)
    mark("write")
