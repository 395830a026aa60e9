"""Saliency maps for a trained scalogram classifier (``ephys explain RUN``).

For every test cell of a run (``RUN/split.json`` "test"; every labelled cell of the dataset
when the split has no test cells) the gradient of one class probability with respect to the
input scalogram is computed, its absolute value is reduced over the sweep axis (max) and
the map is scaled to [0, 1]. By default the class differentiated is the class the model
*predicts* for that cell ("what made the model say X"); ``target="true"`` uses the cell's
true label instead.

Outputs, all under ``RUN/explain/`` and written atomically:

``saliency.npz``
    ``ids`` (n,) str, ``labels`` (n,) str true labels ("" when unlabelled),
    ``predicted`` (n,) str, ``target_class`` (n,) str (class whose probability was
    differentiated), ``probabilities`` (n, n_classes) float32, ``maps`` (n, n_scales, n_time)
    float32 in [0, 1] in the dataset's stored frequency order, ``class_means``
    (n_classes, n_scales, n_time) float32 (mean map over the cells whose *target* class is
    that class; zeros where no cell), ``class_counts`` (n_classes,) int64, ``label_names``
    (n_classes,) str, ``frequencies_hz`` (n_scales,) float64, ``time_s`` (2,) float64.
``summary.json``
    What was computed, on which cells, with per-class counts and the (frequency, time) of
    the peak of each class-mean map.
``examples.png``
    For ``n_examples_per_class`` cells of each class: the scalogram (mean over sweeps) next
    to its saliency map.
``class_means.png``
    Mean saliency map per class.

The only backend-specific code is :func:`input_gradients` (TensorFlow / JAX / PyTorch).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .atomic import atomic_path, write_json
from .errors import EphysError

__all__ = [
    "explain_run",
    "input_gradients",
    "saliency_maps",
    "plot_map",
    "load_run_config",
    "find_dataset",
    "read_manifest",
    "read_split",
]

METHODS = ("gradient", "smoothgrad")
TARGETS = ("predicted", "true")
SCALOGRAM_CMAP = "cividis"
SALIENCY_CMAP = "inferno"


# --------------------------------------------------------------------------------------
# Run / dataset readers (shared with ephys.pipelines.report)
# --------------------------------------------------------------------------------------


def load_run_config(run_dir: str | Path) -> dict:
    """Read ``RUN/config.yaml`` into a dict.

    Raises
    ------
    EphysError
        ``RUN`` is not a folder, has no ``config.yaml``, or the YAML is unreadable / not a mapping.
    """
    import yaml

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EphysError("not a run folder (no such directory) — run `ephys train` first", run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise EphysError("no config.yaml — not a run folder; run `ephys train` first", run_dir)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable YAML: {' '.join(str(exc).split())}", path) from exc
    if not isinstance(config, dict):
        raise EphysError("config.yaml is not a mapping of keys to values", path)
    return config


def find_dataset(run_dir: str | Path, config: dict, data_dir: str | Path | None = None) -> Path:
    """Locate the prepared dataset folder of a run.

    ``data_dir`` (an explicit override) wins; otherwise ``config["data"]`` is tried as given
    (absolute, or relative to the current directory), then relative to the run folder and
    its parents (runs are often moved together with their data).

    Raises
    ------
    EphysError
        No candidate folder holds a ``manifest.json``.
    """
    run_dir = Path(run_dir)
    if data_dir is not None:
        p = Path(data_dir)
        if not (p / "manifest.json").is_file():
            raise EphysError("no manifest.json — not a prepared dataset (run `ephys prepare`)", p)
        return p
    raw = config.get("data")
    if not raw:
        raise EphysError("config.yaml has no `data` key (path to the prepared dataset)", run_dir / "config.yaml")
    raw_path = Path(str(raw)).expanduser()
    candidates = [raw_path]
    if not raw_path.is_absolute():
        candidates += [run_dir / raw_path] + [parent / raw_path for parent in run_dir.resolve().parents]
    for cand in candidates:
        if (cand / "manifest.json").is_file():
            return cand
    raise EphysError(
        f"dataset {raw} named in config.yaml not found (no manifest.json there)", run_dir / "config.yaml"
    )


def read_manifest(data_dir: str | Path) -> dict:
    """Read and minimally validate ``DATA/manifest.json``.

    Raises
    ------
    EphysError
        Missing / unreadable manifest, or no ``samples`` list.
    """
    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise EphysError("no manifest.json — not a prepared dataset (run `ephys prepare`)", Path(data_dir))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable JSON: {exc}", path) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise EphysError("manifest has no `samples` list", path)
    return manifest


def read_split(run_dir: str | Path) -> dict | None:
    """Read ``RUN/split.json`` -> ``{"train": [ids], "val": [ids], "test": [ids]}``, or None if absent.

    Raises
    ------
    EphysError
        The file exists but is not valid JSON / not a mapping of lists.
    """
    path = Path(run_dir) / "split.json"
    if not path.is_file():
        return None
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EphysError(f"unreadable JSON: {exc}", path) from exc
    if not isinstance(split, dict):
        raise EphysError("split.json is not a mapping of split name to ids", path)
    return {k: [str(i) for i in (split.get(k) or [])] for k in ("train", "val", "test")}


def load_sample(data_dir: Path, entry: dict) -> np.ndarray:
    """Load one sample array (float32, ``manifest["sample_shape"]``) named by a manifest entry."""
    path = Path(data_dir) / entry.get("file", f"samples/{entry.get('id')}.npy")
    try:
        return np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
    except FileNotFoundError as exc:
        raise EphysError("sample file listed in manifest.json is missing", path) from exc
    except (ValueError, OSError) as exc:
        raise EphysError(f"unreadable sample: {exc}", path) from exc


def _load_model(path: Path):
    from .models import load_keras_model

    return load_keras_model(path, compile=False)


# --------------------------------------------------------------------------------------
# Gradients (the only backend-specific code)
# --------------------------------------------------------------------------------------


def input_gradients(model, x: np.ndarray, class_index) -> np.ndarray:
    """Gradient of the class probability w.r.t. the input, on any Keras 3 backend.

    Parameters
    ----------
    model : keras.Model
        Maps (batch, H, W, C) float32 to (batch, n_classes) probabilities.
    x : np.ndarray
        Inputs, shape (batch, H, W, C), cast to float32.
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
) -> np.ndarray:
    """Per-sample saliency maps: |d p_class / d x| reduced by max over the sweep axis, scaled to [0, 1].

    Parameters
    ----------
    x : np.ndarray
        (batch, H, W, C) float32 (H = scales, W = time bins, C = sweeps).
    class_index : int or (batch,) ints
        Class whose probability is differentiated.
    method : "gradient" | "smoothgrad"
        "smoothgrad" averages |gradient| over ``n_noise`` copies of x with Gaussian noise
        of standard deviation ``noise_level`` x (max - min) of each sample.

    Returns
    -------
    np.ndarray
        (batch, H, W) float32 in [0, 1]; each map divided by its own maximum (an all-zero
        gradient stays all zeros).
    """
    if method not in METHODS:
        raise EphysError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise EphysError(f"saliency needs inputs of shape (batch, H, W, C), got {x.shape}")
    if method == "gradient":
        g = np.abs(input_gradients(model, x, class_index))
    else:
        rng = np.random.default_rng(seed)
        span = (x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True)).astype(np.float32)
        span[span == 0] = 1.0
        g = np.zeros_like(x)
        for _ in range(max(1, int(n_noise))):
            noisy = x + rng.normal(0.0, noise_level, size=x.shape).astype(np.float32) * span
            g += np.abs(input_gradients(model, noisy, class_index))
        g /= max(1, int(n_noise))
    maps = g.max(axis=-1)
    maps[~np.isfinite(maps)] = 0.0
    peak = maps.reshape(maps.shape[0], -1).max(axis=1)
    scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
    return (maps / scale[:, None, None]).astype(np.float32)


