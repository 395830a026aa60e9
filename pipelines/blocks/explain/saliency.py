"""Input-gradient saliency for any Keras 3 classifier (TensorFlow, JAX or PyTorch backend), and the
one explain loop every Keras modality runs (``ephys explain RUN``).

:func:`input_gradients` is the only backend-specific code; :func:`saliency_maps` turns gradients
into maps (|gradient|, or |gradient x input| for feature rows; plain or SmoothGrad: Smilkov et al.
2017, 16 noisy copies, sigma = 0.15 of each sample's range; reduced by max over the last axis of a
sample -- sweeps, channels -- when the modality asks; each map divided by its own maximum).

:func:`explain_keras_run` is the loop: the run's test samples (``RUN/split.json`` "test"; every
labelled sample when the split has none), batches of forward + backward passes, the class
differentiated being the predicted one (``target="predicted"``, "what made the model say X") or
the true label (``target="true"``), class means over the samples whose target class is that class,
examples per true class (correctly classified and confident first, then misclassified), and the
files below. The predicted class is the one ``ephys evaluate`` reports (a two-class run's
validation-chosen decision threshold when it has one, else the most probable class). A modality supplies only a :class:`SaliencyView`: how to draw one sample and its map
on a few axes, plus the coordinates of the map's axes.

Outputs under ``RUN/explain/`` (written atomically):

``saliency.npz``
    ``ids`` (n,) str, ``labels`` (n,) str true labels ("" when unlabelled), ``predicted`` (n,) str,
    ``target_class`` (n,) str, ``probabilities`` (n, n_classes) float32, ``maps`` (n, *map_shape)
    float32 in [0, 1], ``class_means`` (n_classes, *map_shape) float32 (zeros where no sample),
    ``class_counts`` (n_classes,) int64, ``label_names`` (n_classes,) str, and one coordinate array
    per map axis the view names (e.g. ``frequencies_hz``, ``time_s``, ``time_ms``, ``feature``).
``summary.json``
    What was computed, on which samples, per-class counts and the coordinates of the peak of each
    class-mean map.
``examples.png``
    ``n_examples`` samples per true class, each drawn with its map by the view.
``class_means.png``
    Per class: the mean input and the mean map of the samples whose target class it is.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...core.atomic import atomic_path, write_json
from ...core.errors import EphysError

__all__ = ["METHODS", "TARGETS", "SaliencyView", "explain_keras_run", "saliency_section", "draw_trace", "draw_matrix",
           "input_gradients",
           "saliency_maps", "load_model", "pyplot", "save_png", "short", "backend_name"]

METHODS = ("gradient", "smoothgrad")
TARGETS = ("predicted", "true")
SALIENCY_CMAP = "inferno"


def load_model(path: Path):
    """The run's Keras model (custom layers of every registered model known; not compiled)."""
    from ...core.models import load_keras_model

    return load_keras_model(path, compile=False)


# --------------------------------------------------------------------------------------
# Gradients (the only backend-specific code)
# --------------------------------------------------------------------------------------


