"""Progress of computations on a dask.distributed cluster (see :mod:`stackengine.progress`).

A scheduler plugin counts the tasks of each graph the client submits; the
client polls the counts from a thread and shows them as phases. Kept apart
from :mod:`stackengine.progress` (which imports this module lazily) so that
local runs never import distributed; the display both use is in
:mod:`stackengine.progress_display`.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Any

from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

from .progress_display import _Compute, _Display, _phase_label

__all__ = ["follow_cluster"]

_FINISHED = ("memory", "erred", "forgotten")


class _SchedulerProgress(SchedulerPlugin):
    """Scheduler side: per graph submitted, ``[label, tasks, done, start time]``."""

    def __init__(self, client: str | None, label: str) -> None:
        self.client, self.label = client, label
        self.phases: list[list[Any]] = []
        self.where: dict[Any, list[int]] = {}  # unfinished key -> its phases

    def update_graph(self, scheduler: Any, *, client: str, tasks: list, **kwargs: Any) -> None:
        if self.client is not None and client != self.client:
            return
        index, done = len(self.phases), 0
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None or ts.state in _FINISHED:
                done += 1
            else:
                self.where.setdefault(key, []).append(index)
        self.phases.append([_phase_label(tasks, self.label), len(tasks), done, time.time()])

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if finish in _FINISHED:
            for index in self.where.pop(key, ()):
                self.phases[index][2] += 1


def _snapshot(name: str, since: int, dask_scheduler: Any = None) -> tuple[float, list]:
    return time.time(), [tuple(p) for p in dask_scheduler.plugins[name].phases[since:]]


class _ClusterProgress:
    """Client side: registers the plugin and turns its counts into phases."""

    def __init__(self, client: Any, display: _Display, own: bool) -> None:
        self.client, self.display, self.own = client, display, own
        self.name = f"stackengine-progress-{uuid.uuid4().hex}"
        self.seen: list[_Compute | None] = []
        self.lock = threading.Lock()
        self.failures = 0
        plugin = _SchedulerProgress(None if own else client.id, display.label)
        client.register_plugin(plugin, name=self.name)

    def poll(self, wait: float = 0.0) -> None:
        """Fetch the scheduler's counts into the display (skipped when busy)."""
        if self.failures >= 5 or not self.lock.acquire(timeout=wait):
            return
        try:
            seen = self.seen
            first = next((i for i, c in enumerate(seen) if c and not c.finished), len(seen))
            try:
                now, phases = self.client.run_on_scheduler(_snapshot, self.name, first)
            except Exception:  # the cluster is busy or going away: try later
                self.failures += 1
                return
            self.failures, here = 0, time.monotonic()
            for i, (label, total, done, start) in enumerate(phases, first):
                if i == len(seen):
                    seen.append(self.display.start(label, total, here - (now - start)))
                if seen[i] is not None and not seen[i].finished:
                    self.display.update(seen[i], done)
                    if done >= total:
                        self.display.finish(seen[i])
        finally:
            self.lock.release()

    def close(self) -> None:
        self.poll(wait=30.0)
        with contextlib.suppress(Exception):
            self.client.unregister_scheduler_plugin(self.name)
        if self.own:
            with contextlib.suppress(Exception):
                self.client.close()


def follow_cluster(display: _Display, address: str | None) -> _ClusterProgress | None:
    """Follow the active dask.distributed client, or one connected to ``address``."""
    try:
        client = Client.current(allow_global=True)
        client = None if client.asynchronous or client.status != "running" else client
    except ValueError:
        client = None
    own = client is None and bool(address)
    try:
        if own:
            client = Client(address, timeout="10s", set_as_default=False)
        return None if client is None else _ClusterProgress(client, display, own)
    except Exception as exc:  # unreachable, or the scheduler cannot import stackengine
        display.write(f"progress: cannot follow the cluster ({exc})\n")
        if own and client is not None:
            with contextlib.suppress(Exception):
                client.close()
        return None
