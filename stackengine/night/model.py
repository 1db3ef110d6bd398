"""The plan of a night and what running it made: plain data, no decisions.

:class:`NightPlan` (with its :class:`MasterPlan` and :class:`LightGroup` items)
is what :mod:`.plan` and :mod:`.matching` decide from the headers;
:class:`NightResult` and :class:`StackStats` what :mod:`.execute` made, which
:mod:`.report` draws. Kept apart so that those modules import it and not each
other.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..calibrate.summary import group_table

__all__ = [
    "CONFIG_TOML",
    "REPORT_MD",
    "REPORT_PNG",
    "LightGroup",
    "MasterPlan",
    "NightPlan",
    "NightResult",
    "StackStats",
    "WrittenFiles",
]

#: the report's and the configuration's file names
REPORT_PNG, REPORT_MD, CONFIG_TOML = "report.png", "report.md", "config.toml"


@dataclass
class MasterPlan:
    """One master to make: its frames, and the masters that calibrate them."""

    name: str  #: e.g. "bias", "dark_60s", "dark_per_s", "flat_B"
    kind: str  #: "bias", "dark" or "flat"
    paths: list[str]
    file: str  #: the output file's name
    shape: tuple[int, int]
    filter: str | None = None
    exptime: float | None = None
    bias: str | None = None  #: the name of the master bias subtracted first
    dark: str | None = None
    dark_scale: bool = False  #: darks: a per-second master; flats: scale the dark
    given: str | None = None  #: a master the user gave (a path): used, not made


@dataclass
class LightGroup:
    """The lights of one stack: one filter, one frame shape."""

    name: str  #: e.g. "B", "V_1024x1024"
    filter: str | None
    shape: tuple[int, int]
    paths: list[str]
    exptimes: list[float]
    file: str
    bayer: str | None = None  #: the Bayer pattern of colour frames
    bias: str | None = None
    dark: str | None = None
    dark_scale: bool = False
    flat: str | None = None

    @property
    def n_frames(self) -> int:
        """The number of lights (a cube's planes each count)."""
        return len(self.exptimes)


@dataclass
class NightPlan:
    """What ``stackengine run`` will do, decided from the headers alone."""

    table: pd.DataFrame  #: :func:`stackengine.summary` of the frames used and dropped
    config: dict[str, Any]  #: every choice (:func:`~.config.load_config`)
    masters: list[MasterPlan] = field(default_factory=list)
    lights: list[LightGroup] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)  #: (path, reason)
    decisions: list[str] = field(default_factory=list)
    sections: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)

    def master(self, name: str | None) -> MasterPlan | None:
        """The master named ``name`` (None for None)."""
        return next((m for m in self.masters if m.name == name), None)

    def calibration(self, shape: tuple[int, int]) -> dict[str, Any]:
        """The overscan and trim of the frames of ``shape``."""
        return dict(self.sections.get(tuple(shape), {"overscan": "none", "trim": None}))

    def describe(self) -> str:
        """The plan as text: the frames by type, filter and exposure, the masters, the
        stacks, and the decisions."""
        lines = ["frames:"]
        lines += ["  " + s for s in group_table(self.table, ["imagetyp", "filter", "exptime",
                                                             "shape"], decided=False)
                  .splitlines()]  # fmt: skip
        rows = [["master", "frames", "exptime", "filter", "calibrated by", "file"]]
        for m in self.masters:
            by = ", ".join(x for x in (m.bias, m.dark) if x) or "-"
            if m.dark_scale and m.kind == "flat":
                by += " (scaled)"
            rows.append([m.name, "given" if m.given else str(len(m.paths)), _num(m.exptime),
                         m.filter or "-", by, m.given or m.file])  # fmt: skip
        lines += ["", "masters:", *(_columns(rows) if self.masters else ["  (none)"])]
        rows = [["stack", "lights", "exptimes", "filter", "bias", "dark", "flat", "file"]]
        for g in self.lights:
            dark = (g.dark or "-") + (" (scaled)" if g.dark and g.dark_scale else "")
            rows.append([g.name + (" (RGB)" if g.bayer else ""), str(g.n_frames),
                         ",".join(_num(t) for t in sorted(set(g.exptimes))), g.filter or "-",
                         g.bias or "-", dark, g.flat or "-", g.file])  # fmt: skip
        lines += ["", "stacks:", *_columns(rows)]
        if self.dropped:
            lines += ["", "left out:"]
            lines += [f"  {os.path.basename(p)}: {why}" for p, why in self.dropped]
        lines += ["", "decisions:", *(f"  - {d}" for d in self.decisions)]
        return "\n".join(lines)


def _num(value: float | None) -> str:
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "-" if missing else f"{value:g}"


def _columns(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]  # fmt: skip


def _shape_text(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


@dataclass
class StackStats:
    """What one stack used and measured."""

    name: str
    file: Path
    filter: str | None
    given: int  #: lights in the group
    used: int  #: lights stacked
    dropped: list[str] = field(default_factory=list)  #: "path: reason"
    reference: str | None = None
    rms_px: list[float] = field(default_factory=list)  #: registration residual per frame
    fwhm: list[float] = field(default_factory=list)  #: median star fwhm per frame (px)
    noise: float = math.nan  #: median of the stack's noise map (standard error)
    sky_noise: float = math.nan  #: mad_std of the stack's image over its covered pixels
    coverage: tuple[int, int] = (0, 0)  #: smallest and largest count
    rejected: float = math.nan  #: share of the values rejected
    seconds: float = 0.0
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  #: what happened that was not planned


@dataclass
class NightResult:
    """What :func:`~stackengine.run_night` made."""

    plan: NightPlan
    out_dir: Path
    masters: dict[str, Path] = field(default_factory=dict)  #: name -> file
    master_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    stacks: list[StackStats] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  #: every file written
    seconds: float = 0.0


class WrittenFiles:
    """The files a run has written, each with its stamp (inode, modification time)
    taken just after it was written: a failed run removes exactly these, and only
    while they are as it left them (a file another process wrote since, or one a
    file system renumbered, stays)."""

    def __init__(self) -> None:
        self.items: list[tuple[Path, tuple[int, int]]] = []

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def add(self, path: str | os.PathLike) -> Path:
        """Record ``path``, just written; returns it."""
        path = Path(path)
        stamp = self._stamp(path)
        if stamp is not None:
            self.items.append((path, stamp))
        return path

    def remove(self) -> list[Path]:
        """Delete the recorded files that are still as written; returns them."""
        removed = []
        for path, stamp in self.items:
            if self._stamp(path) == stamp:
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass
        return removed
