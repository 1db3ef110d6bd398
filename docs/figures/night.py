"""The figure and numbers of the night page (docs/night.rst): ``stackengine run`` on a
real night, with no option.

Reads ``uam_ngc2420`` (CAFOS, Calar Alto 2.2 m) from ``../shared/data/real`` beside
the checkout at run time (nothing is copied into the repository), runs the night
into a temporary folder (deleted afterwards) and writes
``docs/figures/night_report.png``: the run's contact sheet as an 8-bit palette PNG.
Prints the plan, the report's tables and the run time::

    cd /path/to/stackengine && python docs/figures/night.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import stackengine as se

ROOT = Path(__file__).resolve().parents[2]
NIGHT = ROOT.parent / "shared" / "data" / "real" / "uam_ngc2420"
OUT = ROOT / "docs" / "figures" / "night_report.png"


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="night-"))
    try:
        t0 = time.perf_counter()
        result = se.run_night([str(NIGHT)], folder / "uam")
        dt = time.perf_counter() - t0
        print(result.plan.describe())
        print()
        print((folder / "uam" / "report.md").read_text())
        print(f"run: {dt:.1f} s")
        from PIL import Image

        with Image.open(folder / "uam" / "report.png") as png:
            png.convert("RGB").quantize(colors=256).save(OUT, optimize=True)
        print(f"wrote {OUT}")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
