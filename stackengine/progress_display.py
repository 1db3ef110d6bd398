"""The progress display shared by :mod:`stackengine.progress` and :mod:`.progress_cluster`.

A display draws *phases*, one line each, of one or more dask computations
(``_Compute``: ``done`` of ``total`` tasks); the followers (a local ``Callback``,
a cluster poller) report to it. Knows nothing of how tasks are counted, so
both followers import it without importing each other.

Where it draws: a terminal gets one line redrawn in place (``\\r``), another
stream a line per further 10 % of a phase, and the standard streams of a
Jupyter (IPython) kernel, which render neither, one rich-display output
updated in place (:class:`_NotebookOutput`: the finished phases' lines and the
current one, as text).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from dask.utils import key_split

_BAR = 20


def _phase_label(keys: Iterable[Any], default: str) -> str:
    """The label "measure" when a key names a pass-1 measurement task, else ``default``."""
    for key in keys:
        if key_split(key).lstrip("_").startswith("measure"):
            return "measure"
    return default


def _clock(seconds: float) -> str:
    h, rest = divmod(max(0, int(round(seconds))), 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _kernel_shell(stream: Any) -> Any:
    """The IPython shell of the Jupyter kernel this process is, if ``stream`` is its output.

    None on a terminal (``isatty()``), in a plain or IPython terminal session
    (no kernel), or for any stream other than the process's ``sys.stdout`` and
    ``sys.stderr`` (a log file keeps its lines). IPython is looked up, never
    imported: a kernel has imported it long before.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None or stream is None or stream not in (sys.stdout, sys.stderr):
        return None
    isatty = getattr(stream, "isatty", None)
    try:
        if isatty is not None and isatty():
            return None
        shell = ipython.get_ipython()
    except Exception:  # a closed stream, an IPython without get_ipython
        return None
    return shell if getattr(shell, "kernel", None) is not None else None


def _ipython_publish(first: str) -> Callable[[str], None]:
    """Show ``first`` as a new display output; the returned function replaces its text."""
    from IPython.display import display

    handle = display({"text/plain": first}, raw=True, display_id=True)

    def update(text: str) -> None:
        handle.update({"text/plain": text}, raw=True)

    return update


class _NotebookOutput:
    """The lines of a display as one output of a notebook cell, updated in place.

    ``publish(text)`` shows the first text and returns the function that
    replaces it (by default an IPython display handle's ``update``); the
    finished phases' lines stay above the current one.
    """

    def __init__(self, publish: Callable[[str], Callable[[str], None]] | None = None) -> None:
        self.publish = _ipython_publish if publish is None else publish
        self.update: Callable[[str], None] | None = None
        self.lines: list[str] = []

    def text(self, line: str) -> str:
        return "\n".join([*self.lines, line])

    def show(self, line: str, final: bool = False) -> None:
        text = self.text(line)
        if self.update is None:
            self.update = self.publish(text)
        else:
            self.update(text)
        if final:
            self.lines.append(line)


class _Compute:
    """One dask computation: ``done`` of ``total`` tasks, shown in ``phase``."""

    def __init__(self, phase: _Phase, total: int) -> None:
        self.phase, self.done, self.total, self.finished = phase, 0, total, False


class _Phase:
    """One line of the display: one computation, or ``parts`` of them."""

    def __init__(self, label: str | None, parts: int, t0: float) -> None:
        self.label, self.parts, self.t0 = label, parts, t0
        self.computes: list[_Compute] = []
        self.step, self.printed, self.ended = 0, t0, False

    def fraction(self) -> float:
        n = max(self.parts, len(self.computes))
        return sum(min(c.done / c.total, 1.0) for c in self.computes) / n

    def line(self, now: float, failed: bool) -> str:
        frac, elapsed = self.fraction(), now - self.t0
        done = sum(c.done for c in self.computes)
        if self.parts > 1:
            count = f"{done} tasks, part {len(self.computes)}/{self.parts}"
        else:
            count = f"{done}/{sum(c.total for c in self.computes)} tasks"
        eta = f"ETA {_clock(elapsed * (1 - frac) / frac)}" if frac > 0 else "ETA -:--"
        eta = "failed" if failed else eta
        return (
            f"{self.label or '':<9}{int(100 * frac):3d}% [{'#' * int(_BAR * frac):.<{_BAR}}]"
            f" {count}  elapsed {_clock(elapsed)}  {eta}"
        )


