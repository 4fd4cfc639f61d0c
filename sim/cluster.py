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
        _probe(d, address)
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


def _probe(d, address: str) -> None:
    """Connect to ``address`` and do Dask's handshake, within :data:`CONNECT_TIMEOUT_S` seconds, before a
    :class:`distributed.Client` is made: a client whose start fails leaves a half-made object that
    prints a stack when collected, and a server that is not a Dask scheduler but speaks first (ssh, a
    proxy) sends bytes Dask reads as a frame length of exabytes (a MemoryError, not a network error).
    The probe runs its own event loop in a thread of its own (the caller may be inside one, e.g. Jupyter)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    async def handshake():
        comm = await d.comm.connect(address, timeout=f"{CONNECT_TIMEOUT_S}s")
        await comm.close()
    try:
        with ThreadPoolExecutor(1) as ex:
            ex.submit(asyncio.run, asyncio.wait_for(handshake(), CONNECT_TIMEOUT_S + 1)).result()
    except (OSError, TimeoutError, asyncio.TimeoutError) as e:
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ClusterError(f"cannot reach the Dask scheduler at '{address}' within {CONNECT_TIMEOUT_S} s "
                           f"({why})") from None
    except (ValueError, TypeError) as e:          # a malformed address
        why = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ClusterError(f"cannot reach the Dask scheduler at '{address}' ({why})") from None
    except Exception as e:                        # it answered, but not as a Dask scheduler (MemoryError, ...)
        kind = next(c.__name__ for c in type(e).__mro__ if c.__module__ == "builtins")   # not numpy's subclass
        raise ClusterError(f"'{address}' answered, but not as a Dask scheduler (handshake failed: {kind})") from None


def total_threads(client) -> int:
    """Task slots on the cluster (worker threads)."""
    return max(1, sum(client.nthreads().values()))