def input_gradients(model, x: np.ndarray, class_index) -> np.ndarray:
    """Gradient of the class probability w.r.t. the input, on any Keras 3 backend.

    Parameters
    ----------
    model : keras.Model
        Maps (batch, ...) float32 to (batch, n_classes) probabilities.
    x : np.ndarray
        Inputs, shape (batch, ...), cast to float32.
    class_index : int or array-like of int, shape (batch,)
        Which output column to differentiate, per sample (a scalar applies to all).

    Returns
    -------
    np.ndarray
        float32, same shape as ``x``: d model(x)[i, class_index[i]] / d x[i]. Samples are
        independent (the model is run with ``training=False``), so summing the selected
        outputs over the batch gives every per-sample gradient in one backward pass.

    Raises
    ------
    EphysError
        Unsupported backend, or a class index outside the model's outputs.
    """
    import keras

    x = np.ascontiguousarray(x, dtype=np.float32)
    idx = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (x.shape[0],))
    n_out = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if n_out is not None and (idx.min(initial=0) < 0 or idx.max(initial=0) >= n_out):
        raise EphysError(f"class index out of range for a model with {n_out} outputs")
    onehot = np.zeros((x.shape[0], int(n_out if n_out is not None else idx.max() + 1)), np.float32)
    onehot[np.arange(x.shape[0]), idx] = 1.0

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        xt = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            probs = model(xt, training=False)
            selected = tf.reduce_sum(probs * tf.convert_to_tensor(onehot, dtype=probs.dtype))
        grad = tape.gradient(selected, xt)
        return np.zeros_like(x) if grad is None else np.asarray(grad.numpy(), dtype=np.float32)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        oh = jnp.asarray(onehot)

        def selected(xx):
            probs, _ = model.stateless_call(trainable, non_trainable, xx, training=False)
            return jnp.sum(probs * oh.astype(probs.dtype))

        return np.asarray(jax.grad(selected)(jnp.asarray(x)), dtype=np.float32)
    if backend == "torch":
        import torch

        xt = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        with torch.enable_grad():
            probs = model(xt, training=False)
            oh = torch.as_tensor(onehot, dtype=probs.dtype, device=probs.device)
            selected = torch.sum(probs * oh)
            (grad,) = torch.autograd.grad(selected, xt, allow_unused=True)
        if grad is None:
            return np.zeros_like(x)
        return grad.detach().cpu().numpy().astype(np.float32)
    raise EphysError(f"saliency not implemented for Keras backend {backend!r} (tensorflow, jax, torch)")


