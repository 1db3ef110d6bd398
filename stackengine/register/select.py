"""Frame selection by the registration's measurements, as Siril and PixInsight users do.

Rules (``stack(select=[...])``, ``--select``), all applied, a frame is kept when it
passes every one:

* ``KEY<VALUE``, ``KEY<=VALUE``, ``KEY>VALUE``, ``KEY>=VALUE`` with KEY one of
  ``fwhm``, ``roundness``, ``n_stars``, ``n_matched``, ``rms_px``, ``background``
  (per frame, from :func:`stackengine.register`);
* ``best:P%`` keeps the best P percent of the frames by FWHM (smallest first), or
  ``best:P%:KEY`` by KEY (n_stars, n_matched and roundness: largest first; the
  others smallest first); the number kept is rounded up, ties broken by frame order.

The reference frame is always kept. Each frame's decision and its reason are
returned, printed by the command line and kept in the result's attrs.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ParameterError

__all__ = ["KEYS", "select_frames"]

KEYS = ("fwhm", "roundness", "n_stars", "n_matched", "rms_px", "background")
_LARGER_IS_BETTER = {"n_stars", "n_matched", "roundness"}
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_RULE = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
_BEST = re.compile(r"^\s*best\s*:\s*([0-9.]+)\s*%\s*(?::\s*([a-z_]+)\s*)?$")


def _values(table: Any, key: str) -> np.ndarray:
    if key not in KEYS:
        raise ParameterError(f"select: unknown measurement {key!r} (choose from {', '.join(KEYS)})")
    values = np.asarray(table[key].values, dtype=np.float64)
    return values.mean(axis=tuple(range(1, values.ndim))) if values.ndim > 1 else values


def select_frames(table: Any, rules: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Which frames of a :func:`stackengine.register` table pass ``rules``.

    Returns a bool array along the table's frames and one line per frame saying
    what was decided and why.
    """
    n = table.sizes["frame"]
    keep = np.ones(n, dtype=bool)
    why: list[list[str]] = [[] for _ in range(n)]
    for rule in rules:
        if (m := _RULE.match(rule)) is not None:
            key, op, limit = m.group(1), m.group(2), float(m.group(3))
            values = _values(table, key)
            passed = np.array([_OPS[op](v, limit) if math.isfinite(v) else False for v in values])
            for k in np.flatnonzero(~passed):
                why[k].append(f"{key} {values[k]:.3g} fails {key}{op}{limit:g}")
        elif (m := _BEST.match(rule)) is not None:
            share, key = float(m.group(1)), m.group(2) or "fwhm"
            if not 0 < share <= 100:
                raise ParameterError(f"select {rule!r}: the share must lie in (0, 100]")
            values = _values(table, key)
            sign = -1.0 if key in _LARGER_IS_BETTER else 1.0
            order = sorted(
                range(n), key=lambda k: (not math.isfinite(values[k]), sign * values[k], k)
            )
            kept = set(order[: max(1, math.ceil(share / 100 * n))])
            passed = np.array([k in kept for k in range(n)])
            for k in np.flatnonzero(~passed):
                why[k].append(f"{key} {values[k]:.3g} not in the best {share:g}%")
        else:
            raise ParameterError(
                f"select {rule!r}: expected KEY<VALUE, KEY>VALUE (KEY one of {', '.join(KEYS)}) "
                "or best:P% / best:P%:KEY"
            )
        keep &= passed
    reference = int(table.attrs.get("reference", 0))
    frames = list(table["frame"].values) if "frame" in table.coords else list(range(n))
    if reference in frames:
        r = frames.index(reference)
        keep[r] = True  # the reference defines the grid: always kept
        why[r] = ["the reference frame", *why[r]]
    paths = [str(p) for p in table["path"].values] if "path" in table.coords else [
        f"frame {k}" for k in range(n)
    ]  # fmt: skip
    lines = [
        f"{p}: {'kept' if keep[k] else 'dropped'}" + (f" ({'; '.join(why[k])})" if why[k] else "")
        for k, p in enumerate(paths)
    ]
    return keep, lines
