"""The Dask cluster that bitplane's parallel jobs run on (``bitplane sim --workers``, ``bitplane sweep``).

Dask (``distributed``) is the engine; bitplane has no process pool of its own.

* Default: an embedded :class:`distributed.LocalCluster` on this machine, one single-threaded
  worker process per core (or ``workers``), started for the job and closed after it.
* ``scheduler`` (``--scheduler ADDRESS``) or the ``DASK_SCHEDULER_ADDRESS`` environment variable:
  the same job on an existing cluster (``dask scheduler`` + ``dask worker ADDRESS`` on each
  machine, dask-jobqueue on a batch system, ...). Its workers need the same bitplane install
  (same Python packages and platform: native simulators are built once on the client and
  shipped to the workers as executables).

An address that does not answer within :data:`CONNECT_TIMEOUT_S` seconds is a one-line
:class:`ClusterError`.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager

from bitplane.core.errors import BitplaneError, InputError, NotSupportedError

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 3


class ClusterError(BitplaneError):
    pass


def _distributed():
    try:
        import distributed
    except ImportError:
        raise NotSupportedError("parallel jobs need Dask: run `make install` (dask[distributed] from "
                                "requirements.txt)") from None
    return distributed


def scheduler_address(scheduler: str | None = None) -> str | None:
    """``scheduler``, else ``$DASK_SCHEDULER_ADDRESS``, else ``None`` (an embedded local cluster)."""
    return scheduler or os.environ.get(SCHEDULER_ENV) or None


@contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None, progress=None):
    """A :class:`distributed.Client`: on ``scheduler`` (see :func:`scheduler_address`) or on a local
    cluster of ``workers`` processes (default: the number of cores)."""
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    d = _distributed()
    address = scheduler_address(scheduler)
    if address:
        try:
            client = d.Client(address, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            why = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ClusterError(f"cannot reach the Dask scheduler at '{address}' within {CONNECT_TIMEOUT_S} s "
                               f"({why})") from None
        if progress:
            progress(f"Dask scheduler {address}: {len(client.nthreads())} worker(s), "
                     f"{total_threads(client)} thread(s)")
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    if progress:
        progress(f"local Dask cluster: {n} worker process(es), 1 thread each")
    with d.LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                        silence_logs=logging.ERROR) as cluster, \
            d.Client(cluster, set_as_default=False) as client:
        yield client


def total_threads(client) -> int:
    """Task slots on the cluster (worker threads)."""
    return max(1, sum(client.nthreads().values()))
