"""Training throughput on an accelerator: img/s after warm-up, GPU utilisation and memory.

Run by ``benchmarks/gpu_check.sh`` (which installs what the machine lacks). For each model
(DenseNet121 and MobileNetV2 at ``--size``² x 3, the ``cnn1d`` spike model on 42 x 1
waveforms) a consolidated synthetic dataset (one float16 ``samples.npy``, memory-mapped, built
with :func:`ephys.pipelines.core.datasets.write_consolidated`) is trained for ``--steps`` steps
through ephys' own training batches (``_Batches``) and ``model.fit``; the first ``--warmup``
steps are not timed. Mixed precision and XLA / jit are on only where a GPU is visible (on a
CPU they stay off: Keras' mixed precision is slow there and XLA compile time would dominate).

Writes JSON (``--out``): per model ``img_per_s``, ``step_ms``, ``gpu_util_pct`` (mean of
``nvidia-smi`` samples during the timed steps; null without nvidia-smi), ``gpu_mem_mib`` (max),
plus backend, device, settings. Goal (issue 15): >= 3,000 img/s DenseNet121 at 224² on one H200,
GPU busy >= 90 %.

    python benchmarks/gpu_check.py [--steps 60] [--warmup 10] [--batch-size 256] [--size 224]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _dataset(root: Path, n: int, shape: tuple[int, ...], n_classes: int = 4):
    from ephys.pipelines.core.datasets import load_dataset, write_consolidated

    (root / "samples").mkdir(parents=True)
    rng = np.random.default_rng(0)
    samples = []
    for i in range(n):
        f = f"samples/s{i:05d}.npy"
        np.save(root / f, rng.random(shape, dtype=np.float32))
        samples.append({"id": f"s{i}", "file": f, "label": f"c{i % n_classes}", "group": f"s{i}"})
    man = {"modality": "bench", "sample_shape": list(shape), "dtype": "float32", "samples": samples,
           "label_names": [f"c{k}" for k in range(n_classes)]}
    man.update(write_consolidated(root, samples, shape, "float16"))
    for s in samples:
        (root / s["file"]).unlink()
        s.pop("file")
    (root / "manifest.json").write_text(json.dumps(man))
    return load_dataset(root)


class _GpuSampler:
    """nvidia-smi utilisation / memory every 0.2 s while running (no-op without nvidia-smi)."""

    def __init__(self):
        self.util, self.mem, self.on = [], [], False
        self.exe = shutil.which("nvidia-smi")

    def start(self):
        self.on = True
        if self.exe:
            threading.Thread(target=self._loop, daemon=True).start()

    def stop(self):
        self.on = False

    def _loop(self):
        while self.on:
            try:
                out = subprocess.run([self.exe, "--query-gpu=utilization.gpu,memory.used",
                                      "--format=csv,noheader,nounits"], capture_output=True, text=True,
                                     timeout=5).stdout.split("\n")[0]
                u, m = (float(v) for v in out.split(","))
                self.util.append(u)
                self.mem.append(m)
            except Exception:  # noqa: BLE001 - the sampler must never stop the run
                pass
            time.sleep(0.2)


def _time_model(name, build, shape, args, gpu):
    import keras

    from ephys.pipelines.core.training import _Batches

    n = args.batch_size * max(4, min(args.steps, 16))  # the dataset is cycled: epochs of up to 16 steps
    with tempfile.TemporaryDirectory(prefix=f"gpu-{name}-") as tmp:
        ds = _dataset(Path(tmp), n, shape)
        idx = np.arange(n)
        batches = _Batches(ds, idx, ds.y(idx), args.batch_size, True, 0)
        model = build(shape, 4)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                      jit_compile=bool(gpu) and not args.eager, run_eagerly=args.eager)
        times: list[float] = []

        class Clock(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                self.t = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                times.append(time.perf_counter() - self.t)
                if len(times) == args.warmup:
                    sampler.start()

        sampler = _GpuSampler()
        steps_per_epoch = len(batches)
        epochs = -(-(args.steps + args.warmup) // steps_per_epoch)
        t0 = time.perf_counter()
        model.fit(batches, epochs=epochs, verbose=0, callbacks=[Clock()])
        sampler.stop()
        total = time.perf_counter() - t0
    timed = times[args.warmup:] or times
    step_s = float(np.median(timed))
    return {"input_shape": list(shape), "batch_size": args.batch_size, "steps_timed": len(timed),
            "step_ms": round(step_s * 1e3, 2), "img_per_s": round(args.batch_size / step_s, 1),
            "img_per_s_mean": round(args.batch_size * len(timed) / sum(timed), 1),
            "gpu_util_pct": round(float(np.mean(sampler.util)), 1) if sampler.util else None,
            "gpu_mem_mib": max(sampler.mem) if sampler.mem else None, "wall_s": round(total, 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default="densenet121,mobilenetv2,cnn1d")
    ap.add_argument("--eager", action="store_true", help="no graph build (CPU smoke test)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu.json")
    args = ap.parse_args(argv)

    import keras

    from ephys.pipelines.blocks.models.backbones import build_densenet121, build_mobilenetv2
    from ephys.pipelines.blocks.models.sequence import build_cnn1d
    from ephys.pipelines.core import runtime

    gpu = runtime.configure_for_device(0)  # mixed_float16 only on a GPU
    s = args.size
    table = {
        "densenet121": (lambda shp, k: build_densenet121(shp, k, input_size=s), (s, s, 3)),
        "mobilenetv2": (lambda shp, k: build_mobilenetv2(shp, k, input_size=s), (s, s, 3)),
        "cnn1d": (lambda shp, k: build_cnn1d(shp, k), (42, 1)),
    }
    result = {"backend": runtime.backend_name(), "backend_version": runtime.backend_version(),
              "keras_version": keras.__version__, "gpu": runtime.gpu_devices(),
              "mixed_precision": keras.mixed_precision.global_policy().name,
              "xla_jit": bool(gpu) and not args.eager, "eager": args.eager,
              "models": {}, "goal": "densenet121 >= 3000 img/s at 224x224, GPU util >= 90 %"}
    for name in [m for m in args.models.split(",") if m]:
        build, shape = table[name]
        result["models"][name] = _time_model(name, build, shape, args, gpu)
        print(name, result["models"][name], flush=True)
    result["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
