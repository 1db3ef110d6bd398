"""Knowing the frames: what each frame's header says it is, as a pandas DataFrame.

:func:`summary` reads headers only, like ccdproc's ``ImageFileCollection.summary``:
one row per frame as :func:`~stackengine.open_frames` sees them (a FITS cube: one
row per plane). The type comes from IMAGETYP through :func:`frame_kind`, the filter
from the first of ``filter_keys`` present, and the user may override any of it per
file. The ``decided`` column says how each row was decided, and where a file's name
names another type than its header (flats saved as 'Light Frame'): the header still
wins, the note asks to check.
"""

from __future__ import annotations

import fnmatch
import glob
import math
import numbers
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..errors import ParameterError
from ..io import remote

__all__ = ["FILTER_KEYS", "KINDS", "COLUMNS", "OVERRIDABLE", "frame_kind", "summary",
           "summarize", "group_table", "decisions", "overrides_from_text"]  # fmt: skip

FILTER_KEYS = ("FILTER", "FILTNAME", "INSFLNAM", "FILTER1")
KINDS = ("bias", "dark", "flat", "light")
#: the columns of :func:`summary`, in order
COLUMNS = ("path", "plane", "imagetyp", "imagetyp_raw", "filter", "filter_key", "exptime",
           "shape", "dtype", "binning", "ccd_temp", "date_obs", "object", "bayerpat", "biassec",
           "trimsec", "datasec", "decided")  # fmt: skip
#: the columns ``overrides`` may set
OVERRIDABLE = ("imagetyp", "filter", "exptime", "binning", "ccd_temp", "date_obs", "object",
               "bayerpat", "biassec", "trimsec", "datasec")  # fmt: skip

#: IMAGETYP spellings (MaxIm DL, N.I.N.A., IRAF, observatories), lower case without
#: spaces, "_" or "-"
_SPELLINGS = {
    "bias": ("bias", "biases", "biasframe", "zero", "zeroframe", "offset"),
    "dark": ("dark", "darks", "darkframe", "darkflat", "flatdark"),
    "flat": ("flat", "flats", "flatfield", "flatframe", "skyflat", "domeflat", "twilightflat",
             "twiflat", "lampflat"),
    "light": ("light", "lights", "lightframe", "object", "science", "tricolorimage"),
}  # fmt: skip
_KIND_OF = {spelling: kind for kind, names in _SPELLINGS.items() for spelling in names}
#: words of a file name taken as a hint of its type
_NAME_WORDS = {"bias", "biases", "dark", "darks", "flat", "flats", "skyflat", "domeflat",
               "light", "lights", "science"}  # fmt: skip
_TEXT_CARDS = {"date_obs": "DATE-OBS", "object": "OBJECT", "bayerpat": "BAYERPAT",
               "biassec": "BIASSEC", "trimsec": "TRIMSEC", "datasec": "DATASEC"}  # fmt: skip
_ASSIGNMENT = re.compile(r"^(?P<pattern>.+):(?P<column>[A-Za-z_]+)=(?P<value>.*)$")


def frame_kind(imagetyp: str | None) -> str | None:
    """The kind of frame an IMAGETYP value names: "bias", "dark", "flat", "light" or None.

    Case, spaces, "_" and "-" do not matter: 'Bias Frame', 'BIAS', 'zero' are bias;
    'Dark Frame' and N.I.N.A.'s 'DARKFLAT' are dark; 'Flat Field', 'SKYFLAT',
    'DOMEFLAT', 'TWILIGHT FLAT' are flat; 'Light Frame', 'object', 'science' are
    light. Masters ('Master Bias'), arcs, focus frames and anything unknown: None.
    """
    if not isinstance(imagetyp, str):
        return None
    return _KIND_OF.get(re.sub(r"[\s_\-]+", "", imagetyp.lower()))


def _scalar(header: Any, key: str) -> Any:
    """The value of card ``key`` if it is a non-empty scalar (strings stripped), else None."""
    try:
        value = header[key] if key in header else None
    except Exception:  # an unparsable card
        return None
    if isinstance(value, str):
        return value.strip() or None
    return value if isinstance(value, bool | int | float) else None


