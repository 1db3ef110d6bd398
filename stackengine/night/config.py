"""The choices of ``stackengine run`` as a TOML document.

:data:`DEFAULTS` holds every choice with its default; :func:`load_config` merges a
TOML file (or a dict) over them and checks each key and type, so a typo in a
configuration is one clear error and not a silently ignored choice;
:func:`config_text` writes the configuration a run used (a small TOML writer of
our own: strings, numbers, booleans, lists of strings and tables are all it
needs), which ``--config`` reads back to replay or edit the run.
"""

from __future__ import annotations

import copy
import math
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from ..errors import ParameterError

__all__ = ["DEFAULTS", "HELP", "load_config", "config_text", "set_option"]

#: every choice of a night and its default ("auto": decided from the frames' headers)
DEFAULTS: dict[str, Any] = {
    "inputs": [],
    "frames": {
        "filter_keys": ["FILTER", "FILTNAME", "INSFLNAM", "FILTER1"],
        "exclude": [],
        "split_by_object": "auto",
        "types_from_names": True,
        "overrides": {},
    },
    "calibration": {
        "overscan": "auto",
        "trim": "auto",
        "bias": "auto",
        "dark": "auto",
        "flat": "auto",
        "flats": {},
        "bad_pixels": "none",
    },
    "masters": {
        "reject": "sigma",
        "sigma_lower": 3.0,
        "sigma_upper": 3.0,
        "maxiters": 5,
        "combine": "mean",
    },
    "stack": {
        "register": "stars",
        "transform": "similarity",
        "reference": "auto",
        "drop_failed": True,
        "if_unregistered": "stack",
        "interpolation": "lanczos3",
        "framing": "reference",
        "normalize": "additive+scale",
        "reject": "sigma",
        "sigma_lower": 3.0,
        "sigma_upper": 3.0,
        "maxiters": 5,
        "center": "median",
        "spread": "mad_std",
        "combine": "mean",
        "weights": "noise",
        "bayer": "auto",
        "debayer": "bilinear",
        "memory_limit": "1GiB",
    },
    "output": {
        "dtype": "float32",
        "report": True,
    },
}

#: one comment line per choice, written above it in the configuration file
HELP: dict[str, str] = {
    "inputs": "the raw frames (files, folders or globs); the command line's RAW... replace them",
    "frames": "how frames are sorted: se.summary()",
    "frames.filter_keys": "header keywords tried in turn for the filter",
    "frames.exclude": "globs of files (name or path) to leave out",
    "frames.split_by_object": "auto (stack the lights of each OBJECT apart when a filter has "
    "several, each of two lights or more), yes, no",
    "frames.types_from_names": "a frame with no known IMAGETYP whose file name says bias, "
    "dark, flat or light is taken as that",
    "frames.overrides": "what to read instead of the headers: [frames.overrides.COLUMN] "
    'PATTERN = VALUE, e.g. [frames.overrides.imagetyp] "flat-*.FIT" = "flat"',
    "calibration": "auto = decided from the frames (see report.md)",
    "calibration.overscan": "auto (BIASSEC where every frame has a readable one), none, "
    "or a section [x1:x2,y1:y2]",
    "calibration.trim": "auto (TRIMSEC/DATASEC with an overscan), none, or a section",
    "calibration.bias": "auto (a master of the bias frames), none, or a master's path",
    "calibration.dark": "auto (the dark of the lights' exposure, else a per-second dark "
    "scaled by exposure), match, scale, none, or a master's path",
    "calibration.flat": "auto (a master per filter), none",
    "calibration.flats": 'a master flat per filter instead of one made: FILTER = "path" or "none"',
    "calibration.bad_pixels": "none, auto (hot pixels of the dark, dead ones of the flat), "
    "or a mask's path",
    "masters": "how masters are combined (se.master)",
    "stack": "how each filter's lights are stacked (se.stack)",
    "stack.register": "stars or none",
    "stack.reference": "auto (the frame with the most stars) or a file name",
    "stack.drop_failed": "drop lights that cannot be registered (said in report.md)",
    "stack.if_unregistered": "when a group's reference has too few stars: stack (unregistered, "
    "said in report.md) or error",
    "stack.normalize": "additive+scale, photometric, additive, multiplicative, "
    "multiplicative+scale, none",
    "stack.reject": "sigma, winsorized, linear_fit, percentile, minmax, extrema, esd, none",
    "stack.weights": "noise (inverse variance after normalization), exptime, none",
    "stack.bayer": "auto (BAYERPAT: colour frames give RGB stacks), none (stack the mosaics), "
    "or a pattern such as RGGB",
    "output": "what is written",
    "output.dtype": "float32 or float64",
    "output.report": "write report.png and report.md",
}

#: the choices that take one of a few words (or, marked "...", also a path or pattern)
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("frames", "split_by_object"): ("auto", "yes", "no"),
    ("calibration", "bias"): ("auto", "none", "..."),
    ("calibration", "dark"): ("auto", "match", "scale", "none", "..."),
    ("calibration", "flat"): ("auto", "none"),
    ("stack", "register"): ("stars", "none"),
    ("stack", "if_unregistered"): ("stack", "error"),
    ("output", "dtype"): ("float32", "float64"),
}

