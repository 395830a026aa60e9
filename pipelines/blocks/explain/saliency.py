"""Input-gradient saliency for any Keras 3 classifier (TensorFlow, JAX or PyTorch backend).

:func:`input_gradients` is the only backend-specific code; :func:`saliency_maps` reduces
|gradient| over the channel axis and scales each map to [0, 1] (plain gradient, or SmoothGrad:
Smilkov et al. 2017, 16 noisy copies, sigma = 0.15 of the sample range). The pipelines draw the
maps (scalograms: ``sts.saliency``; waveforms: ``spikes.figures``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.atomic import atomic_path
from ...core.errors import EphysError

__all__ = ["METHODS", "TARGETS", "saliency_section", "input_gradients", "saliency_maps", "load_model", "pyplot", "save_png",
           "short", "backend_name"]

METHODS = ("gradient", "smoothgrad")
TARGETS = ("predicted", "true")


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



def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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



def saliency_section(ctx, class_means_caption: str, examples_caption: str, describe):
    """A report section from ``RUN/explain/`` (``class_means.png``, ``examples.png``, ``summary.json``)
    for the modalities explained by input gradients; None when the run is not explained.

    ``describe(how, target, summary) -> str`` words the paragraph for the modality, where ``how``
    is "SmoothGrad" or "Input-gradient" and ``target`` "predicted" or "true".
    """
    import json

    from ...core.registry import Figure, Section

    explain_dir = Path(ctx.run_dir) / "explain"
    figs = []
    for src, key, alt, caption in (
            ("class_means.png", "saliency_class_means", "mean saliency per class", class_means_caption),
            ("examples.png", "saliency_examples", "saliency examples", examples_caption)):
        if (explain_dir / src).is_file():
            figs.append(Figure((explain_dir / src).read_bytes(), alt, caption, key))
    if not figs:
        return None
    text = ""
    summ = explain_dir / "summary.json"
    if summ.is_file():
        try:
            sm = json.loads(summ.read_text(encoding="utf-8"))
            target = "predicted" if sm.get("target", "predicted") == "predicted" else "true"
            how = "SmoothGrad" if sm.get("method") == "smoothgrad" else "Input-gradient"
            text = describe(how, target, sm)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    return Section("Saliency", text, figs)