# --------------------------------------------------------------------------------------
# Plotting (shared with ephys.pipelines.report)
# --------------------------------------------------------------------------------------


def _valid_freqs(frequencies_hz, n: int) -> np.ndarray | None:
    if frequencies_hz is None:
        return None
    f = np.asarray(frequencies_hz, dtype=float).ravel()
    if f.size != n or not np.all(np.isfinite(f)) or np.any(f <= 0):
        return None
    return f


def _valid_time(time_s) -> tuple[float, float] | None:
    try:
        t0, t1 = (float(v) for v in time_s)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        return None
    return t0, t1


def plot_map(
    ax,
    image: np.ndarray,
    frequencies_hz: Sequence[float] | None,
    time_s: Sequence[float] | None,
    *,
    cmap: str = SCALOGRAM_CMAP,
    vmin: float | None = 0.0,
    vmax: float | None = 1.0,
    title: str | None = None,
    ylabel: bool = True,
    xlabel: bool = True,
):
    """Draw a (n_scales, n_time) map on ``ax`` with a log-frequency (Hz) y axis and time (s) x axis.

    ``image`` is in the dataset's stored row order (frequencies ascending or descending);
    rows are sorted by frequency for drawing. Without usable ``frequencies_hz`` (missing,
    wrong length, non-positive) the y axis is the scale index; without ``time_s`` the x axis
    is the time-bin index. Returns the QuadMesh (for a colorbar).
    """
    image = np.asarray(image, dtype=float)
    n_f, n_t = image.shape
    freqs = _valid_freqs(frequencies_hz, n_f)
    if freqs is not None:
        order = np.argsort(freqs, kind="stable")
        f = np.log(freqs[order])
        img = image[order]
        if n_f > 1:
            mid = (f[1:] + f[:-1]) / 2
            edges = np.concatenate([[f[0] - (mid[0] - f[0])], mid, [f[-1] + (f[-1] - mid[-1])]])
        else:
            edges = np.array([f[0] - 0.1, f[0] + 0.1])
        y_edges = np.exp(edges)
    else:
        img = image
        y_edges = np.arange(n_f + 1) - 0.5
    t = _valid_time(time_s)
    x_edges = np.linspace(t[0], t[1], n_t + 1) if t else np.arange(n_t + 1) - 0.5
    mesh = ax.pcolormesh(x_edges, y_edges, img, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
    if freqs is not None:
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

        ax.set_yscale("log")
        lo, hi = float(y_edges[0]), float(y_edges[-1])
        ax.set_ylim(lo, hi)
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in (1, 2, 5)
            if lo <= m * 10.0**e <= hi
        ]
        if len(ticks) > 7:
            ticks = [t for t in ticks if round(t / 10.0 ** math.floor(math.log10(t))) in (1, 5)] or ticks
        if len(ticks) > 7:
            ticks = [t for t in ticks if round(t / 10.0 ** math.floor(math.log10(t))) == 1] or ticks
        if len(ticks) >= 2:
            ax.yaxis.set_major_locator(FixedLocator(ticks))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())
    if ylabel:
        ax.set_ylabel("frequency (Hz)" if freqs is not None else "scale index")
    if xlabel:
        ax.set_xlabel("time from stimulus onset (s)" if t else "time bin")
    if title:
        ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=8)
    return mesh


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig, path: Path, dpi: int = 100) -> Path:
    plt = _pyplot()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return path


