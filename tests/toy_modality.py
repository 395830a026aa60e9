"""A toy pipeline registered from outside the package (``EPHYS_PLUGINS=toy_modality``).

It proves that a new pipeline is one module and one declaration: a dataset layout (one array +
manifest), a prepare step with parameters (``ephys prepare toy``, which also prepares raw input
for ``ephys predict``), a tiny Keras model with a hyper-parameter, a report figure and section, and
an extra command (``ephys toy hello``), with no change to the core or the CLI.
Samples: 32-sample sequences, class "rising" (a ramp from -1 to 1) or "falling" (the reverse), plus noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ephys.pipelines.core.errors import EphysError
from ephys.pipelines.core.models import HParam, ModelSpec, Search
from ephys.pipelines.core.params import param
from ephys.pipelines.core.prepare import PrepareStep
from ephys.pipelines.core.registry import Command, Figure, Modality, Pipeline, Section, register_pipeline

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
                "samples": samples, "parameters": params or {"n_t": N_T, "scale": 1.0, "offset_mV": 0.0}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


# --8<-- [start:builder]
def build_toy_dense(input_shape, n_classes, units=16):
    import keras
    from keras import layers

    inp = keras.Input(tuple(input_shape))
    x = layers.Flatten()(inp)
    x = layers.Dense(units, activation="relu", name="hidden")(x)
    out = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inp, out, name="toy_dense")
# --8<-- [end:builder]


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


# --8<-- [start:params]
@dataclass
class ToyParams:
    """``ephys prepare toy``: raw sequences (n, 32) in mV -> a toyseq dataset."""

    n_t: int = param(N_T, "Samples per sequence.", min=4, cli=False)
    scale: float = param(1.0, "Gain applied to the raw values.", min=0.0, min_exclusive=True)
    offset_mV: float = param(0.0, "Offset subtracted from the raw values.", unit="mV")
# --8<-- [end:params]


# --8<-- [start:hooks]
def discover(input_path, params, labels_csv=None, options=None):
    """One item: a .npy of raw sequences (unlabelled), or a folder with sequences.npy + labels.txt."""
    path = Path(input_path)
    if path.is_dir():
        return [{"id": path.name, "x": str(path / "sequences.npy"), "labels": str(path / "labels.txt")}], []
    if path.suffix != ".npy":
        raise EphysError("expected a .npy of sequences or a folder with sequences.npy", path)
    return [{"id": path.stem, "x": str(path), "labels": None}], []


def process(item, params, out_dir, options=None):
    x = np.load(item["x"]).reshape(-1, params.n_t)
    labels = Path(item["labels"]).read_text().split() if item["labels"] else [None] * len(x)
    return {"x": (x - params.offset_mV) * params.scale, "labels": labels}


def collect(out, results, params, ctx):
    r = results[0]
    write_dataset(Path(out), r["x"], r["labels"], {"n_t": params.n_t, "scale": params.scale,
                                                   "offset_mV": params.offset_mV})
    return Path(out) / "manifest.json"
# --8<-- [end:hooks]


# --8<-- [start:section]
def summary_section(ctx):
    """A report section only this pipeline knows how to write."""
    n = len((ctx.manifest or {}).get("samples") or [])
    return [Section("Toy section", text=f"{n} toy sequences in the dataset.")]
# --8<-- [end:section]


# --8<-- [start:command]
@dataclass
class HelloParams:
    """``ephys toy hello NAME``."""

    name: str = param(None, "Who to greet.", argument=True)
    times: int = param(1, "How many times.", min=1)


def hello(p, ctx):
    for _ in range(p.times):
        ctx.echo(f"hello {p.name}")
# --8<-- [end:command]


# --8<-- [start:declaration]
TOY = Modality("toyseq", "toy 1-D sequences", sample_noun="sequence", examples_title="Toy examples",
               examples=examples, sections=summary_section, predict_batch_size=64)

register_pipeline(Pipeline(
    "toy", "a toy pipeline for the architecture test", modalities=(TOY,),
    models=(ModelSpec("toy_dense", build_toy_dense, ("toyseq",), None, (), "toy", False,
                      hparams={"units": HParam(16, int, "units of the hidden layer", min=1,
                                             search=Search(4, 32, log=True))}),),
    prepare=(PrepareStep("toy", "Raw toy sequences -> a toyseq dataset.", discover, process, collect,
                         params=ToyParams, noun="file", modalities=("toyseq",), out_default="processed/toy",
                         input_help="A .npy of sequences (n, 32) in mV, or a folder with sequences.npy and "
                                    "labels.txt."),),
    commands=(Command("hello", "Say hello (the toy's extra command).", hello, HelloParams),)))
# --8<-- [end:declaration]
