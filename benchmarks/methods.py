"""The stacking methods a benchmark child can run: stackengine, its peers, and the
rejection algorithms of stackengine.

A method is ``run(files, out_path, options, mark)``: it stacks ``files``,
writes the image to ``out_path`` (FITS) and calls ``mark(phase)`` at the end
of each phase (the first phase is always ``import``); it may return a dict,
merged into the child's record. ``options`` holds ``memory_limit`` (stackengine's
budget), ``ccdproc_mem_limit`` (bytes, for ``ccdproc-tuned``), and may hold
``calibration`` (``{"bias": path, "dark": path, "flat": path}``: the masters of
:mod:`benchmarks.calibration`, given by the child's manifest; only the methods
of :data:`CALIBRATED_METHODS` take it; :func:`benchmarks.runner.run_one` refuses
it for the others) and ``stack_args`` (more ``stackengine stack`` arguments). Libraries are
imported inside ``run`` (their import time is part of the child's measured
time). The peers (ccdproc, astropy, numpy, bottleneck) live in
:mod:`benchmarks.peers`; importing this module registers them.

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
    "CALIBRATED_METHODS",
    "METHODS",
    "Method",
    "algorithm_kwargs",
    "algorithm_params",
    "get_method",
    "parse_algorithms",
    "parse_bytes",
    "register",
]

Mark = Callable[[str], None]
ALGORITHM_PREFIX = "alg:"
#: Methods with a calibrated variant (``options["calibration"]``, :mod:`benchmarks.calibration`).
CALIBRATED_METHODS = ("stackengine", "ccdproc", "ccdproc-tuned")

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
    """A stacking method run in a child process (see the module docstring).

    ``memory_factor``: the method holds the whole stack in memory and peaks at
    about this many times its float32 size (0: bounded, out of core), at most
    ``memory_cap`` bytes (0: no cap; ccdproc splits the work by its
    ``mem_limit``); the harness skips a run whose estimate exceeds the
    available memory. ``median_only``: a plain median (no clipping, no mean),
    labelled so in reports.
    """

    name: str
    params: str
    run: Callable[[list[str], str, dict[str, Any], Mark], dict[str, Any] | None]
    memory_factor: float = 0.0
    median_only: bool = False
    memory_cap: float = 0.0


METHODS: dict[str, Method] = {}


def register(
    name: str,
    params: str,
    memory_factor: float = 0.0,
    median_only: bool = False,
    memory_cap: float = 0.0,
) -> Callable:
    """Register ``run(files, out_path, options, mark)`` as method ``name``.

    ``params`` describes the call; ``{memory_limit}`` and ``{ccdproc_mem_limit}``
    in it are filled in. ``memory_factor``, ``median_only`` and ``memory_cap``:
    see :class:`Method`.
    """

    def deco(func: Callable[[list[str], str, dict[str, Any], Mark], None]) -> Callable:
        METHODS[name] = Method(name, params, func, memory_factor, median_only, memory_cap)
        return func

    return deco


_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_bytes(text: str | int | float) -> int:
    """``"512MiB"`` -> 536870912, ``"1.5GB"`` -> 1500000000, ``4096`` -> 4096.

    Raises
    ------
    ValueError
        Not a size.
    """
    if isinstance(text, int | float):
        return int(text)
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("kmgtib")
    unit = t[len(num) :]
    binary = unit.endswith("ib")
    unit = unit.removesuffix("ib").removesuffix("b")
    if not num or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (e.g. 512MiB, 2GB, 1000000)")
    base = 1024 ** "bkmgt".index(unit or "b") if binary else _UNITS[unit]
    return int(float(num) * base)


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
    ``siril`` is the registration mode's peer (Siril's register + stack,
    :mod:`benchmarks.registration`).

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
    if name == "siril":  # the registration mode's peer (not in METHODS: it registers first)
        from .registration import siril_method

        return Method(name, *siril_method())
    raise KeyError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")


@register(
    "stackengine",
    "stackengine stack FRAMES -o OUT.fits --reject sigma --sigma-lower 3 --sigma-upper 3 "
    "--maxiters 5 --center median --spread mad_std --combine mean "
    "--memory-limit {memory_limit} --quiet (the command line, run in the child)",
)
def _run_stackengine(files: list[str], out: str, opts: dict[str, Any], mark: Mark) -> None:
    # The command line as a user runs it (stackengine.cli.run is the console
    # script's entry point), so the whole-process numbers are the command's.
    from stackengine import cli

    mark("import")
    argv = ["stack", *files, "-o", out, "--overwrite", "--quiet"]
    argv += ["--reject", "sigma", "--sigma-lower", "3", "--sigma-upper", "3", "--maxiters", "5"]
    argv += ["--center", "median", "--spread", "mad_std", "--combine", "mean"]
    argv += ["--memory-limit", str(opts["memory_limit"])]
    for kind, path in (opts.get("calibration") or {}).items():  # --calibrate: the masters
        argv += [f"--{kind}", path]
    argv += list(opts.get("stack_args") or ())
    if cli.run(argv) != 0:
        raise RuntimeError("stackengine stack failed (its error is on stderr)")
    mark("stack+write")


from . import peers  # noqa: E402, F401  (registers the peer methods)