def _short(text: str, n: int = 22) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _examples_figure(rows, frequencies_hz, time_s, path: Path, target: str = "predicted") -> Path:
    """rows: list of (label, [(id, scalogram_mean (H,W), saliency (H,W), pred, p), ...])."""
    plt = _pyplot()
    n_rows = len(rows)
    n_ex = max(len(r[1]) for r in rows)
    # columns: [scalogram, saliency, spacer] * n_ex, without the last spacer
    ratios = []
    for e in range(n_ex):
        ratios += [1, 1] + ([0.12] if e < n_ex - 1 else [])
    fig, axes = plt.subplots(
        n_rows, len(ratios), figsize=(5.4 * n_ex + 1.6, 2.3 * n_rows + 0.6), squeeze=False,
        layout="constrained", gridspec_kw={"width_ratios": ratios},
    )
    for e in range(n_ex - 1):
        for ax in axes[:, 3 * e + 2]:
            ax.set_axis_off()
    sc_mesh = sal_mesh = None
    for r, (label, cells) in enumerate(rows):
        for e in range(n_ex):
            ax_s, ax_g = axes[r, 3 * e], axes[r, 3 * e + 1]
            if e >= len(cells):
                ax_s.set_axis_off()
                ax_g.set_axis_off()
                continue
            cid, scal, sal, pred, p = cells[e]
            last = r == n_rows - 1
            sc_mesh = plot_map(
                ax_s, scal, frequencies_hz, time_s, cmap=SCALOGRAM_CMAP, ylabel=(e == 0), xlabel=last,
                title=f"{_short(cid)}\ntrue {_short(label, 16)} · scalogram",
            )
            ok = "✓" if pred == label else "✗"
            sal_mesh = plot_map(
                ax_g, sal, frequencies_hz, time_s, cmap=SALIENCY_CMAP, ylabel=False, xlabel=last,
                title=f"pred {_short(pred, 16)} {ok} (p={p:.2f})\nsaliency",
            )
            ax_g.tick_params(labelleft=False)
            if last:
                ax_s.set_xlabel("time (s)")
                ax_g.set_xlabel("time (s)")
    shrink = min(0.8, 0.2 + 1.6 / n_rows)
    if sal_mesh is not None:
        fig.colorbar(sal_mesh, ax=axes, shrink=shrink, label="saliency (0–1)", pad=0.01)
    if sc_mesh is not None:
        fig.colorbar(sc_mesh, ax=axes, shrink=shrink, label="scalogram (0–1)", pad=0.01)
    fig.suptitle(f"Example cells: scalogram (mean over sweeps) and saliency of the {target} class", fontsize=11)
    return _save_png(fig, path, dpi=100 if n_rows <= 6 else 80)  # keep reports embedding it small


