"""Run one function over many cells: in-process, or on dask when that pays.

``scheduler="auto"`` (the default of ``ephys prepare scalograms``) states the rule:

* one worker (``--workers 1`` or a one-core machine): always in-process;
* otherwise cells start in-process; after each one the remaining work is estimated from the
  mean time per cell so far, and only when the time a dask ``LocalCluster`` could save,
  ``remaining_cells x mean_s x (1 - 1/workers)``, exceeds what starting it costs
  (:data:`CLUSTER_START_S`: spawning worker processes that import numpy/scipy/PyWavelets and
  ephys, measured 4-8 s on a 2-core machine) do the remaining cells go to a LocalCluster.

So a small input (the demo's 80 cells at ~0.05 s each) never waits for a cluster, and a large
one (DANDI 000020's 4,435 cells) still spreads over all cores. ``"local"`` always starts the
LocalCluster, ``"synchronous"`` never does; ``"slurm"`` or an address are used as given.
"""

from __future__ import annotations

import time
from typing import Callable

#: seconds a LocalCluster costs to start before it does any work (see the module docstring)
CLUSTER_START_S = 8.0


def run_cells(fn: Callable, cells: list, args: tuple, scheduler: str, workers: int | None,
              make_client: Callable, progress: Callable[[int, int, dict], None] | None = None,
              key: Callable = lambda c: str(c)) -> list[dict]:
    """``[fn(cell, *args) for cell in cells]`` (in completion order), in-process or on dask.

    ``make_client(scheduler, workers)`` returns ``(client, cluster)`` (``(None, None)`` for
    in-process); ``progress(done, total, record)`` is called after each cell. ``scheduler``:
    ``"auto"`` (the rule of the module docstring), ``"synchronous"``, ``"local"``, ``"slurm"`` or a
    scheduler address. Exceptions of ``fn`` propagate.
    """
    import os

    results: list[dict] = []
    total = len(cells)

    def done(rec):
        results.append(rec)
        if progress:
            progress(len(results), total, rec)

    rest = list(cells)
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
            for cell in rest:
                done(fn(cell, *args))
        else:
            from dask.distributed import as_completed

            futures = [client.submit(fn, cell, *args, key=f"cell-{key(cell)}", pure=False) for cell in rest]
            for fut in as_completed(futures):
                done(fut.result())
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    return results
