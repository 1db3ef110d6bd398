"""The progress display in a Jupyter notebook: detection and drawing, without a kernel.

A kernel's ``sys.stderr`` is no terminal, so the line-per-10 % drawing would
show; under a kernel the display instead publishes one output and updates it.
The kernel is faked: an ``IPython`` module whose ``get_ipython()`` returns a
shell with a ``kernel``, and a recorder in place of the display handle.
"""

from __future__ import annotations

import io
import sys
import types

import dask
import dask.array as da
import numpy as np
import pytest
from progress_lines import LINE, TTY

from stackengine import progress_display
from stackengine.progress import progress_context
from stackengine.progress_display import _kernel_shell, _NotebookOutput


class Shell:
    """An IPython shell: a kernel's (``kernel`` set) or a terminal's (None)."""

    def __init__(self, kernel: object | None) -> None:
        self.kernel = kernel


def _fake_ipython(monkeypatch: pytest.MonkeyPatch, shell: object | None) -> None:
    module = types.ModuleType("IPython")
    module.get_ipython = lambda: shell  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", module)


class Recorder:
    """Stands in for ``IPython.display.display(..., display_id=True)`` and its updates."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.updates: list[str] = []

    def publish(self, text: str):
        self.published.append(text)
        return self.updates.append


def test_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert _kernel_shell(err) is None  # no IPython imported: a plain Python process
    _fake_ipython(monkeypatch, None)
    assert _kernel_shell(err) is None  # IPython imported, no shell running
    _fake_ipython(monkeypatch, Shell(kernel=None))
    assert _kernel_shell(err) is None  # IPython in a terminal: escape codes work there
    kernel = Shell(kernel=object())
    _fake_ipython(monkeypatch, kernel)
    assert _kernel_shell(err) is kernel  # a kernel's stderr
    assert _kernel_shell(sys.stdout) is kernel
    assert _kernel_shell(io.StringIO()) is None  # a log file keeps its lines
    assert _kernel_shell(None) is None
    tty = TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert _kernel_shell(tty) is None  # a terminal keeps its redrawn line


def test_notebook_output_keeps_finished_lines() -> None:
    rec = Recorder()
    out = _NotebookOutput(rec.publish)
    out.show("stacking  10%")
    out.show("stacking  50%")
    out.show("stacking 100%", final=True)
    out.show("writing    0%")
    out.show("writing  100%", final=True)
    assert rec.published == ["stacking  10%"]  # one output, then updates of it
    assert rec.updates == [
        "stacking  50%",
        "stacking 100%",
        "stacking 100%\nwriting    0%",
        "stacking 100%\nwriting  100%",
    ]


def _slow(block: np.ndarray) -> np.ndarray:
    import time

    time.sleep(0.02)
    return block + 1.0


def _run(stream_name: str, stream: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()
    monkeypatch.setattr(progress_display, "_ipython_publish", rec.publish)
    monkeypatch.setattr(sys, stream_name, stream)
    _fake_ipython(monkeypatch, Shell(kernel=object()))
    x = da.from_array(np.zeros((12, 2)), chunks=(1, 2)).map_blocks(_slow).sum()
    with dask.config.set(scheduler="threads"), progress_context(interval=0.01):
        assert x.compute() == 24.0
        assert (x * 2).compute() == 48.0
    return rec


def test_progress_in_a_kernel_draws_one_updated_output(monkeypatch: pytest.MonkeyPatch) -> None:
    err = io.StringIO()
    rec = _run("stderr", err, monkeypatch)
    assert err.getvalue() == ""  # nothing written to the stream: no \r, no escape codes
    assert len(rec.published) == 1
    final = rec.updates[-1]
    assert "\r" not in final and "\x1b" not in final
    lines = final.split("\n")
    assert len(lines) == 2, final  # one line per computation (phase), both kept
    for line in lines:
        m = LINE.match(line)
        assert m, line
        assert m["pct"] == "100" and m["bar"] == "#" * 20


def test_terminal_unchanged_under_a_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    tty = TTY()
    rec = _run("stderr", tty, monkeypatch)
    assert rec.published == [] and rec.updates == []
    assert "\r" in tty.getvalue()
    assert tty.getvalue().count("\n") == 2


def test_failed_display_stops_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: str):
        raise RuntimeError("no display here")

    monkeypatch.setattr(progress_display, "_ipython_publish", refuse)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    _fake_ipython(monkeypatch, Shell(kernel=object()))
    x = da.from_array(np.zeros((4, 2)), chunks=(1, 2)).map_blocks(_slow).sum()
    with dask.config.set(scheduler="threads"), progress_context(interval=0.01):
        assert x.compute() == 8.0  # the computation is unaffected
    assert err.getvalue() == ""