def saliency_maps(
    model,
    x: np.ndarray,
    class_index,
    method: str = "gradient",
    n_noise: int = 16,
    noise_level: float = 0.15,
    seed: int = 0,
    *,
    reduce_last: bool = True,
    times_input: bool = False,
) -> np.ndarray:
    """Per-sample saliency maps scaled to [0, 1].

    Parameters
    ----------
    x : np.ndarray
        (batch, *sample_shape) float32, e.g. (batch, scales, time, sweeps), (batch, time, channels)
        or (batch, features).
    class_index : int or (batch,) ints
        Class whose probability is differentiated.
    method : "gradient" | "smoothgrad"
        "smoothgrad" averages over ``n_noise`` copies of x with Gaussian noise of standard
        deviation ``noise_level`` x (max - min) of each sample (Smilkov et al. 2017).
    reduce_last : bool
        Reduce the last axis of a sample (sweeps, channels) by its maximum.
    times_input : bool
        |gradient x input| instead of |gradient| (attributions of feature rows, whose features
        have different units).

    Returns
    -------
    np.ndarray
        float32, (batch, *sample_shape[:-1]) with ``reduce_last`` else (batch, *sample_shape), in
        [0, 1]; each map divided by its own maximum (an all-zero gradient stays all zeros).

    Raises
    ------
    EphysError
        Unknown method; ``x`` without a sample axis to reduce.
    """
    if method not in METHODS:
        raise EphysError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < (3 if reduce_last else 2):
        raise EphysError(f"saliency needs inputs of shape (batch, ..., channels), got {x.shape}")

    def attribution(xx):
        g = input_gradients(model, xx, class_index)
        return np.abs(g * xx) if times_input else np.abs(g)

    if method == "gradient":
        g = attribution(x)
    else:
        rng = np.random.default_rng(seed)
        axes = tuple(range(1, x.ndim))
        span = (np.nanmax(x, axis=axes, keepdims=True) - np.nanmin(x, axis=axes, keepdims=True)).astype(np.float32)
        span[~(span > 0)] = 1.0
        g = np.zeros_like(x)
        for _ in range(max(1, int(n_noise))):
            g += attribution(x + rng.normal(0.0, noise_level, size=x.shape).astype(np.float32) * span)
        g /= max(1, int(n_noise))
    maps = g.max(axis=-1) if reduce_last else g
    maps[~np.isfinite(maps)] = 0.0
    peak = maps.reshape(maps.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return (maps / scale.reshape((-1,) + (1,) * (maps.ndim - 1))).astype(np.float32)


# --------------------------------------------------------------------------------------
# Small figure helpers
# --------------------------------------------------------------------------------------


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    from ...core.page import pyplot as plt

    return plt()


def save_png(fig, path: Path, dpi: int = 100) -> Path:
    """Save ``fig`` as PNG at ``path`` atomically and close it."""
    plt = pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def short(text: str, n: int = 22) -> str:
    """``text`` cut to ``n`` characters with an ellipsis."""
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def backend_name() -> str:
    import keras

    return keras.backend.backend()


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


@dataclass
class SaliencyView:
    """How a modality's samples are drawn with their saliency: the only modality-specific part of
    :func:`explain_keras_run`.

    Attributes
    ----------
    draw : callable
        ``draw(axes, x, saliency, info) -> mappable or None``: draw one sample ``x`` (its
        ``sample_shape``; for class means the mean input) and its map ``saliency`` (``map_shape``,
        values in [0, 1]) on ``axes`` (a list of ``panels`` matplotlib axes). ``info`` holds
        ``title`` (str), ``coords`` (this view's coordinates), ``manifest``, ``first_col`` /
        ``last_row`` (bool: where axis labels go). Returns the saliency mappable for the colour bar.
    coords : callable or None
        ``coords(manifest, map_shape) -> dict[name, np.ndarray | None]``: one coordinate array per
        map axis, in axis order (stored in ``saliency.npz``; peaks are given in them).
    panels : int
        Axes per sample (e.g. 2: the input, then its map).
    panel_size : (width, height) in inches of one panel.
    reduce_last : bool
        Saliency is maximised over the last axis of a sample (sweeps, channels).
    times_input : bool
        |gradient x input| (feature rows) instead of |gradient|.
    what : str
        The paragraph's words for what is differentiated, e.g. "the input waveform, |gradient|
        per time sample maximised over channels".
    min_batch : int
        Smallest batch of a forward / backward pass (small samples: large batches).
    class_means_caption, examples_caption : str
        Captions of the two figures in the report.
    colorbar : str
        Label of the saliency colour bar.
    xlabel, ylabel : str
        Axis labels handed to ``draw`` in ``info`` (e.g. "time from crossing (ms)", "µV").
    """

    draw: Callable[..., Any]
    coords: Callable[[dict, tuple], dict] | None = None
    panels: int = 1
    panel_size: tuple[float, float] = (3.2, 2.4)
    reduce_last: bool = True
    times_input: bool = False
    what: str = "the input"
    min_batch: int = 1
    class_means_caption: str = "Mean saliency per class."
    examples_caption: str = "Examples with their saliency."
    colorbar: str = "saliency (0–1)"
    xlabel: str = ""
    ylabel: str = ""


def draw_trace(axes, x, saliency, info):
    """A :attr:`SaliencyView.draw` for 1-D samples (time, channels): every channel as a grey line,
    the saliency of each time sample as coloured dots on the channel of largest peak-to-peak
    amplitude. ``info["coords"]`` gives the time axis (its first entry, e.g. ``time_ms``);
    ``info["xlabel"]`` / ``info["ylabel"]`` label the axes (y: the manifest's ``units`` by default)."""
    from ...core.page import style_axes

    ax = axes[0]
    x = np.asarray(x, dtype=float).reshape(len(saliency), -1)
    t = next(iter(info["coords"].values()), None) if info["coords"] else None
    t = np.asarray(t) if t is not None else np.arange(len(saliency))
    ax.plot(t, x, color="0.6", lw=1)
    best = int(np.argmax(np.ptp(x, axis=0)))
    sc = ax.scatter(t, x[:, best], c=saliency, cmap=SALIENCY_CMAP, vmin=0, vmax=1, s=10, zorder=3)
    ax.set_title(info["title"], fontsize=8)
    if info["last_row"]:
        ax.set_xlabel(info.get("xlabel") or "time", fontsize=8)
    if info["first_col"]:
        ax.set_ylabel(info.get("ylabel") or str((info.get("manifest") or {}).get("units") or ""), fontsize=8)
    style_axes(ax)
    return sc


def draw_matrix(axes, x, saliency, info):
    """A :attr:`SaliencyView.draw` for (time, inputs) samples whose saliency keeps the inputs
    (``reduce_last=False``): the input (each column z-scored) and its saliency as heat maps,
    inputs on the y axis (names from the second coordinate, when given)."""
    x = np.asarray(x, dtype=float)
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    coords = list((info["coords"] or {}).values())
    t = np.asarray(coords[0]) if coords and coords[0] is not None else np.arange(x.shape[0])
    names = list(coords[1]) if len(coords) > 1 and coords[1] is not None else [str(k) for k in range(x.shape[1])]
    extent = (float(t[0]), float(t[-1]), x.shape[1] - 0.5, -0.5)
    axes[0].imshow(z.T, aspect="auto", cmap="RdBu_r", vmin=-3, vmax=3, extent=extent, interpolation="nearest")
    mesh = axes[1].imshow(np.asarray(saliency).T, aspect="auto", cmap=SALIENCY_CMAP, vmin=0, vmax=1, extent=extent,
                          interpolation="nearest")
    axes[0].set_title(info["title"], fontsize=8)
    axes[1].set_title("saliency", fontsize=8)
    step = max(1, len(names) // 12)
    for k, ax in enumerate(axes):
        ax.set_yticks(range(0, len(names), step))
        ax.set_yticklabels([names[j] for j in range(0, len(names), step)] if k == 0 and info["first_col"]
                           else [], fontsize=6)
        ax.tick_params(axis="x", labelsize=7)
        if info["last_row"]:
            ax.set_xlabel(info.get("xlabel") or "time", fontsize=8)
    return mesh


def _pick_ids(run_dir: Path, ds, nouns):
    from ...core.runfolder import read_split

    pos = {sid: i for i, sid in enumerate(ds.ids)}
    split = read_split(run_dir)
    if split and split["test"]:
        ids, source = list(split["test"]), "test split"
        missing = [i for i in ids if i not in pos]
        if missing:
            raise EphysError(f"{len(missing)} test id(s) from split.json not in the dataset manifest, "
                             f"e.g. {missing[0]!r}", run_dir / "split.json")
    else:
        ids = [ds.ids[i] for i in ds.labelled_indices()]
        source = f"all labelled {nouns.samples}"
    if not ids:
        raise EphysError(f"no {nouns.samples} to explain (empty test split and no labelled {nouns.samples})",
                         ds.root / "manifest.json")
    return ids, np.array([pos[i] for i in ids], dtype=np.int64), source


def _grid(n_rows: int, n_cols: int, view: SaliencyView):
    plt = pyplot()
    w, h = view.panel_size
    fig, axes = plt.subplots(n_rows, n_cols * view.panels, figsize=(w * n_cols * view.panels + 1.2, h * n_rows + 0.7),
                             squeeze=False, layout="constrained")
    return fig, axes


def _examples_figure(rows, view, coords, manifest, nouns, target, path: Path) -> Path:
    """rows: [(true label, [(id, x, map, predicted, p), ...]), ...]."""
    n_rows, n_cols = len(rows), max(len(r[1]) for r in rows)
    fig, axes = _grid(n_rows, n_cols, view)
    mappable = None
    for r, (label, items) in enumerate(rows):
        for c in range(n_cols):
            axs = list(axes[r, c * view.panels:(c + 1) * view.panels])
            if c >= len(items):
                for ax in axs:
                    ax.set_axis_off()
                continue
            sid, x, m, pred, p = items[c]
            ok = "✓" if pred == label else "✗"
            info = {"title": f"{short(sid, 24)}\ntrue {short(label, 16)} · pred {short(pred, 16)} {ok} (p={p:.2f})",
                    "coords": coords, "manifest": manifest, "first_col": c == 0, "last_row": r == n_rows - 1,
                    "xlabel": view.xlabel, "ylabel": view.ylabel}
            got = view.draw(axs, x, m, info)
            mappable = got if got is not None else mappable
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=min(0.8, 0.25 + 1.6 / n_rows), label=view.colorbar, pad=0.01)
    fig.suptitle(f"Example {nouns.samples} per true class and the saliency of the {target} class", fontsize=11)
    return save_png(fig, path, dpi=100 if n_rows <= 6 else 80)


def _class_means_figure(label_names, mean_x, class_means, counts, view, coords, manifest, nouns, target,
                        path: Path) -> Path:
    n = len(label_names)
    n_cols = min(4, n) if view.panels == 1 else min(2, n)
    n_rows = math.ceil(n / n_cols)
    fig, axes = _grid(n_rows, n_cols, view)
    mappable = None
    for k in range(n_rows * n_cols):
        r, c = divmod(k, n_cols)
        axs = list(axes[r, c * view.panels:(c + 1) * view.panels])
        if k >= n or not counts[k]:
            for ax in axs:
                ax.set_axis_off()
            if k < n:
                axs[0].text(0.5, 0.5, f"{short(label_names[k], 24)}: no {nouns.samples}", ha="center", va="center",
                            transform=axs[0].transAxes, color="0.4")
            continue
        m = class_means[k]
        top = float(m.max()) or 1.0
        info = {"title": f"{short(label_names[k], 24)} (n={int(counts[k])})", "coords": coords, "manifest": manifest,
                "first_col": c == 0, "last_row": r == n_rows - 1 or k + n_cols >= n,
                "xlabel": view.xlabel, "ylabel": view.ylabel}
        got = view.draw(axs, mean_x[k], m / top, info)
        mappable = got if got is not None else mappable
    if mappable is not None:
        fig.colorbar(mappable, ax=axes, shrink=0.9 if n_rows == 1 else 0.6, label="mean saliency\n(scaled to max 1)")
    who = "predicted as" if target == "predicted" else "labelled"
    fig.suptitle(f"Mean input and mean saliency per class ({nouns.samples} {who} the class)", fontsize=11)
    return save_png(fig, path)


def _peak(mean_map: np.ndarray, coords: dict) -> dict:
    where = np.unravel_index(int(np.argmax(mean_map)), mean_map.shape)
    out: dict[str, Any] = {"index": [int(i) for i in where]}
    for axis, ((name, values), i) in enumerate(zip(coords.items(), where)):
        if values is not None and len(values) == mean_map.shape[axis]:
            v = values[i]
            out[name] = v.item() if hasattr(v, "item") else v
    return out


def explain_keras_run(run_dir: Path, config: dict, data: Path, manifest: dict, view: SaliencyView, *,
                      n_examples: int = 2, method: str = "gradient", target: str = "predicted", batch_size: int = 16,
                      figures: bool = True, progress=None, **_) -> Path:
    """Saliency of a Keras run's test samples into ``RUN/explain/`` (files: the module docstring).

    Parameters
    ----------
    view : how the modality draws a sample and its map (:class:`SaliencyView`)
    n_examples : samples per true class in ``examples.png``
    method, target : see :func:`saliency_maps`; ``target`` "predicted" or "true" (unlabelled
        samples fall back to the predicted class)
    batch_size : samples per forward / backward pass (at least ``view.min_batch``)
    figures : False skips the PNGs (npz + summary only)
    progress : callable(done, total, message) or None, after each batch

    Raises
    ------
    EphysError
        No label names; ids of split.json not in the dataset; nothing to explain; a model whose
        outputs or input shape do not match the dataset.
    """
    import keras

    from ...core.datasets import load_dataset
    from ...core.evaluation import predict_labels, read_threshold
    from ...core.nouns import nouns as _nouns

    run_dir = Path(run_dir)
    if method not in METHODS:
        raise EphysError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise EphysError(f"unknown saliency target {target!r}; choose one of {', '.join(TARGETS)}")
    ds = load_dataset(data)
    nouns = _nouns(manifest)
    label_names = [str(s) for s in (config.get("label_names") or ds.label_names or [])]
    if not label_names:
        raise EphysError("no label_names in config.yaml or manifest.json", run_dir / "config.yaml")
    ids, idx, source = _pick_ids(run_dir, ds, nouns)
    model_path = run_dir / "model.keras"
    model = load_model(model_path)
    n_out = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if n_out is not None and n_out != len(label_names):
        raise EphysError(f"model has {n_out} outputs but the run has {len(label_names)} label names", model_path)
    labels = [ds.labels[i] or "" for i in idx]
    name_to_idx = {n: k for k, n in enumerate(label_names)}
    seed = int(config.get("seed") or 0)
    threshold = read_threshold(run_dir)  # a two-class run's validation-chosen decision, as evaluate uses it
    bs = max(int(batch_size), int(view.min_batch), 1)
    k_n = len(label_names)

    maps_l, probs_l = [], []
    sum_x = counts_x = None
    for start in range(0, idx.size, bs):
        x = ds.load(idx[start:start + bs])
        try:
            probs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise EphysError(f"model does not accept {nouns.samples} of shape {x.shape[1:]}: {msg}", model_path) from exc
        pred = predict_labels(probs, threshold)
        tgt = pred if target == "predicted" else np.array(
            [name_to_idx.get(lab, p) for lab, p in zip(labels[start:start + bs], pred)])
        maps_l.append(saliency_maps(model, x, tgt, method=method, seed=seed + start, reduce_last=view.reduce_last,
                                    times_input=view.times_input))
        probs_l.append(probs)
        if sum_x is None:
            sum_x, counts_x = np.zeros((k_n,) + x.shape[1:]), np.zeros(k_n, np.int64)
        for k in np.unique(tgt):
            sel = tgt == k
            sum_x[k] += np.nan_to_num(x[sel].astype(np.float64)).sum(axis=0)
            counts_x[k] += int(sel.sum())
        if progress is not None:
            progress(min(start + bs, idx.size), idx.size, "saliency")
    maps, probs = np.concatenate(maps_l), np.concatenate(probs_l)
    pred_idx = predict_labels(probs, threshold)
    tgt_idx = pred_idx if target == "predicted" else np.array(
        [name_to_idx.get(lab, p) for lab, p in zip(labels, pred_idx)])
    class_means = np.zeros((k_n,) + maps.shape[1:], np.float32)
    counts = np.zeros(k_n, np.int64)
    for k in range(k_n):
        sel = tgt_idx == k
        counts[k] = int(sel.sum())
        if counts[k]:
            class_means[k] = maps[sel].mean(axis=0)
    mean_x = sum_x / np.maximum(counts_x, 1).reshape((-1,) + (1,) * (sum_x.ndim - 1))
    coords = dict(view.coords(manifest, maps.shape[1:])) if view.coords is not None else {}
    predicted = [label_names[k] for k in pred_idx]

    out = run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "saliency.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, ids=np.array(ids, dtype=str), labels=np.array(labels, dtype=str),
                predicted=np.array(predicted, dtype=str),
                target_class=np.array([label_names[k] for k in tgt_idx], dtype=str),
                probabilities=probs.astype(np.float32), maps=maps.astype(np.float32), class_means=class_means,
                class_counts=counts, label_names=np.array(label_names, dtype=str),
                **{name: np.asarray(v if v is not None else []) for name, v in coords.items()})

    rows, examples = [], {}
    for k, name in enumerate(label_names):
        members = [j for j, lab in enumerate(labels) if lab == name]
        members.sort(key=lambda j: (pred_idx[j] != k, -probs[j, pred_idx[j]], ids[j]))
        chosen = members[:int(n_examples)]
        if chosen:
            examples[name] = [ids[j] for j in chosen]
            rows.append((name, chosen))
    files = ["saliency.npz", "summary.json"]
    if figures:
        if rows:
            xs = ds.load(idx[[j for _, ch in rows for j in ch]])
            it = iter(range(len(xs)))
            drawn = [(name, [(ids[j], xs[next(it)], maps[j], predicted[j], float(probs[j, pred_idx[j]])) for j in ch])
                     for name, ch in rows]
            _examples_figure(drawn, view, coords, manifest, nouns, target, out / "examples.png")
            files.append("examples.png")
        _class_means_figure(label_names, mean_x, class_means, counts, view, coords, manifest, nouns, target,
                            out / "class_means.png")
        files.append("class_means.png")

    labelled = [j for j, lab in enumerate(labels) if lab in name_to_idx]
    write_json(out / "summary.json", {
        "run_id": config.get("run_id", run_dir.name),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method, "target": target,
        "saliency": ("|d p_target / d input x input|" if view.times_input else "|d p_target / d input|")
                    + (", max over the last input axis" if view.reduce_last else "")
                    + ", divided by each map's maximum",
        "what": view.what, "samples": source, "n_samples": int(idx.size), "sample_noun": nouns.sample,
        "dataset": str(data), "label_names": label_names, "map_shape": list(maps.shape[1:]),
        "axes": list(coords) or [f"axis{i}" for i in range(maps.ndim - 1)],
        "accuracy_on_these_samples": (float(np.mean([pred_idx[j] == name_to_idx[labels[j]] for j in labelled]))
                                      if labelled else None),
        "per_class": {name: {"n_true": int(sum(1 for lab in labels if lab == name)),
                             "n_predicted": int((pred_idx == k).sum()), "n_in_mean": int(counts[k]),
                             "peak": _peak(class_means[k], coords) if counts[k] else None}
                      for k, name in enumerate(label_names)},
        "examples": examples, "backend": backend_name(), "files": sorted(files),
    })
    return out