#: keys whose value is a table of the user's own keys (patterns, filters)
_FREE_TABLES = {("frames", "overrides"), ("calibration", "flats")}


def _check(value: Any, default: Any, where: str) -> Any:
    """``value`` checked against the default's type (tables recursively)."""
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise ParameterError(f"config: {where} must be a table")
        if tuple(where.split(".")) in _FREE_TABLES:
            return copy.deepcopy(dict(value))
        unknown = sorted(set(value) - set(default))
        if unknown:
            raise ParameterError(
                f"config: unknown key {where + '.' if where else ''}{unknown[0]} "
                f"(known: {', '.join(default)})"
            )
        out = copy.deepcopy(default)
        for key, item in value.items():
            out[key] = _check(item, default[key], f"{where}.{key}" if where else key)
        return out
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParameterError(f"config: {where} = {value!r}: expected true or false")
        return value
    if isinstance(default, float | int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParameterError(f"config: {where} = {value!r}: expected a number")
        return type(default)(value) if isinstance(default, float) else int(value)
    if isinstance(default, list):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ParameterError(f"config: {where}: expected a list of strings")
        return list(value)
    if not isinstance(value, str):
        raise ParameterError(f"config: {where} = {value!r}: expected a string")
    return value


def load_config(config: str | os.PathLike | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The configuration of a night: :data:`DEFAULTS` with ``config`` merged over them.

    Parameters
    ----------
    config : path, mapping or None
        A TOML file (as ``stackengine run`` writes into its output folder as
        ``config.toml``), or the same as a dict; only the keys given change.

    Returns
    -------
    dict
        Every choice (a deep copy; the caller may change it).

    Raises
    ------
    ParameterError
        The file cannot be read or parsed, an unknown key, a value of the wrong type.
    """
    if config is None:
        return copy.deepcopy(DEFAULTS)
    if not isinstance(config, Mapping):
        try:
            with open(config, "rb") as fh:
                config = tomllib.load(fh)
        except OSError as exc:
            raise ParameterError(f"{config}: cannot read the configuration ({exc})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ParameterError(f"{config}: not a valid TOML file: {exc}") from None
    return _choices(_check(config, DEFAULTS, ""))


def _choices(config: dict[str, Any]) -> dict[str, Any]:
    for (section, key), allowed in CHOICES.items():
        value = config[section][key]
        if value not in allowed and "..." not in allowed:
            raise ParameterError(
                f"config: {section}.{key} = {value!r}: choose {', '.join(map(repr, allowed))}"
            )
    return config


def set_option(config: dict[str, Any], item: str) -> None:
    """Apply ``SECTION.KEY=VALUE`` (the command line's ``--option``) to ``config``.

    The value is read as TOML (``3``, ``true``, ``"text"``, ``["a", "b"]``), else as
    a plain string (``stack.normalize=photometric``).
    """
    key, sep, text = item.partition("=")
    names = [n.strip() for n in key.split(".")]
    if not sep or not all(names):
        raise ParameterError(f"--option {item!r}: expected SECTION.KEY=VALUE")
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = text.strip()
    patch: dict[str, Any] = {names[-1]: value}
    for name in reversed(names[:-1]):
        patch = {name: patch}
    merged = _check(patch, DEFAULTS, "")
    node, new = config, merged
    for name in names[:-1]:
        node, new = node[name], new[name]
    node[names[-1]] = new[names[-1]]
    _choices(config)


# -- writing ---------------------------------------------------------------------------


def _string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    escaped = escaped.replace("\n", "\\n").replace("\t", "\\t")
    return f'"{escaped}"'


def _key(key: str) -> str:
    bare = key and all(c.isalnum() or c in "-_" for c in key) and key.isascii()
    return key if bare else _string(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParameterError(f"config: {value!r} cannot be written to TOML")
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        if len(value) > 3:
            return "[\n" + "".join(f"    {_value(v)},\n" for v in value) + "]"
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ParameterError(f"config: {value!r} cannot be written to TOML")


def _table(lines: list[str], name: str, table: Mapping[str, Any]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if name:
        lines.append("")
        if name in HELP:
            lines.append(f"# {HELP[name]}")
        lines.append(f"[{'.'.join(_key(p) for p in name.split('.'))}]")
    for key, value in scalars.items():
        full = f"{name}.{key}" if name else key
        if full in HELP and full not in (name,):
            lines.append(f"# {HELP[full]}")
        lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables.items():
        full = f"{name}.{key}" if name else key
        if not value and full in HELP:  # an empty free table: say how to fill it
            lines.extend(["", f"# {HELP[full]}", f"[{'.'.join(map(_key, full.split('.')))}]"])
            continue
        _table(lines, full, value)


def config_text(config: Mapping[str, Any], header: str = "") -> str:
    """``config`` as a TOML document, each choice with a comment saying what it does.

    Parameters
    ----------
    config : mapping
        A configuration as :func:`load_config` returns it.
    header : str
        Comment lines put first (without the ``#``).

    Returns
    -------
    str
        The document; ``tomllib.loads`` of it equals ``config``.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    _table(lines, "", config)
    return "\n".join(lines).lstrip("\n") + "\n"
