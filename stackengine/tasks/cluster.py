"""Which dask scheduler runs the graph: the local threaded one, or a distributed cluster.

* nothing: dask's default (the threaded scheduler, or a ``distributed.Client``
  the caller already made active);
* an address (``--scheduler tcp://host:8786`` or ``DASK_SCHEDULER_ADDRESS``):
  a client of that scheduler;
* ``workers=N`` (``--workers N``): a ``LocalCluster`` of N worker processes on
  this machine, each with ``memory_limit`` and the cores shared out.

Workers read the frames themselves, by path: every worker must see the files
at the same path (a shared file system or the same mounted volume).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from ..errors import ParameterError

__all__ = ["compute", "local_scheduler", "scheduler_context", "WORKER_ENV", "WORKER_BASELINE"]

#: one BLAS/OpenMP/numba thread per dask thread: dask provides the parallelism
WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


def local_scheduler() -> Any | None:
    """dask's threaded ``get`` when nothing else can be chosen, else None.

    With no ``scheduler`` in dask's config and distributed never imported, no
    ``distributed.Client`` can be active, so dask would run the threaded
    scheduler anyway; naming it directly spares the import of distributed
    (about 0.1–0.2 s) that dask's own lookup makes to find out.
    """
    import dask

    if "distributed" in sys.modules or dask.config.get("scheduler", None) is not None:
        return None
    import dask.threaded

    return dask.threaded.get


def compute(*args: Any, **kwargs: Any) -> tuple:
    """``dask.compute`` on :func:`local_scheduler` when it applies, else dask's choice."""
    import dask

    if "scheduler" not in kwargs:
        scheduler = local_scheduler()
        if scheduler is not None:
            kwargs["scheduler"] = scheduler
    return dask.compute(*args, **kwargs)


#: what a worker process needs besides its tiles: Python, numpy, astropy, numba, dask
WORKER_BASELINE = 768 * 2**20


def _local_cluster(workers: int, memory_limit: str | int | None):
    from distributed import LocalCluster

    from .plan import parse_memory

    if workers < 1:
        raise ParameterError(f"--workers {workers}: must be at least 1")
    threads = max(1, (os.cpu_count() or 1) // workers)
    # tiles are planned within memory_limit; the process limit adds the interpreter's baseline
    limit = parse_memory(memory_limit) + WORKER_BASELINE if memory_limit else "auto"
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        memory_limit=limit,
        dashboard_address=":0",
        env=dict(WORKER_ENV),
    )


@contextlib.contextmanager
def scheduler_context(
    address: str | None = None,
    *,
    workers: int | None = None,
    memory_limit: str | int | None = None,
) -> Iterator[object | None]:
    """Run the dask computations inside the block on the chosen scheduler.

    Parameters
    ----------
    address : str, optional
        A dask.distributed scheduler (``tcp://host:8786``); default
        ``DASK_SCHEDULER_ADDRESS`` when set.
    workers : int, optional
        Start a LocalCluster of this many worker processes instead.
    memory_limit : str or int, optional
        The tile budget of each LocalCluster worker; the worker process may
        use this plus :data:`WORKER_BASELINE` (the interpreter and libraries)
        before dask's nanny restarts it.
    """
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ParameterError(f"--workers {workers}: must be at least 1")
    address = address or os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    if address is None and not workers:
        yield None
        return
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if workers:
            cluster = stack.enter_context(_local_cluster(workers, memory_limit))
            client = stack.enter_context(Client(cluster, set_as_default=True))
        else:
            try:
                client = Client(address, timeout="10s", set_as_default=True)
            except OSError as exc:
                raise ParameterError(f"--scheduler {address}: cannot connect ({exc})") from None
            stack.callback(client.close)
        yield client