def _first(header: Any, keys: Sequence[str]) -> tuple[Any, str | None]:
    """(value, key) of the first of ``keys`` the header has, else (None, None)."""
    return next(((v, k) for k in keys if (v := _scalar(header, k)) is not None), (None, None))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _cell(value: Any) -> str:
    """A value as the tables show it: numbers as %g, missing as "-"."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _binning(header: Any) -> str | None:
    """'XxY' from XBINNING/YBINNING (CAFOS: CCDBINX/CCDBINY) or CCDSUM ('2 2')."""
    x, y = _first(header, ("XBINNING", "CCDBINX"))[0], _first(header, ("YBINNING", "CCDBINY"))[0]
    if x is None and y is None:
        x, y = ([*str(_scalar(header, "CCDSUM") or "").split(), None, None])[:2]
    x, y = _float(x if x is not None else y), _float(y if y is not None else x)
    return None if math.isnan(x) or math.isnan(y) else f"{_cell(x)}x{_cell(y)}"


def _name_kind(path: str) -> str | None:
    """The one kind the file's name names by a word of its own ('flat-expos23s...'), if any."""
    words = re.findall(r"[a-z]+", re.split(r"[/\\]", path)[-1].lower())
    kinds = {frame_kind(w) for w in words if w in _NAME_WORDS}
    return kinds.pop() if len(kinds) == 1 else None


def _row(source: Any, header: Any, filter_keys: Sequence[str]) -> tuple[dict, dict]:
    """One frame's row of the summary and the parts of its ``decided`` text."""
    raw = _str(_scalar(header, "IMAGETYP"))
    kind = frame_kind(raw)
    filt, filter_key = _first(header, filter_keys)
    row = {
        "path": str(source.path),
        "plane": getattr(source, "plane", None),
        "imagetyp": kind,
        "imagetyp_raw": raw,
        "filter": _str(filt),
        "filter_key": filter_key,
        "exptime": _float(_first(header, ("EXPTIME", "EXPOSURE"))[0]),
        "shape": tuple(source.shape),
        "dtype": str(source.dtype),
        "binning": _binning(header),
        "ccd_temp": _float(_first(header, ("CCD-TEMP", "CCDTEMP", "CCD_TEMP"))[0]),
        **{col: _str(_scalar(header, key)) for col, key in _TEXT_CARDS.items()},
    }
    if raw is None:
        typ = "no IMAGETYP"
    else:
        typ = f"imagetyp {raw!r} " + (f"-> {kind}" if kind else "not recognised")
    if (hint := _name_kind(row["path"])) not in (None, kind):
        typ += f" (the file name says {hint}: check)"
    if filter_key:
        where = f"filter {row['filter']!r} from {filter_key}"
    else:
        where = f"no filter ({'/'.join(filter_keys)})"
    return row, {"imagetyp": typ, "filter": where}


def _coerce(column: str, value: Any) -> Any:
    """An override's value as the column holds it; ParameterError if it cannot be."""
    if column == "imagetyp":
        if (kind := frame_kind(value)) is None:
            raise ParameterError(f"overrides: imagetyp {value!r} is not one of {', '.join(KINDS)}")
        return kind
    if column in ("exptime", "ccd_temp"):
        if math.isnan(number := _float(value)):
            raise ParameterError(f"overrides: {column} {value!r} is not a number")
        return number
    return str(value)


def _override_spec(overrides: Any) -> dict[str, dict[str, Any]]:
    """``overrides`` (a mapping or a DataFrame) as {column: {pattern: value}}."""
    if isinstance(overrides, pd.DataFrame):
        if "path" not in overrides.columns:
            raise ParameterError("overrides: a DataFrame needs a 'path' column")
        spec: dict[str, dict[str, Any]] = {}
        for col in (c for c in overrides.columns if c != "path"):
            cells = zip(overrides["path"], overrides[col], strict=True)
            spec[str(col)] = {str(p): v for p, v in cells if not pd.isna(v)}
        return spec
    if not isinstance(overrides, Mapping) or not all(
        hasattr(spec, "items") for spec in overrides.values()
    ):
        raise ParameterError(
            "overrides: expected {column: {pattern: value}} or a DataFrame with a 'path' column"
        )
    return {str(col): {str(p): v for p, v in spec.items()} for col, spec in overrides.items()}


