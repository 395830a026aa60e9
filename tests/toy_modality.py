"""A toy pipeline registered from outside the package (``EPHYS_PLUGINS=toy_modality``).

It proves that a new pipeline is one module: a dataset layout (one array + manifest), a tiny Keras
model, a report figure and raw-input preparation for ``ephys predict``, with no change to the core.
Samples: 32-sample sequences, class "rising" (a ramp from -1 to 1) or "falling" (the reverse), plus noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ephys.pipelines.core.models import HParam, ModelSpec
from ephys.pipelines.core.registry import Figure, Modality, Pipeline, register_pipeline

N_T = 32
LABELS = ["falling", "rising"]


def simulate(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-1, 1, N_T)
    xs, ys = [], []
    for k, name in enumerate(LABELS):
        for _ in range(n_per_class):
            xs.append((ramp if name == "rising" else -ramp) * rng.uniform(0.5, 1.5) + rng.normal(0, 0.3, N_T))
            ys.append(name)
    return np.asarray(xs, dtype=np.float32), ys


def write_dataset(out: Path, x: np.ndarray, labels: list[str | None], params: dict | None = None) -> Path:
    """The single-array layout: ``sequences.npy`` (n, 32, 1) + ``manifest.json``."""
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "sequences.npy", x.reshape(len(x), N_T, 1).astype(np.float32))
    samples = [{"id": f"s{i:03d}", "row": i, "label": lab, "group": f"g{i // 2}", "source": "toy"}
               for i, lab in enumerate(labels)]
    manifest = {"modality": "toyseq", "sample_shape": [N_T, 1], "array": "sequences.npy", "label_names": LABELS,
                "samples": samples, "parameters": params or {"n_t": N_T, "scale": 1.0}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def build_toy_dense(input_shape, n_classes, units=16):
    import keras
    from keras import layers

    inp = keras.Input(tuple(input_shape))
    x = layers.Flatten()(inp)
    x = layers.Dense(units, activation="relu", name="hidden")(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="toy_dense")


def examples(ctx):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import io

    import matplotlib.pyplot as plt

    m = ctx.manifest
    x = np.load(Path(ctx.data_dir) / m["array"])
    fig, ax = plt.subplots(figsize=(4, 2.5))
    for name in ctx.label_names:
        rows = [s["row"] for s in m["samples"] if s.get("label") == name]
        if rows:
            ax.plot(x[rows[0], :, 0], label=name)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Figure(buf.getvalue(), "toy sequences", "One sequence per class.")


def prepare_like(input_path, manifest, out_dir, log=print):
    """Raw input: a .npy of shape (n, 32), prepared with the run's parameters."""
    x = np.load(input_path)
    return write_dataset(Path(out_dir), x * float(manifest["parameters"]["scale"]), [None] * len(x),
                         manifest["parameters"])


TOY = Modality("toyseq", "toy 1-D sequences", sample_noun="sequence", examples_title="Toy examples",
               examples=examples, prepare_for_predict=prepare_like, predict_batch_size=64)

register_pipeline(Pipeline("toy", "a toy pipeline for the architecture test", modalities=(TOY,),
                           models=(ModelSpec("toy_dense", build_toy_dense, ("toyseq",), None, (), "toy", False,
                                             hparams={"units": HParam(16, int, "units of the hidden layer", min=1)}),)))