def _class_means_figure(label_names, class_means, counts, frequencies_hz, time_s, path: Path, target: str) -> Path:
    plt = _pyplot()
    n = len(label_names)
    n_cols = min(4, n)
    n_rows = math.ceil(n / n_cols)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(2.9 * n_cols + 0.8, 2.5 * n_rows + 0.6), squeeze=False, layout="constrained"
    )
    mesh = None
    for k in range(n_rows * n_cols):
        ax = axes[k // n_cols, k % n_cols]
        if k >= n:
            ax.set_axis_off()
            continue
        if counts[k] == 0:
            ax.set_title(f"{_short(label_names[k], 24)} (n=0)", fontsize=9)
            ax.text(0.5, 0.5, "no cells", ha="center", va="center", transform=ax.transAxes, color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        m = class_means[k]
        top = float(m.max()) or 1.0
        mesh = plot_map(
            ax, m / top, frequencies_hz, time_s, cmap=SALIENCY_CMAP,
            ylabel=(k % n_cols == 0 or counts[k - 1] == 0), xlabel=(k // n_cols == n_rows - 1 or k + n_cols >= n),
            title=f"{_short(label_names[k], 24)} (n={int(counts[k])})",
        )
    if mesh is not None:
        fig.colorbar(mesh, ax=axes, shrink=0.9 if n_rows == 1 else 0.6, label="mean saliency\n(scaled to max 1)")
    who = "predicted as" if target == "predicted" else "labelled"
    fig.suptitle(f"Mean saliency per class (cells {who} the class)", fontsize=11)
    return _save_png(fig, path)


# --------------------------------------------------------------------------------------
# Pipeline
# --------------------------------------------------------------------------------------


def explain_run(
    run_dir: str | Path,
    n_examples_per_class: int = 2,
    method: str = "gradient",
    progress: Callable[[int, int, str], None] | None = None,
    *,
    target: str = "predicted",
    data_dir: str | Path | None = None,
    batch_size: int = 16,
    figures: bool = True,
) -> Path:
    """Compute saliency maps for a run's test cells and write ``RUN/explain/``.

    Parameters
    ----------
    run_dir : path
        A run folder made by ``ephys train`` (needs ``model.keras``, ``config.yaml`` and the
        dataset named by ``config.yaml: data``).
    n_examples_per_class : int >= 1
        Cells per class shown in ``examples.png`` (correctly classified, most confident first,
        then misclassified ones).
    method : "gradient" | "smoothgrad"
        Plain input gradient, or SmoothGrad (16 noisy copies, sigma = 0.15 of the sample range).
    progress : callable(done: int, total: int, message: str) or None
        Called after each batch of cells.
    target : "predicted" | "true"
        Which class probability is differentiated: the predicted class (default) or the true
        label (cells without a label fall back to the predicted class). Class means average
        the maps of the cells whose target class is that class.
    data_dir : path or None
        Override the dataset location recorded in ``config.yaml``.
    batch_size : int
        Cells per forward/backward pass.
    figures : bool
        False skips ``examples.png`` and ``class_means.png`` (faster; npz + summary only).

    Returns
    -------
    Path
        ``RUN/explain``. Files written: see the module docstring.

    Raises
    ------
    EphysError
        No model.keras / config.yaml, dataset not found, samples not 3-D (n_scales, n_time,
        n_sweeps), ids in split.json not in the manifest, no cells to explain, model input /
        output shapes not matching the dataset.
    """
    run_dir = Path(run_dir)
    if method not in METHODS:
        raise EphysError(f"unknown saliency method {method!r}; choose one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise EphysError(f"unknown saliency target {target!r}; choose one of {', '.join(TARGETS)}")
    if int(n_examples_per_class) < 1:
        raise EphysError("n_examples_per_class must be at least 1")
    if not run_dir.is_dir():
        raise EphysError("not a run folder (no such directory) — run `ephys train` first", run_dir)
    from ..blocks.models.lightgbm import is_tabular_run

    if is_tabular_run(run_dir):  # LightGBM on a feature table: TreeSHAP instead of gradients
        from ..blocks.explain.shap import explain_tabular_run

        return explain_tabular_run(run_dir, data_dir=data_dir, figures=figures)
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise EphysError("no model.keras — run `ephys train` first", run_dir)
    config = load_run_config(run_dir)
    data = find_dataset(run_dir, config, data_dir)
    manifest = read_manifest(data)
    if manifest.get("modality") == "waveform":
        return _explain_waveform_run(run_dir, config, data, manifest, n_examples_per_class, method,
                                     target, batch_size=max(int(batch_size), 256), figures=figures,
                                     progress=progress)
    shape = manifest.get("sample_shape")
    if shape is not None and len(shape) != 3:
        raise EphysError(
            f"explain needs samples of shape (n_scales, n_time, n_sweeps); manifest says {shape}",
            data / "manifest.json",
        )
    label_names = [str(s) for s in (config.get("label_names") or manifest.get("label_names") or [])]
    if not label_names:
        raise EphysError("no label_names in config.yaml or manifest.json", run_dir / "config.yaml")
    by_id = {str(s.get("id")): s for s in manifest["samples"]}

    split = read_split(run_dir)
    if split and split["test"]:
        ids, source = list(split["test"]), "test split"
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EphysError(
                f"{len(missing)} test id(s) from split.json not in the dataset manifest, e.g. {missing[0]!r}",
                run_dir / "split.json",
            )
    else:
        ids = [str(s["id"]) for s in manifest["samples"] if s.get("label") is not None]
        source = "all labelled cells"
    if not ids:
        raise EphysError("no cells to explain (empty test split and no labelled cells)", data / "manifest.json")

    import keras

    model = _load_model(model_path)
    n_out = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if n_out is not None and n_out != len(label_names):
        raise EphysError(f"model has {n_out} outputs but the run has {len(label_names)} label names", model_path)

    labels = [by_id[i].get("label") or "" for i in ids]
    name_to_idx = {n: k for k, n in enumerate(label_names)}
    seed = int(config.get("seed") or 0)

    maps_list, probs_list, means_list = [], [], []
    n = len(ids)
    for start in range(0, n, batch_size):
        batch_ids = ids[start : start + batch_size]
        x = np.stack([load_sample(data, by_id[i]) for i in batch_ids])
        if x.ndim != 4:
            raise EphysError(f"samples must be (n_scales, n_time, n_sweeps); got {x.shape[1:]}", data)
        try:
            probs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise EphysError(f"model does not accept samples of shape {x.shape[1:]}: {msg}", model_path) from exc
        pred_idx = probs.argmax(axis=1)
        if target == "true":
            tgt = np.array(
                [name_to_idx.get(lab, p) for lab, p in zip(labels[start : start + batch_size], pred_idx)]
            )
        else:
            tgt = pred_idx
        maps_list.append(saliency_maps(model, x, tgt, method=method, seed=seed + start))
        probs_list.append(probs)
        means_list.append(x.mean(axis=-1).astype(np.float32))
        if progress is not None:
            progress(min(start + batch_size, n), n, "saliency")

    maps = np.concatenate(maps_list)
    probs = np.concatenate(probs_list)
    scal_means = np.concatenate(means_list)
    pred_idx = probs.argmax(axis=1)
    predicted = [label_names[k] for k in pred_idx]
    if target == "true":
        tgt_idx = np.array([name_to_idx.get(lab, p) for lab, p in zip(labels, pred_idx)])
    else:
        tgt_idx = pred_idx
    n_classes = len(label_names)
    class_means = np.zeros((n_classes,) + maps.shape[1:], np.float32)
    counts = np.zeros(n_classes, np.int64)
    for k in range(n_classes):
        sel = tgt_idx == k
        counts[k] = int(sel.sum())
        if counts[k]:
            class_means[k] = maps[sel].mean(axis=0)

    freqs = manifest.get("frequencies_hz")
    time_s = manifest.get("time_s")
    out = run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)

    with atomic_path(out / "saliency.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                ids=np.array(ids, dtype=str),
                labels=np.array(labels, dtype=str),
                predicted=np.array(predicted, dtype=str),
                target_class=np.array([label_names[k] for k in tgt_idx], dtype=str),
                probabilities=probs.astype(np.float32),
                maps=maps.astype(np.float32),
                class_means=class_means,
                class_counts=counts,
                label_names=np.array(label_names, dtype=str),
                frequencies_hz=np.asarray(freqs if freqs is not None else [], dtype=np.float64),
                time_s=np.asarray(time_s if time_s is not None else [], dtype=np.float64),
            )

    # examples: per true class, correct & confident first, then misclassified
    rows, examples = [], {}
    for k, name in enumerate(label_names):
        members = [j for j, lab in enumerate(labels) if lab == name]
        members.sort(key=lambda j: (pred_idx[j] != k, -probs[j, pred_idx[j]], ids[j]))
        chosen = members[: int(n_examples_per_class)]
        if not chosen:
            continue
        examples[name] = [ids[j] for j in chosen]
        rows.append(
            (name, [(ids[j], scal_means[j], maps[j], predicted[j], float(probs[j, pred_idx[j]])) for j in chosen])
        )
    files = ["saliency.npz", "summary.json"]
    if figures:
        if rows:
            _examples_figure(rows, freqs, time_s, out / "examples.png", target)
            files.append("examples.png")
        _class_means_figure(label_names, class_means, counts, freqs, time_s, out / "class_means.png", target)
        files.append("class_means.png")

    fvalid = _valid_freqs(freqs, maps.shape[1])
    tvalid = _valid_time(time_s)
    peaks = {}
    for k, name in enumerate(label_names):
        if not counts[k]:
            peaks[name] = None
            continue
        r, c = np.unravel_index(int(np.argmax(class_means[k])), class_means[k].shape)
        t_c = (tvalid[0] + (c + 0.5) * (tvalid[1] - tvalid[0]) / maps.shape[2]) if tvalid else None
        peaks[name] = {
            "scale_index": int(r),
            "time_bin": int(c),
            "frequency_hz": float(fvalid[r]) if fvalid is not None else None,
            "time_s": float(t_c) if t_c is not None else None,
        }
    labelled = [j for j, lab in enumerate(labels) if lab in name_to_idx]
    summary = {
        "run_id": config.get("run_id", run_dir.name),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method,
        "target": target,
        "saliency": "|d p_target / d input|, max over sweeps, divided by each map's maximum",
        "cells": source,
        "n_cells": n,
        "dataset": str(data),
        "label_names": label_names,
        "map_shape": list(maps.shape[1:]),
        "axes": ["frequency", "time"],
        "accuracy_on_these_cells": (
            float(np.mean([pred_idx[j] == name_to_idx[labels[j]] for j in labelled])) if labelled else None
        ),
        "per_class": {
            name: {
                "n_true": int(sum(1 for lab in labels if lab == name)),
                "n_predicted": int((pred_idx == k).sum()),
                "n_in_mean": int(counts[k]),
                "peak": peaks[name],
            }
            for k, name in enumerate(label_names)
        },
        "examples": examples,
        "backend": _backend_name(),
        "files": sorted(files),
    }
    write_json(out / "summary.json", summary)
    return out


def _explain_waveform_run(run_dir: Path, config: dict, data: Path, manifest: dict, n_examples: int,
                          method: str, target: str, batch_size: int, figures: bool, progress) -> Path:
    """Saliency over time for a waveform (1-D) run: the same files as for scalograms.

    ``saliency.npz`` holds ``maps`` (n, n_samples) float32 in [0, 1] (|d p_target / d x| per
    time sample, max over the snippet's channels, divided by each map's maximum),
    ``waveforms`` (n, n_samples) float32 (the model's input, first channel), ``class_means``
    (n_classes, n_samples) and ``time_ms`` (n_samples,) float64 (0 = threshold crossing);
    ``examples.png`` draws example snippets coloured by saliency, ``class_means.png`` the
    mean snippet and mean saliency per class.
    """
    import keras

    from .datasets import load_dataset

    ds = load_dataset(data)
    label_names = [str(s) for s in (config.get("label_names") or ds.label_names)]
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
        source = "all labelled samples"
    if not ids:
        raise EphysError("no samples to explain", data / "manifest.json")
    idx = np.array([pos[i] for i in ids], dtype=np.int64)
    labels = [ds.labels[i] or "" for i in idx]
    name_to_idx = {n: k for k, n in enumerate(label_names)}
    model = _load_model(run_dir / "model.keras")
    seed = int(config.get("seed") or 0)
    maps_l, probs_l, x_l = [], [], []
    for start in range(0, idx.size, batch_size):
        x = ds.load(idx[start:start + batch_size])
        try:
            probs = np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float32)
        except Exception as exc:
            msg = " ".join(str(exc).split())[:200]
            raise EphysError(f"model does not accept samples of shape {x.shape[1:]}: {msg}",
                             run_dir / "model.keras") from exc
        pred = probs.argmax(axis=1)
        tgt = pred if target == "predicted" else np.array(
            [name_to_idx.get(lab, p) for lab, p in zip(labels[start:start + batch_size], pred)])
        if method == "gradient":
            g = np.abs(input_gradients(model, x, tgt))
        else:
            g = np.mean([np.abs(input_gradients(model, x + np.random.default_rng(seed + start + r).normal(
                0.0, 0.15, size=x.shape).astype(np.float32) * (x.max() - x.min()), tgt)) for r in range(16)], axis=0)
        m = g.max(axis=-1)
        peak = m.max(axis=1, keepdims=True)
        maps_l.append((m / np.where(peak > 0, peak, 1.0)).astype(np.float32))
        probs_l.append(probs)
        x_l.append(x[:, :, 0])
        if progress is not None:
            progress(min(start + batch_size, idx.size), idx.size, "saliency")
    maps, probs, xs = np.concatenate(maps_l), np.concatenate(probs_l), np.concatenate(x_l)
    pred_idx = probs.argmax(axis=1)
    tgt_idx = pred_idx if target == "predicted" else np.array(
        [name_to_idx.get(lab, p) for lab, p in zip(labels, pred_idx)])
    k_n = len(label_names)
    class_means = np.zeros((k_n, maps.shape[1]), np.float32)
    counts = np.zeros(k_n, np.int64)
    for k in range(k_n):
        sel = tgt_idx == k
        counts[k] = int(sel.sum())
        if counts[k]:
            class_means[k] = maps[sel].mean(axis=0)
    fs = float(manifest.get("fs_hz") or 1000.0)
    t0 = float((manifest.get("time_ms") or [0.0])[0])
    time_ms = t0 + 1000.0 * np.arange(maps.shape[1]) / fs
    predicted = [label_names[k] for k in pred_idx]
    out = run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "saliency.npz", suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, ids=np.array(ids, dtype=str), labels=np.array(labels, dtype=str),
                                predicted=np.array(predicted, dtype=str),
                                target_class=np.array([label_names[k] for k in tgt_idx], dtype=str),
                                probabilities=probs, maps=maps, waveforms=xs.astype(np.float32),
                                class_means=class_means, class_counts=counts,
                                label_names=np.array(label_names, dtype=str), time_ms=time_ms)
    examples, files = {}, ["saliency.npz", "summary.json"]
    chosen_rows = []
    for k, name in enumerate(label_names):
        members = [j for j, lab in enumerate(labels) if lab == name]
        members.sort(key=lambda j: (pred_idx[j] != k, -probs[j, pred_idx[j]], ids[j]))
        chosen = members[:int(n_examples)]
        if chosen:
            examples[name] = [ids[j] for j in chosen]
            chosen_rows.append((name, chosen))
    if figures:
        plt = _pyplot()
        units = str(manifest.get("units") or "")
        if chosen_rows:
            n_c = max(len(c) for _, c in chosen_rows)
            fig, axes = plt.subplots(len(chosen_rows), n_c, figsize=(3.2 * n_c + 0.6, 2.4 * len(chosen_rows) + 0.4),
                                     squeeze=False, layout="constrained")
            for r, (name, chosen) in enumerate(chosen_rows):
                for c in range(n_c):
                    ax = axes[r, c]
                    if c >= len(chosen):
                        ax.set_axis_off()
                        continue
                    j = chosen[c]
                    ax.plot(time_ms, xs[j], color="0.6", lw=1)
                    sc = ax.scatter(time_ms, xs[j], c=maps[j], cmap=SALIENCY_CMAP, vmin=0, vmax=1, s=12, zorder=3)
                    ax.set_title(f"{name} — {_short(ids[j], 24)}\npredicted {predicted[j]} "
                                 f"({probs[j, pred_idx[j]]:.2f})", fontsize=9)
                    ax.set_xlabel("time from crossing (ms)", fontsize=8)
                    if c == 0:
                        ax.set_ylabel(units, fontsize=8)
            fig.colorbar(sc, ax=axes, shrink=0.8, label=f"saliency ({target} class)")
            _save_png(fig, out / "examples.png")
            files.append("examples.png")
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
        for k, name in enumerate(label_names):
            sel = np.array([lab == name for lab in labels])
            if sel.any():
                ax[0].plot(time_ms, xs[sel].mean(axis=0), label=f"{name} (n={int(sel.sum())})")
            if counts[k]:
                ax[1].plot(time_ms, class_means[k], label=f"{name} (n={int(counts[k])})")
        ax[0].set_title("mean snippet per true class", fontsize=10)
        ax[0].set_ylabel(units, fontsize=8)
        ax[1].set_title(f"mean saliency per {target} class", fontsize=10)
        for a in ax:
            a.set_xlabel("time from crossing (ms)")
            a.legend(fontsize=8)
        _save_png(fig, out / "class_means.png")
        files.append("class_means.png")
    labelled = [j for j, lab in enumerate(labels) if lab in name_to_idx]
    summary = {
        "run_id": config.get("run_id", run_dir.name),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": method, "target": target,
        "saliency": "|d p_target / d input| per time sample, max over channels, divided by each map's maximum",
        "cells": source, "n_cells": int(idx.size), "dataset": str(data), "label_names": label_names,
        "map_shape": list(maps.shape[1:]), "axes": ["time"],
        "accuracy_on_these_cells": (float(np.mean([pred_idx[j] == name_to_idx[labels[j]] for j in labelled]))
                                    if labelled else None),
        "per_class": {name: {"n_true": int(sum(1 for lab in labels if lab == name)),
                             "n_predicted": int((pred_idx == k).sum()), "n_in_mean": int(counts[k]),
                             "peak": ({"time_bin": int(np.argmax(class_means[k])),
                                       "time_ms": float(time_ms[int(np.argmax(class_means[k]))])}
                                      if counts[k] else None)}
                      for k, name in enumerate(label_names)},
        "examples": examples, "backend": _backend_name(), "files": sorted(files),
    }
    write_json(out / "summary.json", summary)
    return out


def _backend_name() -> str:
    import keras

    return keras.backend.backend()
