"""IRAF/FITS image sections (BIASSEC, TRIMSEC, DATASEC, ...) as numpy slices.

A section is written ``[x1:x2,y1:y2]``: x (the column, FITS axis 1) first,
1-based, both ends included, as in IRAF and ccdproc's
``slice_from_string(..., fits_convention=True)``. :func:`parse_section`
returns the numpy ``(rows, columns)`` slices for an image of a given shape,
selecting the same pixels *in the same order* as ccdproc:

- spaces (any whitespace) are ignored: ``'[  17: 528,   1: 520]'`` is fine;
- ``*`` is the whole axis, ``-*`` the whole axis reversed;
- a reversed range ``[100:1,...]`` selects the same pixels as ``[1:100,...]``
  but in reverse order, a slice of step -1 (ccdproc's too: ``trim_image``
  then flips the image). :func:`ascending` gives the step-1 slice over the
  same pixels, for readers that take only step-1 slices; for an overscan
  median along the row the order does not matter.

Anything else is malformed and raises one :class:`~stackengine.errors.CalibrationError`
naming the file, the card and the reason: a bare number (``[5,*]``: IRAF
reads a single pixel, ccdproc the first five), steps (``[1:100:2,*]``), a
number of axes other than two, an index of 0 or beyond the image (ccdproc
lets numpy clip those silently), signs, and anything that is not ASCII digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CalibrationError

__all__ = ["ascending", "parse_section", "section_of"]

_EXPECTED = "expected [x1:x2,y1:y2] with 1-based pixel ranges"
_RANGE = re.compile(r"([0-9]+):([0-9]+)")
_WHITESPACE = re.compile(r"\s+")


def _axis(field: str, n: int, name: str) -> slice:
    """One axis of a section (``'x1:x2'``, ``'*'`` or ``'-*'``) for ``n`` pixels.

    Raises ValueError with the reason (the caller adds file, card and value).
    """
    if field == "*":
        return slice(0, n)
    if field == "-*":
        return slice(n - 1, None, -1)
    match = _RANGE.fullmatch(field)
    if match is None:
        raise ValueError(f"{_EXPECTED}; {name} range {field!r} is not 'first:last' or '*'")
    first, last = int(match.group(1)), int(match.group(2))
    for value in (first, last):
        if not 1 <= value <= n:
            axis = "columns" if name == "x" else "rows"
            raise ValueError(f"{_EXPECTED}; {name} = {value} is outside the image's 1..{n} {axis}")
    if first <= last:
        return slice(first - 1, last)
    return slice(first - 1, last - 2 if last > 1 else None, -1)  # as ccdproc: same pixels, reversed


def parse_section(
    text: str, shape: Sequence[int], *, path: str = "", card: str = ""
) -> tuple[slice, slice]:
    """Turn an IRAF section ``'[x1:x2,y1:y2]'`` into numpy ``(rows, columns)`` slices.

    Parameters
    ----------
    text : str
        The section: 1-based, inclusive, x (columns) first; ``*`` for a whole
        axis, ``-*`` for a whole axis reversed, a reversed range ``x2:x1`` for
        the same pixels in reverse order; whitespace anywhere is ignored.
    shape : sequence of int
        The image's ``(rows, cols[, ...])``; every index must lie inside it.
    path : str, optional
        The file the section comes from, for the message.
    card : str, optional
        The header card (``"BIASSEC"``, ...), for the message; empty for a
        section the user gave.

    Returns
    -------
    tuple of slice
        ``(rows, cols)`` with integer starts: step 1 for an ascending range or
        ``*``, step -1 for a reversed range or ``-*``; ``image[rows, cols]``
        equals ccdproc's ``image[slice_from_string(text, fits_convention=True)]``.

    Raises
    ------
    CalibrationError
        The section is malformed or out of the image: one line naming
        ``path``, ``card``, the text and why, e.g. ``"a.fits: bad BIASSEC
        '[0,513:0,1536]': expected [x1:x2,y1:y2] with 1-based pixel ranges;
        3 comma-separated fields, not 2"``.
    """
    try:
        if not isinstance(text, str):
            raise ValueError(f"{_EXPECTED}; not a string but {type(text).__name__}")
        compact = _WHITESPACE.sub("", text)
        if not compact:
            raise ValueError(f"{_EXPECTED}; the value is empty")
        if len(compact) < 2 or compact[0] != "[" or compact[-1] != "]":
            raise ValueError(f"{_EXPECTED}; not enclosed in one pair of square brackets")
        fields = compact[1:-1].split(",")
        if len(fields) != 2:
            raise ValueError(f"{_EXPECTED}; {len(fields)} comma-separated fields, not 2")
        rows, cols = int(shape[0]), int(shape[1])
        xs = _axis(fields[0], cols, "x")
        ys = _axis(fields[1], rows, "y")
    except ValueError as err:
        where = f"{path}: " if path else ""
        what = f"{card} " if card else "section "
        raise CalibrationError(f"{where}bad {what}{text!r}: {err}") from None
    return ys, xs


def ascending(section: slice) -> slice:
    """The step-1 slice over the same pixels as a slice from :func:`parse_section`.

    Parameters
    ----------
    section : slice
        A slice of step 1 (returned as is) or -1 (``slice(hi, lo or None, -1)``).

    Returns
    -------
    slice
        ``slice(first, stop)`` with integer bounds, ``first < stop``.
    """
    if section.step is None or section.step == 1:
        return slice(section.start, section.stop)
    if section.step != -1:
        raise ValueError(f"a section slice has step 1 or -1, not {section.step}")
    return slice(0 if section.stop is None else section.stop + 1, section.start + 1)


def section_of(
    header: Mapping[str, Any] | Any, card: str, shape: Sequence[int], path: str = ""
) -> tuple[slice, slice] | None:
    """The section a header card holds, parsed for an image of ``shape``; None if absent.

    Parameters
    ----------
    header : mapping or astropy.io.fits.Header
        The frame's header (``card in header`` and ``header[card]``).
    card : str
        ``"BIASSEC"``, ``"TRIMSEC"``, ``"DATASEC"``, ...
    shape : sequence of int
        The image's ``(rows, cols[, ...])``.
    path : str, optional
        The file, for the message.

    Returns
    -------
    tuple of slice or None
        As :func:`parse_section`; None when the header has no such card.

    Raises
    ------
    CalibrationError
        The card is present but malformed (an empty value too).
    """
    if card not in header:
        return None
    return parse_section(header[card], shape, path=str(path), card=card)