def _matches(path: str, pattern: str) -> bool:
    """``pattern`` (a path, a file name, or a glob of either) names ``path``."""
    candidates = {pattern} if remote.is_url(pattern) else {pattern, os.path.abspath(pattern)}
    name = re.split(r"[/\\]", path)[-1]
    return fnmatch.fnmatchcase(name, pattern) or any(
        fnmatch.fnmatchcase(path, c) for c in candidates
    )


def _override(rows: list[dict], parts: list[dict], overrides: Any) -> None:
    """Apply ``overrides`` to ``rows`` in place, saying so in ``parts``."""
    for column, spec in _override_spec(overrides).items():
        if column not in OVERRIDABLE:
            raise ParameterError(
                f"overrides: unknown column {column!r} (one of {', '.join(OVERRIDABLE)})"
            )
        for pattern, value in spec.items():
            hits = [i for i, row in enumerate(rows) if _matches(row["path"], pattern)]
            if not hits:
                raise ParameterError(f"overrides: {pattern!r} ({column}) matches no frame")
            new = _coerce(column, value)
            for i in hits:
                old, rows[i][column] = rows[i][column], new
                if column == "imagetyp":
                    old = rows[i]["imagetyp_raw"]
                elif column == "filter":
                    rows[i]["filter_key"] = "override"
                said = repr(old) if isinstance(old, str) else _cell(old)
                parts[i][column] = f"{column} overridden: {_cell(new)} (header: {said})"


def _filter_keys(filter_keys: Sequence[str] | str) -> tuple[str, ...]:
    keys = (filter_keys,) if isinstance(filter_keys, str) else tuple(filter_keys)
    keys = tuple(str(k).strip().upper() for k in keys)
    if not keys or not all(keys):
        raise ParameterError(f"filter_keys: expected header keywords, got {filter_keys!r}")
    return keys


def summarize(
    sources: Sequence[Any], *, filter_keys: Sequence[str] = FILTER_KEYS, overrides: Any = None
) -> pd.DataFrame:
    """The summary of frames already opened (FrameSource objects); see :func:`summary`."""
    keys = _filter_keys(filter_keys)
    rows, parts, headers = [], [], {}
    for source in sources:
        header = getattr(source, "header", None) or {}  # TIFF, zarr: what the reader found
        if hasattr(source, "full_header"):  # FITS: every card, read once per HDU
            ident = (source.path, getattr(source, "hdu", 0))
            if ident not in headers:
                headers[ident] = source.full_header()
            header = headers[ident]
        row, part = _row(source, header, keys)
        rows.append(row)
        parts.append(part)
    if overrides is not None:
        _override(rows, parts, overrides)
    for row, part in zip(rows, parts, strict=True):
        row["decided"] = "; ".join(part.values())
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["plane"] = df["plane"].astype("Int64")
    return df