def saliency_section(ctx, view: SaliencyView):
    """The report's explanation section from ``RUN/explain/`` (``class_means.png``, ``examples.png``,
    ``summary.json``) for a run explained by :func:`explain_keras_run`; None when it is not."""
    import json

    from ...core.registry import Figure, Section

    explain_dir = Path(ctx.run_dir) / "explain"
    summ = explain_dir / "summary.json"
    if not summ.is_file() or not (explain_dir / "saliency.npz").is_file():
        return None
    figs = []
    for src, key, alt, caption in (
            ("class_means.png", "saliency_class_means", "mean saliency per class", view.class_means_caption),
            ("examples.png", "saliency_examples", "saliency examples", view.examples_caption)):
        if (explain_dir / src).is_file():
            figs.append(Figure((explain_dir / src).read_bytes(), alt, caption, key))
    text = ""
    try:
        sm = json.loads(summ.read_text(encoding="utf-8"))
        target = "predicted" if sm.get("target", "predicted") == "predicted" else "true"
        how = "SmoothGrad" if sm.get("method") == "smoothgrad" else ("Gradient × input" if view.times_input
                                                                     else "Input-gradient")
        noun = sm.get("sample_noun") or "sample"
        text = (f"{how} saliency of the {target}-class probability with respect to {view.what}, scaled to [0, 1] "
                f"per {noun}; {sm.get('n_samples', '?')} {noun if sm.get('n_samples') == 1 else _plural(noun)} "
                f"({sm.get('samples', '?')}).")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pass
    return Section("Saliency", text, figs)


def _plural(noun: str) -> str:
    from ...core.nouns import plural

    return plural(noun)
