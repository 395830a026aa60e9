"""Run one function over many items (recordings, sweeps of a cell, channels): in-process, or on dask when that pays.

Every ``ephys prepare`` step runs its per-item work through :func:`run_items`, so every pipeline
gets ``--workers``, ``--scheduler`` and ``--slurm-*`` for free. ``scheduler="auto"`` (the default)
states the rule:

* one worker (``--workers 1`` or a one-core machine): always in-process;
* otherwise items start in-process; after each one the remaining work is estimated from the
  mean time per item so far, and only when the time a dask ``LocalCluster`` could save,
  ``remaining_items x mean_s x (1 - 1/workers)``, exceeds what starting it costs
  (:data:`CLUSTER_START_S`: spawning worker processes that import numpy/scipy/PyWavelets and
  ephys, measured 4-8 s on a 2-core machine) do the remaining items go to a LocalCluster.

So a small input (80 items at ~0.05 s each) never waits for a cluster, and a large one
(thousands of recordings) still spreads over all cores. ``"local"`` always starts the
LocalCluster, ``"synchronous"`` never does; ``"slurm"`` or an address are used as given.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from .errors import EphysError

#: seconds a LocalCluster costs to start before it does any work (see the module docstring)
CLUSTER_START_S = 8.0


#: the ``--scheduler`` values besides a scheduler address ``tcp://HOST:PORT``
SCHEDULERS = ("auto", "local", "synchronous", "slurm")


@dataclass
class SlurmWorkers:
    """dask-jobqueue ``SLURMCluster`` settings for ``--scheduler slurm`` (one worker per job).

    queue : partition ('' = the cluster default); cores, memory : per worker job;
    walltime : per job (HH:MM:SS); extra : more ``#SBATCH`` directives, e.g. ``--account=lab``;
    log_directory : where the worker jobs' logs go.
    """

    queue: str = ""
    cores: int = 1
    memory: str = "4GB"
    walltime: str = "01:00:00"
    extra: tuple[str, ...] = ()
    log_directory: str | None = None


def check_scheduler(scheduler: str) -> str:
    """``scheduler`` when it is one of :data:`SCHEDULERS` or looks like an address (``tcp://...``,
    ``HOST:PORT``); EphysError naming ``--scheduler`` otherwise."""
    s = str(scheduler or "").strip()
    if s in SCHEDULERS or "://" in s or (":" in s and s.rsplit(":", 1)[1].isdigit()):
        return s
    raise EphysError(f"--scheduler must be auto, local, synchronous, slurm or a scheduler address "
                     f"(tcp://HOST:PORT), not {scheduler!r}")


def make_client(scheduler: str, workers: int | None, slurm: SlurmWorkers | None = None):
    """``(client, cluster)`` for ``scheduler``: 'local' -> a LocalCluster, 'synchronous' -> (None, None),
    'slurm' -> a dask-jobqueue SLURMCluster (one sbatch job per worker), else a scheduler address.

    Raises
    ------
    EphysError
        SLURM workers cannot be started (no ``sbatch``, a refused job), or the address does not answer.
    """
    if scheduler == "synchronous":
        return None, None
    if scheduler == "slurm":
        import shutil

        if shutil.which("sbatch") is None:  # before dask-jobqueue, which would hang on a missing sbatch
            raise EphysError("could not start dask workers on SLURM: no `sbatch` on PATH (is this a SLURM "
                             "login node?)", "--scheduler slurm")
        from dask.distributed import Client
        from dask_jobqueue import SLURMCluster

        sw = slurm or SlurmWorkers()
        try:
            cluster = SLURMCluster(queue=sw.queue or None, cores=sw.cores, processes=1, memory=sw.memory,
                                   walltime=sw.walltime, job_extra_directives=list(sw.extra),
                                   log_directory=sw.log_directory, scheduler_options={"dashboard_address": ":0"},
                                   job_name="ephys-dask", silence_logs="error")
            cluster.scale(jobs=workers or 2)
            client = Client(cluster)
            client.wait_for_workers(1, timeout=600)
        except Exception as exc:  # sbatch refusing the job: say so in one line
            raise EphysError(f"could not start dask workers on SLURM ({type(exc).__name__}: {exc})".splitlines()[0],
                             "--scheduler slurm") from None
        return client, cluster
    from dask.distributed import Client, LocalCluster

    if scheduler in ("local", "", None):
        n = workers or max(1, (os.cpu_count() or 1))
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=40)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="20s"), None
    except (OSError, TimeoutError) as exc:
        raise EphysError(f"cannot connect to dask scheduler ({exc})", scheduler) from None


def run_items(fn: Callable, items: list, args: tuple, scheduler: str, workers: int | None,
              make_client: Callable = make_client, progress: Callable[[int, int, dict], None] | None = None,
              key: Callable = lambda c: str(c)) -> list:
    """``[fn(item, *args) for item in items]`` (in completion order), in-process or on dask.

    ``make_client(scheduler, workers)`` returns ``(client, cluster)`` (``(None, None)`` for
    in-process); ``progress(done, total, result)`` is called after each item. ``scheduler``:
    ``"auto"`` (the rule of the module docstring), ``"synchronous"``, ``"local"``, ``"slurm"`` or a
    scheduler address. Exceptions of ``fn`` propagate.
    """
    results: list[dict] = []
    total = len(items)

    def done(rec):
        results.append(rec)
        if progress:
            progress(len(results), total, rec)

    rest = list(items)
    if scheduler in ("auto", "synchronous"):
        n = workers or max(1, os.cpu_count() or 1)
        t0 = time.perf_counter()
        while rest:
            if scheduler == "auto" and n > 1 and results:
                mean_s = (time.perf_counter() - t0) / len(results)
                if len(rest) * mean_s * (1.0 - 1.0 / n) > CLUSTER_START_S:
                    break
            done(fn(rest.pop(0), *args))
        if not rest:
            return results
        scheduler = "local"
    client, cluster = make_client(scheduler, workers)
    try:
        if client is None:
            for item in rest:
                done(fn(item, *args))
        else:
            from dask.distributed import as_completed

            futures = [client.submit(fn, item, *args, key=f"item-{key(item)}", pure=False) for item in rest]
            for fut in as_completed(futures):
                done(fut.result())
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return results
