"""Which dask scheduler runs the graph: the local threaded one, or a distributed cluster."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .errors import ParameterError

__all__ = ["scheduler_context"]


@contextlib.contextmanager
def scheduler_context(address: str | None = None) -> Iterator[object | None]:
    """Run dask computations inside the block on the scheduler at ``address``.

    ``None`` uses ``DASK_SCHEDULER_ADDRESS`` when it is set, and otherwise
    dask's default (the threaded scheduler, or a ``distributed.Client``
    already active in the caller's code).
    """
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address is None:
        yield None
        return
    from distributed import Client

    try:
        client = Client(address, timeout="10s", set_as_default=True)
    except OSError as exc:
        raise ParameterError(f"--scheduler {address}: cannot connect ({exc})") from None
    try:
        yield client
    finally:
        client.close()
