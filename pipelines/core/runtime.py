"""What the Keras runtime looks like: backend, its version, and whether a GPU is visible.

This is the only place outside ``explain.input_gradients`` that asks the backend library
itself; model code uses the Keras 3 API only.
"""

from __future__ import annotations

import importlib
import os


def backend_name() -> str:
    """The Keras backend in use (``tensorflow``, ``jax`` or ``torch``)."""
    import keras

    return keras.backend.backend()


def backend_version() -> str:
    """Version string of the backend library (imports it); ``"unknown"`` if it cannot be read."""
    name = backend_name()
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(name, name)
    try:
        return importlib.import_module(module).__version__
    except Exception:  # pragma: no cover - depends on the install
        return "unknown"


def gpu_devices() -> list[str]:
    """Names of the GPUs the Keras backend can see (empty on CPU-only machines)."""
    name = backend_name()
    try:
        if name == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if name == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform == "gpu"]
        if name == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no GPU runtime at all
        return []
    return []


def configure_for_device(seed: int | None = None) -> bool:
    """Seed everything; on a GPU switch on mixed precision. Returns whether a GPU is used.

    ``EPHYS_MIXED_PRECISION=0`` keeps float32 on GPUs.
    """
    import keras

    if seed is not None:
        keras.utils.set_random_seed(int(seed))
    gpu = bool(gpu_devices())
    if gpu and os.environ.get("EPHYS_MIXED_PRECISION", "1") != "0":
        keras.mixed_precision.set_global_policy("mixed_float16")
    return gpu
