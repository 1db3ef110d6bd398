"""docs/tutorial.ipynb runs: its code cells, in order, in one namespace.

The docs build executes the notebook in a kernel (myst-nb); this runs the same
cells in-process so that the test suite, which CI runs, also catches a
tutorial gone stale. Its asserts are the seed's acceptance: the mean narrower
than the median, the clipped mean's noise within 5 % of the mean's on clean
frames, the block of outliers removed.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def _cells() -> list[str]:
    nb = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def test_tutorial_cells_are_plain_python() -> None:
    """No IPython magics or shell escapes: the cells run outside a kernel too."""
    for i, source in enumerate(_cells()):
        for line in source.splitlines():
            assert not line.lstrip().startswith(("%", "!")), f"cell {i}: {line}"
        compile(source, f"tutorial.ipynb cell {i}", "exec")


def test_tutorial_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)  # Agg would warn

    namespace: dict[str, object] = {"__name__": "__tutorial__"}
    try:
        with matplotlib.rc_context():  # the notebook's rcParams stay in it
            for i, source in enumerate(_cells()):
                try:
                    exec(compile(source, f"tutorial.ipynb cell {i}", "exec"), namespace)
                except Exception as exc:  # name the cell
                    pytest.fail(f"tutorial.ipynb code cell {i} failed: {exc!r}\n{source}")
    finally:
        plt.close("all")
    # the story's numbers, as the notebook computed them
    assert namespace["noise_mean"] < namespace["noise_median"]
    assert abs(namespace["noise_clipped"] / namespace["noise_mean"] - 1) < 0.05
