"""Progress display for local and distributed runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["progress_context"]


@contextlib.contextmanager
def progress_context(address: str | None = None) -> Iterator[None]:
    """Show a progress bar for the dask computations run inside the block.

    Local schedulers use :class:`dask.diagnostics.ProgressBar`; with a
    distributed cluster, progress is reported by the cluster's dashboard.
    """
    if address:
        yield
        return
    from dask.diagnostics import ProgressBar

    with ProgressBar(minimum=1.0, dt=0.5):
        yield
