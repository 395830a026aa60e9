"""Input throughput: scalograms/s delivered to ``fit`` with no model, per dataset layout.

Writes ``benchmarks/results/input.json``. Goal (issue 15): >= 4,000 scalograms/s from a warm
page cache on the 2-core development machine.

A dataset of ``--cells`` real prepared scalograms (180 x 1200 x 3, from simulated cells; the
first 20 prepared once, then copied under new ids) is written in every layout; each layout is
iterated through the training code's own ``_Batches`` (the Keras ``PyDataset`` ``fit`` reads:
shuffled batches of ``--batch-size``), one warm-up epoch, then ``--epochs`` timed epochs.
Layouts:

* ``per_file_float32``       one ``.npy`` per sample (the only layout before)
* ``consolidated_float32``   one memory-mapped ``samples.npy``, batches by slicing
* ``consolidated_float16``   the same in float16, delivered as float16 (the model casts)
* ``in_memory_float16``      the float16 array loaded into RAM once, batches by slicing

Reported per layout: ``samples_per_s`` (wall clock) and ``samples_per_cpu_s`` (this process's CPU
time: less sensitive to other users of a shared machine), MB/s, and for float16 the largest
absolute change of a value (values are in [0, 1]).

    python benchmarks/bench_input.py [--cells 80] [--batch-size 16] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_dataset(root: Path, n_cells: int) -> Path:
    from ephys.pipelines.sts.scalograms import prepare_scalograms
    from ephys.pipelines.sts.synthetic import fetch_synthetic

    raw = root / "raw"
    fetch_synthetic(raw, n_per_class=5, seed=0)
    ds = root / "per_file"
    prepare_scalograms(raw, ds, raw / "labels.csv", scheduler="synchronous", consolidated=None)
    man = json.loads((ds / "manifest.json").read_text())
    base = man["samples"]
    samples = []
    for k in range(n_cells):
        s = dict(base[k % len(base)])
        if k >= len(base):
            s["id"] = s["group"] = f"{s['id']}_copy{k}"
            new = f"samples/{s['id']}.npy"
            shutil.copyfile(ds / base[k % len(base)]["file"], ds / new)
            s["file"] = new
        samples.append(s)
    man["samples"] = samples
    (ds / "manifest.json").write_text(json.dumps(man))
    return ds


def _layout(src: Path, dst: Path, dtype: str | None) -> Path:
    from ephys.pipelines.core.datasets import write_consolidated

    if dtype is None:
        return src
    dst.mkdir()
    os.symlink(src / "samples", dst / "samples")
    man = json.loads((src / "manifest.json").read_text())
    man.update(write_consolidated(dst, man["samples"], man["sample_shape"], dtype))
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def _time(ds, batch_size: int, epochs: int) -> dict:
    from ephys.pipelines.core.training import _Batches

    idx = np.arange(len(ds.ids))
    y = np.zeros(idx.size, dtype=np.int64)
    batches = _Batches(ds, idx, y, batch_size, True, 0)

    def epoch():
        n = 0
        for k in range(len(batches)):
            x, _ = batches[k]
            n += x.shape[0]
        batches.on_epoch_end()
        return n, x.nbytes / x.shape[0]

    epoch()  # warm the page cache (and the in-memory copy)
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for _ in range(epochs):
        got, per = epoch()
        n += got
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"samples_per_s": round(n / wall, 1), "samples_per_cpu_s": round(n / max(cpu, 1e-9), 1),
            "MB_per_s": round(n * per / wall / 1e6, 1), "bytes_per_sample": int(per), "samples": n}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=80)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "input.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "jax" if _has("jax") else "tensorflow")

    from ephys.pipelines.core.datasets import load_dataset

    layouts = {}
    with tempfile.TemporaryDirectory(prefix="bench-input-") as tmp:
        tmp = Path(tmp)
        src = _make_dataset(tmp, args.cells)
        for name, dtype in (("per_file_float32", None), ("consolidated_float32", "float32"),
                            ("consolidated_float16", "float16")):
            ds = load_dataset(_layout(src, tmp / name, dtype))
            layouts[name] = _time(ds, args.batch_size, args.epochs)
            print(name, layouts[name], flush=True)
        ds = load_dataset(tmp / "consolidated_float16")
        _ = ds.array
        ds._array = np.ascontiguousarray(ds._array)  # loaded once into RAM
        layouts["in_memory_float16"] = _time(ds, args.batch_size, args.epochs)
        print("in_memory_float16", layouts["in_memory_float16"], flush=True)
        ref = np.load(tmp / "consolidated_float32" / "samples.npy", mmap_mode="r")
        f16 = np.load(tmp / "consolidated_float16" / "samples.npy", mmap_mode="r")
        err = max(float(np.abs(f16[i].astype(np.float32) - ref[i]).max()) for i in range(min(20, len(ref))))

    result = {
        "what": "samples/s delivered by ephys' training batches (_Batches, shuffled) with no model, warm page cache",
        "cells": args.cells, "batch_size": args.batch_size, "epochs_timed": args.epochs,
        "sample_shape": [180, 1200, 3],
        "layouts": layouts,
        "float16_max_abs_error": err,
        "goal_samples_per_s": 4000,
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "note": "shared machine: wall-clock figures depend on the other users; samples_per_cpu_s does less",
        "cpus": os.cpu_count(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


if __name__ == "__main__":
    main()
