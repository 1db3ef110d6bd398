"""Progress with a percentage and an ETA on the terminal or in a notebook, local or distributed.

Each dask computation inside :func:`progress_context` is a *phase*, one line::

    measure   42% [########............] 12/28 tasks  elapsed 0:07  ETA 0:10

Tasks weigh the same; ``ETA = elapsed x (1 - f) / f`` for the fraction ``f``
done. Pass 1's graphs (keys ``_measure...``) are labelled "measure". Local
schedulers are followed with a dask ``Callback``, a dask.distributed cluster
with a scheduler plugin counting the tasks of each graph the client submits,
polled by a thread. :func:`progress_phase` shows several computations (e.g. a
writer's batches of rows) as one phase.

The drawing is :mod:`stackengine.progress_display`'s, shared with
:mod:`stackengine.progress_cluster`, which is imported only to follow a cluster
(local runs never import distributed).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from dask.callbacks import Callback

from .progress_display import _Compute, _Display, _Phase, _phase_label  # noqa: F401 (_Phase: tests)

__all__ = ["progress_context", "progress_phase"]

_ACTIVE: _Display | None = None
_ACTIVE_LOCK = threading.Lock()


class _LocalProgress(Callback):
    """Follows the computations of dask's local schedulers."""

    def __init__(self, display: _Display) -> None:
        self.display = display
        self.computes: dict[int, _Compute | None] = {}

    def _start_state(self, dsk: Any, state: dict) -> None:
        total = sum(len(state[k]) for k in ("ready", "waiting", "running"))
        label = _phase_label(dsk, self.display.label)
        self.computes[id(state)] = self.display.start(label, total)

    def _posttask(self, key: Any, result: Any, dsk: Any, state: dict, worker_id: Any) -> None:
        self.display.update(self.computes.get(id(state)))

    def _finish(self, dsk: Any, state: dict, errored: bool) -> None:
        self.display.finish(self.computes.pop(id(state), None), failed=errored)


def _cluster(display: _Display, address: str | None) -> Any:
    """Follow the active dask.distributed client, or one connected to ``address``.

    Without an address and with distributed never imported no client can be
    active: distributed (a fifth of a second to import) is then left alone.
    """
    if not address and "distributed" not in sys.modules:
        return None
    from .progress_cluster import follow_cluster

    return follow_cluster(display, address)


@contextlib.contextmanager
def progress_context(
    label: str = "stacking",
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
    address: str | None = None,
    interval: float = 0.5,
) -> Iterator[None]:
    """Show the progress of the dask computations run inside the block.

    Parameters
    ----------
    label : str
        Name of the phases other than pass 1's ("measure").
    enabled : bool
        False shows nothing (the block runs unchanged).
    stream : file-like or None
        Where to write; None is ``sys.stderr`` at entry. A terminal
        (``isatty()``) gets one line redrawn in place, any other stream a
        line per further 10 % of a phase; in a Jupyter notebook (the
        standard streams of an IPython kernel) the lines are one output of
        the cell, updated in place.
    address : str or None
        A dask.distributed scheduler to follow when no client is active in
        this process (an active client is followed, as are dask's local
        schedulers).
    interval : float
        Seconds between redraws and between polls of a cluster.

    Notes
    -----
    Results are unchanged; a nested call does nothing; a failed computation's
    line ends with "failed".
    """
    global _ACTIVE
    stream = sys.stderr if stream is None else stream
    display = _Display(label, stream, max(float(interval), 0.01))
    with _ACTIVE_LOCK:
        active = enabled and stream is not None and _ACTIVE is None
        _ACTIVE = display if active else _ACTIVE
    if not active:
        yield
        return
    local, stop, failed = _LocalProgress(display), threading.Event(), True
    thread = threading.Thread(target=display.run, args=(stop,), daemon=True)
    local.register()
    try:
        display.cluster = _cluster(display, address)
        thread.start()
        yield
        failed = False
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=30.0)
        local.unregister()
        if display.cluster is not None:
            display.cluster.close()
        display.close(failed)
        with _ACTIVE_LOCK:
            _ACTIVE = None


@contextlib.contextmanager
def progress_phase(label: str | None = None, *, parts: int = 1) -> Iterator[None]:
    """Show the next ``parts`` dask computations as one phase of the display.

    Parameters
    ----------
    label : str or None
        The phase's name; None takes it from its first computation.
    parts : int
        How many computations the block runs (e.g. batches of rows); each
        counts for ``1 / parts`` of the percentage and the ETA.

    Notes
    -----
    Does nothing outside :func:`progress_context`; the line ends with the block.
    """
    display = _ACTIVE
    if display is None:
        yield
        return
    if display.cluster is not None:
        display.cluster.poll(wait=30.0)  # earlier computations stay out of this phase
    group, failed = display.open_group(label, max(1, int(parts))), True
    try:
        yield
        failed = False
    except GeneratorExit:  # a generator holding the block was closed: failed if unfinished
        failed = len(group.computes) < group.parts
        raise
    finally:
        if display.cluster is not None:
            display.cluster.poll(wait=30.0)
        display.close_group(group, failed)
