"""`prepare scalograms` time per cell: before (pynwb reader) / after (h5py reader), by scheduler.

Writes ``benchmarks/results/prepare.json``. Goals (issue 15): >= 3x faster per cell on one core
than before; the default scheduler (``auto``) never slower than ``--scheduler synchronous``.

Each configuration runs in a fresh subprocess (``python -c``: import, then ``prepare_scalograms``
on simulated cells into an empty folder), timed inside it from the call to its return, so the
figures include the dask cluster's start-up but not the interpreter's. Configurations:

* ``before_sync``  ``EPHYS_NWB_READER=pynwb``, ``--scheduler synchronous`` (one core)
* ``after_sync``   the h5py reader, synchronous (one core)
* ``before_local_1w`` / ``before_local_2w``  pynwb, dask LocalCluster with 1 / 2 workers
  (``local`` was the old default)
* ``after_local_1w`` / ``after_local_2w``    h5py, LocalCluster 1 / 2 workers
* ``after_auto``   h5py, the new default ``auto`` (in-process unless a cluster pays)

The machine may be shared (its load average is recorded): every round runs every
configuration once, in a shuffled order, and the speed-ups are computed within a round, then the
median over rounds is reported beside each configuration's median.

    python benchmarks/bench_prepare.py [--cells-per-class 5] [--rounds 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "before_sync": ("pynwb", "synchronous", None),
    "after_sync": ("", "synchronous", None),
    "after_auto": ("", "auto", None),
    "before_local_1w": ("pynwb", "local", 1),
    "before_local_2w": ("pynwb", "local", 2),
    "after_local_1w": ("", "local", 1),
    "after_local_2w": ("", "local", 2),
}

_CHILD = """
import json, sys, time
from ephys.pipelines.sts.scalograms import prepare_scalograms
src, out, sched, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
t0 = time.perf_counter()
res = prepare_scalograms(src, out, labels_csv=src + "/labels.csv", scheduler=sched,
                         workers=int(workers) if workers != "0" else None)
print(json.dumps({"seconds": time.perf_counter() - t0, "n_ok": res.n_ok}))
"""


def _run(name: str, src: Path, work: Path, rnd: int) -> dict:
    reader, sched, workers = CONFIGS[name]
    env = {**os.environ, "EPHYS_NWB_READER": reader, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    out = work / f"{name}-{rnd}"
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(out), sched, str(workers or 0)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells-per-class", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "prepare.json")
    args = ap.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]

    from ephys.pipelines.sts.synthetic import fetch_synthetic

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        tmp = Path(tmp)
        src = tmp / "raw"
        fetch_synthetic(src, n_per_class=args.cells_per_class, seed=0)
        n_cells = len(list(src.glob("*.nwb")))
        rounds = []
        rng = random.Random(0)
        for r in range(args.rounds):
            order = names[:]
            rng.shuffle(order)
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            got = {name: _run(name, src, tmp, r) for name in order}
            rounds.append({"load_avg_1min": load, "order": order,
                           **{n: round(g["seconds"], 3) for n, g in got.items()}})
            assert all(g["n_ok"] == n_cells for g in got.values()), got
            print(f"round {r}: " + ", ".join(f"{n} {got[n]['seconds']:.2f}s" for n in names), flush=True)

    def med(name):
        return statistics.median(r[name] for r in rounds)

    def ratio(a, b):  # median over rounds of a / b measured in the same round
        if a not in names or b not in names:
            return None
        return round(statistics.median(r[a] / r[b] for r in rounds), 2)

    result = {
        "what": "ephys prepare scalograms on simulated cells (NWB, 11 sweeps of 1.5 s at 10 kHz each), "
                "seconds from the call to its return in a fresh process (includes dask start-up)",
        "n_cells": n_cells,
        "rounds": rounds,
        "median_seconds": {n: round(med(n), 3) for n in names},
        "median_s_per_cell": {n: round(med(n) / n_cells, 4) for n in names},
        "speedup_one_core_before_over_after": ratio("before_sync", "after_sync"),
        "auto_over_sync_time_ratio": ratio("after_auto", "after_sync"),
        "speedup_old_default_local_2w_over_new_default_auto": ratio("before_local_2w", "after_auto"),
        "local_2w_over_1w_time_ratio_after": ratio("after_local_2w", "after_local_1w"),
        "note": "shared machine: absolute seconds are noisy; compare ratios taken within a round",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("median_s_per_cell", "speedup_one_core_before_over_after",
                                             "auto_over_sync_time_ratio")}, indent=1))
    return result


if __name__ == "__main__":
    main()