def summary(
    paths_or_glob: Any,
    *,
    hdu: int | str = 0,
    filter_keys: Sequence[str] = FILTER_KEYS,
    overrides: Mapping[str, Mapping[str, Any]] | pd.DataFrame | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """What every frame's header says it is: one row per frame, headers only.

    Parameters
    ----------
    paths_or_glob : str, path-like or a list of them
        Files, folders, glob patterns or URLs, as for :func:`~stackengine.open_frames`;
        the frames may differ in shape and dtype; a file named twice is listed once.
    hdu : int or str
        FITS HDU number or name.
    filter_keys : sequence of str
        Header keywords tried in turn for the filter (default :data:`FILTER_KEYS`).
    overrides : dict or pandas.DataFrame, optional
        Values to use instead of the headers': ``{column: {pattern: value}}`` where a
        pattern is a path, a file name or a glob of either (``{"imagetyp":
        {"flat-*.FIT": "flat"}}``; later patterns win), or a DataFrame with a "path"
        column and one column per overridden column (empty cells: no override).
        Columns: :data:`OVERRIDABLE`.
    storage_options : dict, optional
        fsspec options for URL inputs.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``plane`` (a cube's plane, else missing),
        ``imagetyp`` (one of :data:`KINDS` or None), ``imagetyp_raw`` (as the header
        says), ``filter`` and ``filter_key`` (the card it came from), ``exptime``
        (EXPTIME or EXPOSURE) and ``ccd_temp`` (CCD-TEMP, CCDTEMP or CCD_TEMP) as
        floats (NaN when absent), the other cards as stripped strings or None, and
        ``decided``: how each row's type and filter were decided.

    Raises
    ------
    FrameError
        A file is missing or unreadable, a pattern matches nothing.
    ParameterError
        An unknown override column, an override that matches no frame, a value that
        does not fit its column (an unknown imagetyp, an exptime that is not a number).
    """
    from ..frames import frame_sources

    keys = _filter_keys(filter_keys)
    sources: list[Any] = []
    for path in dict.fromkeys(remote.expand(paths_or_glob, storage_options)):
        literal = path if remote.is_url(path) else glob.escape(path)
        # one file at a time: a night's frames may differ in shape (frame_sources checks)
        sources.extend(frame_sources(literal, hdu=hdu, storage_options=storage_options))
    return summarize(sources, filter_keys=keys, overrides=overrides)


def overrides_from_text(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``["PATTERN:COLUMN=VALUE", ...]`` (the CLI's ``--set``) as ``overrides``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        if (match := _ASSIGNMENT.match(item)) is None:
            raise ParameterError(
                f"--set {item!r}: expected PATTERN:COLUMN=VALUE, e.g. 'flat-*.fits:imagetyp=flat'"
            )
        out.setdefault(match["column"].lower(), {})[match["pattern"]] = match["value"]
    return out


def decisions(df: pd.DataFrame) -> str:
    """Each distinct ``decided`` text of ``df`` and how many frames it was decided for."""
    counts = df["decided"].value_counts(sort=False).items()
    return "\n".join(["decided:", *(f"  {n:>4} x {text}" for text, n in counts)])


def _order(value: Any) -> tuple:
    """Sort key of a group value: kinds in KINDS order, numbers, shapes, text; missing last."""
    if _cell(value) == "-":
        return (4, 0.0, (), "")
    if value in KINDS:
        return (0, float(KINDS.index(value)), (), "")
    if isinstance(value, numbers.Real):
        return (1, float(value), (), "")
    return (2, 0.0, value, "") if isinstance(value, tuple) else (3, 0.0, (), str(value))


def _names(paths: Sequence[str]) -> str:
    names = sorted(re.split(r"[/\\]", p)[-1] for p in dict.fromkeys(paths))
    return ", ".join(names) if len(names) <= 2 else f"{names[0]} .. {names[-1]}"


def group_table(df: pd.DataFrame, by: Sequence[str], *, decided: bool = True) -> str:
    """A plain-text table of the frames of a :func:`summary` grouped by the columns ``by``.

    One line per group (bias, dark, flat, light, then unknown types; numbers
    ascending; missing values shown as "-"): the values, the number of frames and
    their file names (two at most, else the first and last by name); then, with
    ``decided``, what :func:`decisions` says.
    """
    by = list(by)
    if not by or (unknown := [c for c in by if c not in df.columns]):
        raise ParameterError(
            f"by: unknown column {', '.join(map(repr, unknown)) if by else '(none given)'} "
            f"(columns: {', '.join(c for c in df.columns if c != 'decided')})"
        )
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(*(df[c] for c in by), strict=True)):
        groups.setdefault(tuple(_cell(v) for v in key), []).append(i)
    table = [[*by, "frames", "files"]]
    for key in sorted(groups, key=lambda k: [_order(df[c].iloc[groups[k][0]]) for c in by]):
        table.append([*key, str(len(groups[key])), _names(df["path"].iloc[groups[key]])])
    widths = [max(len(r[j]) for r in table) for j in range(len(by) + 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]])
             for r in table]  # fmt: skip
    lines.append(f"{len(df)} frames in {len(groups)} group{'s' if len(groups) != 1 else ''}")
    if decided:
        lines.extend(decisions(df).splitlines())
    return "\n".join(line.rstrip() for line in lines)