class _Display:
    """The phases and their drawing; the public methods are thread safe."""

    def __init__(self, label: str, stream: TextIO, interval: float) -> None:
        self.label, self.stream, self.interval = label, stream, interval
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and not getattr(stream, "closed", False) and isatty())
        self.notebook = _NotebookOutput() if _kernel_shell(stream) is not None else None
        self.columns = shutil.get_terminal_size((100, 24)).columns - 1
        self.lock = threading.RLock()
        self.phase: _Phase | None = None  # the one drawn
        self.group: _Phase | None = None  # opened by progress_phase
        self.width, self.drawn, self.broken = 0, 0.0, False
        self.cluster: Any = None  # a progress_cluster._ClusterProgress

    def write(self, text: str) -> None:
        if not self.broken:
            try:
                self.stream.write(text)
                self.stream.flush()
            except (OSError, ValueError):  # closed stream, broken pipe
                self.broken = True

    def _draw(self, phase: _Phase, *, final: bool = False, failed: bool = False) -> None:
        now = time.monotonic()
        if self.notebook is not None:
            if not self.broken and (final or now - self.drawn >= self.interval):
                try:
                    self.notebook.show(phase.line(now, failed), final)
                except Exception:  # the kernel's display machinery refused: stop drawing
                    self.broken = True
                self.drawn = now
            return
        if self.tty:
            if final or now - self.drawn >= self.interval:
                line = phase.line(now, failed)[: self.columns]
                pad = " " * max(0, self.width - len(line))
                self.write(f"\r{line}{pad}" + ("\n" if final else ""))
                self.width, self.drawn = (0 if final else len(line)), now
            return
        step = int(10 * phase.fraction())
        due = phase.step < step < 10 and now - phase.printed >= self.interval
        if final or due or now - phase.printed >= 60.0:
            self.write(phase.line(now, failed) + "\n")
            phase.step, phase.printed = step, now

    def _end(self, phase: _Phase | None, failed: bool = False) -> None:
        if phase is not None and not phase.ended:
            phase.ended = True
            if phase.computes:
                self._draw(phase, final=True, failed=failed)
            if self.phase is phase:
                self.phase = None

    def start(self, label: str, total: int, t0: float | None = None) -> _Compute | None:
        """A computation of ``total`` tasks begins (None: nothing to show)."""
        if total <= 0:
            return None
        with self.lock:
            phase = self.group or _Phase(label, 1, time.monotonic() if t0 is None else t0)
            phase.label = phase.label or label
            if self.phase is not phase:  # a new line: drawn at once
                self._end(self.phase)
                self.phase, self.drawn = phase, 0.0
            compute = _Compute(phase, total)
            phase.computes.append(compute)
            self._draw(phase)
            return compute

    def update(self, compute: _Compute | None, done: int | None = None) -> None:
        """One more task of ``compute`` finished (or ``done`` of them)."""
        if compute is not None:
            with self.lock:
                compute.done = compute.done + 1 if done is None else done
                if compute.phase is self.phase:
                    self._draw(compute.phase)

    def finish(self, compute: _Compute | None, failed: bool = False) -> None:
        """``compute`` is over; a phase of one computation ends with it."""
        if compute is not None and not compute.finished:
            with self.lock:
                compute.finished = True
                compute.done = compute.done if failed else compute.total
                if failed and compute.phase is self.group:
                    self.group = None
                if compute.phase is not self.group:
                    self._end(compute.phase, failed)

    def open_group(self, label: str | None, parts: int) -> _Phase:
        with self.lock:
            self._end(self.phase)
            self.group = _Phase(label, parts, time.monotonic())
            return self.group

    def close_group(self, group: _Phase, failed: bool = False) -> None:
        with self.lock:
            self.group = None if self.group is group else self.group
            self._end(group, failed)

    def run(self, stop: threading.Event) -> None:
        """The thread that polls a cluster and redraws until ``stop`` is set."""
        while not stop.wait(self.interval):
            if self.cluster is not None:
                self.cluster.poll()
            with self.lock:
                if self.phase is not None and not self.phase.ended:
                    self._draw(self.phase)

    def close(self, failed: bool = False) -> None:
        with self.lock:
            self._end(self.group, failed)
            self._end(self.phase, failed)
            self.group = None
